"""The score and pairs steps work in prompt batches ([runner] batch_prompts): the rows a run
writes do not depend on the batch size, and the counts add up the same."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

from curate.config import parse_config
from curate.lake.catalog import Lake
from curate.pipeline import Pipeline

EXAMPLES = Path(__file__).resolve().parent.parent / "data" / "examples"
KEYS = {"scores": "score_id", "pairs": "pair_id", "dedup_drops": "drop_id"}


def _run(tmp_path: Path, batch_prompts: int) -> tuple[dict, dict]:
    shutil.copy(EXAMPLES / "ultrafeedback.jsonl", tmp_path / "ultrafeedback.jsonl")
    values = tomllib.loads((EXAMPLES / "ultrafeedback.toml").read_text())
    values["pairs"][0]["normalise"] = "z"  # margins in standard deviations over the whole run
    values["pairs"].append({"strategy": "margin", "scorer": "math_verify"})
    values["runner"] = {"batch_prompts": batch_prompts}
    pipeline = Pipeline(parse_config(values, tmp_path), tmp_path / "data")
    state = pipeline.run_all()
    pipeline.close()
    with Lake(tmp_path / "data" / "lake", read_only=True) as lake:
        ids = {table: sorted(lake.query(f"SELECT {key} FROM {table}")[key].to_list()) for table, key in KEYS.items()}
        # every column a pair's content decides (margins standardised over the run included)
        ids["pair_rows"] = lake.query("SELECT * EXCLUDE (run_id, created_at) FROM pairs ORDER BY pair_id").rows()
    return ids, state.counts


def test_rows_and_counts_do_not_depend_on_the_batch_size(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "all").mkdir()
    one_by_one, counts_one = _run(tmp_path / "one", batch_prompts=1)
    all_at_once, counts_all = _run(tmp_path / "all", batch_prompts=10_000)
    assert one_by_one == all_at_once
    assert len(one_by_one["pairs"]) >= 6 and len(one_by_one["scores"]) > 0
    assert counts_one == counts_all
    assert counts_one["quality_checked"] == counts_one["candidates_imported"] > 0
