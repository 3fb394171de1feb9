"""The ids a run writes, to check that a change to the code keeps every row the same.

    python bench/demo_ids.py dump OUT.json [--data-dir DIR]   # the demo's config at the test's reduced budgets
    python bench/demo_ids.py compare BEFORE.json AFTER.json

`dump` runs the reduced demo config of tests/test_demo.py through `curate run` on a fresh lake and
writes the sorted prompt, candidate, score, pair, dedup-drop and audit ids. `compare` prints, per table,
how many ids both dumps hold and how many only one does. Generation on CPU depends on batch
composition, so compare dumps made on the same machine type.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from curate.lake.catalog import Lake  # noqa: E402
from tests.test_demo import _run, _small_demo  # noqa: E402

KEYS = {"prompts": "prompt_id", "candidates": "candidate_id", "scores": "score_id", "pairs": "pair_id",
        "dedup_drops": "drop_id", "pair_audits": "audit_id"}


def dump(out: Path, data_dir: Path | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = data_dir or Path(tmp) / "data"
        _run(_small_demo(Path(tmp)), data)
        with Lake(data / "lake", read_only=True) as lake:
            ids = {table: sorted(lake.query(f"SELECT {key} FROM {table}")[key].to_list())
                   for table, key in KEYS.items()}
    out.write_text(json.dumps(ids, indent=0))
    print(" ".join(f"{table} {len(values)}" for table, values in ids.items()))


def compare(before: Path, after: Path) -> int:
    a, b = json.loads(before.read_text()), json.loads(after.read_text())
    differ = 0
    for table in KEYS:
        left, right = set(a.get(table, [])), set(b.get(table, []))
        differ += len(left ^ right)
        print(f"{table:12} both {len(left & right):6}  only before {len(left - right):4}  only after {len(right - left):4}")
    print("same ids" if not differ else f"{differ} ids differ")
    return 1 if differ else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump")
    d.add_argument("out", type=Path)
    d.add_argument("--data-dir", type=Path)
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    args = parser.parse_args()
    sys.exit(dump(args.out, args.data_dir) if args.command == "dump" else compare(args.before, args.after))
