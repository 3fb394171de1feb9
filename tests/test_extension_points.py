"""Extension points: a new scorer kind and a new pair strategy are each one definition and one
registration, and both run through `curate run` (in-process, so the registrations are seen).

The toy scorer counts words; the toy strategy pairs each prompt's wordiest candidate against its
tersest, through the same pairing rule every strategy applies. The input is the UltraFeedback
example with its own completions (no generation).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from curate.cli.main import app
from curate.lake.catalog import Lake
from curate.options import option, options_dict
from curate.pairs import rule
from curate.pairs.registry import STRATEGIES, register
from curate.pairs.rows import finish_pairs, usable_scores
from curate.pairs.strategy import Strategy
from curate.score import ScoreItem, ScoreResult
from curate.score.kind import ScorerKind
from curate.score.registry import SCORER_KINDS, register_scorer

EXAMPLE = Path(__file__).resolve().parent.parent / "data" / "examples" / "ultrafeedback.jsonl"


# the scorer: a class and its kind ------------------------------------------------------------------

class WordCountScorer:
    name = "words"
    version = "1"
    tasks = None

    def score(self, items: list[ScoreItem]) -> list[ScoreResult]:
        return [ScoreResult(float(len(item.text.split()))) for item in items]


WORDS = ScorerKind("words", lambda spec, models: WordCountScorer())


# the strategy: its options, its build, its declaration ---------------------------------------------

@dataclass(frozen=True)
class WordiestOptions:
    scorer: str = option("words", help="the scorer that ranks candidates")


def wordiest_build(prompts, candidates, scores, options: WordiestOptions, run_id: str = "") -> pl.DataFrame:
    """Per prompt, the candidate with the highest score against the one with the lowest."""
    scored = usable_scores(scores, candidates, options.scorer).sort("score", "candidate_id")
    ends = scored.group_by("prompt_id").agg(pl.all().last().name.suffix("_c"), pl.all().first().name.suffix("_r"))
    picks = (ends.join(prompts.select("prompt_id", pl.col("messages").alias("prompt")), on="prompt_id")
             .select("prompt_id", "prompt", pl.col("text_c").alias("chosen"), pl.col("text_r").alias("rejected"),
                     pl.col("candidate_id_c").alias("chosen_id"), pl.col("candidate_id_r").alias("rejected_id"),
                     pl.lit(options.scorer).alias("scorer"), pl.col("score_c").alias("chosen_score"),
                     pl.col("score_r").alias("rejected_score"),
                     (pl.col("score_c") - pl.col("score_r")).alias("margin"), pl.lit("wordiest").alias("reason")))
    picks = rule.enforce(picks, rule.candidate_facts(prompts, candidates, scores))
    return finish_pairs(picks, "wordiest", options_dict(options), run_id)


WORDIEST = Strategy("wordiest", WordiestOptions, wordiest_build)


@pytest.fixture
def registered():
    register_scorer(WORDS)
    register(WORDIEST)
    yield
    del SCORER_KINDS["words"], STRATEGIES["wordiest"]


def _config(tmp_path: Path, scorer_extra: str = "") -> Path:
    shutil.copy(EXAMPLE, tmp_path / "ultrafeedback.jsonl")
    config = tmp_path / "run.toml"
    config.write_text(f"""
generators = []
[[inputs]]
path = "ultrafeedback.jsonl"
columns = {{ prompt = "instruction" }}
[[scorers]]
kind = "words"
{scorer_extra}
[[pairs]]
strategy = "wordiest"
""")
    return config


def test_a_toy_scorer_and_a_toy_strategy_run_through_curate_run(tmp_path, registered):
    data = tmp_path / "data"
    result = CliRunner().invoke(app, ["run", str(_config(tmp_path)), "--no-prefect", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    with Lake(data / "lake", read_only=True) as lake:
        words = lake.query("SELECT s.score, c.text FROM scores s JOIN candidates c USING (candidate_id) "
                           "WHERE s.scorer = 'words'")
        pairs = lake.query("SELECT * FROM pairs WHERE strategy = 'wordiest'")
        prompts = lake.count("prompts")
    assert words.height > 0
    assert all(score == len(text.split()) for score, text in words.iter_rows())
    assert 0 < pairs.height <= prompts
    for row in pairs.iter_rows(named=True):
        assert row["chosen_score"] > row["rejected_score"] == len(row["rejected"].split())
        assert row["params_json"] == '{"scorer": "words"}'


def test_a_key_the_toy_kind_does_not_read_is_an_error(tmp_path, registered):
    result = CliRunner().invoke(app, ["run", str(_config(tmp_path, 'aspects = ["helpfulness"]')), "--no-prefect",
                                      "--data-dir", str(tmp_path / "data")])
    assert result.exit_code != 0
    assert "aspects has no effect on a words scorer" in str(result.exception) + result.output


def test_an_unregistered_kind_is_an_error_not_a_default(tmp_path):
    result = CliRunner().invoke(app, ["run", str(_config(tmp_path)), "--no-prefect", "--data-dir", str(tmp_path / "d")])
    assert result.exit_code != 0
    assert "unknown scorer kind 'words'" in str(result.exception) + result.output
