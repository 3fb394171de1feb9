"""The pair audit on hand-built lakes: each check confirms, refutes and cannot check; verdicts,
views, re-auditing, exports without and with refuted pairs, and `curate audit` on an old lake."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone

import polars as pl
import pytest

from curate import ids
from curate.audit.checks import (
    AUDIT_VERSION,
    CONFIRMED,
    REFUTED,
    UNCHECKABLE,
    audit_lake,
    audit_run,
    audit_summary,
    check_verifier,
    judge_verdict,
    overall_verdicts,
    read_audits,
    with_verdicts,
)
from curate.lake import audit_facts, schemas
from curate.lake.catalog import Lake
from curate.pairs.stepwise import check_arithmetic
from curate.publish.card import CardContext
from curate.publish.export import ExportOptions, export_pairs
from curate.score.judge import PairVerdict

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
NO_COMMA = [{"type": "punctuation:no_comma", "kwargs": {}}]
TESTS = "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(5) == 10\n"


def _prompt(pid, task, content, **fields):
    return {"prompt_id": pid, "source": "hand", "task": task, "messages": [{"role": "user", "content": content}],
            "run_id": "r1", "created_at": NOW, **fields}


PROMPTS = [
    _prompt("pm", "math", "What is 2 + 2?", reference_answer="4"),
    _prompt("pi", "instruction", "Describe the sea without commas.", constraints_json=json.dumps(NO_COMMA)),
    _prompt("pc", "code", "Write double(x).", task_fields_json=json.dumps({"tests": TESTS, "entry_point": "double"})),
    _prompt("ph", "chat", "Say hello."),
]
TEXTS = {
    "c1": "2 + 2 = 4. The answer is 4.", "c2": "The answer is 5.",      # right over wrong
    "c3": "The answer is 7.", "c4": "The answer is 9.",                 # both wrong: a tie
    "c5": "The answer is 5.", "c6": "The answer is 4.",                 # stale scores say c5 is right
    "c7": "Hello there!", "c8": "Go away.",
    "c9": "```python\ndef double(x):\n    return 2 * x\n```", "c10": "```python\ndef double(x):\n    return x + 2\n```",
    "c11": "The sea is wide and blue and calm.", "c12": "The sea is wide, blue, and calm.",
}
PROMPT_OF = {"c1": "pm", "c2": "pm", "c3": "pm", "c4": "pm", "c5": "pm", "c6": "pm", "c7": "ph", "c8": "ph",
             "c9": "pc", "c10": "pc", "c11": "pi", "c12": "pi"}


def _candidate(cid):
    return {"candidate_id": cid, "prompt_id": PROMPT_OF[cid], "model": "hand-model", "sampling_json": "{}",
            "sample_index": 0, "seed": 0, "text": TEXTS[cid], "run_id": "r1", "created_at": NOW}


def _score(cid, scorer, score, status="ok"):
    return {"score_id": ids.score_id(cid, scorer, "1"), "candidate_id": cid, "prompt_id": PROMPT_OF[cid],
            "scorer": scorer, "scorer_version": "1", "score": score, "status": status, "run_id": "r1",
            "created_at": NOW}


def _pair(pair_id, strategy, prompt_id, chosen_id, rejected_id, scorer, chosen=None, rejected=None, details=None,
          prompt=None):
    return {"pair_id": pair_id, "prompt_id": prompt_id, "strategy": strategy, "params_json": "{}",
            "prompt": prompt or [{"role": "user", "content": "q"}],
            "chosen": TEXTS.get(chosen_id, "") if chosen is None else chosen,
            "rejected": TEXTS.get(rejected_id, "") if rejected is None else rejected,
            "chosen_id": chosen_id, "rejected_id": rejected_id, "scorer": scorer, "margin": 1.0, "reason": "test",
            "details_json": None if details is None else json.dumps(details), "dedup_key": pair_id,
            "run_id": "r1", "created_at": NOW}


PAIRS = [
    _pair("math-ok", "margin", "pm", "c1", "c2", "math_verify"),
    _pair("math-tie", "gt", "pm", "c3", "c4", "math_verify"),
    _pair("math-stale", "margin", "pm", "c5", "c6", "math_verify"),
    _pair("identical", "margin", "pm", "c1", "c6", "math_verify", rejected=TEXTS["c1"]),
    _pair("chat", "margin", "ph", "c7", "c8", "judge:x"),
    _pair("code-ok", "margin", "pc", "c9", "c10", "code_tests"),
    _pair("rev-ok", "reversal", "pi", "c11", "c12", "constraints", details={"rewritten_constraints": NO_COMMA}),
    _pair("rev-bad", "reversal", "pi", "c12", "c11", "constraints", details={"rewritten_constraints": NO_COMMA}),
    _pair("rev-none", "reversal", "pi", "c11", "c12", "constraints"),
    _pair("step", "stepwise", "pm", "c1", "c2#step1", "math_verify", chosen="2 + 2 = 4.", rejected="2 + 2 = 5.",
          details={"erroneous_step": 1}),
]
SCORES = [
    _score("c1", "math_verify", 1.0), _score("c2", "math_verify", 0.0),
    _score("c3", "math_verify", 0.0), _score("c4", "math_verify", 0.0),
    _score("c5", "math_verify", 1.0), _score("c6", "math_verify", 0.0),       # stale: the texts say otherwise
    _score("c7", "judge:x", 8.0), _score("c8", "judge:x", None, "unparsed"),
    _score("c9", "code_tests", 1.0), _score("c10", "code_tests", 0.0),
    _score("c1", "quality", 1.0), _score("c3", "quality", 0.0),               # c3 gated (say, degenerate)
]


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """The hand-built lake, audited once (the math-verify worker and the sandbox take a while)."""
    with Lake(tmp_path_factory.mktemp("audit") / "lake") as lake:
        lake.commit({"prompts": PROMPTS, "candidates": [_candidate(c) for c in TEXTS], "scores": SCORES,
                     "pairs": PAIRS})
        result = audit_lake(lake, "audit-1")
        yield lake, result


@pytest.fixture
def lake(audited):
    return audited[0]


def _verdicts(lake) -> dict[tuple[str, str], dict]:
    return {(r["pair_id"], r["check_name"]): r for r in lake.read("pair_audits").iter_rows(named=True)}


def test_each_check_confirms_refutes_and_cannot_check(audited):
    lake, result = audited
    got = {key: row["verdict"] for key, row in _verdicts(lake).items()}
    expected = {
        ("math-ok", "hygiene"): CONFIRMED, ("math-tie", "hygiene"): REFUTED, ("math-stale", "hygiene"): UNCHECKABLE,
        ("identical", "hygiene"): REFUTED,
        ("math-ok", "score_order"): CONFIRMED, ("math-tie", "score_order"): REFUTED,
        ("chat", "score_order"): UNCHECKABLE, ("math-stale", "score_order"): CONFIRMED,
        ("math-ok", "verifier"): CONFIRMED, ("math-stale", "verifier"): REFUTED, ("math-tie", "verifier"): REFUTED,
        ("chat", "verifier"): UNCHECKABLE, ("code-ok", "verifier"): CONFIRMED,
        ("rev-ok", "reversal"): CONFIRMED, ("rev-bad", "reversal"): REFUTED, ("rev-none", "reversal"): UNCHECKABLE,
        ("rev-ok", "score_order"): UNCHECKABLE, ("rev-ok", "verifier"): UNCHECKABLE,
        ("step", "verifier"): UNCHECKABLE,
    }
    assert {key: got[key] for key in expected} == expected
    assert ("math-ok", "reversal") not in got and got[("step", "arithmetic")] == CONFIRMED  # 2 + 2 = 5 is false
    assert result["audited"] == len(PAIRS) and result["rows_new"] == len(got)
    detail = json.loads(_verdicts(lake)[("math-stale", "verifier")]["detail_json"])
    assert detail["chosen"] == 0.0 and detail["rejected"] == 1.0 and detail["verifier"] == "math_verify"
    detail = json.loads(_verdicts(lake)[("rev-bad", "reversal")]["detail_json"])
    assert detail["chosen_fails"] == ["punctuation:no_comma"] and detail["rejected_fails"] == []


def test_overall_verdicts_view_and_reaudit(lake):
    overall = dict(overall_verdicts(lake.read("pair_audits")).select("pair_id", "verdict").iter_rows())
    assert overall["math-ok"] == CONFIRMED and overall["code-ok"] == CONFIRMED and overall["rev-ok"] == CONFIRMED
    assert overall["math-stale"] == REFUTED and overall["math-tie"] == REFUTED and overall["identical"] == REFUTED
    assert overall["rev-bad"] == REFUTED
    assert overall["chat"] == UNCHECKABLE  # no check could tell
    view = dict(lake.query("SELECT pair_id, verdict FROM pair_audit_verdicts").iter_rows())
    assert view == overall
    summary = audit_summary(lake.read("pairs"), lake.read("pair_audits"))
    view_summary = lake.query("SELECT * FROM pair_audit_summary ORDER BY strategy")
    assert summary.to_dicts() == view_summary.to_dicts()
    summary = summary.drop("answer_confirmed", "answer_refuted", "answer_unchecked")
    margin = next(r for r in summary.to_dicts() if r["strategy"] == "margin")
    assert margin == {"strategy": "margin", "pairs": 5, "confirmed": 2, "refuted": 2, "uncheckable": 1,
                      "unaudited": 0}
    # content-addressed: auditing unchanged evidence again adds nothing
    again = audit_lake(lake, "audit-2")
    assert again["rows_new"] == 0 and lake.count("pair_audits") == len(_verdicts(lake))
    assert audit_lake(lake, "audit-3", only_unaudited=True)["audited"] == 0


def test_arithmetic_check_verdicts():
    step = dict(PAIRS[-1])
    assert check_arithmetic(step).verdict == CONFIRMED  # rejected states 2 + 2 = 5
    bad_prefix = {**step, "prompt": [{"role": "user", "content": "q"},
                                     {"role": "assistant", "content": "9 * 11 = 98\n"}]}
    verdict = check_arithmetic(bad_prefix)
    assert verdict.verdict == REFUTED and verdict.detail["prefix_false"] == ["9 * 11 = 98"]
    assert check_arithmetic({**step, "rejected": "so 4 it is"}).verdict == UNCHECKABLE


def test_judge_verdicts_map_to_audit_verdicts():
    assert judge_verdict(PairVerdict("a", "a", "a")).verdict == CONFIRMED
    assert judge_verdict(PairVerdict("b", "b", "b")).verdict == REFUTED
    order = judge_verdict(PairVerdict("tie", "a", "b", [["[[A]]"], ["[[A]]"]]))
    assert order.verdict == UNCHECKABLE and "position" in order.detail["reason"]
    assert judge_verdict(PairVerdict("unparsed", None, "a")).verdict == UNCHECKABLE


def test_export_leaves_refuted_out_unless_kept(lake, tmp_path):
    pairs = with_verdicts(lake.read("pairs"), read_audits(lake))
    context = CardContext(scores=lake.read("scores"), runs=lake.read("runs"), candidates=lake.read("candidates"),
                          as_of=lake.snapshot_id(), source="hand lake")
    written = export_pairs(pairs, tmp_path / "out", ExportOptions(format="jsonl"), card_context=context)
    refuted = {"math-tie", "math-stale", "identical", "rev-bad"}
    exported = {json.loads(line)["pair_id"] for line in (tmp_path / "out" / "train.jsonl").read_text().splitlines()}
    assert written["refuted_left_out"] == len(refuted) and exported == {p["pair_id"] for p in PAIRS} - refuted
    card = (tmp_path / "out" / "README.md").read_text()
    assert f"{len(refuted)} refuted pairs were left out" in card
    assert "| margin | 5 | 2 | 2 | 1 | 0 |" in card  # pairs, confirmed, refuted, uncheckable, unaudited
    kept = export_pairs(pairs, tmp_path / "all", ExportOptions(format="jsonl", keep_refuted=True))
    assert kept["refuted_left_out"] == 0 and kept["total"] == len(PAIRS)
    unaudited = export_pairs(lake.read("pairs"), tmp_path / "raw", ExportOptions(format="jsonl"))
    assert unaudited["total"] == len(PAIRS) and unaudited["refuted_left_out"] == 0


def test_exports_carry_weight_and_details_in_every_style(lake, tmp_path):
    from curate.publish.export import STYLES

    pairs = lake.read("pairs").with_columns(pl.when(pl.col("pair_id") == "code-ok").then(0.5).alias("weight"))
    for style in STYLES:
        written = export_pairs(pairs, tmp_path / style, ExportOptions(format="jsonl", style=style))
        rows = {json.loads(line)["pair_id"]: json.loads(line)
                for line in written["files"]["train"].read_text().splitlines()}
        assert rows["code-ok"]["weight"] == 0.5 and rows["math-ok"]["weight"] is None
        assert json.loads(rows["rev-ok"]["details_json"]) == {"rewritten_constraints": NO_COMMA}


def test_report_shows_the_audit_per_strategy_and_check(lake, tmp_path):
    from curate.publish.report import read_lake_frames, write_report

    page = write_report(read_lake_frames(lake), tmp_path / "report.html").read_text()
    audit = page.split('<section id="audit">')[1].split("</section>")[0]
    cells = lambda row: "".join(f'<td class="num">{v}</td>' for v in row)  # noqa: E731
    assert "<td>margin</td>" + cells([5, 2, 2, 1, 0]) in audit
    assert "<td>reversal</td><td>reversal</td><td>refuted</td>" in audit


def test_pair_audits_schema_and_ids():
    table = schemas.table("pair_audits")
    assert table.key == "audit_id" and "check_name" in table.column_names and "audit_version" in table.column_names
    assert AUDIT_VERSION


def test_new_evidence_overrides_the_old_verdict(lake):
    # (runs last: it adds evidence to the module's lake) the gate on c3 is lifted by a newer quality version: hygiene now confirms math-tie
    newer = {**_score("c3", "quality", 1.0), "score_id": ids.score_id("c3", "quality", "2"), "scorer_version": "2",
             "created_at": datetime(2026, 12, 2, tzinfo=timezone.utc)}
    lake.commit({"scores": [newer]})
    assert audit_lake(lake, "audit-2")["rows_new"] == 1
    view = dict(lake.query("SELECT pair_id, verdict FROM pair_audit_verdicts").iter_rows())
    assert view["math-tie"] == REFUTED  # still a tie on the verifier and the score
    latest = lake.query("SELECT verdict FROM pair_audits WHERE pair_id = 'math-tie' AND check_name = 'hygiene' "
                        "ORDER BY created_at DESC LIMIT 1")["verdict"][0]
    assert latest == CONFIRMED


def test_a_run_audits_its_own_pairs_and_those_of_runs_that_stopped_early(tmp_path):
    """audit_run reads no pair of a completed run: a night's audit does not grow with the lake."""
    def runs_row(run_id, status):
        return {"run_id": run_id, "started_at": NOW, "status": status, "config_json": "{}", "code_version": "x"}

    def of_run(pair, run_id):
        return {**pair, "run_id": run_id}

    with Lake(tmp_path / "lake") as lake:
        lake.commit({"prompts": PROMPTS, "candidates": [_candidate(c) for c in TEXTS], "scores": SCORES,
                     "runs": [runs_row("done", "completed"), runs_row("killed", "interrupted"),
                              runs_row("tonight", "running")],
                     "pairs": [of_run(PAIRS[0], "done"), of_run(PAIRS[1], "killed"), of_run(PAIRS[2], "tonight"),
                               of_run(PAIRS[5], "tonight")]})
        result = audit_run(lake, "tonight")
        assert result["audited"] == 3
        assert set(lake.read("pair_audits")["pair_id"]) == {"math-tie", "math-stale", "code-ok"}
        assert {r["strategy"]: r["unaudited"] for r in result["summary"].to_dicts()} == {"gt": 0, "margin": 1}
        assert audit_run(lake, "tonight")["audited"] == 0  # a resumed run: nothing audited twice
        assert audit_lake(lake, "audit-all", only_unaudited=True)["audited"] == 1  # `curate audit` gets the rest


