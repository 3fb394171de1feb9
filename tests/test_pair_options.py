"""Typed options (curate/options.py), the strategy registry (curate/pairs/registry.py) and the
README's option tables (curate/cli/options_tables.py)."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import polars as pl
import pytest

from curate import ids
from curate.cli.options_tables import readme_tables, with_tables
from curate.config import config_as_dict, parse_config
from curate.dedup import DedupConfig
from curate.errors import UserError
from curate.lake import schemas
from curate.options import option, options_dict, parse_options
from curate.pairs.margin_dual import ImplicitMargin, Madpo
from curate.pairs.registry import (
    BUILT_IN,
    STRATEGIES,
    PairSpec,
    build_pairs,
    options_for,
    parse_pair_entry,
    register,
    run_options,
    strategy_named,
)
from curate.pairs.rows import finish_pairs, usable_scores
from curate.score.registry import SCORER_KINDS
from curate.pairs.strategy import Strategy

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = json.loads((ROOT / "tests" / "data" / "pair_params_golden.json").read_text())
NOW = datetime(2024, 7, 8, tzinfo=timezone.utc)


# params_json: the options record what the dict-based checks of each strategy recorded --------------

@pytest.mark.parametrize("strategy, config, params_json", GOLDEN["params_json"],
                         ids=[f"{s}-{i}" for i, (s, _, _) in enumerate(GOLDEN["params_json"])])
def test_params_json_is_what_main_recorded_before_typed_options(strategy, config, params_json):
    options = options_for(strategy, config)
    params = options.params() if hasattr(options, "params") else options_dict(options)
    assert json.dumps(params, sort_keys=True, default=str) == params_json


def test_short_to_long_derive_identity_is_unchanged():
    from curate.pairs.short_to_long import _identity

    configs = [c for s, c, _ in GOLDEN["params_json"] if s == "short_to_long"]
    assert [json.dumps(_identity(options_for("short_to_long", c)), sort_keys=True)
            for c in configs] == GOLDEN["short_to_long_identity"]


# the parser ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("config, message", [
    ({"min_margin": True}, "margin: min_margin must be a number, not True"),   # bool is not a number
    ({"seed": 1.0, "pairing": "best_vs_random"}, "margin: seed must be an integer, not 1.0"),
    ({"pairing": "best_of_3"}, "margin: pairing must be one of 'best_vs_worst', 'best_vs_random', "
                               "'all_pairs_above_margin', not 'best_of_3'"),
    ({"scorer": None}, "margin: scorer must be a string, not None"),
    ({"madpo": False}, "margin: madpo must be a table or true, not False"),
    ({"madpo": {"scale": "2"}}, "margin: madpo.scale must be a number, not '2'"),
    ({"implicit_margin": {"policy": "p"}}, "margin: implicit_margin.reference is required"),
    ({"implicit_margin": {"policy": "p", "reference": "r", "bta": 1}},
     "margin: unknown config key 'implicit_margin.bta' (known: implicit_margin.beta, implicit_margin.policy, "
     "implicit_margin.reference)"),
    ({"seed": 2}, "margin: seed has no effect without pairing = 'best_vs_random'"),
    ({"keep_top_fraction": 2}, "margin: keep_top_fraction must be in (0, 1], not 2.0"),
])
def test_margin_errors_are_one_line_and_name_the_key(config, message):
    with pytest.raises(ValueError) as raised:
        options_for("margin", config)
    assert str(raised.value) == message


def test_values_are_kept_as_given_unless_the_class_converts():
    margin = options_for("margin", {"min_margin": 1, "madpo": True})
    assert margin.min_margin == 1.0 and isinstance(margin.min_margin, float)  # margin converts, as before
    assert margin.madpo == Madpo(scale=1.0)
    gt = options_for("gt", {"correct_min": 1})
    assert gt.correct_min == 1 and isinstance(gt.correct_min, int)  # gt never did: params_json says 1
    with pytest.raises(AttributeError):
        margin.min_margin = 2.0  # frozen


def test_mode_keys_and_retired_keys():
    with pytest.raises(ValueError, match=r"^gt: unknown config key 'teacher' \(a key of mode 'teacher_student', "
                                         r"not 'reference'\)$"):
        options_for("gt", {"teacher": "t"})
    with pytest.raises(ValueError, match="^gt: mode must be one of 'reference', 'teacher_student', not 'x'$"):
        options_for("gt", {"mode": "x"})
    ts = options_for("gt", {"mode": "teacher_student", "teacher": "t", "student": "s"})
    assert set(options_dict(ts)) == {"mode", "teacher", "student", "pairs_per_prompt", "agree_scorer",
                                     "agree_scorer_version", "agree_min_margin", "gated_rejected"}
    with pytest.raises(ValueError, match="^code_evolution: faster_ratio is no longer an option"):
        options_for("code_evolution", {"faster_ratio": 2})


def test_dedup_config_uses_the_same_parser():
    assert DedupConfig.from_mapping({"num_perm": 128, "bands": 32}).bands == 32
    with pytest.raises(ValueError, match="^dedup: semantic must be true or false, not 'no'$"):
        DedupConfig.from_mapping({"semantic": "no"})
    with pytest.raises(ValueError, match=r"^dedup: bands \(48\) must divide num_perm \(128\)$"):
        DedupConfig.from_mapping({"num_perm": 128, "bands": 48})
    inputs = [{"builtin": "ifeval", "limit": 1}]
    with pytest.raises(UserError, match="^config: dedup: minhash_threshold must be a number, not '0.5'$"):
        parse_config({"inputs": inputs, "dedup": {"minhash_threshold": "0.5"}}, ROOT)


def test_run_config_sections_keep_their_messages():
    inputs = [{"builtin": "ifeval", "limit": 1}]
    with pytest.raises(UserError, match=r"^config: unknown key\(s\) \['a', 'seeed'\] in \[sampling\] \(known: \["):
        parse_config({"inputs": inputs, "sampling": {"seeed": 1, "a": 2}}, ROOT)
    with pytest.raises(UserError, match="^config: scorers.0: kind is required$"):
        parse_config({"inputs": inputs, "scorers": [{"model": "m"}]}, ROOT)


def test_pair_entries_resolve_paths_and_pin_a_named_scorer(tmp_path):
    (tmp_path / "repo").mkdir()
    spec = parse_pair_entry({"strategy": "code_evolution", "mode": "commits", "repo": "repo"}, tmp_path)
    assert spec.options.repo == str(tmp_path / "repo") == spec.given["repo"]
    named = parse_pair_entry({"strategy": "margin", "scorer": "math_verify"})
    default = parse_pair_entry({"strategy": "margin"})
    versions = {"math_verify": "7"}
    assert run_options(named, versions).scorer_version == "7"
    assert run_options(default, versions) is default.options  # the default scorer is not pinned (as before)
    pinned = parse_pair_entry({"strategy": "margin", "scorer": "math_verify", "scorer_version": "3"})
    assert run_options(pinned, versions).scorer_version == "3"
    with pytest.raises(ValueError, match="^unknown pair strategy 'nope' \\(known: code_evolution, gt, margin"):
        strategy_named("nope")


# a toy strategy: one module-level options class, one build, one registration ------------------------

@dataclass(frozen=True)
class ToyOptions:
    scorer: str = option("math_verify", help="the scorer that ranks candidates")
    min_gap: float = option(0.0, help="least score difference of a pair")
    order: Literal["best_vs_worst", "worst_vs_best"] = option("best_vs_worst", help="which side is chosen")

    def __post_init__(self) -> None:
        if self.min_gap < 0:
            raise ValueError(f"min_gap must be >= 0, not {self.min_gap!r}")


def toy_build(prompts, candidates, scores, options: ToyOptions, run_id: str = "") -> pl.DataFrame:
    """Per prompt, the best against the worst candidate by `scorer` (or the reverse)."""
    scored = usable_scores(scores, candidates, options.scorer).sort("score", "candidate_id")
    best_first = options.order == "best_vs_worst"
    top = scored.group_by("prompt_id").last() if best_first else scored.group_by("prompt_id").first()
    bottom = scored.group_by("prompt_id").first() if best_first else scored.group_by("prompt_id").last()
    picks = (top.join(bottom, on="prompt_id", suffix="_r")
             .filter((pl.col("score") - pl.col("score_r")).abs() > options.min_gap)
             .join(prompts.select("prompt_id", pl.col("messages").alias("prompt")), on="prompt_id")
             .select("prompt_id", "prompt", pl.col("text").alias("chosen"), pl.col("text_r").alias("rejected"),
                     pl.col("candidate_id").alias("chosen_id"), pl.col("candidate_id_r").alias("rejected_id"),
                     pl.lit(options.scorer).alias("scorer"), pl.col("score").alias("chosen_score"),
                     pl.col("score_r").alias("rejected_score"), (pl.col("score") - pl.col("score_r")).alias("margin"),
                     pl.lit("toy").alias("reason")))
    return finish_pairs(picks, "toy", options_dict(options), run_id)


TOY = Strategy("toy", ToyOptions, toy_build)


@pytest.fixture
def toy():
    register(TOY)
    yield TOY
    del STRATEGIES["toy"]


def toy_frames():
    prompts = pl.from_arrow(schemas.conform("prompts", [
        {"prompt_id": "p1", "source": "s", "task": "chat", "messages": [{"role": "user", "content": "q"}],
         "run_id": "r0", "created_at": NOW}]))
    candidates = pl.from_arrow(schemas.conform("candidates", [
        {"candidate_id": cid, "prompt_id": "p1", "model": "m", "sampling_json": "{}", "sample_index": i, "seed": i,
         "text": f"answer {cid}", "run_id": "r0", "created_at": NOW} for i, cid in enumerate("abc")]))
    scores = pl.from_arrow(schemas.conform("scores", [
        {"score_id": ids.score_id(cid, "rm", "1"), "candidate_id": cid, "prompt_id": "p1", "scorer": "rm",
         "scorer_version": "1", "score": score, "status": "ok", "run_id": "r0", "created_at": NOW}
        for cid, score in (("a", 0.2), ("b", 0.9), ("c", 0.5))]))
    return prompts, candidates, scores


TOY_CONFIG = """
[[inputs]]
builtin = "ifeval"
limit = 1

