"""Answer-level evidence shown and required: `--require answer` exports (streamed, in memory, the
run's own export via `export_require`), `curate stats`, the dataset card and the report, on a
hand-built lake whose pair_audits rows include answer_* checks."""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from curate.audit.checks import read_audits, with_verdicts
from curate.config import parse_config
from curate.errors import UserError
from curate.lake.catalog import Lake
from curate.publish.card import CardContext
from curate.publish.export import ExportOptions, export_pairs
from curate.publish.stream import export_lake

NOW = datetime(2026, 12, 5, tzinfo=timezone.utc)

# pair -> its audit rows (check, verdict), oldest first; the claim verdict and the answer verdict follow.
AUDITS = {
    "gt-1": [("verifier", "confirmed"), ("answer_verifier", "confirmed")],             # confirmed / confirmed
    "gt-2": [("verifier", "confirmed"), ("answer_verifier", "confirmed"),
             ("answer_format", "confirmed")],                                          # confirmed / confirmed
    "gt-3": [("verifier", "confirmed"), ("answer_format", "refuted")],                 # refuted / refuted
    "gt-4": [("verifier", "confirmed"), ("answer_grounding", "uncheckable")],          # confirmed / unchecked
    "rev-1": [("reversal", "confirmed")],                                              # confirmed / unchecked
    "rev-2": [("reversal", "confirmed"), ("answer_judge", "confirmed")],               # confirmed / confirmed
    "rev-3": [("reversal", "confirmed"), ("answer_judge", "refuted")],                 # refuted / refuted
    "m-1": [("hygiene", "confirmed"), ("answer_verifier", "confirmed")],               # uncheckable / confirmed
    "m-2": [("verifier", "refuted"), ("answer_verifier", "confirmed")],                # refuted / confirmed
    "m-3": [("hygiene", "confirmed"), ("answer_own_text", "confirmed")],               # uncheckable / unchecked
    "m-4": [("answer_verifier", "confirmed"), ("answer_verifier", "refuted")],         # the newer row: refuted
    "step-1": [],                                                                      # not audited
}
STRATEGY = {"gt": "gt", "rev": "reversal", "m": "margin", "step": "stepwise"}
ANSWER_CONFIRMED = {"gt-1", "gt-2", "rev-2", "m-1", "m-2"}
REFUTED = {"gt-3", "rev-3", "m-2", "m-4"}
# per strategy: pairs, confirmed, refuted, uncheckable, unaudited, answer confirmed, refuted, unchecked
SUMMARY = {"gt": (4, 3, 1, 0, 0, 2, 1, 1), "margin": (4, 0, 2, 2, 0, 2, 1, 1),
           "reversal": (3, 2, 1, 0, 0, 1, 1, 1), "stepwise": (1, 0, 0, 0, 1, 0, 0, 0)}


def _pair(pair_id: str) -> dict:
    return {"pair_id": pair_id, "prompt_id": "p1", "strategy": STRATEGY[pair_id.split("-")[0]], "params_json": "{}",
            "prompt": [{"role": "user", "content": "What is 2 + 2?"}], "chosen": f"4 ({pair_id})",
            "rejected": "5", "chosen_id": f"{pair_id}-c", "rejected_id": f"{pair_id}-r", "scorer": "math_verify",
            "margin": 1.0, "reason": "test", "dedup_key": pair_id, "run_id": "r1", "created_at": NOW}


def _audit_rows() -> list[dict]:
    rows = []
    for pair_id, checks in AUDITS.items():
        for index, (check, verdict) in enumerate(checks):
            rows.append({"audit_id": f"{pair_id}-{index}", "pair_id": pair_id, "check_name": check,
                         "verdict": verdict, "audit_version": "1", "run_id": "r1",
                         "created_at": NOW + timedelta(minutes=index)})
    return rows


def build_lake(root: Path) -> Path:
    with Lake(root / "lake") as lake:
        lake.commit({
            "runs": [{"run_id": "r1", "started_at": NOW, "finished_at": NOW, "status": "completed",
                      "config_json": "{}", "code_version": "curate test"}],
            "prompts": [{"prompt_id": "p1", "source": "hand", "task": "math", "reference_answer": "4",
                         "messages": [{"role": "user", "content": "What is 2 + 2?"}], "run_id": "r1",
                         "created_at": NOW}],
            "pairs": [_pair(p) for p in AUDITS]})
        lake.commit({"pair_audits": _audit_rows()})
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return build_lake(tmp_path_factory.mktemp("answers"))


def _exported(written) -> set[str]:
    return {json.loads(line)["pair_id"] for line in written["files"]["train"].read_text().splitlines()}