# ----------------------------------------------------------------------------------------------
# a lake from before the audit, --as-of, the card


def _old_lake(root):
    """A lake as curate wrote it before the audit: no pair_audits table, no audit views."""
    with Lake(root / "lake") as lake:
        lake.commit({"prompts": PROMPTS, "candidates": [_candidate(c) for c in TEXTS], "scores": SCORES,
                     "pairs": PAIRS[:3],
                     "runs": [{"run_id": "r1", "started_at": NOW, "finished_at": NOW, "status": "completed",
                               "config_json": "{}", "code_version": "curate 0.1.0"}]})
        for view in ("pair_audit_summary", "pair_audit_checks", "pair_audit_verdicts"):
            lake.con.execute(f"DROP VIEW lake.{view}")
        lake.con.execute("DROP TABLE lake.pair_audits")
        lake.con.execute("DROP TABLE lake.pair_audit_facts")
        lake.con.execute("CREATE OR REPLACE VIEW lake.curate_views_version AS SELECT 'old' AS version")


def test_curate_audit_on_a_lake_from_before_the_audit(tmp_path, curate_cli):
    import subprocess

    _old_lake(tmp_path)
    def run(*args):
        done = subprocess.run([*curate_cli, *args, "--data-dir", str(tmp_path)], capture_output=True, text=True,
                              timeout=300, env={**os.environ, "COLUMNS": "200"})
        return done.returncode, " ".join(done.stdout.split()), done.stderr

    code, out, err = run("stats")  # read-only: the old lake has no pair_audits table yet
    assert code == 0, err
    assert re.search(r"pair_audits │ 0", out) and re.search(r"margin │ 2 │ 0 │ 0 │ 0 │ 2", out), out
    code, out, err = run("audit")
    assert code == 0 and "audited 3 pairs" in out, err + out
    with Lake(tmp_path / "lake", read_only=True) as lake:
        assert set(lake.read("pair_audits")["pair_id"]) == {"math-ok", "math-tie", "math-stale"}
        summary = lake.query("SELECT * FROM pair_audit_summary ORDER BY strategy").to_dicts()
    answers = {"answer_confirmed": 0, "answer_refuted": 0, "answer_unchecked": 1}  # the old prompts ask no format
    assert summary == [{"strategy": "gt", "pairs": 1, "confirmed": 0, "refuted": 1, "uncheckable": 0, "unaudited": 0,
                        **answers},
                       {"strategy": "margin", "pairs": 2, "confirmed": 1, "refuted": 1, "uncheckable": 0,
                        "unaudited": 0, "answer_confirmed": 1, "answer_refuted": 0, "answer_unchecked": 1}]
    code, out, err = run("export", str(tmp_path / "out"), "--format", "jsonl")
    assert code == 0 and "2 refuted by the audit left out" in out, err + out
    assert len((tmp_path / "out" / "train.jsonl").read_text().splitlines()) == 1


