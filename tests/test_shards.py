"""Sharding: a stable split by key, shard work that gives the rows of unsharded work, [runner] config."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from curate.config import parse_config
from curate.errors import UserError
from curate.runtime.shards import InProcess, ShardedEmbedder, score_shard, shard_of, sharded_encode, split_frame
from curate.score import score_candidates
from curate.score.registry import scorer_kind
from curate.score.verifiers import ConstraintScorer, MathAnswerScorer

SHARDS_OF_4 = [1, 2, 3, 2]


def test_shard_of_is_a_stable_hash():
    # fixed values: a shard never moves between processes, machines or releases
    assert [shard_of(k, 4) for k in ("prompt-1", "prompt-2", "prompt-3", "abc")] == SHARDS_OF_4
    assert shard_of("prompt-1", 1) == 0
    import hashlib

    expected = int.from_bytes(hashlib.sha256(b"prompt-1").digest()[:8], "big") % 7
    assert shard_of("prompt-1", 7) == expected
    counts = np.bincount([shard_of(f"p{i}", 4) for i in range(4000)], minlength=4)
    assert counts.min() > 900  # about 1000 each


def test_split_frame_partitions_rows_by_key():
    frame = pl.DataFrame({"prompt_id": [f"p{i % 10}" for i in range(50)], "x": list(range(50))})
    parts = split_frame(frame, "prompt_id", 3)
    assert 1 < len(parts) <= 3
    assert sorted(pl.concat(parts)["x"].to_list()) == list(range(50))
    keys = [set(part["prompt_id"]) for part in parts]
    for i, a in enumerate(keys):  # every key in exactly one part
        for b in keys[i + 1:]:
            assert not a & b
    for part in parts:
        assert len({shard_of(k, 3) for k in part["prompt_id"]}) == 1
        assert part.columns == ["prompt_id", "x"]
    assert split_frame(frame.clear(), "prompt_id", 3) == []


def _math_and_instruction():
    prompts = pl.DataFrame({
        "prompt_id": ["m1", "m2", "i1"], "task": ["math", "math", "instruction"],
        "messages": [[{"role": "user", "content": "q"}]] * 3,
        "reference_answer": ["5", "3", None],
        "constraints_json": [None, None, json.dumps([{"type": "length_constraints:number_words",
                                                      "kwargs": {"relation": "less than", "num_words": 4}}])],
    })
    texts = {"m1": ["The answer is 5.", "It is 6.", "\\boxed{5}"], "m2": ["3", "no idea", "4"],
             "i1": ["Short one.", "This answer is far too long for it.", "Yes."]}
    candidates = pl.DataFrame([
        {"candidate_id": f"{p}-{k}", "prompt_id": p, "text": text}
        for p, answers in texts.items() for k, text in enumerate(answers)])
    return prompts, candidates


@pytest.mark.parametrize("kind, scorer", [("math_verify", MathAnswerScorer), ("constraints", ConstraintScorer)])
def test_score_shards_give_the_rows_of_one_call(kind, scorer):
    prompts, candidates = _math_and_instruction()
    whole = pl.from_arrow(score_candidates(prompts, candidates, [scorer()], "run"))
    parts = [pl.from_arrow(score_shard(scorer_kind(kind), None, prompts, part, "run"))
             for part in split_frame(candidates, "prompt_id", 3)]
    sharded = pl.concat(parts)
    columns = ["score_id", "candidate_id", "score", "status", "detail_json"]
    assert whole.height > 0
    assert sharded.select(columns).sort("score_id").equals(whole.select(columns).sort("score_id"))


def test_sharded_encode_puts_vectors_back_in_order():
    texts = [f"text number {i} about {'cats' if i % 2 else 'the sea'}" for i in range(20)]
    one = sharded_encode(InProcess(1), texts, 8)
    four = sharded_encode(InProcess(4), texts, 8)
    assert one.shape == (20, 384)
    np.testing.assert_allclose(four, one, atol=1e-5)  # same texts, other batches
    embedder = ShardedEmbedder(InProcess(4))
    vectors = embedder.embed(texts + texts[:3])
    np.testing.assert_allclose(vectors[:20], four, atol=1e-6)
    assert embedder.texts_encoded == 20  # repeats come from memory
    assert len(embedder.take_new_rows()) == 20


def _config(runner: str) -> dict:
    import tomllib

    return tomllib.loads('[[inputs]]\nbuiltin = "ifeval"\n' + runner)


def test_runner_config(tmp_path):
    assert parse_config(_config(""), tmp_path).runner.kind == "threads"
    ray = parse_config(_config('[runner]\nkind = "ray"\nworkers = 2\nshards = 8\n'), tmp_path).runner
    assert (ray.kind, ray.workers, ray.shards, ray.address, ray.dashboard) == ("ray", 2, 8, None, False)
    for bad, message in [('[runner]\nkind = "dask"\n', "threads, processes or ray"),
                         ('[runner]\nshards = 0\n', "at least 1"),
                         ('[runner]\naddress = "auto"\n', "for kind"),
                         ('[runner]\nnodes = 3\n', "unknown key"),
                         ('[runner]\nshards = "4"\n', "wrong type"), ('[runner]\nshards = 2.5\n', "wrong type"),
                         ('[runner]\nworkers = true\n', "wrong type"), ('[runner]\nkind = "ray"\naddress = 5\n', "wrong type")]:
        with pytest.raises(UserError, match=message):
            parse_config(_config(bad), tmp_path)
