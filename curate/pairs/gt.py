"""Ground-truth pairs (docs/methods.md §3): a known-good response over a model's.

mode = "reference" (Reg-DPO's GT-Pair): chosen = the prompt's `reference_solution` (with
`use_reference_answer = true`, a bare `reference_answer` stands in where there is no solution),
chosen_id = "reference"; rejected = a model candidate of that prompt. The verifier is `verifier`
(a correctness verifier for every prompt, or a {task: verifier} table), by default per task:
math -> math_verify, code -> code_tests, instruction -> constraints; other tasks have none and
give no pairs. The reference counts as 1.0 (chosen_score), rejected_score is the verifier's score
and margin their difference. The pairing rule (curate/pairs/rule.py) holds: a candidate the
verifier did not score ok (unscored, failed) is never rejected, nor one scoring 1.0 (a tie with
the reference). Candidates scoring >= `correct_min` are skipped unless `keep_correct` (which can
only keep those below 1.0). Up to `max_pairs_per_prompt` candidates per prompt, the most plausible
wrong answers first: a math answer that states more of the reference's intermediate results (it
goes wrong later: "5 * 6 = 30 ... 30 - 5 = 25" over "12 weeks in 6 weeks") or code that passes
more of the tests (code_tests' score), those in the format
the prompt asks for (a wrong answer that ends "The answer
is 98" differs from the reference in the answer; one without the line differs in the form, which a
trainer learns instead), code that parses (read with `ast.parse`, never run), then the likeliest
under the model that wrote them (mean log-prob per
token, from `cumulative_logprob`; word salad sits far below a real attempt; unknown last), then the
lowest-scored (ties: smallest id). A candidate whose text equals the reference (outer whitespace aside)
is never paired. `gated_rejected` (default false): a candidate gated by the quality scorer may
be rejected only when it is true (a gated answer is too easy a negative).

mode = "teacher_student" (PLaD): a candidate belongs to `teacher` (or `student`) when its
`model` equals the name or starts with "<name>@". Per prompt, teacher sample i is paired with
student sample i (sample_index) for i < `pairs_per_prompt`, where both exist with text (several
candidates of one model and index: the smallest candidate id). The evidence is `agree_scorer`,
by default the task's verifier (as above): a pair needs both ok scores and teacher > student
(strictly; and >= student + `agree_min_margin`), margin = teacher - student; a task without a
verifier and no agree_scorer gives no pairs. The pairing rule holds as everywhere: a gated
teacher answer is never chosen (`gated_rejected`, default false, for the student's), and where
the task has a verifier it must score the student ok and strictly below the teacher.
Identical texts never pair.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Literal

import polars as pl

from curate.audit.answer_checks import stated_numbers
from curate.options import non_empty, option, options_dict, positive
from curate.pairs import rule
from curate.pairs.rows import empty_pairs, finish_pairs, usable_scores
from curate.pairs.rule import REFERENCE_ID
from curate.pairs.strategy import Strategy, StrategyAudit
from curate.score.registry import task_verifiers, verifier_names
from curate.score.verify.code import extract_code

REFERENCE, TEACHER_STUDENT = ("reference",), ("teacher_student",)


@dataclass(frozen=True)
class GtOptions:
    mode: Literal["reference", "teacher_student"] = option(
        "reference", help="reference: the prompt's reference solution over model candidates; "
                          "teacher_student: a teacher model's sample over a student's")
    verifier: str | dict[str, str] | None = option(
        None, modes=REFERENCE, help="a correctness verifier, or a {task: verifier} table; default: the task's own")
    verifier_version: str | None = option(None, modes=REFERENCE, help="the verifier's version (one verifier only)")
    correct_min: float = option(1.0, modes=REFERENCE, help="a candidate scoring at least this is correct: skipped")
    keep_correct: bool = option(False, modes=REFERENCE, help="pair correct candidates too (those below 1.0)")
    max_pairs_per_prompt: int = option(1, modes=REFERENCE, help="candidates paired per prompt, the most plausible "
                                       "first: nearest miss (math: reference steps; code: tests passed), asked format, parses, "
                                       "likeliest, lowest scored")
    use_reference_answer: bool = option(
        False, modes=REFERENCE, help="a bare reference_answer stands in where there is no reference solution")
    teacher: str | None = option(None, modes=TEACHER_STUDENT, help="the teacher generator's name (required)")
    student: str | None = option(None, modes=TEACHER_STUDENT, help="the student generator's name (required)")
    pairs_per_prompt: int = option(1, modes=TEACHER_STUDENT, help="sample indexes paired per prompt")
    agree_scorer: str | None = option(
        None, modes=TEACHER_STUDENT, help="the scorer that must rank the teacher higher; default: the task's verifier")
    agree_scorer_version: str | None = option(None, modes=TEACHER_STUDENT, help="agree_scorer's version")
    agree_min_margin: float = option(0.0, modes=TEACHER_STUDENT, help="least teacher - student score")
    near_miss_only: bool = option(
        True, modes=REFERENCE, help="where a math reference states intermediate results, a wrong answer must "
                                    "state one of them; wrong code must pass one test (else refused: no_near_miss)")
    gated_rejected: bool = option(False, help="a candidate gated by the quality scorer may be the rejected (off: too easy a negative)")

    def __post_init__(self) -> None:
        if self.mode == "reference":
            self._check_reference()
        else:
            self._check_teacher_student()

    def _check_reference(self) -> None:
        verifier = self.verifier
        named = list(verifier.values()) if isinstance(verifier, dict) else [verifier]
        wrong = [v for v in named if isinstance(v, str) and v not in verifier_names()]
        if wrong:
            raise ValueError(f"verifier must be a correctness verifier ({', '.join(sorted(verifier_names()))}), "
                             f"not {wrong[0]!r}: the reference counts as 1.0 only on such a scale")
        if isinstance(verifier, dict) and self.verifier_version is not None:
            raise ValueError("verifier_version needs a single verifier (a scorer name), not a table")
        non_empty(self, "verifier_version")
        if self.verifier_version is not None and verifier is None:
            raise ValueError("verifier_version needs verifier")
        positive(self, "max_pairs_per_prompt")

    def _check_teacher_student(self) -> None:
        for key in ("teacher", "student"):
            if getattr(self, key) is None:
                raise ValueError(f"{key} must be a non-empty string, not None")
        non_empty(self, "teacher", "student", "agree_scorer", "agree_scorer_version")
        if self.teacher == self.student:
            raise ValueError(f"teacher and student must differ (both {self.teacher!r})")
        positive(self, "pairs_per_prompt")

    def without_effect(self) -> list[tuple[str, str]]:
        if self.mode == "teacher_student" and self.agree_scorer is None:
            return [("agree_min_margin", "needs agree_scorer"), ("agree_scorer_version", "needs agree_scorer")]
        return []


def build(prompts: pl.DataFrame, candidates: pl.DataFrame, scores: pl.DataFrame, options: GtOptions,
          run_id: str = "") -> pl.DataFrame:
    if options.mode == "reference":
        picked = _reference_pairs(prompts, candidates, scores, options)
    else:
        picked = _teacher_student_pairs(prompts, candidates, scores, options)
    if picked.is_empty():
        return empty_pairs()
    return finish_pairs(picked, "gt", options_dict(options), run_id)


def _non_empty(column: str) -> pl.Expr:
    return pl.col(column).is_not_null() & (pl.col(column).str.strip_chars() != "")


def _verifier_expr(verifier) -> pl.Expr:
    if isinstance(verifier, str):
        return pl.lit(verifier, dtype=pl.Utf8)
    table = task_verifiers() if verifier is None else verifier
    return pl.col("task").replace_strict(table, default=None, return_dtype=pl.Utf8)


def _as_answer(reference: pl.Expr) -> pl.Expr:
    """A code reference in the form code prompts ask of an answer, one ```python block: a chosen
    without it would teach the model to ignore the prompt's format."""
    bare = (pl.col("task") == "code") & ~reference.str.strip_chars_start().str.starts_with("```")
    fenced = pl.concat_str([pl.lit("```python\n"), reference.str.strip_chars_end(), pl.lit("\n```")])
    return pl.when(bare).then(fenced).otherwise(reference)


