"""Exports are whole or absent (curate/publish/swap.py): `curate export` killed at ten points of its
work leaves the previous export loadable, and the next export completes and removes the scratch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import datasets
import pytest

from curate.lake.catalog import Lake
from curate.publish.swap import PREVIOUS, SCRATCH, recover, staged

NOW = datetime(2024, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
EXPORT_FILES, SPLITS = ("README.md",), ("train", "test")


def _pairs(start: int, stop: int) -> list[dict]:
    return [{"pair_id": f"pair{i:06d}", "prompt_id": f"p{i}", "strategy": "margin", "params_json": "{}",
             "prompt": [{"role": "user", "content": f"question {i}"}], "chosen": f"a good answer {i}",
             "rejected": f"a poor answer {i}", "chosen_id": f"c{i}", "rejected_id": f"r{i}", "scorer": "reward",
             "chosen_score": 2.0, "rejected_score": 1.0, "margin": 1.0, "reason": "r", "dedup_key": f"k{i}",
             "run_id": "run-1", "created_at": NOW} for i in range(start, stop)]


def _export(data: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "curate.cli.main", "export", str(out), "--data-dir", str(data)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _rows(out: Path) -> int:
    return datasets.load_from_disk(str(out))["train"].num_rows


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


@pytest.mark.slow
def test_an_export_killed_at_ten_points_leaves_the_previous_one_whole(tmp_path):
    """Two lakes export to one folder: last night's (3,000 pairs) is there; tonight's (5,000) is killed."""
    last, tonight, out = tmp_path / "last", tmp_path / "tonight", tmp_path / "export" / "night"
    for data, count in ((last, 3000), (tonight, 5000)):
        with Lake(data / "lake") as lake:
            lake.commit({"pairs": _pairs(0, count)})
    began = time.monotonic()
    assert _export(tonight, out).wait() == 0  # how long a whole export takes here, to spread the kills
    whole = time.monotonic() - began
    assert _rows(out) == 5000
    assert _export(last, out).wait() == 0 and _rows(out) == 3000
    (out / "NOTES.md").write_text("the team's own notes\n")  # not the export's: kept by every export

    seen = []
    for point in range(1, 11):
        process = _export(tonight, out)
        time.sleep(whole * point / 11)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        rows = _rows(out)  # loadable after every kill: the old export or, past the swap, the new one
        assert rows in (3000, 5000), (point, rows)
        assert (out / "NOTES.md").read_text() == "the team's own notes\n"
        seen.append(rows)
        if rows == 5000:  # swapped in before the kill: last night's again, for the next kill
            assert _export(last, out).wait() == 0 and _rows(out) == 3000
    assert 3000 in seen  # kills landed before the swap
    assert _export(tonight, out).wait() == 0
    assert _rows(out) == 5000 and (out / "NOTES.md").exists() and (out / "README.md").exists()
    assert _leftovers(out) == []  # the killed exports' scratch is gone


def test_a_failed_export_leaves_the_previous_one_and_no_scratch(tmp_path):
    out = tmp_path / "export"
    with staged(out, EXPORT_FILES, SPLITS) as scratch:
        (scratch / "README.md").write_text("first")
    (out / "mine.txt").write_text("kept")
    with pytest.raises(RuntimeError), staged(out, EXPORT_FILES, SPLITS) as scratch:
        (scratch / "README.md").write_text("half")
        raise RuntimeError("killed by an error halfway")
    assert (out / "README.md").read_text() == "first" and _leftovers(out) == []
    with staged(out, EXPORT_FILES, SPLITS) as scratch:
        (scratch / "README.md").write_text("second")
    assert (out / "README.md").read_text() == "second" and (out / "mine.txt").read_text() == "kept"


def test_recover_puts_back_an_export_moved_aside_by_a_killed_swap(tmp_path):
    """A kill between the swap's two renames: the target moved aside, the new export not yet in."""
    out = tmp_path / "export"
    aside = tmp_path / (PREVIOUS.format(name="export") + "abc")
    aside.mkdir()
    (aside / "README.md").write_text("previous")
    scratch = tmp_path / (SCRATCH.format(name="export") + "xyz")
    scratch.mkdir()
    recover(out)
    assert (out / "README.md").read_text() == "previous" and _leftovers(out) == []
