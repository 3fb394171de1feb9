"""The run config's [lake] section: where the lake's catalog and data files live."""

from __future__ import annotations

import json

import pytest

from curate.config import LakeConfig, config_as_dict, parse_config
from curate.errors import UserError

INPUTS = [{"builtin": "ifeval", "limit": 1}]


def test_lake_defaults_to_unset(tmp_path):
    config = parse_config({"inputs": INPUTS}, tmp_path)
    assert config.lake == LakeConfig(catalog=None, data_path=None)


def test_lake_section_is_parsed_and_local_paths_follow_the_config_file(tmp_path):
    remote = parse_config({"inputs": INPUTS, "lake": {
        "catalog": "postgres:dbname=curate host=db.internal user=curate", "data_path": "s3://bucket/curate/"}},
        tmp_path)
    assert remote.lake.catalog == "postgres:dbname=curate host=db.internal user=curate"
    assert remote.lake.data_path == "s3://bucket/curate/"
    local = parse_config({"inputs": INPUTS, "lake": {"catalog": "meta/lake.ducklake", "data_path": "parquet"}},
                         tmp_path)
    assert local.lake.catalog == str(tmp_path / "meta" / "lake.ducklake")
    assert local.lake.data_path == str(tmp_path / "parquet")


def test_unknown_or_mistyped_lake_keys_are_errors(tmp_path):
    with pytest.raises(UserError, match=r"unknown key\(s\) \['datapath'\] in \[lake\]"):
        parse_config({"inputs": INPUTS, "lake": {"datapath": "s3://b/"}}, tmp_path)
    with pytest.raises(UserError, match=r"\[lake\] catalog must be a string"):
        parse_config({"inputs": INPUTS, "lake": {"catalog": 5432}}, tmp_path)
    with pytest.raises(UserError, match=r"\[lake\] must be a table"):
        parse_config({"inputs": INPUTS, "lake": "postgres:dbname=x"}, tmp_path)


def test_config_as_dict_keeps_the_lake_without_its_password(tmp_path):
    config = parse_config({"inputs": INPUTS, "lake": {
        "catalog": "postgres:dbname=curate user=curate password=hunter2", "data_path": "s3://b/p/"}}, tmp_path)
    values = json.loads(json.dumps(config_as_dict(config)))
    assert values["lake"] == {"catalog": "postgres:dbname=curate user=curate password=***", "data_path": "s3://b/p/"}
    assert "hunter2" not in json.dumps(values)
    assert config.lake.catalog.endswith("password=hunter2")  # the live config still connects
