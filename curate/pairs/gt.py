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
only keep those below 1.0). Up to `max_pairs_per_prompt` candidates per prompt, the lowest-scored
first (ties: smallest id). A candidate whose text equals the reference (outer whitespace aside)
is never paired. `gated_rejected` (default true): a candidate gated by the quality scorer may
be rejected.

mode = "teacher_student" (PLaD): a candidate belongs to `teacher` (or `student`) when its
`model` equals the name or starts with "<name>@". Per prompt, teacher sample i is paired with
student sample i (sample_index) for i < `pairs_per_prompt`, where both exist with text (several
candidates of one model and index: the smallest candidate id). The evidence is `agree_scorer`,
by default the task's verifier (as above): a pair needs both ok scores and teacher > student
(strictly; and >= student + `agree_min_margin`), margin = teacher - student; a task without a
verifier and no agree_scorer gives no pairs. The pairing rule holds as everywhere: a gated
teacher answer is never chosen (`gated_rejected`, default true, for the student's), and where
the task has a verifier it must score the student ok and strictly below the teacher.
Identical texts never pair.
"""

from __future__ import annotations

import polars as pl

from curate.pairs import register, rule
from curate.pairs.rows import empty_pairs, finish_pairs, usable_scores
from curate.pairs.rule import REFERENCE_ID, TASK_VERIFIERS

CORRECTNESS_VERIFIERS = frozenset(TASK_VERIFIERS.values())

MODE_DEFAULTS: dict[str, dict] = {
    "reference": {"verifier": None, "verifier_version": None, "correct_min": 1.0, "keep_correct": False,
                  "max_pairs_per_prompt": 1, "use_reference_answer": False, "gated_rejected": True},
    "teacher_student": {"teacher": None, "student": None, "pairs_per_prompt": 1, "agree_scorer": None,
                        "agree_scorer_version": None, "agree_min_margin": 0.0, "gated_rejected": True},
}
DEFAULTS = {"mode": "reference", **MODE_DEFAULTS["reference"]}


def _params(config: dict) -> dict:
    mode = config.get("mode", "reference")
    if mode not in MODE_DEFAULTS:
        raise ValueError(f"gt: mode must be one of {sorted(MODE_DEFAULTS)}, not {mode!r}")
    known = {"mode", *MODE_DEFAULTS[mode]}
    for key in sorted(set(config) - known):
        other = [m for m, defaults in MODE_DEFAULTS.items() if key in defaults]
        where = f" (a key of mode {other[0]!r}, not {mode!r})" if other else f" (known: {sorted(known)})"
        raise ValueError(f"gt: unknown config key {key!r}{where}")
    params = {"mode": mode, **MODE_DEFAULTS[mode], **config}
    if mode == "reference":
        _check_reference(params)
    else:
        _check_teacher_student(params, config)
    return params


def _positive_int(params: dict, key: str) -> None:
    value = params[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"gt: {key} must be a positive integer, not {value!r}")


def _number(params: dict, key: str) -> None:
    if not isinstance(params[key], (int, float)) or isinstance(params[key], bool):
        raise ValueError(f"gt: {key} must be a number, not {params[key]!r}")


def _bool(params: dict, key: str) -> None:
    if not isinstance(params[key], bool):
        raise ValueError(f"gt: {key} must be true or false, not {params[key]!r}")


def _name(params: dict, key: str, required: bool = False) -> None:
    value = params[key]
    if (value is None and required) or (value is not None and (not isinstance(value, str) or not value.strip())):
        raise ValueError(f"gt: {key} must be a non-empty string, not {value!r}")


def _check_reference(params: dict) -> None:
    verifier = params["verifier"]
    named = list(verifier.values()) if isinstance(verifier, dict) else [verifier]
    wrong = [v for v in named if isinstance(v, str) and v not in CORRECTNESS_VERIFIERS]
    if wrong:
        raise ValueError(f"gt: verifier must be a correctness verifier ({', '.join(sorted(CORRECTNESS_VERIFIERS))}), "
                         f"not {wrong[0]!r}: the reference counts as 1.0 only on such a scale")
    if isinstance(verifier, dict):
        if not all(isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in verifier.items()):
            raise ValueError("gt: verifier as a table maps task names to scorer names")
        if params["verifier_version"] is not None:
            raise ValueError("gt: verifier_version needs a single verifier (a scorer name), not a table")
    else:
        _name(params, "verifier")
        _name(params, "verifier_version")
        if params["verifier_version"] is not None and verifier is None:
            raise ValueError("gt: verifier_version needs verifier")
    _number(params, "correct_min")
    _bool(params, "keep_correct")
    _bool(params, "use_reference_answer")
    _bool(params, "gated_rejected")
    _positive_int(params, "max_pairs_per_prompt")


def _check_teacher_student(params: dict, config: dict) -> None:
    _name(params, "teacher", required=True)
    _name(params, "student", required=True)
    if params["teacher"] == params["student"]:
        raise ValueError(f"gt: teacher and student must differ (both {params['teacher']!r})")
    _positive_int(params, "pairs_per_prompt")
    _name(params, "agree_scorer")
    _name(params, "agree_scorer_version")
    _number(params, "agree_min_margin")
    _bool(params, "gated_rejected")
    if params["agree_scorer"] is None and ("agree_min_margin" in config or "agree_scorer_version" in config):
        raise ValueError("gt: agree_min_margin and agree_scorer_version need agree_scorer")


@register("gt")
def build(prompts: pl.DataFrame, candidates: pl.DataFrame, scores: pl.DataFrame, config: dict,
          run_id: str = "") -> pl.DataFrame:
    params = _params(config)
    if params["mode"] == "reference":
        picked = _reference_pairs(prompts, candidates, scores, params)
    else:
        picked = _teacher_student_pairs(prompts, candidates, scores, params)
    if picked.is_empty():
        return empty_pairs()
    return finish_pairs(picked, "gt", params, run_id)


def _non_empty(column: str) -> pl.Expr:
    return pl.col(column).is_not_null() & (pl.col(column).str.strip_chars() != "")


def _verifier_expr(verifier) -> pl.Expr:
    if isinstance(verifier, str):
        return pl.lit(verifier, dtype=pl.Utf8)
    table = TASK_VERIFIERS if verifier is None else verifier
    return pl.col("task").replace_strict(table, default=None, return_dtype=pl.Utf8)


def _as_answer(reference: pl.Expr) -> pl.Expr:
    """A code reference in the form code prompts ask of an answer, one ```python block: a chosen
    without it would teach the model to ignore the prompt's format."""
    bare = (pl.col("task") == "code") & ~reference.str.strip_chars_start().str.starts_with("```")
    fenced = pl.concat_str([pl.lit("```python\n"), reference.str.strip_chars_end(), pl.lit("\n```")])
    return pl.when(bare).then(fenced).otherwise(reference)


def _reference_pairs(prompts, candidates, scores, params) -> pl.DataFrame:
    reference_text = pl.when(_non_empty("reference_solution")).then(pl.col("reference_solution"))
    reference_field = pl.when(_non_empty("reference_solution")).then(pl.lit("reference_solution"))
    if params["use_reference_answer"]:
        reference_text = reference_text.when(_non_empty("reference_answer")).then(pl.col("reference_answer"))
        reference_field = reference_field.when(_non_empty("reference_answer")).then(pl.lit("reference_answer"))
    refs = (prompts.select("prompt_id", pl.col("messages").alias("prompt"),
                           _as_answer(reference_text.otherwise(None)).alias("reference"),
                           reference_field.otherwise(None).alias("reference_field"),
                           _verifier_expr(params["verifier"]).alias("verifier"))
            .filter(pl.col("reference").is_not_null()))
    pool = (candidates.filter(pl.col("text").is_not_null()).select("candidate_id", "prompt_id", "text")
            .unique("candidate_id", keep="first").join(refs, on="prompt_id"))
    verifiers = sorted(v for v in pool["verifier"].unique().to_list() if v is not None)
    verdicts = [usable_scores(scores, candidates, name, params["verifier_version"])
                .select("candidate_id", pl.lit(name, dtype=pl.Utf8).alias("verifier"), "score")
                for name in verifiers]
    verdicts = pl.concat(verdicts) if verdicts else pl.DataFrame(
        schema={"candidate_id": pl.Utf8, "verifier": pl.Utf8, "score": pl.Float64})
    pool = pool.join(verdicts, on=["candidate_id", "verifier"], how="left").with_columns(
        (pl.col("score") >= float(params["correct_min"])).fill_null(False).alias("correct"))
    if not params["keep_correct"]:
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
    picks = rule.enforce(picks, facts, gated_rejected=params["gated_rejected"])
    return (picks.sort(["prompt_id", "rejected_score", "rejected_id"])
            .group_by("prompt_id", maintain_order=True).head(params["max_pairs_per_prompt"]))


def _of_model(name: str) -> pl.Expr:
    return (pl.col("model") == name) | pl.col("model").str.starts_with(name + "@")


def _teacher_student_pairs(prompts, candidates, scores, params) -> pl.DataFrame:
    teacher, student = params["teacher"], params["student"]
    pool = (candidates.filter(pl.col("text").is_not_null() & (pl.col("sample_index") < params["pairs_per_prompt"]))
            .select("candidate_id", "prompt_id", "model", "sample_index", "text").sort("candidate_id"))
    first_per_index = ["prompt_id", "sample_index"]
    teachers = pool.filter(_of_model(teacher)).unique(first_per_index, keep="first", maintain_order=True)
    students = pool.filter(_of_model(student)).unique(first_per_index, keep="first", maintain_order=True)
    paired = (teachers.join(students, on=first_per_index, suffix="_student")
              .filter(pl.col("text") != pl.col("text_student")))
    agree = params["agree_scorer"]
    paired = paired.join(prompts.select("prompt_id", pl.col("messages").alias("prompt"), "task"), on="prompt_id")
    if agree:
        judged = (usable_scores(scores, candidates, agree, params["agree_scorer_version"])
                  .select("candidate_id", "score"))
        paired = paired.with_columns(pl.lit(agree, dtype=pl.Utf8).alias("evidence"))
    else:  # the task's verifier, per prompt
        judged = pl.concat([usable_scores(scores, candidates, name).select(
            "candidate_id", pl.lit(name, dtype=pl.Utf8).alias("evidence"), "score")
            for name in sorted(CORRECTNESS_VERIFIERS)])
        paired = paired.with_columns(pl.col("task").replace_strict(TASK_VERIFIERS, default=None,
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
                         gated_rejected=params["gated_rejected"])
    return picks.filter(pl.col("margin") >= float(params["agree_min_margin"]))
