"""Synthetic code evolution, CodeFavor (docs/methods.md §6): pairs of code before and after a change.

A strategy that drives generation (curate.pairs.derive): `derive` makes new prompts after the first
generate+score round, the pipeline generates and scores them, and `build` turns them into pairs.

mode = "commits" (Commit-Instruct, curate/pairs/code_commits.py): small single-file commits of
the git repository `repo` become "code_edit" prompts (no generation); every code_edit prompt,
mined or supplied in a prompt file, pairs the file after the change (chosen) over the file before
it (rejected), property "instruction", no scorer. Keys: `repo` (required; a path, used as given),
`max_commits` (20), `max_diff_lines` (40, added + removed), `max_file_lines` (400, before and
after), `min_message_words` (3, words of the subject), `paths` (a glob or a list of globs on
the repo-relative path, default "*.py").

mode = "critiques" (Critic-Evol, curate/pairs/code_critiques.py, the default): a critic prompt
per failing candidate of each original `code` prompt; a revision that passes more tests is chosen
over the critiqued candidate, scorer "code_tests". Keys: `revisions` (1, samples per critique
prompt), `max_tokens` (512), `min_gain` (0.0: the revision must score strictly more than original
+ min_gain), `max_candidates_per_prompt` (1, failing candidates critiqued), `gated_rejected`
(true: a critiqued candidate gated by the quality scorer may be the rejected), `pair_text`
("code": both sides as their extracted code in a ```python block; "raw": the texts as generated).
Efficiency pairs (as many tests passed, faster) are gone: they tie on code_tests, and the pairing
rule (curate/pairs/rule.py) never pairs a tie on the task's verifier; their keys
(`efficiency_candidates_per_prompt`, `faster_ratio`) are errors that say so.

Both modes go through the pairing rule: a commit's sides are no generations (only "after differs
from before" applies); a critique pair needs ok code_tests scores on both sides, strictly higher
for the revision, and a revision gated by the quality scorer is never chosen.

Unknown keys, keys of the other mode and bad values are ValueErrors naming the key; `build` and
`derive` check the config before anything else, so a dry run on empty tables catches them.
"""

from __future__ import annotations

import numbers
import os

import polars as pl

from curate.pairs import register, rule
from curate.pairs.code_commits import commit_picks, derive_commits, mine_commits  # noqa: F401
from curate.pairs.code_critiques import critique_picks, derive_critiques
from curate.pairs.derive import DerivedPrompt
from curate.pairs.rows import empty_pairs, finish_pairs

NAME = "code_evolution"
MODE_DEFAULTS: dict[str, dict] = {
    "commits": {"repo": None, "max_commits": 20, "max_diff_lines": 40, "max_file_lines": 400,
                "min_message_words": 3, "paths": "*.py"},
    "critiques": {"revisions": 1, "max_tokens": 512, "min_gain": 0.0, "max_candidates_per_prompt": 1,
                  "gated_rejected": True, "pair_text": "code"},
}
RETIRED_KEYS = {
    "efficiency_candidates_per_prompt": "efficiency pairs (as many tests passed, faster) tie on code_tests, "
                                        "and the pairing rule never pairs a tie on the task's verifier",
    "faster_ratio": "it only served efficiency pairs, which the pairing rule never forms (a tie on code_tests)",
}
DEFAULT_MODE = "critiques"
PAIR_TEXTS = ("code", "raw")

MESSAGES = pl.List(pl.Struct({"role": pl.Utf8, "content": pl.Utf8}))
PICK_SCHEMA = {
    "prompt_id": pl.Utf8, "prompt": MESSAGES, "chosen": pl.Utf8, "rejected": pl.Utf8,
    "chosen_id": pl.Utf8, "rejected_id": pl.Utf8, "scorer": pl.Utf8, "chosen_score": pl.Float64,
    "rejected_score": pl.Float64, "margin": pl.Float64, "reason": pl.Utf8, "details_json": pl.Utf8,
}


def _int(params: dict, key: str, minimum: int) -> None:
    value = params[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{NAME}: {key} must be {kind}, not {value!r}")


def _number(params: dict, key: str, low: float, high: float, low_open: bool = False,
            high_open: bool = False) -> None:
    value = params[key]
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and (value > low if low_open else value >= low) and (value < high if high_open else value <= high))
    if not ok:
        bound = f"{'>' if low_open else '>='} {low} and {'<' if high_open else '<='} {high}"
        raise ValueError(f"{NAME}: {key} must be a number {bound}, not {value!r}")