def _reference_pairs(prompts, candidates, scores, options) -> pl.DataFrame:
    reference_text = pl.when(_non_empty("reference_solution")).then(pl.col("reference_solution"))
    reference_field = pl.when(_non_empty("reference_solution")).then(pl.lit("reference_solution"))
    if options.use_reference_answer:
        reference_text = reference_text.when(_non_empty("reference_answer")).then(pl.col("reference_answer"))
        reference_field = reference_field.when(_non_empty("reference_answer")).then(pl.lit("reference_answer"))
    refs = (prompts.select("prompt_id", pl.col("messages").alias("prompt"),
                           _as_answer(reference_text.otherwise(None)).alias("reference"),
                           reference_field.otherwise(None).alias("reference_field"),
                           _verifier_expr(options.verifier).alias("verifier"))
            .filter(pl.col("reference").is_not_null()))
    pool = (candidates.filter(pl.col("text").is_not_null()).select("candidate_id", "prompt_id", "text")
            .unique("candidate_id", keep="first").join(refs, on="prompt_id"))
    verifiers = sorted(v for v in pool["verifier"].unique().to_list() if v is not None)
    verdicts = [usable_scores(scores, candidates, name, options.verifier_version)
                .select("candidate_id", pl.lit(name, dtype=pl.Utf8).alias("verifier"), "score")
                for name in verifiers]
    verdicts = pl.concat(verdicts) if verdicts else pl.DataFrame(
        schema={"candidate_id": pl.Utf8, "verifier": pl.Utf8, "score": pl.Float64})
    pool = pool.join(verdicts, on=["candidate_id", "verifier"], how="left").with_columns(
        (pl.col("score") >= float(options.correct_min)).fill_null(False).alias("correct"))
    if not options.keep_correct:
        pool = pool.filter(~pl.col("correct"))
    chosen_score = pl.when(pl.col("verifier").is_not_null()).then(pl.lit(1.0)).otherwise(None)
    verdict = (pl.when(pl.col("correct")).then(pl.format("{} {} (correct, kept by keep_correct)",
                                                         pl.col("verifier"), pl.col("score").round(3)))
               .otherwise(pl.format("{} {}, below correct_min", pl.col("verifier"), pl.col("score").round(3))))
    picks = pool.select(
        "prompt_id", "prompt", pl.col("reference").alias("chosen"), pl.col("text").alias("rejected"),
        pl.lit(REFERENCE_ID).alias("chosen_id"), pl.col("candidate_id").alias("rejected_id"),
        pl.col("verifier").alias("scorer"), chosen_score.alias("chosen_score"),
        pl.col("score").alias("rejected_score"), (chosen_score - pl.col("score")).alias("margin"),
        pl.format("ground truth: {} over a model candidate ({})", pl.col("reference_field"), verdict)
        .alias("reason"),
        pl.struct(pl.lit("reference").alias("mode"), "reference_field", "correct")
        .struct.json_encode().alias("details_json"),
    )
    facts = rule.candidate_facts(prompts, candidates, scores)
    picks = rule.enforce(picks, facts, gated_rejected=options.gated_rejected)
    # the most plausible wrong answer first (the module doc): a near miss, in the form the prompt asks
    # for (the pair then differs in the answer, not in a missing "The answer is" line, which a trainer
    # would learn instead), code that parses, the one the model found likeliest (mean log-prob per
    # token: word salad scores far below)
    plausible = (facts.unique("candidate_id")
                 .select(pl.col("candidate_id").alias("rejected_id"), pl.col("format_missing").alias("_unformatted"))
                 .join(candidates.unique("candidate_id").select(
                     pl.col("candidate_id").alias("rejected_id"),
                     (-pl.col("cumulative_logprob") / pl.col("completion_tokens")).alias("_surprise")),
                     on="rejected_id", how="left"))
    picks = picks.join(plausible, on="rejected_id", how="left", maintain_order="left").with_columns(
        pl.col("_unformatted").fill_null(False),
        # code that does not even parse is no attempt at the function (parsed only, never run)
        pl.when(pl.col("scorer") == "code_tests")
        .then(pl.col("rejected").map_elements(_unparseable, return_dtype=pl.Boolean))
        .otherwise(False).alias("_unparseable"),
        # a near miss: a math answer that reaches a step of the reference before it goes wrong, code
        # that passes more of the tests
        pl.when(pl.col("scorer") == "math_verify")
        .then(pl.struct("chosen", "rejected", "prompt").map_elements(_progress, return_dtype=pl.Int64)
              .cast(pl.Float64))
        .when(pl.col("scorer") == "code_tests").then(pl.col("rejected_score"))
        .otherwise(0.0).alias("_progress"))
    if options.near_miss_only and picks.height:  # a wrong answer that reaches no step the reference shows
        # code that passes none of the tests is no near miss either (the demo's were nonsense code)
        far = picks.select((((pl.col("scorer") == "math_verify") & (pl.col("_progress") == 0) & pl.struct(
            "chosen", "prompt").map_elements(lambda row: bool(_reference_steps(row)), return_dtype=pl.Boolean))
            | ((pl.col("scorer") == "code_tests") & (pl.col("_progress") <= 0)))
            .fill_null(False).alias("far"))["far"]
        if far.any():
            rule.refuse("no_near_miss", int(far.sum()))
            picks = picks.filter(~far)
    keys = ["_progress", "_unformatted", "_unparseable", "_surprise", "rejected_score", "rejected_id"]
    return (picks.sort(["prompt_id", *keys], descending=[False, True, *[False] * 5], nulls_last=True)
            .group_by("prompt_id", maintain_order=True).head(options.max_pairs_per_prompt)
            .drop("_progress", "_unformatted", "_unparseable", "_surprise"))