def test_as_of_a_run_opens_the_snapshot_of_its_finish(tmp_path):
    with Lake(tmp_path / "lake") as lake:
        lake.commit({"runs": [{"run_id": "r1", "started_at": NOW, "status": "running", "config_json": "{}",
                               "code_version": "x"}]})
        lake.commit({"pairs": PAIRS[:2]})
        lake.update_run("r1", status="completed", finished_at=datetime.now(timezone.utc))
        finish = lake.snapshot_id()
        lake.commit({"pairs": PAIRS[2:4]})  # a later run's pairs
        assert lake.snapshot_of_run("r1") == finish
    with Lake(tmp_path / "lake", snapshot=finish) as then:
        assert then.read("runs")["status"].to_list() == ["completed"] and then.count("pairs") == 2


def test_card_names_the_snapshot_read_and_every_model(tmp_path, lake):
    pairs = pl.from_arrow(schemas.conform("pairs", [
        _pair("commit", "code_evolution", "pc", "commit:abc:after", "commit:abc:before", None, chosen="a", rejected="b"),
        _pair("step", "stepwise", "pm", "c1", "c2#step1", "math_verify", chosen="x", rejected="y"),
        _pair("gt", "gt", "pm", "reference", "c4", "math_verify")]))
    candidates = lake.read("candidates").with_columns(
        pl.when(pl.col("candidate_id") == "c2").then(pl.lit("solver-b")).otherwise(pl.col("model")).alias("model"))
    context = CardContext(scores=lake.read("scores"), runs=lake.read("runs"), candidates=candidates, as_of=3)
    export_pairs(pairs, tmp_path / "card", ExportOptions(format="jsonl"), card_context=context)
    card = (tmp_path / "card" / "README.md").read_text()
    assert "from lake snapshot 3" in card and "Lake snapshot: 3." in card
    models = card.split("## Models")[1].split("## Scorers")[0]
    assert "(unknown)" not in models
    assert "| git commit | 1 | 1 |" in models and "| solver-b | 0 | 1 |" in models  # the step's solution
    assert "| reference | 1 | 0 |" in models and "| hand-model | 1 | 1 |" in models


