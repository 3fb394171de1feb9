"""Extension points: a scorer kind with an option of its own and a pair strategy with an audit check
of its own, each one module (tests/plugins/) that registers itself, named by a config's `plugins`.

Here they run through `curate run` in this process; tests/test_process_runner.py runs them in a
process pool and tests/test_ray_runner.py on Ray, where shards import the modules themselves. The
input is the UltraFeedback example with its own completions (no generation).
"""

from __future__ import annotations

import pickle
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from curate.cli.main import app
from curate.cli.options_tables import readme_tables, with_tables
from curate.lake import audit_facts
from curate.lake.catalog import Lake
from curate.pairs.registry import BUILT_IN, STRATEGIES
from curate.score.registry import SCORER_KINDS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "data" / "examples" / "ultrafeedback.jsonl"
PLUGINS = 'plugins = ["tests.plugins.length_scorer", "tests.plugins.longest_strategy"]'


def _config(tmp_path: Path, scorer_extra: str = 'unit = "words"', plugins: str = PLUGINS) -> Path:
    shutil.copy(EXAMPLE, tmp_path / "ultrafeedback.jsonl")
    config = tmp_path / "run.toml"
    config.write_text(f"""
{plugins}
generators = []
[[inputs]]
path = "ultrafeedback.jsonl"
columns = {{ prompt = "instruction" }}
[[scorers]]
kind = "length"
{scorer_extra}
[[pairs]]
strategy = "longest"
min_ratio = 1.2
""")
    return config


def _run(config: Path, data: Path):
    return CliRunner().invoke(app, ["run", str(config), "--no-prefect", "--data-dir", str(data)])


def test_a_plugin_scorer_and_strategy_run_through_curate_run(tmp_path):
    data = tmp_path / "data"
    result = _run(_config(tmp_path), data)
    assert result.exit_code == 0, result.output
    with Lake(data / "lake", read_only=True) as lake:
        words = lake.query("SELECT s.score, c.text FROM scores s JOIN candidates c USING (candidate_id) "
                           "WHERE s.scorer = 'length:words'")
        pairs = lake.query("SELECT * FROM pairs WHERE strategy = 'longest'")
        checks = lake.query("SELECT pair_id, verdict FROM pair_audits WHERE check_name = 'length_ratio'")
        verdicts = dict(lake.query("SELECT pair_id, verdict FROM pair_audit_verdicts").iter_rows())
        prompts = lake.count("prompts")
    assert words.height > 0
    assert all(score == len(text.split()) for score, text in words.iter_rows())
    assert 0 < pairs.height <= prompts
    for row in pairs.iter_rows(named=True):
        assert row["chosen_score"] >= 1.2 * row["rejected_score"] == 1.2 * len(row["rejected"].split())
        assert row["params_json"] == '{"min_ratio": 1.2, "scorer": "length:words"}'
    # the strategy's own check audits each of its pairs; a refutation refutes the pair, and a
    # confirmation is evidence: on chat prompts (no verifier, no judge) nothing else could confirm one
    assert sorted(checks["pair_id"]) == sorted(pairs["pair_id"])
    own = dict(checks.iter_rows())
    assert "confirmed" in verdicts.values()
    for pair_id, verdict in verdicts.items():
        assert verdict != "confirmed" or own[pair_id] == "confirmed"
        assert own[pair_id] != "refuted" or verdict == "refuted"
    # the rows say they count as evidence: facts rebuilt where the plugin is not imported agree
    SCORER_KINDS.pop("length"), STRATEGIES.pop("longest")
    with Lake(data / "lake") as lake:
        lake.rebuild_audit_facts()
        assert dict(lake.query("SELECT pair_id, verdict FROM pair_audit_verdicts").iter_rows()) == verdicts


def test_the_kind_reads_its_own_option_and_nothing_else(tmp_path):
    chars = _run(_config(tmp_path, 'unit = "chars"'), tmp_path / "data")
    assert chars.exit_code == 0, chars.output
    with Lake(tmp_path / "data" / "lake", read_only=True) as lake:
        scored = lake.query("SELECT s.score, c.text FROM scores s JOIN candidates c USING (candidate_id) "
                            "WHERE s.scorer = 'length:chars'")
    assert scored.height > 0 and all(score == len(text) for score, text in scored.iter_rows())
    for extra, message in (('aspects = ["helpfulness"]', "aspects has no effect on a length scorer (it reads unit)"),
                           ('unit = "lines"', "scorers.0: unit must be one of 'words', 'chars', not 'lines'")):
        result = _run(_config(tmp_path, extra), tmp_path / "bad")
        assert result.exit_code != 0
        assert message in str(result.exception) + result.output


def test_an_unknown_kind_or_an_unimportable_plugin_is_an_error(tmp_path):
    SCORER_KINDS.pop("length", None)  # as in a process that imported no plugin
    result = _run(_config(tmp_path, plugins=""), tmp_path / "d")
    assert result.exit_code != 0
    assert "unknown scorer kind 'length'" in str(result.exception) + result.output
    result = _run(_config(tmp_path, plugins='plugins = ["tests.plugins.no_such_module"]'), tmp_path / "d")
    assert result.exit_code != 0
    assert "plugins: cannot import 'tests.plugins.no_such_module': ModuleNotFoundError" in (
        str(result.exception) + result.output)


def test_kinds_and_strategies_travel_to_workers_by_their_module():
    from tests.plugins import length_scorer, longest_strategy

    for record in (length_scorer.KIND, longest_strategy.STRATEGY, SCORER_KINDS["quality"], STRATEGIES["margin"]):
        assert pickle.loads(pickle.dumps(record)) is record  # lambdas inside: sent as (module, name)


def test_confirming_checks_are_what_the_strategies_declare():
    declared = {check.name for s in BUILT_IN for check in s.audit.checks if check.confirms}
    assert {"verifier", "judge"} | declared == set(audit_facts.INDEPENDENT_CHECKS)


def test_a_variant_of_a_declared_record_refuses_to_travel():
    import dataclasses

    variant = dataclasses.replace(STRATEGIES["margin"], derive_rounds=3)
    with pytest.raises(pickle.PicklingError, match="not the one curate.pairs.margin declares"):
        pickle.dumps(variant)


def test_readme_tables_cover_every_built_in_strategy_and_a_new_one_gets_its_block():
    tables = readme_tables()
    assert {s.name for s in BUILT_IN} <= set(tables)
    text = "**`margin`**\n\n<!-- options: margin -->\nold\n<!-- /options -->\n\n## Next\n"
    added = with_tables(text, {"margin": "| m |\n", "gt": "| g |\n"}, strategies=["margin", "gt"])
    assert added == ("**`margin`**\n\n<!-- options: margin -->\n| m |\n<!-- /options -->\n\n"
                     "**`gt`**\n\n<!-- options: gt -->\n| g |\n<!-- /options -->\n\n## Next\n")


@pytest.fixture(autouse=True)
def _plugins_stay_out_of_other_tests():
    before_kinds, before_strategies = dict(SCORER_KINDS), dict(STRATEGIES)
    yield
    for registry, before in ((SCORER_KINDS, before_kinds), (STRATEGIES, before_strategies)):
        registry.clear()
        registry.update(before)
    for module in [name for name in sys.modules if name.startswith("tests.plugins")]:
        del sys.modules[module]  # the next config's `plugins` imports (and registers) them again
