"""Built-in prompt sources and how the run config names them."""

from __future__ import annotations

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
