"""The dataset card written into an export, and the HTML report over the whole lake."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from datetime import datetime, timezone

import polars as pl
import pytest
from huggingface_hub import DatasetCard
from PIL import Image

from curate.lake import schemas
from curate.lake.catalog import Lake
from curate.publish.card import (
    FIGURE_DPI,
    FIGURE_SIZE,
    CardContext,
    config_hash,
    verifier_agreement,
    write_dataset_card,
)
from curate.publish.export import ExportOptions, export_pairs, split_of
from curate.publish.report import SECTIONS, read_lake_frames, write_report

NOW = datetime(2024, 10, 11, tzinfo=timezone.utc)
PNG_SIZE = (int(FIGURE_SIZE[0] * FIGURE_DPI), int(FIGURE_SIZE[1] * FIGURE_DPI))
PROMPT = [{"role": "user", "content": "What is 2+2?"}]


def _pair(pair_id, strategy, chosen_id, rejected_id, margin, chosen="A fine answer.", rejected="No.",
          run_id="run-1", scorer="reward:rm", prompt_id="p-math"):
    return {"pair_id": pair_id, "prompt_id": prompt_id, "strategy": strategy, "params_json": "{}",
            "prompt": PROMPT, "chosen": chosen, "rejected": rejected, "chosen_id": chosen_id,
            "rejected_id": rejected_id, "scorer": scorer, "chosen_score": None if margin is None else 1.0,
            "rejected_score": None if margin is None else 1.0 - margin, "margin": margin, "reason": "test",
            "dedup_key": f"k-{pair_id}", "run_id": run_id, "created_at": NOW}


def _score(candidate, scorer, value, status="ok", version="1"):
    return {"score_id": f"s-{candidate}-{scorer}-{version}", "candidate_id": candidate, "prompt_id": "p-math",
            "scorer": scorer, "scorer_version": version, "score": value if status == "ok" else None,
            "status": status, "detail_json": None, "run_id": "run-1", "created_at": NOW}


def _candidate(candidate, model):
    return {"candidate_id": candidate, "prompt_id": "p-math", "model": model, "sampling_json": "{}",
            "sample_index": 0, "seed": 0, "text": "t", "prompt_tokens": 1, "completion_tokens": 1,
            "finish_reason": "stop", "cumulative_logprob": None, "error": None, "run_id": "run-1",
            "created_at": NOW}


@pytest.fixture
def lake_rows():
    """Three margin pairs (math_verify: 2 agree, 1 disagrees), a reversal pair (constraints tie),
    a gt pair with a reference (no verifier applies)."""
    pairs = [
        _pair("m1", "margin", "c1", "c2", 2.0),
        _pair("m2", "margin", "c3", "c4", 1.0, chosen="A much longer chosen answer with many words."),
        _pair("m3", "margin", "c5", "c6", 0.5, run_id="run-2"),
        _pair("r1", "reversal", "c7", "c8", 0.5, scorer="constraints", prompt_id="p-inst"),
        _pair("g1", "gt", "reference", "c9", None, scorer=None),
    ]
    scores = [
        _score("c1", "math_verify", 1.0), _score("c2", "math_verify", 0.0),   # agree
        _score("c3", "math_verify", 1.0), _score("c4", "math_verify", 1.0),   # agree (tie)
        _score("c5", "math_verify", 0.0), _score("c6", "math_verify", 1.0),   # disagree
        _score("c7", "constraints", 0.5), _score("c8", "constraints", 0.5),   # tie: agree, not strict
        _score("c9", "math_verify", 0.0),                                     # reference has no score
        _score("c1", "reward:rm", 3.0), _score("c2", "reward:rm", 1.0),       # not a verifier
        _score("c4", "judge:self", None, status="unparsed"),
    ]
    runs = [
        {"run_id": "run-1", "started_at": NOW, "finished_at": NOW, "status": "completed",
         "config_json": '{"name": "nightly", "n": 4}', "code_version": "curate 0.1.0 (abc1234)", "counts_json": "{}"},
        {"run_id": "run-2", "started_at": datetime(2024, 10, 12, tzinfo=timezone.utc), "finished_at": None,
         "status": "failed", "config_json": '{"name": "retry"}', "code_version": "curate 0.1.0 (def5678)",
         "counts_json": None},
    ]
    candidates = [_candidate(f"c{i}", "policy-7b" if i % 2 else "student-1b") for i in range(1, 10)]
    prompts = [
        {"prompt_id": "p-math", "source": "demo-math", "task": "math", "messages": PROMPT,
         "reference_answer": "4", "reference_solution": None, "constraints_json": None,
         "task_fields_json": None, "run_id": "run-1", "created_at": NOW},
        {"prompt_id": "p-inst", "source": "demo-instruction", "task": "instruction", "messages": PROMPT,
         "reference_answer": None, "reference_solution": None, "constraints_json": None,
         "task_fields_json": None, "run_id": "run-1", "created_at": NOW},
    ]
    rejects = [
        {"reject_id": "j1", "source": "bad.jsonl", "location": "line 1", "raw": "{", "reason": "bad JSON",
         "stage": "ingest", "run_id": "run-1", "created_at": NOW},
        {"reject_id": "j2", "source": "bad.jsonl", "location": "line 2", "raw": "{", "reason": "bad JSON",
         "stage": "ingest", "run_id": "run-1", "created_at": NOW},
        {"reject_id": "j3", "source": "bad.jsonl", "location": "line 3", "raw": "x",
         "reason": "unknown task <script>alert(1)</script>", "stage": "ingest", "run_id": "run-1",
         "created_at": NOW},
    ]
    tables = {"pairs": pairs, "scores": scores, "runs": runs, "candidates": candidates, "prompts": prompts,
              "rejects": rejects}
    return {name: schemas.conform(name, rows) for name, rows in tables.items()}


@pytest.fixture
def frames(lake_rows):
    return {name: pl.from_arrow(table) for name, table in lake_rows.items()}


# ----------------------------------------------------------------------------------------------
# numbers


def test_verifier_agreement_numbers(frames):
    table = verifier_agreement(frames["pairs"], frames["scores"])
    rows = {(r["strategy"], r["verifier"]): r for r in table.to_dicts()}
    # a tie is not agreement: c3/c4 (1 vs 1) and c7/c8 (0.5 vs 0.5) are ties
    assert rows[("margin", "math_verify")] == {"strategy": "margin", "verifier": "math_verify", "pairs": 3,
                                               "agree": 1, "tie": 1, "disagree": 1,
                                               "agreement": pytest.approx(1 / 3)}
    assert rows[("margin", "any")]["agreement"] == pytest.approx(1 / 3)
    assert rows[("reversal", "constraints")]["agree"] == 0 and rows[("reversal", "constraints")]["tie"] == 1
    assert rows[("reversal", "any")]["agreement"] == 0.0
    assert rows[("gt", "any")]["pairs"] == 0 and rows[("gt", "any")]["agreement"] is None  # n/a
    assert ("margin", "reward:rm") not in rows  # reward models are not verifiers
    assert set(table["strategy"]) == {"margin", "reversal", "gt"}


def test_verifier_agreement_without_scores(frames):
    table = verifier_agreement(frames["pairs"], None)
    assert table["verifier"].to_list() == ["any"] * 3 and table["agreement"].null_count() == 3


# ----------------------------------------------------------------------------------------------
# the card


@pytest.fixture
def exported(tmp_path, frames):
    context = CardContext(scores=frames["scores"], runs=frames["runs"], candidates=frames["candidates"],
                          as_of=7, source="test lake")
    options = ExportOptions(format="jsonl", test_fraction=0.4, name="curated-dpo")
    result = export_pairs(frames["pairs"], tmp_path / "export", options, card_context=context)
    return result, (tmp_path / "export" / "README.md").read_text()


def test_card_front_matter_is_what_the_hub_reads(exported):
    result, _ = exported
    card = DatasetCard.load(result["card"])
    assert card.data.pretty_name == "curated-dpo"
    assert card.data.configs == [{"config_name": "default", "data_files": [
        {"split": "train", "path": "train.jsonl"}, {"split": "test", "path": "test.jsonl"}]}]
    assert "dpo" in card.data.tags


def test_card_counts_and_strategies(exported, frames):
    result, text = exported
    test_ids = [p for p in frames["pairs"]["pair_id"] if split_of(p, 0.4) == "test"]
    assert result["counts"] == {"train": 5 - len(test_ids), "test": len(test_ids)}
    assert "5 preference pairs" in text
    assert f"| train | {5 - len(test_ids)} |" in text and f"| test | {len(test_ids)} |" in text
    strategies = re.search(r"## Strategies\n\n(.*?)\n\n", text, re.S).group(1)
    for strategy, total in (("gt", 1), ("margin", 3), ("reversal", 1)):
        row = next(line for line in strategies.splitlines() if line.startswith(f"| {strategy} |"))
        assert row.endswith(f"| {total} |")


def test_card_models_scorers_margins_lineage(exported):
    _, text = exported
    # c1, c3, c5 chosen by policy-7b; c2, c4, c6, c8 rejected by student-1b; c7 is odd -> policy
    assert "| policy-7b | 4 | 1 |" in text  # chosen c1 c3 c5 c7; rejected c9
    assert "| student-1b | 0 | 4 |" in text
    assert "| reference | 1 | 0 |" in text
    assert "| reward:rm | 3 |" in text and "| constraints | 1 |" in text
    assert "| judge:self | 1 | 1 | 1 |" in text  # scorer, versions, scores, not ok
    assert "| margin | reward:rm | 3 | 3 | 1.167 | 0.500 | 2.000 |" in text
    nightly = config_hash('{"name": "nightly", "n": 4}')
    assert f"| run-1 | nightly | 2024-10-11 00:00:00 | completed | curate 0.1.0 (abc1234) | {nightly} | 4 |" in text
    assert "| run-2 | retry |" in text
    assert "Lake snapshot: 7" in text and "test lake" in text


def test_card_verifier_agreement_section(exported):
    _, text = exported
    section = text.split("## Verifier agreement")[1].split("## Audit")[0]
    assert "| margin | math_verify | 3 | 1 | 1 | 1 | 0.333 |" in section
    assert "| reversal | constraints | 1 | 0 | 1 | 0 | 0.000 |" in section  # a tie is not agreement
    assert "| gt | any | 0 | 0 | 0 | 0 | n/a |" in section


def test_card_pngs_are_linked_valid_and_sized(exported, tmp_path):
    result, text = exported
    for name in ("margins.png", "lengths.png"):
        assert f"]({name})" in text
        path = tmp_path / "export" / name
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == PNG_SIZE
            image.verify()
        with Image.open(path) as image:  # not blank: more than a couple of colours drawn
            assert len(image.convert("RGB").getcolors(maxcolors=1_000_000)) > 10


def test_card_filters_and_missing_context(tmp_path, frames):
    path = write_dataset_card(frames["pairs"].filter(pl.col("strategy") == "gt"), None, None, tmp_path / "c",
                              options=ExportOptions(strategies=["gt"], min_margin=None))
    text = path.read_text()
    assert "Filters: strategies = gt" in text
    assert "Not recorded (no candidates given)" in text
    assert "| gt | any | 0 | 0 | 0 | 0 | n/a |" in text


def test_card_of_no_pairs(tmp_path):
    empty = pl.from_arrow(schemas.table("pairs").arrow_schema().empty_table())
    result = export_pairs(empty, tmp_path / "none", ExportOptions(), card_context=CardContext())
    text = result["card"].read_text()
    assert "0 preference pairs" in text
    with Image.open(tmp_path / "none" / "margins.png") as image:
        assert image.size == PNG_SIZE
    assert DatasetCard.load(result["card"]).data.configs[0]["data_files"] == [
        {"split": "train", "path": "train/*.arrow"}]


# ----------------------------------------------------------------------------------------------
# the report


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_report_sections_tables_and_images(tmp_path, frames):
    out = write_report(frames, tmp_path / "r" / "report.html", source="test lake", as_of=3)
    page = out.read_text()
    for key, label in SECTIONS:
        assert f'<section id="{key}"><h2>{label}</h2>' in page
    assert "<script" not in page.lower().replace("&lt;script&gt;", "")  # no JavaScript, reasons escaped
    assert "unknown task &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<td>bad JSON</td><td class=\"num\">2</td>" in page
    assert "<td>demo-math</td><td class=\"num\">4</td>" in page and "<td>demo-instruction</td>" in page
    assert "<td>pairs</td><td class=\"num\">5</td>" in page
    assert "<td>judge:self</td><td>unparsed</td>" in page
    assert "snapshot 3" in page
    images = _images(page)
    assert len(images) == 3  # margins, lengths, scores
    for data in images:
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "PNG" and image.size == PNG_SIZE


def test_report_of_an_empty_or_partial_lake(tmp_path):
    page = write_report({}, tmp_path / "empty.html").read_text()
    assert "no pairs" in page and "no scores" in page and len(_images(page)) == 3


def test_read_lake_frames_now_and_as_of(tmp_path, lake_rows):
    with Lake(tmp_path / "lake") as lake:
        lake.commit({"runs": lake_rows["runs"], "prompts": lake_rows["prompts"]})
        before = lake.snapshot_id()
        lake.commit({name: lake_rows[name] for name in ("pairs", "scores", "candidates", "rejects")})
        now = read_lake_frames(lake)
        then = read_lake_frames(lake, as_of=before)
    assert {k: v.height for k, v in now.items()} == {"runs": 2, "prompts": 2, "candidates": 9, "scores": 12,
                                                     "pairs": 5, "rejects": 3, "dedup_drops": 0, "embeddings": 0,
                                                     "pair_audits": 0}
    assert then["pairs"].height == 0 and then["runs"].height == 2
    assert "text" not in now["candidates"].columns  # the report does not need the responses
    page = write_report(now, tmp_path / "lake.html").read_text()
    assert "<td>pairs</td><td class=\"num\">5</td>" in page


# ----------------------------------------------------------------------------------------------
# the report in a real browser (Debian's chromium, when installed)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
_PROBE = ("<script>window.addEventListener('load', () => document.body.setAttribute('data-images-ok', "
          "[...document.images].filter(i => i.complete && i.naturalWidth > 0).length));</script>")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(tmp_path, frames):
    page = write_report(frames, tmp_path / "report.html").read_text()
    # a copy with a probe that counts the images the browser decoded (the report has no script)
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", _PROBE + "</body>"))
    common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--enable-logging=stderr", "--v=0", f"--user-data-dir={tmp_path / 'profile'}"]
    done = subprocess.run([*common, "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'data-images-ok="3"' in done.stdout
    for key, _ in SECTIONS:
        assert f'id="{key}"' in done.stdout
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    shot = tmp_path / "shot.png"
    done = subprocess.run([*common, "--hide-scrollbars", "--window-size=1100,1400", f"--screenshot={shot}",
                           (tmp_path / "report.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and [line for line in done.stderr.splitlines() if ":CONSOLE" in line] == []
    with Image.open(shot) as image:
        assert image.size == (1100, 1400)
        assert len(image.convert("RGB").getcolors(maxcolors=1_000_000)) > 50  # text and plots, not blank
