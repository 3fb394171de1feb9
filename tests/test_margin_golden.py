"""Margin pairs, byte for byte: every pairing mode and option on a varied synthetic set, each output
frame (all columns but created_at) and the pairing rule's refusal counts hashed and compared to the
values recorded on main before the vectorised rewrite (bench/pairs_throughput.py measures that
rewrite). The data has what the fast paths must not get wrong: ties, several score versions per
candidate, failed scores, gated candidates, candidates without a quality row (gates computed from
the text), the task verifiers (ok, failed, missing), log-prob scorers for the dual margin,
identical texts, null texts, candidates missing a reward score, non-ASCII and awkward whitespace,
prompts of several messages, unsorted input."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

from curate.lake import schemas
from curate.pairs import rule
from curate.pairs.registry import build_pairs
from curate.score.registry import task_verifiers

NOW = datetime(2024, 7, 8, tzinfo=timezone.utc)
TASKS = ("math", "code", "instruction", "chat")  # chat: no verifier
WORDS = ("step", "Straße", "naïve", "ΣΑΣ", "x\u00a0y", "tab\tbed", "  spaced  ", "end.", "ok", "Ünïcödé",
         "\"quoted\"", "back\\slash", "line\nbreak")
REPEATED = "the same line again\n" * 12  # the duplicate-line gates fire on it


def varied(prompts_count: int = 2000, per_prompt: int = 8, seed: int = 7):
    rng = np.random.default_rng(seed)
    prompts, candidates, scores = [], [], []

    def score(cid, pid, scorer, value, status="ok", version="1", age=0):
        scores.append({"score_id": f"s:{cid}:{scorer}:{version}:{age}", "candidate_id": cid, "prompt_id": pid,
                       "scorer": scorer, "scorer_version": version,
                       "score": float(value) if status == "ok" and value is not None else None,
                       "status": status, "run_id": "r0", "created_at": NOW - timedelta(hours=age)})

    for p in range(prompts_count):
        pid = f"p{(p * 7919) % prompts_count:05d}"  # prompt ids not in input order
        task = TASKS[p % len(TASKS)]
        messages = [{"role": "user", "content": f"Question {p}: {WORDS[p % len(WORDS)]} {'?' * (p % 3)}"}]
        if p % 5 == 0:
            messages.insert(0, {"role": "system", "content": f"Be brief. {WORDS[(p + 3) % len(WORDS)]}"})
        prompts.append({"prompt_id": pid, "source": "golden", "task": task, "messages": messages,
                        "reference_answer": "1", "run_id": "r0", "created_at": NOW})
        count = per_prompt - (p % 4 == 3) * int(rng.integers(0, per_prompt - 1))
        for k in range(count):
            cid = f"c{int(rng.integers(0, 1 << 40)):011x}"
            words = " ".join(WORDS[int(w)] for w in rng.integers(0, len(WORDS), int(rng.integers(1, 12))))
            kind = rng.random()
            text = (None if kind < 0.01 else REPEATED if kind < 0.03 else
                    f"Same answer {p}" if kind < 0.08 else f"Answer {k}: {words}")
            finish = "length" if rng.random() < 0.02 else "stop"
            candidates.append({"candidate_id": cid, "prompt_id": pid, "model": "m", "sampling_json": "{}",
                               "sample_index": k, "seed": k, "text": text, "finish_reason": finish,
                               "run_id": "r0", "created_at": NOW})
            roll = rng.random()
            if roll < 0.03:
                score(cid, pid, "reward", None, status="error")
            elif roll > 0.02:
                score(cid, pid, "reward", round(float(rng.random()), 1))
            if rng.random() < 0.1:  # an older row and another version: the newest row counts
                score(cid, pid, "reward", round(float(rng.random()), 1), age=5)
                score(cid, pid, "reward", round(float(rng.random()), 1), version="2", age=2)
            q = rng.random()
            if q < 0.9:
                score(cid, pid, "quality", 0.0 if q < 0.08 else 1.0)
            elif q < 0.93:
                score(cid, pid, "quality", None, status="error")
            verifier = task_verifiers().get(task)
            v = rng.random()
            if verifier and p % 7 != 0 and v < 0.93:  # some prompts without their verifier
                score(cid, pid, verifier, None if v < 0.05 else float(v > 0.4),
                      status="error" if v < 0.05 else "ok")
            if rng.random() < 0.95:
                score(cid, pid, "policy_lp", -float(rng.integers(1, 400)) / 10)
                score(cid, pid, "reference_lp", -float(rng.integers(1, 400)) / 10)
    order = rng.permutation(len(candidates))
    candidates = [candidates[i] for i in order]
    scores = [scores[i] for i in rng.permutation(len(scores))]
    return (pl.from_arrow(schemas.conform("prompts", prompts)), pl.from_arrow(schemas.conform("candidates", candidates)),
            pl.from_arrow(schemas.conform("scores", scores)))


CONFIGS = {
    "best_vs_worst": {"scorer": "reward"},
    "best_vs_worst_margin": {"scorer": "reward", "min_margin": 0.3},
    "best_vs_worst_z_madpo": {"scorer": "reward", "normalise": "z", "madpo": True},
    "best_vs_worst_pinned": {"scorer": "reward", "scorer_version": "1", "gated_rejected": False},
    "best_vs_worst_penalty": {"scorer": "reward", "length_penalty": 2.5, "madpo": {"scale": 2.0}},
    "best_vs_worst_required": {"scorer": "reward", "required_verifier": "math_verify",
                               "required_verifier_min": 0.5},
    "best_vs_worst_closest": {"scorer": "reward", "length_control": "closest", "required_verifier": "code_tests"},
    "best_vs_worst_top": {"scorer": "reward", "keep_top_fraction": 0.3},
    "best_vs_worst_dual": {"scorer": "reward", "implicit_margin": {"policy": "policy_lp", "reference": "reference_lp"},
                           "keep_top_fraction": 0.6},
    "best_vs_worst_dual_rank": {"scorer": "reward", "implicit_margin": {"policy": "policy_lp",
                                                                        "reference": "reference_lp", "beta": 0.5},
                                "dual_normalise": "rank", "dual_combine": "product", "keep_top_fraction": 0.45},
    "best_vs_random": {"scorer": "reward", "pairing": "best_vs_random"},
    "best_vs_random_seeded": {"scorer": "reward", "pairing": "best_vs_random", "seed": 11, "min_margin": 0.2,
                              "gated_rejected": False},
    "best_vs_random_closest": {"scorer": "reward", "pairing": "best_vs_random", "length_control": "closest",
                               "normalise": "z", "min_margin": 0.5},
    "best_vs_random_required": {"scorer": "reward", "pairing": "best_vs_random",
                                "required_verifier": "constraints", "length_penalty": 1.0},
    "all_pairs": {"scorer": "reward", "pairing": "all_pairs_above_margin"},
    "all_pairs_capped": {"scorer": "reward", "pairing": "all_pairs_above_margin", "max_pairs_per_prompt": 3,
                         "min_margin": 0.25, "normalise": "z", "madpo": True},
    "all_pairs_required": {"scorer": "reward", "pairing": "all_pairs_above_margin", "max_pairs_per_prompt": 20,
                           "required_verifier": "math_verify", "gated_rejected": False, "length_penalty": 0.7},
    "all_pairs_dual": {"scorer": "reward", "pairing": "all_pairs_above_margin", "keep_top_fraction": 0.5,
                       "implicit_margin": {"policy": "policy_lp", "reference": "reference_lp"}},
    "verifier_scorer": {"scorer": "math_verify", "pairing": "all_pairs_above_margin"},
    "all_pairs_many": {"scorer": "reward", "pairing": "all_pairs_above_margin", "max_pairs_per_prompt": 40},
}
# on the data with a candidate row and a prompt row twice (the general ways, not the fast paths)
TWICE = ("best_vs_worst", "best_vs_random_closest", "all_pairs_many", "best_vs_worst_required")
# on the data with NaN scores (NaN sorts above every number: the general ways again)
NAN = ("best_vs_worst", "best_vs_random", "all_pairs_many", "best_vs_worst_penalty")

# Recorded on main (92ee6b2) before the rewrite: sha256 of the pairs frame, then of the refusals.
# MADPO's mean and std of the margins were summed in the order Polars' hash joins left the pairs
# in, so their last bits followed that order; they are now summed in margin order, and its weight
# and margin_z are compared to 12 decimals.
GOLDEN: dict[str, tuple[str, str]] = {
    "all_pairs": ("c9aa29ccd3494e39c9bf94ef9183797453c25be3cf2bbc5b1f3083cc3dcc1236",
                   "7d7dc1034b3982785fa8b2f4bb26fda491505a70baf12f98d61fb69c2a163a29"),
    "all_pairs_capped": ("0d6c24da069c9828f9719468d70a61a9212f05e426a049b2e11d4239c4c37266",
                          "f124e7a87086983c6564648c01c0625ac99aae5936aa7639ccc6f9294cff1cd4"),
    "all_pairs_dual": ("1ac2b9755a86379058381d104e5c3ed7c0abac7d4063f7922456a6fb48acfd1a",
                        "7d7dc1034b3982785fa8b2f4bb26fda491505a70baf12f98d61fb69c2a163a29"),
    "all_pairs_many": ("dc97889c7f3d61244b4f7ee2b05ba4d41f870b8d9bb72d5eba11927b440bcb4c",
                        "74a9e7f5a06864016e7c8ddf158bdeb398ef49821b15369ef39212a918deaee8"),
    "all_pairs_required": ("e05f65dda8582da70ee8c6a5f98da61016d5e365c5c6baef44514f14ed4e620a",
                            "29647a89d71484908f739ccea185c5c4821006be8b1c0cd5b46fb2c0285ea8ea"),
    "best_vs_random": ("136220a505d26df82959b2b3d8668ffcdb75cda35380339e5942fad6fa6b221d",
                        "3be7cb64dbbe5f754534d8b407f63a5440ffa05ec342d374ea8feed5a9135e67"),
    "best_vs_random_closest": ("f1108d18c85c215ba60428b5e88ff749b39ac1f125d3459696da1d32f8870312",
                                "e71011cb397b885e6caaf910a8619567b4b630db340732541439bf34e6c065a7"),
    "best_vs_random_required": ("82209c47dd1b8e2c163ad07aa147d5e0bada2a0405104510ec576eb11b4183ff",
                                 "0461ae73f2f12786075d192505ecea21affb6fde79d71b4fb2f113785ebaf87b"),
    "best_vs_random_seeded": ("b30217680cce0ef04a6dc028f545ccccd97731d2a26cb89124d36dd91d0ac227",
                               "cc6775e736c7c706cb14024cc68b3988c13958fc90423f30edbebb9ae73ca36e"),
    "best_vs_worst": ("11909e9ff7442c3447d252db17e6aec7b3a5e867db3af8811ce32292bf8c45ed",
                       "2018997aec7768c517ca4955720f66d122786aab5ab4e9728a2b13d836bf2da4"),
    "best_vs_worst_closest": ("eef89c0cab4d462b3fea805c3c8be6349f1fc2b07db9380a5ef3cccab52e59ca",
                               "3e25fe68e2786b8d4d302c77317bf0ea4fae1fdaf59c2e9a044116baa4323eb2"),
    "best_vs_worst_dual": ("ef565c69604c6e79d62b2de5e9877115bfbe6114da306b90d274882018c2a73a",
                            "2018997aec7768c517ca4955720f66d122786aab5ab4e9728a2b13d836bf2da4"),
    "best_vs_worst_dual_rank": ("f2680d1de6383b272d836485b865b85d3bb014c58738882b7c6b9664500b4f7f",
                                 "2018997aec7768c517ca4955720f66d122786aab5ab4e9728a2b13d836bf2da4"),
    "best_vs_worst_margin": ("3513e952b9f0df524d1e3bdc967a35604604995bb75f0ad1191a5b0186a1f18f",
                              "341f19e71690c8177adfdb3e45eefbde5ba64ab59395dcbcc8d7d61d71bf08b3"),
    "best_vs_worst_penalty": ("525830e56f81960ad36c2c64f833a294f4ec20de3744b6d1a1959ea6b3086a5b",
                               "ca3e9b0ee23636f02f0572947ebe541ad1521a2f7e85a15fd67a7712b63334dd"),
    "best_vs_worst_pinned": ("8b8a561259bc7f9289093352f8d76a08f52be3f9f09a5b01ff3b3eeb0b0c0378",
                              "10ddc26f74fc6940130057f0135049e99b8c1e4947e96ee613c4b9d0c7a969a0"),
    "best_vs_worst_required": ("70fff8f056b5053460ae8f7c89773477f1e6ee27303240c22bb4edaf19a4b0d5",
                                "956f7b5045850b393ec3aeca33f5698e4017c2aaffc26fd2951955064c410f12"),
    "best_vs_worst_top": ("4e284b4a520e5d5b9d5bdb3870b8014b751847f735aed123f08d57d9db5ea117",
                           "2018997aec7768c517ca4955720f66d122786aab5ab4e9728a2b13d836bf2da4"),
    "best_vs_worst_z_madpo": ("53e286501542d244da9c65a96c6f672cc0411abb7ba99ffd2b2ff0eb5d1190db",
                               "2018997aec7768c517ca4955720f66d122786aab5ab4e9728a2b13d836bf2da4"),
    "verifier_scorer": ("84b2fb94403d9f921af52031ad8337c18639a075b0c79ed033d14e1b053e5dc2",
                         "0f42b19d2d94ef1c912e33e41083f584f7236d9d1a5847e613dc9f0b2fffe2b7"),
}
GOLDEN_NAN: dict[str, tuple[str, str]] = {
    "best_vs_worst": ("44c5dd1f72799419791dc916ac26c40657dac50d5907a5570dd5b5a1ba18ea0d",
                       "2353067192865864130fe31dfc8912824f67b85c20c5a1ca53a7852c1ed5c98e"),
    "best_vs_random": ("58adaac9b7b0d70d6030649856ec08e70f71e9cae2f049ed7a1853a85a4cff18",
                        "f965b560d778106fb38233d697f6ec3f6c5699c2add00f03bfbf5e47881cbd44"),
    "all_pairs_many": ("c9a7eee7b61f1378f9b2da5296d9d72fbc9fcc66769a330f2182213683379b00",
                        "f59955ae95bf303986422ac4d7d1acecc98553d1781a68e524d7ad7955edd900"),
    "best_vs_worst_penalty": ("3672aba111bc34aa83f942648977c446d0c0f851c296a348e62862b90eab6e52",
                               "322c8ca7cf492432781b12ce46d4f80ade55bd46b74321733b0045f9d1ad7d8a"),
}
GOLDEN_TWICE: dict[str, tuple[str, str]] = {
    "best_vs_worst": ("11909e9ff7442c3447d252db17e6aec7b3a5e867db3af8811ce32292bf8c45ed",
                       "16aa2f42166dead5964807573266c7a955bdca1a9ffcba9d33e4c0f7675581d0"),
    "best_vs_random_closest": ("34c3d10e2f8211899d2aa78889630dbbdf5e212a4bd801f256ab2f04b068676c",
                                "df47b842d46748c9bbc54b6b70a75771d8bd4fae0cd1beae36e36b13e4438726"),
    "all_pairs_many": ("645a1ca1193f9b5cc96ec0d26494538e143223f8059368d3348dcd2756aa2635",
                        "c3db82a5c93f5a38b1331f2b08718605a3efb8df7b61542a49b157a381fd9c81"),
    "best_vs_worst_required": ("70fff8f056b5053460ae8f7c89773477f1e6ee27303240c22bb4edaf19a4b0d5",
                                "956f7b5045850b393ec3aeca33f5698e4017c2aaffc26fd2951955064c410f12"),
}


ADDED_OPTIONS = ("one_per_text",)  # options added after the recording: left out of params_json here


def fingerprint(pairs: pl.DataFrame) -> str:
    body = pairs.drop("created_at").with_columns(pl.Series("params_json", [
        json.dumps({k: v for k, v in json.loads(p).items() if k not in ADDED_OPTIONS}, sort_keys=True)
        for p in pairs["params_json"]]))
    if body["weight"].is_not_null().any():  # MADPO: z and weight to 12 decimals (see below)
        body = body.with_columns(pl.col("weight").round(12), pl.Series("details_json", [
            json.dumps({k: round(v, 12) if k == "margin_z" else v for k, v in json.loads(d).items()})
            for d in body["details_json"]]))
    digest = hashlib.sha256(json.dumps([[c, str(t)] for c, t in body.schema.items()]).encode())
    for row in body.iter_rows():
        digest.update(json.dumps(row, ensure_ascii=False, default=repr).encode())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def data():
    return varied()


@pytest.fixture(scope="module")
def data_twice(data):
    prompts, candidates, scores = data
    return (pl.concat([prompts, prompts.slice(5, 1)]), pl.concat([candidates, candidates.slice(40, 3)]), scores)


def built(data, config: dict) -> tuple[pl.DataFrame, dict]:
    # recorded when gated rejecteds were allowed by default and candidates of the same text were all
    # in the pick (one_per_text): those configs say so now
    config = {"gated_rejected": True, "one_per_text": False, **config}
    with rule.counting() as refused:
        pairs = build_pairs("margin", *data, config, run_id="golden")
    return pairs, dict(sorted(refused.items()))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_margin_pairs_equal_recorded(data, name):
    pairs, refused = built(data, CONFIGS[name])
    assert pairs.height > 0
    assert (fingerprint(pairs), hashlib.sha256(json.dumps(refused).encode()).hexdigest()) == GOLDEN[name], refused


@pytest.fixture(scope="module")
def data_nan(data):
    prompts, candidates, scores = data
    nan = (pl.col("scorer") == "reward") & (pl.col("score_id").str.slice(4, 1) == "a")
    return prompts, candidates, scores.with_columns(pl.when(nan).then(float("nan")).otherwise("score").alias("score"))


@pytest.mark.parametrize("name", NAN)
def test_margin_pairs_with_nan_scores_equal_recorded(data_nan, name):
    pairs, refused = built(data_nan, CONFIGS[name])
    assert pairs.height > 0
    assert ((fingerprint(pairs), hashlib.sha256(json.dumps(refused).encode()).hexdigest())
            == GOLDEN_NAN[name]), refused


@pytest.mark.parametrize("name", TWICE)
def test_margin_pairs_with_rows_twice_equal_recorded(data_twice, name):
    pairs, refused = built(data_twice, CONFIGS[name])
    assert pairs.height > 0
    assert ((fingerprint(pairs), hashlib.sha256(json.dumps(refused).encode()).hexdigest())
            == GOLDEN_TWICE[name]), refused
