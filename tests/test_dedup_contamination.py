"""Decontamination: prompts whose word n-grams overlap a benchmark item are dropped."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone

import polars as pl
import pytest

from curate.dedup import DedupConfig, decontaminate_prompts, drop_id, load_benchmark_texts
from curate.errors import UserError
from curate.ingest.sources import builtin_rows
from curate.lake import schemas
from curate.score.verify.humaneval import humaneval_path

NOW = datetime(2024, 9, 1, tzinfo=timezone.utc)
QUESTIONS = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "Weng earns 12 dollars an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
    "How much did she earn for that afternoon of work?",
    "Betty is saving money for a new wallet which costs 100 dollars. Betty has only half of the money she "
    "needs. Her parents decided to give her 15 dollars for that purpose, and her grandparents twice as much "
    "as her parents. How much more money does Betty need to buy the wallet?",
    "James writes a 3-page letter to 2 different friends twice a week. How many pages does he write a "
    "year in total if every letter has the same length?",
    "A robe takes 2 bolts of blue fiber and half that much white fiber for each robe that is sewn by the "
    "tailor at the shop. How many bolts in total does it take to finish one robe?",
    "Write a 300+ word summary of the wikipedia page about the history of the printing press in Europe. "
    "Do not use any commas and highlight at least 3 sections that have titles in markdown format.",
]
EDITED = ("Natalia sold pins to 48 of her classmates in April, and then she sold half as many pins in May. "
          "How many pins did Natalia sell altogether in April and May?")
UNRELATED = [
    "Explain the difference between a list and a tuple in Python, with a short example of each.",
    "Tom sold apples to 30 of his neighbours in June. How many apples did he sell in June and July?",
    "Write a 300 word story about a dragon who learns to bake bread in a small village.",
]


def prompts_frame(texts, prefix="p"):
    rows = [{"prompt_id": f"{prefix}{i}", "source": "s", "task": "chat",
             "messages": [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": t}],
             "run_id": "r", "created_at": NOW} for i, t in enumerate(texts)]
    return pl.from_arrow(schemas.conform("prompts", rows))


@pytest.fixture
def bench_file(tmp_path):
    path = tmp_path / "gsm_like.jsonl"
    path.write_text("".join(json.dumps({"question": q, "answer": "42"}) + "\n" for q in QUESTIONS))
    return path


def test_lightly_edited_benchmark_question_is_caught_and_unrelated_prompts_kept(bench_file):
    bench = load_benchmark_texts([bench_file])
    assert [b[0] for b in bench] == [f"benchmark:gsm_like:{i}" for i in range(len(QUESTIONS))]
    wrapped = f"Please solve this carefully and show your work.\n\n{QUESTIONS[3]}\n\nEnd your answer with a number."
    prompts = prompts_frame([EDITED, *UNRELATED, wrapped])
    kept, drops = decontaminate_prompts(prompts, bench, DedupConfig(), run_id="r9")
    assert kept["prompt_id"].to_list() == ["p1", "p2", "p3"]
    got = {r["item_id"]: r for r in drops.to_dicts()}
    assert got["p0"]["kept_id"] == "benchmark:gsm_like:0"
    assert got["p4"]["kept_id"] == "benchmark:gsm_like:3"
    assert got["p4"]["similarity"] == 1.0  # the whole question is inside the prompt
    print(f"edited question overlap {got['p0']['similarity']:.3f}")
    assert 0.5 <= got["p0"]["similarity"] < 1.0
    for row in got.values():
        assert row["reason"] == "contamination" and row["item_kind"] == "prompt" and row["run_id"] == "r9"
        assert row["drop_id"] == drop_id("prompt", row["item_id"], "contamination")
        assert json.loads(row["detail_json"])["ngram"] in (3, 4)  # short questions: short n-grams
    schemas.conform("dedup_drops", drops.to_arrow())


def test_thresholds_and_ngram_length_are_parameters(bench_file):
    bench = load_benchmark_texts([bench_file])
    prompts = prompts_frame([EDITED])
    assert decontaminate_prompts(prompts, bench, DedupConfig(contamination_threshold=0.95))[1].height == 0
    # 13-grams everywhere: three edited words leave no 13-gram of a 30-word question intact
    strict = DedupConfig(contamination_min_ngram=13, contamination_ngram=13)
    assert decontaminate_prompts(prompts, bench, strict)[1].height == 0
    assert decontaminate_prompts(prompts, bench, DedupConfig())[1].height == 1


def humaneval_file(tmp_path):
    path = tmp_path / "HumanEval.jsonl"
    with gzip.open(humaneval_path(), "rt", encoding="utf-8") as handle:
        path.write_text(handle.read())
    return path


def test_humaneval_file_catches_a_copied_humaneval_prompt(tmp_path):
    bench = load_benchmark_texts([humaneval_file(tmp_path)])
    assert len(bench) == 164 and bench[0][0] == "benchmark:HumanEval:0"
    copied = [row.value["messages"][-1]["content"] for row in builtin_rows("humaneval")]
    own = ["Write a Python function `merge_sorted(a: list[int], b: list[int]) -> list[int]` that merges two "
           "sorted lists into one sorted list without using sort().",
           "```python\nfrom typing import List\n\n\ndef running_max(numbers: List[int]) -> List[int]:\n"
           "    \"\"\" Return the running maximum of a list of integers.\n    >>> running_max([1, 3, 2])\n"
           "    [1, 3, 3]\n    \"\"\"\n```"]
    prompts = prompts_frame([copied[0], own[0], copied[57], own[1], copied[163]])
    kept, drops = decontaminate_prompts(prompts, bench)
    assert kept["prompt_id"].to_list() == ["p1", "p3"]
    assert drops.select("item_id", "kept_id").rows() == [
        ("p0", "benchmark:HumanEval:0"), ("p2", "benchmark:HumanEval:57"), ("p4", "benchmark:HumanEval:163")]
    assert drops["similarity"].min() >= 0.95


def test_builtin_benchmarks_and_file_formats(tmp_path):
    import datasets

    assert len(load_benchmark_texts(["ifeval"])) == 541
    humaneval = load_benchmark_texts(["humaneval"])
    assert len(humaneval) == 164 and humaneval[5][0] == "benchmark:humaneval:5"
    rows = [{"messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "What is 2+2?"}]},
            {"text": "A plain text item."}, {"other": "no question here"}, {"prompt": "A prompt item."}]
    pl.DataFrame({"question": ["Q one?", "Q two?"]}).write_parquet(tmp_path / "qs.parquet")
    datasets.Dataset.from_list([{"prompt": "From a dataset dir."}]).save_to_disk(str(tmp_path / "hfdir"))
    (tmp_path / "mixed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = load_benchmark_texts([tmp_path / "mixed.jsonl", tmp_path / "qs.parquet", tmp_path / "hfdir"])
    assert loaded == [("benchmark:mixed:0", "What is 2+2?"), ("benchmark:mixed:1", "A plain text item."),
                      ("benchmark:mixed:3", "A prompt item."), ("benchmark:qs:0", "Q one?"),
                      ("benchmark:qs:1", "Q two?"), ("benchmark:hfdir:0", "From a dataset dir.")]
    with pytest.raises(UserError, match="benchmark not found"):
        load_benchmark_texts([tmp_path / "missing.jsonl"])


def test_ifeval_builtin_catches_an_ifeval_prompt_with_an_edit():
    bench = load_benchmark_texts(["ifeval"])
    text = bench[10][1]
    words = text.split()
    words[len(words) // 2] = "banana"
    prompts = prompts_frame([" ".join(words), "Tell me a joke about cats, in exactly two sentences."])
    kept, drops = decontaminate_prompts(prompts, bench)
    assert kept["prompt_id"].to_list() == ["p1"]
    assert drops["kept_id"].to_list() == ["benchmark:ifeval:10"]


def test_config_benchmarks_are_loaded_when_no_texts_are_given(bench_file):
    kept, drops = decontaminate_prompts(prompts_frame([EDITED, UNRELATED[0]]), None,
                                        DedupConfig(benchmarks=[str(bench_file), "ifeval"]))
    assert kept["prompt_id"].to_list() == ["p1"] and drops["kept_id"].to_list() == ["benchmark:gsm_like:0"]


def test_short_generic_prompts_are_not_contamination():
    generic = ["Write a poem.", "Write a poem about love.", "Write an essay about the history of Japan.",
               "Write a story.", "Tell me a joke.", "Write a blog post about a trip to Japan.",
               "Write a resume for a software engineer.", "def add(a: int, b: int) -> int:"]
    kept, drops = decontaminate_prompts(prompts_frame(generic), load_benchmark_texts(["ifeval", "humaneval"]))
    assert drops.height == 0 and kept.height == len(generic)


def test_empty_inputs():
    empty = prompts_frame([])
    kept, drops = decontaminate_prompts(empty, [("b:0", "some text here")])
    assert kept.height == 0 and drops.height == 0
    prompts = prompts_frame(["Hello there"])
    kept, drops = decontaminate_prompts(prompts, [])
    assert kept.height == 1 and drops.height == 0


def test_measured_recall_and_false_matches_on_ifeval_and_humaneval():
    import random

    ifeval, humaneval = load_benchmark_texts(["ifeval"]), load_benchmark_texts(["humaneval"])
    rng = random.Random(0)
    edited = []
    for _, text in ifeval[:270]:
        words = text.split()
        for _ in range(3):
            words[rng.randrange(len(words))] = f"zz{rng.randrange(99)}"
        edited.append(" ".join(words))
    caught = decontaminate_prompts(prompts_frame(edited), ifeval[:270])[1].height / 270
    others = decontaminate_prompts(prompts_frame([t for _, t in ifeval[270:]]), ifeval[:270])[1].height
    across = (decontaminate_prompts(prompts_frame([t for _, t in ifeval]), humaneval)[1].height
              + decontaminate_prompts(prompts_frame([t for _, t in humaneval]), ifeval)[1].height)
    print(f"IFEval with 3 words replaced caught: {caught:.3f}; IFEval prompts matching another: {others}/271")
    assert caught >= 0.93
    assert others <= 3  # they share constraint sentences ("Do not use any commas ...")
    assert across == 0