def _reference_steps(row: dict) -> set[str]:
    """The reference's intermediate results: numbers it states that the question does not, its
    final answer (the last number) aside."""
    question = " ".join(m["content"] for m in row["prompt"] or [])
    reference = stated_numbers(row["chosen"] or "")
    return set(reference) - set(reference[-1:]) - set(stated_numbers(question))


def _progress(row: dict) -> int:
    """How many of the reference's intermediate results a wrong answer also states."""
    return len(_reference_steps(row) & set(stated_numbers(row["rejected"] or "")))


def _unparseable(text: str) -> bool:
    try:
        ast.parse(extract_code(text))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return True
    return False


def _of_model(name: str) -> pl.Expr:
    return (pl.col("model") == name) | pl.col("model").str.starts_with(name + "@")


def _teacher_student_pairs(prompts, candidates, scores, options) -> pl.DataFrame:
    teacher, student = options.teacher, options.student
    pool = (candidates.filter(pl.col("text").is_not_null() & (pl.col("sample_index") < options.pairs_per_prompt))
            .select("candidate_id", "prompt_id", "model", "sample_index", "text").sort("candidate_id"))
    first_per_index = ["prompt_id", "sample_index"]
    teachers = pool.filter(_of_model(teacher)).unique(first_per_index, keep="first", maintain_order=True)
    students = pool.filter(_of_model(student)).unique(first_per_index, keep="first", maintain_order=True)
    paired = (teachers.join(students, on=first_per_index, suffix="_student")
              .filter(pl.col("text") != pl.col("text_student")))
    agree = options.agree_scorer
    paired = paired.join(prompts.select("prompt_id", pl.col("messages").alias("prompt"), "task"), on="prompt_id")
    if agree:
        judged = (usable_scores(scores, candidates, agree, options.agree_scorer_version)
                  .select("candidate_id", "score"))
        paired = paired.with_columns(pl.lit(agree, dtype=pl.Utf8).alias("evidence"))
    else:  # the task's verifier, per prompt
        judged = pl.concat([usable_scores(scores, candidates, name).select(
            "candidate_id", pl.lit(name, dtype=pl.Utf8).alias("evidence"), "score")
            for name in sorted(verifier_names())])
        paired = paired.with_columns(pl.col("task").replace_strict(task_verifiers(), default=None,
                                                                   return_dtype=pl.Utf8).alias("evidence"))
    keys = ["candidate_id", "evidence"] if not agree else ["candidate_id"]
    judged = judged.select(*keys, "score")
    student_scores = judged.rename({"candidate_id": "candidate_id_student", "score": "score_student"})
    paired = (paired.join(judged, on=keys, how="left")
              .join(student_scores, on=[k if k != "candidate_id" else "candidate_id_student" for k in keys], how="left")
              .with_columns((pl.col("score") - pl.col("score_student")).alias("margin")))
    agreement = pl.format(", {} agrees: {} > {}", pl.col("evidence"), pl.col("score").round(3),
                          pl.col("score_student").round(3))
    picks = (paired
            .select(
                "prompt_id", "prompt", pl.col("text").alias("chosen"), pl.col("text_student").alias("rejected"),
                pl.col("candidate_id").alias("chosen_id"), pl.col("candidate_id_student").alias("rejected_id"),
                pl.col("evidence").alias("scorer"), pl.col("score").alias("chosen_score"),
                pl.col("score_student").alias("rejected_score"), "margin",
                pl.format("ground truth: teacher {} ({}) over student {} ({}), sample {}{}", pl.lit(teacher),
                          pl.col("model"), pl.lit(student), pl.col("model_student"), pl.col("sample_index"),
                          agreement).alias("reason"),
                pl.struct(pl.lit("teacher_student").alias("mode"), pl.col("model").alias("teacher_model"),
                          pl.col("model_student").alias("student_model"), "sample_index")
                .struct.json_encode().alias("details_json"),
            ))
    picks = rule.enforce(picks, rule.candidate_facts(prompts, candidates, scores),
                         gated_rejected=options.gated_rejected)
    return picks.filter(pl.col("margin") >= float(options.agree_min_margin))


STRATEGY = Strategy("gt", GtOptions, build, per_prompt=lambda options: True, audit=StrategyAudit(ground_truth=True))