def test_the_lake_has_the_answer_verdicts_the_tests_expect(root):
    with Lake(root / "lake", read_only=True) as lake:
        answers = dict(lake.query("SELECT pair_id, answer_verdict FROM pair_audit_verdicts").iter_rows())
        summary = {r[0]: tuple(r[1:]) for r in lake.query(
            "SELECT strategy, pairs, confirmed, refuted, uncheckable, unaudited, answer_confirmed, answer_refuted, "
            "answer_unchecked FROM pair_audit_summary").iter_rows()}
    assert {p for p, v in answers.items() if v == "confirmed"} == ANSWER_CONFIRMED
    assert {p for p, v in answers.items() if v == "refuted"} == {"gt-3", "rev-3", "m-4"}
    assert summary == SUMMARY


@pytest.mark.parametrize("keep_refuted", [False, True])
def test_require_answer_exports_exactly_the_answer_confirmed_pairs(root, tmp_path, keep_refuted):
    options = ExportOptions(format="jsonl", require=("answer",), keep_refuted=keep_refuted)
    with Lake(root / "lake", read_only=True) as lake:
        streamed = export_lake(lake, tmp_path / "s" / "out", options, batch_rows=3)
        pairs = with_verdicts(lake.read("pairs"), read_audits(lake))
    in_memory = export_pairs(pairs, tmp_path / "m" / "out", options)
    want = ANSWER_CONFIRMED if keep_refuted else ANSWER_CONFIRMED - REFUTED
    for written in (streamed, in_memory):
        assert _exported(written) == want
        assert written["total"] == len(want) == (5 if keep_refuted else 4)
        assert written["refuted_left_out"] == (0 if keep_refuted else 4)
        assert written["answer_left_out"] == len(AUDITS) - written["refuted_left_out"] - len(want)
        assert written["answer_left_out"] == (7 if keep_refuted else 4)


def test_without_require_only_refuted_pairs_are_left_out(root, tmp_path):
    with Lake(root / "lake", read_only=True) as lake:
        written = export_lake(lake, tmp_path / "out", ExportOptions(format="jsonl"))
    assert _exported(written) == set(AUDITS) - REFUTED
    assert written["refuted_left_out"] == 4 and written["answer_left_out"] == 0


def test_require_takes_only_known_requirements():
    assert ExportOptions(require=["answer", "answer"]).require == ("answer",)
    with pytest.raises(ValueError, match="unknown export requirement 'judge'; one of answer"):
        ExportOptions(require=("judge",))
    with pytest.raises(ValueError, match="list of strings"):
        ExportOptions(require="answer")


def test_require_answer_on_unaudited_pairs_exports_nothing(root, tmp_path):
    with Lake(root / "lake", read_only=True) as lake:
        raw = lake.read("pairs")
    written = export_pairs(raw, tmp_path / "out", ExportOptions(format="jsonl", require=("answer",)))
    assert written["total"] == 0 and written["answer_left_out"] == len(AUDITS) and written["refuted_left_out"] == 0


def _card(root, out, options) -> str:
    with Lake(root / "lake", read_only=True) as lake:
        export_lake(lake, out, options, card_context=CardContext(as_of=3, source="hand lake"))
    return (out / "README.md").read_text()


def test_card_shows_answer_evidence_per_strategy_and_the_require_used(root, tmp_path):
    card = _card(root, tmp_path / "req", ExportOptions(format="jsonl", require=("answer",)))
    audit = card.split("## Audit\n")[1].split("## Lineage")[0]
    # the claim-level table, then the answer-level one: strategy, pairs, evidence, refuted, claim alone
    for strategy, (pairs, confirmed, refuted, uncheckable, unaudited, a_ok, a_bad, a_none) in SUMMARY.items():
        assert f"| {strategy} | {pairs} | {confirmed} | {refuted} | {uncheckable} | {unaudited} |\n" in audit
        assert f"| {strategy} | {pairs} | {a_ok} | {a_bad} | {a_none} |\n" in audit
    assert ("| strategy | pairs | answer-level evidence | refuted at the answer level | claim alone (unchecked) |"
            in audit)
    assert "4 refuted pairs were left out of this export." in audit
    assert "This export used `--require answer`: only pairs with answer-level evidence were exported, " \
           "4 without it were left out." in audit
    assert "(reversal, margin on constraints or a judge's ratings, short_to_long, code_evolution commits, stepwise)" in audit and "135M" in audit
    assert "Filters: required: answer." in card
    assert "4 preference pairs exported" in card

    plain = _card(root, tmp_path / "plain", ExportOptions(format="jsonl"))
    assert "This export used no `--require`: pairs resting on their claim alone are included." in plain
    assert "| gt | 4 | 2 | 1 | 1 |\n" in plain and "Filters: none." in plain


