"""Synthetic code evolution, CodeFavor (docs/methods.md §6): pairs of code before and after a change.

A strategy that drives generation (curate.pairs.derive): `derive` makes new prompts after the first
generate+score round, the pipeline generates and scores them, and `build` turns them into pairs.

mode = "commits" (Commit-Instruct, curate/pairs/code_commits.py): small single-file commits of
the git repository `repo` become "code_edit" prompts (no generation); every code_edit prompt,
mined or supplied in a prompt file, pairs the code after the change (chosen) over the code before
it (rejected), property "instruction", no scorer. Keys: `repo` (required; a path, used as given),
`max_commits` (20), `max_diff_lines` (40, added + removed), `max_file_lines` (400, before and
after), `min_message_words` (3, words of the subject), `paths` (a glob or a list of globs on
the repo-relative path, default "*.py"), `scope` ("region", the default: the prompt quotes and the
pair holds the changed lines with `context_lines` (8) lines around them; "file": the whole file,
as before scopes existed). Whole files ran past the model's context and differed only thousands of
tokens in, where a trainer's truncation had cut the contrast away; `context_lines` with scope
"file" is an error (it has no effect).

mode = "critiques" (Critic-Evol, curate/pairs/code_critiques.py, the default): a critic prompt
per failing candidate of each original `code` prompt; a revision that passes more tests is chosen
over the critiqued candidate, scorer "code_tests". Keys: `revisions` (1, samples per critique
prompt), `max_tokens` (512), `min_gain` (0.0: the revision must score strictly more than original
+ min_gain), `max_candidates_per_prompt` (1, failing candidates critiqued), `gated_rejected`
(false: a critiqued candidate gated by the quality scorer is too easy a negative), `pair_text`
("code": both sides as their extracted code in a ```python block; "raw": the texts as generated).
Efficiency pairs (as many tests passed, faster) are gone: they tie on code_tests, and the pairing
rule (curate/pairs/rule.py) never pairs a tie on the task's verifier; their keys
(`efficiency_candidates_per_prompt`, `faster_ratio`) are errors that say so.

Both modes go through the pairing rule: a commit's sides are no generations (only "after differs
from before" applies); a critique pair needs ok code_tests scores on both sides, strictly higher
for the revision, and a revision gated by the quality scorer is never chosen.

Unknown keys, keys of the other mode and bad values are ValueErrors naming the key, raised when the
config is parsed (CodeEvolutionOptions, curate.options).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar, Literal

import polars as pl

from curate.audit import answer_checks
from curate.audit.verdicts import CONFIRMED, NO_SOURCE, REFUTED, UNCHECKABLE, Verdict, pair_details, prompt_text
from curate.options import option, options_dict
from curate.pairs import rule
from curate.pairs.code_commits import commit_picks, derive_commits, mine_commits  # noqa: F401
from curate.pairs.code_critiques import critique_picks, derive_critiques
from curate.pairs.derive import DerivedPrompt
from curate.pairs.rows import PICK_SCHEMA, empty_pairs, finish_pairs
from curate.pairs.strategy import AuditCheck, Strategy, StrategyAudit
from curate.score.verify.code import extract_code

NAME = "code_evolution"
COMMITS, CRITIQUES = ("commits",), ("critiques",)


@dataclass(frozen=True)
class CodeEvolutionOptions:
    mode: Literal["commits", "critiques"] = option(
        "critiques", help="commits: mined git commits, the code after over before; critiques: a revision "
                          "passing more tests over the critiqued candidate")
    repo: str | os.PathLike | None = option(
        None, modes=COMMITS, path=True, help="the git repository to mine (required; relative to the config file)")
    max_commits: int = option(20, modes=COMMITS, help="commits mined, at most")
    max_diff_lines: int = option(40, modes=COMMITS, help="largest change, lines added + removed")
    max_file_lines: int = option(400, modes=COMMITS, help="largest file, before and after")
    min_message_words: int = option(3, modes=COMMITS, help="words a commit subject needs")
    paths: str | list[str] = option("*.py", modes=COMMITS, help="a glob or a list of globs on the repo-relative path")
    scope: Literal["region", "file"] = option(
        "region", modes=COMMITS, help="region: the changed lines with `context_lines` lines around them "
                                      "(prompt and pair); file: the whole file")
    context_lines: int = option(8, modes=COMMITS, help="lines of unchanged code around a region, >= 0")
    max_region_lines: int = option(
        60, modes=COMMITS, help="region scope: a commit whose change spans more lines (hunks far apart) is not mined")
    revisions: int = option(1, modes=CRITIQUES, help="revisions sampled per critique prompt")
    max_tokens: int = option(512, modes=CRITIQUES, help="max_tokens of a revision")
    min_gain: float = option(
        0.0, modes=CRITIQUES, help="the revision must score more than the original + min_gain, in [0, 1)")
    max_candidates_per_prompt: int = option(1, modes=CRITIQUES, help="failing candidates critiqued per prompt")
    gated_rejected: bool = option(
        False, modes=CRITIQUES, help="a critiqued candidate gated by the quality scorer may be the rejected "
                                     "(off: too easy a negative)")
    pair_text: Literal["code", "raw"] = option(
        "code", modes=CRITIQUES, help="code: both sides as their extracted code in a python block; raw: as generated")

    RETIRED: ClassVar[dict[str, str]] = {
        "efficiency_candidates_per_prompt": "efficiency pairs (as many tests passed, faster) tie on code_tests, "
                                            "and the pairing rule never pairs a tie on the task's verifier",
        "faster_ratio": "it only served efficiency pairs, which the pairing rule never forms (a tie on code_tests)",
    }

    def __post_init__(self) -> None:
        if self.mode == "commits":
            self._check_commits()
        else:
            _at_least(self, 1, "revisions", "max_tokens")
            _at_least(self, 0, "max_candidates_per_prompt")
            if not 0.0 <= self.min_gain < 1.0:  # scores are fractions of tests passed
                raise ValueError(f"min_gain must be a number >= 0.0 and < 1.0, not {self.min_gain!r}")

    def _check_commits(self) -> None:
        repo = os.fspath(self.repo) if isinstance(self.repo, os.PathLike) else self.repo
        object.__setattr__(self, "repo", repo)
        if not isinstance(repo, str) or not repo.strip():
            raise ValueError(f"repo (the git repository to mine) is required in mode 'commits', "
                             f"as a non-empty path, not {repo!r}")
        if not os.path.isdir(repo):
            raise ValueError(f"repo {repo!r} is not a directory")
        _at_least(self, 1, "max_commits", "max_diff_lines", "max_file_lines", "max_region_lines")
        _at_least(self, 0, "min_message_words", "context_lines")
        if self.scope not in ("region", "file"):
            raise ValueError(f"scope must be one of 'region', 'file', not {self.scope!r}")
        globs = [self.paths] if isinstance(self.paths, str) else self.paths
        if not globs or not all(g.strip() for g in globs):
            raise ValueError(f"paths must be a glob or a non-empty list of globs, not {self.paths!r}")

    def without_effect(self) -> list[tuple[str, str]]:
        if self.mode == "commits" and self.scope == "file":
            return [("context_lines", "has no effect with scope = 'file' (the whole file)")]
        return []


def _at_least(options, minimum: int, *names: str) -> None:
    for key in names:
        value = getattr(options, key)
        if value < minimum:
            kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise ValueError(f"{key} must be {kind}, not {value!r}")


def derive(prompts: pl.DataFrame, candidates: pl.DataFrame, scores: pl.DataFrame,
           options: CodeEvolutionOptions) -> list[DerivedPrompt]:
    """Prompts to generate (critiques) or store (commits, n = 0); deterministic for equal inputs
    (commits: for the repository's same HEAD)."""
    if options.mode == "commits":
        return derive_commits(options)
    return derive_critiques(prompts, candidates, scores, options)


def build(prompts: pl.DataFrame, candidates: pl.DataFrame, scores: pl.DataFrame, options: CodeEvolutionOptions,
          run_id: str = "") -> pl.DataFrame:
    if options.mode == "commits":
        picks = commit_picks(prompts)
    else:
        picks = critique_picks(prompts, candidates, scores, options)
    if not picks:
        return empty_pairs()
    picks = rule.enforce(pl.DataFrame(picks, schema=PICK_SCHEMA), rule.candidate_facts(prompts, candidates, scores),
                         gated_rejected=options.gated_rejected, scored=options.mode != "commits")
    if picks.is_empty():
        return empty_pairs()
    return finish_pairs(picks, NAME, options_dict(options), run_id)


def check_commit_grounding(pair: dict, prompt: dict | None = None) -> Verdict:
    """A commit pair's edit adds no literal that neither the request nor the code gives (the
    audit's answer_grounding)."""
    name = "answer_grounding"
    if "commit" not in pair_details(pair):
        return Verdict(name, UNCHECKABLE, {"reason": NO_SOURCE})
    before, after = extract_code(pair["rejected"] or ""), extract_code(pair["chosen"] or "")
    invented = answer_checks.invented_literals(before, after, prompt_text(pair["prompt"]))
    if invented is None:
        return Verdict(name, UNCHECKABLE, {"reason": "the changed lines do not tokenize as Python"})
    if invented:
        return Verdict(name, REFUTED, {"invented_literals": invented[:20],
                                       "reason": "the edit adds literals the prompt does not give"})
    return Verdict(name, CONFIRMED, {"invented_literals": []})


STRATEGY = Strategy(NAME, CodeEvolutionOptions, build, derive, audit=StrategyAudit(
    checks=(AuditCheck("answer_grounding", check_commit_grounding),),
    # efficiency pairs (equal tests, faster code; lakes made before they were retired) tie by design
    tie_by_design=lambda pair: pair_details(pair).get("property") == "efficiency"))

__all__ = ["STRATEGY", "CodeEvolutionOptions", "build", "derive", "mine_commits"]
