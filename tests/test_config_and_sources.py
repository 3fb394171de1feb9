"""Built-in prompt sources and how the run config names them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from curate.config import config_as_dict, parse_config
from curate.errors import UserError
from curate.ingest.sources import builtin_rows
from curate.ingest.validate import ingest_rows
from curate.pairs.margin import MarginOptions
from curate.pairs.registry import PairSpec


def test_ifeval_builtin_rows_ingest_cleanly():
    rows = builtin_rows("ifeval", limit=25)
    prompts, rejects = ingest_rows(rows, "ifeval", "run")
    assert prompts.num_rows == 25 and rejects.num_rows == 0
    assert set(prompts.column("task").to_pylist()) == {"instruction"}
    assert len(builtin_rows("ifeval")) == 541


def test_unknown_builtin_is_a_user_error():
    with pytest.raises(UserError, match="unknown built-in source 'gsm8k'"):
        builtin_rows("gsm8k")


def test_config_inputs_need_exactly_one_of_path_or_builtin(tmp_path):
    config = parse_config({"inputs": [{"builtin": "ifeval", "limit": 3}]}, tmp_path)
    assert config.inputs[0].builtin == "ifeval" and config.inputs[0].label == "builtin:ifeval"
    with pytest.raises(UserError, match="exactly one of `path` or `builtin`"):
        parse_config({"inputs": [{"builtin": "ifeval", "path": "x.jsonl"}]}, tmp_path)
    with pytest.raises(UserError, match="exactly one of `path` or `builtin`"):
        parse_config({"inputs": [{"source": "nothing"}]}, tmp_path)


def test_pairs_config_is_checked_when_loaded(tmp_path):
    inputs = [{"builtin": "ifeval", "limit": 1}]
    with pytest.raises(UserError, match=r"\[\[pairs\]\] entry 0 \(nope\): unknown pair strategy"):
        parse_config({"inputs": inputs, "pairs": [{"strategy": "nope"}]}, tmp_path)
    config = parse_config({"inputs": inputs, "pairs": [{"strategy": "margin", "scorer": "x"}]}, tmp_path)
    assert config.pairs == [PairSpec("margin", MarginOptions(scorer="x"), {"scorer": "x"})]
    assert config_as_dict(config)["pairs"] == [{"strategy": "margin", "scorer": "x"}]


def test_openai_generator_needs_a_base_url(tmp_path):
    inputs = [{"builtin": "ifeval", "limit": 1}]
    with pytest.raises(UserError, match="needs `base_url`"):
        parse_config({"inputs": inputs, "generator": {"backend": "openai", "model": "m"}}, tmp_path)
    config = parse_config({"inputs": inputs, "generator": {"backend": "openai", "model": "served-name",
                                                           "base_url": "http://127.0.0.1:8000/v1"}}, tmp_path)
    assert config.generators[0].model == "served-name"  # a served name, not a path


def test_placement_on_the_cluster_is_checked(tmp_path):
    inputs = [{"builtin": "ifeval", "limit": 1}]
    cases = {
        "placement must be local or ray": {"generator": {"placement": "gpu"}},
        "replicas = 2 needs placement": {"generator": {"replicas": 2}},
        "replicas must be at least 1": {"generator": {"placement": "ray", "replicas": 0}},
        "placement = 'ray' is for vllm engines": {"generator": {"backend": "openai", "model": "m",
                                                                 "base_url": "http://h/v1", "placement": "ray"}},
        "needs `base_url` or `base_urls`": {"generator": {"backend": "openai", "model": "m", "base_url": "http://a/v1",
                                                           "base_urls": ["http://b/v1"]}},
        "runner.address is for kind": {"runner": {"address": "head:6379"}},
        "scorers.0: replicas = 3 needs placement": {"scorers": [{"kind": "reward", "model": "rm", "replicas": 3}]},
    }
    for message, values in cases.items():
        with pytest.raises(UserError, match=re.escape(message)):
            parse_config({"inputs": inputs, **values}, tmp_path)
    # an address with engines placed on it needs no ray task runner
    config = parse_config({"inputs": inputs, "runner": {"address": "head:6379"},
                           "generator": {"placement": "ray", "replicas": 2}}, tmp_path)
    assert (config.runner.kind, config.generators[0].replicas) == ("threads", 2)


def test_the_readme_cluster_config_parses(tmp_path):
    """README "Engines on the cluster": its worked GPU config is a valid run config."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("### Engines on the cluster", 1)[1]
    block = section.split("```toml\n", 1)[1].split("```", 1)[0]
    values = tomllib.loads(block)
    config = parse_config({"inputs": [{"builtin": "ifeval", "limit": 1}], **values}, tmp_path)
    policy = config.generators[0]
    assert (policy.placement, policy.replicas, policy.tensor_parallel_size) == ("ray", 12, 4)
    reward = next(s for s in config.scorers if s.kind == "reward")
    assert (reward.placement, reward.replicas, reward.gpus_per_replica) == ("ray", 16, 1)