def test_report_shows_the_answer_columns(root, tmp_path):
    from curate.publish.report import read_lake_frames, write_report

    with Lake(root / "lake", read_only=True) as lake:
        page = write_report(read_lake_frames(lake), tmp_path / "report.html").read_text()
    audit = page.split('<section id="audit">')[1].split("</section>")[0]
    assert "<th>answer-level evidence</th><th>refuted at the answer level</th><th>claim alone (unchecked)</th>" in audit
    assert "<code>curate export --require answer</code> exports only pairs with it." in audit
    cells = "".join(f'<td class="num">{v}</td>' for v in SUMMARY["margin"])
    assert f"<td>margin</td>{cells}</tr>" in audit


def _cli(curate_cli, root, *args):
    done = subprocess.run([*curate_cli, *args, "--data-dir", str(root)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "220"})
    return done.returncode, " ".join(done.stdout.split()), done.stderr


def _stats_rows(out: str) -> dict[str, tuple[int, ...]]:
    """`curate stats`' audit tables: strategy -> its claim-level counts and its answer-level counts."""
    claims, answers = out.split("pair audit per strategy")[1].split("answer-level evidence per strategy")
    claim_rows = {m[0]: tuple(int(v) for v in m[1:])
                  for m in re.findall(r"│ (\w+) │ (\d+) │ (\d+) │ (\d+) │ (\d+) │ (\d+) │", claims)}
    answer_rows = {m[0]: tuple(int(v) for v in m[2:])
                   for m in re.findall(r"│ (\w+) │ (\d+) │ (\d+) │ (\d+) │ (\d+) │", answers)}
    return {strategy: claim_rows[strategy] + answer_rows[strategy] for strategy in claim_rows}


def test_curate_export_require_answer_and_stats(root, tmp_path, curate_cli):
    code, out, err = _cli(curate_cli, root, "export", str(tmp_path / "out"), "--format", "jsonl", "--require", "answer")
    assert code == 0, err + out
    assert ("exported 4 pairs (train 4) as jsonl/trl_conversational" in out
            and "4 refuted by the audit left out" in out and "4 without answer-level evidence left out" in out), out
    rows = [json.loads(line) for line in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    assert {r["pair_id"] for r in rows} == ANSWER_CONFIRMED - REFUTED
    assert "`--require answer`" in (tmp_path / "out" / "README.md").read_text()

    code, out, err = _cli(curate_cli, root, "export", str(tmp_path / "bad"), "--require", "judge")
    assert code == 2 and "unknown export requirement 'judge'; one of answer" in err and len(err.splitlines()) == 1, err

    code, out, err = _cli(curate_cli, root, "stats")
    assert code == 0, err
    assert "answer_confirmed" in out and "answer_refuted" in out and "answer_unchecked" in out, out
    assert _stats_rows(out) == SUMMARY, out


def test_stats_without_the_view_counts_the_answer_columns_from_the_audits(tmp_path, curate_cli):
    """A lake whose views predate the answer verdicts, read-only: stats counts from pairs and audits."""
    build_lake(tmp_path)
    with Lake(tmp_path / "lake") as lake:
        lake.con.execute("CREATE OR REPLACE VIEW lake.pair_audit_summary AS "
                         "SELECT strategy, count(*) AS pairs FROM pairs GROUP BY strategy")
        lake.con.execute("CREATE OR REPLACE VIEW lake.curate_views_version AS SELECT 'old' AS version")
    code, out, err = _cli(curate_cli, tmp_path, "stats")
    assert code == 0, err
    assert _stats_rows(out) == SUMMARY, out


def test_a_runs_own_export_requires_what_export_require_names(tmp_path):
    from curate.steps import publish
    from curate.steps.state import RunState

    base = {"inputs": [{"builtin": "ifeval"}], "export_path": "export/run"}
    config = parse_config({**base, "export_require": ["answer"]}, tmp_path)
    assert config.export_require == ["answer"] and parse_config(base, tmp_path).export_require == []
    for bad, message in ((["judge"], "unknown requirement 'judge'"), ("answer", "must be a list of strings")):
        with pytest.raises(UserError, match=message):
            parse_config({**base, "export_require": bad}, tmp_path)

    build_lake(tmp_path)
    state = RunState(run_id="r1")
    with Lake(tmp_path / "lake") as lake:
        publish.export(SimpleNamespace(config=config, data_dir=tmp_path, lake=lake), state)
    assert state.counts["pairs_exported"] == 4 and state.counts["pairs_answer_left_out"] == 4
    assert state.counts["pairs_refuted_left_out"] == 4
    import datasets

    train = datasets.load_from_disk(str(tmp_path / "export" / "run"))["train"]
    assert set(train["pair_id"]) == ANSWER_CONFIRMED - REFUTED
    assert "`--require answer`" in (tmp_path / "export" / "run" / "README.md").read_text()