def test_hygiene_and_score_order_alone_never_confirm(lake):
    """They re-read the strategy's own evidence: a pair passing only them is uncheckable, in Python
    and in the SQL of the view's table alike."""
    evidence = '{"counts_as_evidence": true, "ratio": 2.0}'  # a plugin's confirming check says so in its rows
    rows = [("only-own", "hygiene", CONFIRMED, None), ("only-own", "score_order", CONFIRMED, None),
            ("with-verifier", "hygiene", CONFIRMED, None), ("with-verifier", "verifier", CONFIRMED, None),
            ("own-refutes", "score_order", REFUTED, None), ("own-refutes", "verifier", CONFIRMED, None),
            ("plugin", "length_ratio", CONFIRMED, evidence), ("plugin-unflagged", "length_ratio", CONFIRMED, "{}"),
            ("plugin-answer", "answer_length", CONFIRMED, evidence)]
    audits = pl.DataFrame({"pair_id": [r[0] for r in rows], "check_name": [r[1] for r in rows],
                           "verdict": [r[2] for r in rows], "detail_json": [r[3] for r in rows],
                           "audit_id": [f"a{i}" for i in range(len(rows))],
                           "created_at": [datetime(2026, 1, 1, tzinfo=timezone.utc)] * len(rows)})
    assert dict(overall_verdicts(audits).select("pair_id", "verdict").iter_rows()) == {
        "only-own": UNCHECKABLE, "with-verifier": CONFIRMED, "own-refutes": REFUTED, "plugin": CONFIRMED,
        "plugin-unflagged": UNCHECKABLE, "plugin-answer": UNCHECKABLE}
    assert dict(overall_verdicts(audits).select("pair_id", "answer_verdict").iter_rows())["plugin-answer"] == CONFIRMED
    lake.con.register("_audits", audits.to_arrow())
    try:
        in_sql = lake.query(audit_facts.facts_sql("_audits"))  # what pair_audit_verdicts reads
    finally:
        lake.con.unregister("_audits")
    in_python = overall_verdicts(audits)
    for column in ("verdict", "answer_verdict"):
        assert dict(in_sql.select("pair_id", column).iter_rows()) == dict(in_python.select("pair_id", column).iter_rows())


def test_the_verifier_says_why_it_cannot_judge_an_instruction_prompt_without_constraints():
    pair = {"pair_id": "p1", "prompt_id": "q", "strategy": "margin", "chosen": "a", "rejected": "b",
            "chosen_id": "c", "rejected_id": "r", "scorer": "judge:x", "details_json": "{}", "params_json": "{}"}
    verdict = check_verifier(pair, {"task": "instruction", "constraints_json": None}, {})
    assert verdict.verdict == UNCHECKABLE
    assert verdict.detail == {"verifier": "constraints", "reason": "the prompt states no constraints"}