def params_of(config: dict) -> dict:
    """The config with defaults filled in; ValueError naming the key for anything wrong."""
    if not isinstance(config, dict):
        raise ValueError(f"{NAME}: config must be a table, not {type(config).__name__}")
    mode = config.get("mode", DEFAULT_MODE)
    if not isinstance(mode, str) or mode not in MODE_DEFAULTS:
        raise ValueError(f"{NAME}: mode must be one of {sorted(MODE_DEFAULTS)}, not {mode!r}")
    known = {"mode", *MODE_DEFAULTS[mode]}
    for key in sorted(set(config) & set(RETIRED_KEYS), key=str):
        raise ValueError(f"{NAME}: {key} is no longer an option: {RETIRED_KEYS[key]}")
    for key in sorted(set(config) - known, key=str):
        other = [m for m, defaults in MODE_DEFAULTS.items() if key in defaults]
        where = f" (a key of mode {other[0]!r}, not {mode!r})" if other else f" (known: {sorted(known)})"
        raise ValueError(f"{NAME}: unknown config key {key!r}{where}")
    params = {"mode": mode, **MODE_DEFAULTS[mode], **config}
    if mode == "commits":
        repo = params["repo"]
        if isinstance(repo, os.PathLike):
            repo = params["repo"] = os.fspath(repo)
        if not isinstance(repo, str) or not repo.strip():
            raise ValueError(f"{NAME}: repo (the git repository to mine) is required in mode 'commits', "
                             f"as a non-empty path, not {repo!r}")
        if not os.path.isdir(repo):
            raise ValueError(f"{NAME}: repo {repo!r} is not a directory")
        for key in ("max_commits", "max_diff_lines", "max_file_lines"):
            _int(params, key, 1)
        _int(params, "min_message_words", 0)
        paths = params["paths"]
        globs = [paths] if isinstance(paths, str) else paths
        if not isinstance(globs, list) or not globs or not all(isinstance(g, str) and g.strip() for g in globs):
            raise ValueError(f"{NAME}: paths must be a glob or a non-empty list of globs, not {paths!r}")
    else:
        for key in ("revisions", "max_tokens"):
            _int(params, key, 1)
        _int(params, "max_candidates_per_prompt", 0)
        _number(params, "min_gain", 0.0, 1.0, high_open=True)  # scores are fractions of tests passed
        if not isinstance(params["gated_rejected"], bool):
            raise ValueError(f"{NAME}: gated_rejected must be true or false, not {params['gated_rejected']!r}")
        if params["pair_text"] not in PAIR_TEXTS:
            raise ValueError(f"{NAME}: pair_text must be one of {list(PAIR_TEXTS)}, not {params['pair_text']!r}")
    return params


def derive(prompts: pl.DataFrame, candidates: pl.DataFrame, scores: pl.DataFrame,
           config: dict) -> list[DerivedPrompt]:
    """Prompts to generate (critiques) or store (commits, n = 0); deterministic for equal inputs
    (commits: for the repository's same HEAD)."""
    params = params_of(config)
    if params["mode"] == "commits":
        return derive_commits(params)
    return derive_critiques(prompts, candidates, scores, params)


@register(NAME)
def build(prompts: pl.DataFrame, candidates: pl.DataFrame, scores: pl.DataFrame, config: dict,
          run_id: str = "") -> pl.DataFrame:
    params = params_of(config)
    if params["mode"] == "commits":
        picks = commit_picks(prompts)
    else:
        picks = critique_picks(prompts, candidates, scores, params)
    if not picks:
        return empty_pairs()
    picks = rule.enforce(pl.DataFrame(picks, schema=PICK_SCHEMA), rule.candidate_facts(prompts, candidates, scores),
                         gated_rejected=params.get("gated_rejected", True), scored=params["mode"] != "commits")
    if picks.is_empty():
        return empty_pairs()
    return finish_pairs(picks, NAME, params, run_id)


__all__ = ["build", "derive", "mine_commits", "params_of"]