[[pairs]]
strategy = "toy"
scorer = "rm"
min_gap = 0.5
"""


def test_a_toy_strategy_is_one_options_class_one_build_and_one_registration(toy):
    config = parse_config(tomllib.loads(TOY_CONFIG), ROOT)
    (spec,) = config.pairs
    assert spec == PairSpec("toy", ToyOptions(scorer="rm", min_gap=0.5), {"scorer": "rm", "min_gap": 0.5})
    assert config_as_dict(config)["pairs"] == [{"strategy": "toy", "scorer": "rm", "min_gap": 0.5}]
    pairs = strategy_named("toy").build(*toy_frames(), spec.options, "run-t")
    assert pairs[["chosen_id", "rejected_id", "margin"]].rows() == [("b", "a", pytest.approx(0.7))]
    assert json.loads(pairs["params_json"][0]) == {"scorer": "rm", "min_gap": 0.5, "order": "best_vs_worst"}
    assert pairs["pair_id"][0] == ids.pair_id("toy", "b", "a", "p1")
    assert build_pairs("toy", *toy_frames(), {"scorer": "rm", "min_gap": 0.8}).height == 0
    for line, message in [
        ("min_gapp = 1", "config: [[pairs]] entry 0 (toy): toy: unknown config key 'min_gapp' "
                         "(known: min_gap, order, scorer)"),
        ('min_gap = "big"', "config: [[pairs]] entry 0 (toy): toy: min_gap must be a number, not 'big'"),
        ("min_gap = true", "config: [[pairs]] entry 0 (toy): toy: min_gap must be a number, not True"),
        ('order = "random"', "config: [[pairs]] entry 0 (toy): toy: order must be one of 'best_vs_worst', "
                             "'worst_vs_best', not 'random'"),
        ("min_gap = -1", "config: [[pairs]] entry 0 (toy): toy: min_gap must be >= 0, not -1"),
    ]:
        with pytest.raises(UserError) as raised:
            parse_config(tomllib.loads(TOY_CONFIG.replace("min_gap = 0.5", line)), ROOT)
        assert str(raised.value) == message


# README tables ---------------------------------------------------------------------------------------

def test_readme_holds_exactly_the_generated_option_tables():
    readme = (ROOT / "README.md").read_text()
    tables = readme_tables()
    assert set(tables) == {s.name for s in BUILT_IN} | {"dedup", "scorer:reward", "scorer:judge", "scorer:logprob"}
    for name, table in tables.items():
        assert f"<!-- options: {name} -->\n{table}<!-- /options -->" in readme, \
            f"README's {name} options differ: run python -m curate.cli.options_tables --write README.md"
    assert with_tables(readme, tables) == readme
    assert "| `implicit_margin.beta` | number | `0.1` |" in tables["margin"]


def test_every_option_has_a_help_text():
    import dataclasses

    classes = [s.options for s in STRATEGIES.values()] + [DedupConfig, Madpo, ImplicitMargin]
    classes += [kind.options for kind in SCORER_KINDS.values()]
    for cls in classes:
        assert all(f.metadata.get("help") for f in dataclasses.fields(cls)), cls.__name__


def test_parse_options_on_a_plain_class_checks_list_and_dict_items():
    @dataclass(frozen=True)
    class Listy:
        names: list[str] = option(default_factory=list, help="names")
        table: dict[str, int] | None = option(None, help="counts")

    assert parse_options(Listy, {"names": ["a"], "table": {"x": 1}}, "listy").table == {"x": 1}
    with pytest.raises(ValueError, match=r"^listy: names must be a list of strings, not \['a', 1\]$"):
        parse_options(Listy, {"names": ["a", 1]}, "listy")
    with pytest.raises(ValueError, match="^listy: table must be a table, not"):
        parse_options(Listy, {"table": {"x": True}}, "listy")
    with pytest.raises(ValueError, match="^listy: options must be a table, not list$"):
        parse_options(Listy, [], "listy")
