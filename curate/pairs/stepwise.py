"""Step-wise pairs (docs/methods.md §5): Step-DPO's first erroneous step, located Math-Shepherd style.

A math solution is split into steps (`split_steps`: "Step k:" markers when present, else non-empty
lines). For a wrong solution (at least 2 steps; usable score of `scorer` == 0, or a correct final
answer reached through a false equation, see below) that passes the `quality` gates (a solution cut
at max_tokens or degenerate is word salad more often than a wrong derivation) the strategy asks
for rollouts from each of its prefixes (`derive`) and estimates P(correct | first k steps) from
how many of them the scorer accepts; the first step after which that probability falls to ~0 is
the erroneous one (`build`).

derive (after the first generate + score round): for each ORIGINAL math prompt with a
reference_answer, its wrong candidates with >= 2 steps (those the scorer finds wrong first, then
those it finds correct that state a false equation; smallest candidate_id first), at most
`max_solutions_per_prompt` of them; for each, for k = 1 .. min(steps - 1, `max_steps`), one derived
prompt: the parent's messages, task "math", the parent's reference_answer, generation
{n: `rollouts`, assistant_prefix: the first k steps joined by "\\n" plus "\\n", max_tokens:
`rollout_max_tokens`, temperature: `rollout_temperature`}, note {solution_id, prefix_steps: k}.
There is no k = 0 prompt: P(correct | empty prefix) is the parent's own round-1 success rate.

build: for each wrong solution with derived rollouts,

    p_0 = mean `scorer` score of the parent's round-1 candidates (for a 0/1 verifier such as
          math_verify: the fraction correct),
    p_k = mean score of the rollouts from the derived prompts whose note names this solution
          and prefix_steps = k (rollouts of every such prompt are pooled).

Two locators name the first erroneous step; e is the earlier of the two:
- rollouts: the smallest k >= 1 with p_k <= `threshold` while p_{k-1} > `threshold` (step k broke a
  prefix that could still succeed). The scan stops at the first k whose p_k (or p_{k-1}) is unknown
  (no scored rollout): nothing after a gap is trusted.
- arithmetic: the first step stating a false equation (`a op b = c`, chains included; checked with
  sympy by curate.score.verify.arithmetic). Rollouts can reach the right answer from a wrong step by
  luck; a false equation is wrong whatever they reached.
A prefix is correct only when every step in it passes both: its equations hold and p_k >
`threshold` (known) for k = 1 .. e-1; otherwise no pair. A derived prompt whose assistant_prefix no
longer equals the solution's first k steps (split_steps changed) is ignored.

The pair: prompt = the parent's messages plus, when e > 1, a final assistant message holding the
correct prefix (steps 1 .. e-1 joined by "\\n", plus "\\n"; exports make chosen and rejected its
continuation); rejected = step e; chosen = the first step (split_steps(text)[0]) of a correct
(score >= 1) rollout from the prefix of e-1 steps (for e = 1: of a correct round-1 candidate of the
parent), the smallest candidate_id among those the pairing rule lets be a chosen (curate/pairs/
rule.py: an ok verifier score, not gated by the `quality` scorer) whose first step differs from the
rejected one (outer whitespace aside) and states no false equation; none: no pair.
chosen_id is that rollout's (or candidate's) id, rejected_id is "<solution_id>#step<e>".
chosen_score = p_{e-1} (the success rate of the correct prefix); rejected_score = p_e, or 0 when
step e states a false equation; margin = their difference. `rule.enforce` has the last word (no
tie: chosen_score > rejected_score; no gated chosen; chosen and rejected differ). details_json:
solution_id, erroneous_step (e), prefix_steps (e - 1), steps (how many the solution has),
success_rates [p_0, p_1, ...] (null where unknown), rollouts [scored samples
behind each p_k], threshold, chosen_from ("rollout" or "round1"), located_by ("rollouts",
"arithmetic" or "both"), rollout_step and arithmetic_step (each locator's step, null for none) and
failing_equation (step e's first false equation, null for none).

ReCUT (`prefer_shorter` = true): no rollouts, nothing derived. Among an original prompt's correct
round-1 candidates (score >= 1, completion_tokens known and > 0), chosen = the fewest
completion_tokens, rejected = the most (ties: smallest candidate_id), kept only when rejected /
chosen tokens >= `min_length_ratio`; only a candidate the pairing rule lets be a chosen is the
chosen. Both scores are 1.0 and margin is null (the preference is by length, not by score, so the
rule's strict score and verifier order cannot hold and `rule.enforce` is not applied);
details_json: chosen_tokens, rejected_tokens, length_ratio, correct (how many correct candidates
the prompt has).

Options (StepwiseOptions; any other key is a ValueError naming it): scorer ("math_verify"), scorer_version (default:
the newest score per candidate; when the entry names `scorer`, the pipeline pins its current version
at build time), rollouts (4), max_steps (6),
max_solutions_per_prompt (1), threshold (0.0), rollout_max_tokens (256), rollout_temperature (0.8),
prefer_shorter (false), min_length_ratio (1.2). An option with no effect in the chosen mode
(min_length_ratio without prefer_shorter, a rollout option with it) is a ValueError too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import polars as pl

from curate.audit.verdicts import CONFIRMED, REFUTED, UNCHECKABLE, Verdict, pair_details
from curate.options import as_floats, non_empty, option, options_dict, positive
from curate.pairs import rule
from curate.pairs.derive import DerivedPrompt, derived_info, original_prompts
from curate.pairs.rows import PICK_SCHEMA, empty_pairs, finish_pairs, usable_scores
from curate.pairs.strategy import AuditCheck, Strategy, StrategyAudit
from curate.score.verify.arithmetic import equations, first_false

NAME = "stepwise"
CORRECT = 1.0  # a score at or above this is a correct answer (math_verify gives 0 or 1)

# "Step 3:", "**Step 3:**", "**Step 3**:", "## Step 3:" at the start of a line.
STEP_MARKER = re.compile(r"^[ \t]*(?:[#>*_]+[ \t]*)?step[ \t]*\d+[ \t]*(?:[*_]+[ \t]*)?:",
                         re.IGNORECASE | re.MULTILINE)



# config ----------------------------------------------------------------------------------------
ROLLOUT_OPTIONS = ("max_solutions_per_prompt", "max_steps", "rollout_max_tokens", "rollout_temperature", "rollouts",
                   "threshold")


@dataclass(frozen=True)
class StepwiseOptions:
    scorer: str = option("math_verify", help="the verifier that says whether a solution or a rollout is correct")
    scorer_version: str | None = option(
        None, help="that scorer's version; default: the newest score (pinned at build time when `scorer` is named)")
    rollouts: int = option(4, help="continuations sampled from each prefix of a wrong solution")
    max_steps: int = option(6, help="prefixes rolled out per solution, at most")
    max_solutions_per_prompt: int = option(1, help="wrong solutions rolled out per prompt")
    threshold: float = option(0.0, help="a prefix whose rollouts succeed at most this often is wrong, in [0, 1)")
    rollout_max_tokens: int = option(256, help="max_tokens of a rollout")
    rollout_temperature: float = option(0.8, help="temperature of a rollout")
    prefer_shorter: bool = option(False, help="ReCUT: the shortest correct solution over the longest, no rollouts")
    min_length_ratio: float = option(1.2, help="ReCUT: least rejected / chosen completion tokens")

    def __post_init__(self) -> None:
        non_empty(self, "scorer", "scorer_version")
        positive(self, "rollouts", "max_steps", "max_solutions_per_prompt", "rollout_max_tokens")
        as_floats(self, "threshold", "rollout_temperature", "min_length_ratio")
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), not {self.threshold!r}")
        if self.rollout_temperature < 0:
            raise ValueError(f"rollout_temperature must be >= 0, not {self.rollout_temperature!r}")
        if self.min_length_ratio < 1.0:
            raise ValueError(f"min_length_ratio must be >= 1, not {self.min_length_ratio!r}")

    def without_effect(self) -> list[tuple[str, str]]:
        if self.prefer_shorter:
            return [(key, "has no effect with prefer_shorter (ReCUT derives no rollouts)") for key in ROLLOUT_OPTIONS]
        return [("min_length_ratio", "has no effect without prefer_shorter = true")]


# steps -----------------------------------------------------------------------------------------
def split_steps(text: str) -> list[str]:
    """The steps of a solution, each kept exactly as written (less trailing whitespace).

    With "Step k:" markers at line starts (also "**Step k:**", "## Step k:"), a step runs from its
    marker to the line before the next one; non-blank text before the first marker is a step of its
    own. Without markers, every non-blank line is a step. Joining the steps with "\\n" gives back
    the text when it has no blank lines and no trailing whitespace.
    """
    if not text:
        return []
    starts = [match.start() for match in STEP_MARKER.finditer(text)]
    if not starts:
        return [line for line in text.split("\n") if line.strip()]
    steps = []
    if text[:starts[0]].strip():
        steps.append(text[:starts[0]].rstrip())
    for start, end in zip(starts, [*starts[1:], len(text)]):
        steps.append(text[start:end].rstrip())
    return steps


def prefix_text(steps: list[str], k: int) -> str:
    """The first k steps as the start of a reply (what a rollout continues)."""
    return "\n".join(steps[:k]) + "\n"


def _same_step(a: str, b: str) -> bool:
    return a.strip() == b.strip()


# derive ----------------------------------------------------------------------------------------
def derive(prompts: pl.DataFrame, candidates: pl.DataFrame, scores: pl.DataFrame,
           options: StepwiseOptions) -> list[DerivedPrompt]:
    """Rollout prompts for every prefix of the wrong solutions (see the module docstring)."""
    if options.prefer_shorter:
        return []
    math = (original_prompts(prompts)
            .filter((pl.col("task") == "math") & pl.col("reference_answer").is_not_null())
            .select("prompt_id", "messages", "reference_answer"))
    if math.is_empty():
        return []
    scored = (usable_scores(scores, candidates, options.scorer, options.scorer_version)
              .join(math.select("prompt_id"), on="prompt_id", how="semi"))
    # wrong by the scorer, or right by luck: a correct final answer after a false equation
    wrong = [(prompt_id, score != 0.0, candidate_id, text)
             for candidate_id, prompt_id, text, score in scored.select("candidate_id", "prompt_id", "text", "score")
             .iter_rows()
             if score == 0.0 or (score >= CORRECT and first_false(text or "") is not None)]
    # a gated solution (cut at max_tokens, degenerate) is word salad more often than a wrong derivation:
    # its "first wrong step" teaches nothing, so it is never rolled out
    gated = _gated_ids(prompts, candidates, scores)
    wrong = [w for w in wrong if w[2] not in gated]
    parents = {row["prompt_id"]: row for row in math.iter_rows(named=True)}
    taken: dict[str, int] = {}
    derived = []
    for prompt_id, _, candidate_id, text in sorted(wrong):
        steps = split_steps(text)
        if len(steps) < 2 or taken.get(prompt_id, 0) >= options.max_solutions_per_prompt:
            continue
        taken[prompt_id] = taken.get(prompt_id, 0) + 1
        parent = parents[prompt_id]
        messages = [{"role": m["role"], "content": m["content"]} for m in parent["messages"]]
        for k in range(1, min(len(steps) - 1, options.max_steps) + 1):
            derived.append(DerivedPrompt(
                parent_prompt_id=prompt_id, messages=messages, task="math",
                fields={"reference_answer": parent["reference_answer"]},
                generation={"n": options.rollouts, "assistant_prefix": prefix_text(steps, k),
                            "max_tokens": options.rollout_max_tokens,
                            "temperature": options.rollout_temperature},
                note={"solution_id": candidate_id, "prefix_steps": k},
            ))
    return derived


def _gated_ids(prompts: pl.DataFrame, candidates: pl.DataFrame, scores: pl.DataFrame) -> set[str]:
    facts = rule.candidate_facts(prompts, candidates, scores)
    return set(facts.filter(pl.col("gated"))["candidate_id"].to_list())


# build -----------------------------------------------------------------------------------------
def build(prompts: pl.DataFrame, candidates: pl.DataFrame, scores: pl.DataFrame, options: StepwiseOptions,
          run_id: str = "") -> pl.DataFrame:
    versions = {options.scorer: options.scorer_version} if options.scorer_version else None
    facts = rule.candidate_facts(prompts, candidates, scores, versions)
    choosable = set(rule.eligible(facts, "chosen", format_required=False).to_list())  # a step, not an answer
    if options.prefer_shorter:
        picks = _recut_pairs(prompts, candidates, scores, choosable, options)
    else:
        picks = _step_pairs(prompts, candidates, scores, choosable, options)
    if not picks:
        return empty_pairs()
    picks = pl.DataFrame(picks, schema=PICK_SCHEMA)
    if not options.prefer_shorter:
        picks = rule.enforce(picks, facts, format_required=False)
    return finish_pairs(picks, NAME, options_dict(options), run_id)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _first_step(text: str) -> str | None:
    steps = split_steps(text or "")
    return steps[0] if steps and steps[0].strip() else None


def _step_pairs(prompts, candidates, scores, choosable, options) -> list[dict]:
    info = derived_info(prompts).filter(pl.col("strategy") == NAME)
    if info.is_empty():
        return []
    scored = usable_scores(scores, candidates, options.scorer, options.scorer_version)
    # rollouts (and round-1 candidates) per prompt, sorted by id: (candidate_id, score, text)
    by_prompt: dict[str, list[tuple[str, float, str]]] = {}
    for candidate_id, prompt_id, text, score in (scored.sort("candidate_id")
                                                 .select("candidate_id", "prompt_id", "text", "score").iter_rows()):
        by_prompt.setdefault(prompt_id, []).append((candidate_id, score, text))
    parents = {row["prompt_id"]: row["messages"]
               for row in original_prompts(prompts).select("prompt_id", "messages").iter_rows(named=True)}
    # derived prompts per wrong solution: (parent, prefix_steps, assistant_prefix, derived prompt id)
    solutions: dict[str, list[tuple[str, int, str, str]]] = {}
    for prompt_id, parent, generation, note in (info.sort("prompt_id")
                                                .select("prompt_id", "parent_prompt_id", "generation", "note")
                                                .iter_rows()):
        note, generation = json.loads(note), json.loads(generation)
        solution_id, k = note.get("solution_id"), note.get("prefix_steps")
        if isinstance(solution_id, str) and isinstance(k, int) and parent in parents:
            solutions.setdefault(solution_id, []).append((parent, k, generation.get("assistant_prefix"), prompt_id))
    texts = dict(candidates.filter(pl.col("candidate_id").is_in(sorted(solutions)) & pl.col("text").is_not_null())
                 .select("candidate_id", "text").iter_rows())
    gated = _gated_ids(prompts, candidates, scores)
    picks = []
    for solution_id in sorted(solutions):
        if solution_id not in texts or solution_id in gated:  # derived before parents had to pass the gates
            continue
        pick = _pair_for_solution(solution_id, texts[solution_id], solutions[solution_id], parents, by_prompt,
                                  choosable, options)
        if pick is not None:
            picks.append(pick)
    return picks


def _rates(steps, derived, parent, by_prompt) -> tuple[list, list[float | None]] | None:
    """The scored samples behind each p_k (k = 0 .. the last prefix with rollouts) and their means."""
    rollouts: dict[int, list[tuple[str, float, str]]] = {}
    for parent_id, k, prefix, prompt_id in derived:
        if parent_id != parent or not 1 <= k < len(steps) or prefix != prefix_text(steps, k):
            continue  # not this solution's prefix any more
        rollouts.setdefault(k, []).extend(by_prompt.get(prompt_id, []))
    if not rollouts:
        return None
    samples = [by_prompt.get(parent, [])] + [sorted(rollouts.get(k, [])) for k in range(1, max(rollouts) + 1)]
    return samples, [_mean([score for _, score, _ in group]) for group in samples]


def _rollout_error(rates: list[float | None], threshold: float) -> int | None:
    """The first step after which P(correct) falls to the threshold from above it; None past a gap."""
    for k in range(1, len(rates)):
        if rates[k] is None or rates[k - 1] is None:
            return None  # a gap: nothing after it is trusted
        if rates[k] <= threshold < rates[k - 1]:
            return k
    return None


def _pair_for_solution(solution_id, text, derived, parents, by_prompt, choosable, options) -> dict | None:
    steps = split_steps(text)
    parent = min(p for p, *_ in derived)
    found = _rates(steps, derived, parent, by_prompt)
    if found is None:
        return None
    samples, rates = found
    threshold = options.threshold
    rollout_error = _rollout_error(rates, threshold)
    wrong_links = [first_false(step) for step in steps]
    arithmetic_error = next((k for k, equation in enumerate(wrong_links, 1) if equation is not None), None)
    located = [k for k in (rollout_error, arithmetic_error) if k is not None]
    if not located:
        return None
    error = min(located)
    # every step of the prefix passes: its equations hold (error is at most the first false one) and
    # the rollouts after it still succeed
    if error > len(rates) or any(rates[k] is None or rates[k] <= threshold for k in range(1, error)):
        return None
    rejected = steps[error - 1]
    chosen = None
    for candidate_id, score, candidate_text in samples[error - 1]:
        first = _first_step(candidate_text) if score >= CORRECT and candidate_id in choosable else None
        if first is not None and not _same_step(first, rejected) and first_false(first) is None:
            chosen = (candidate_id, first)
            break
    if chosen is None:
        return None
    failing = wrong_links[error - 1]
    # A step with a false equation is worth nothing, whatever its rollouts reached by luck.
    before = rates[error - 1]
    after = 0.0 if failing is not None else rates[error]
    if after is None or not before > after:
        return None
    messages = [{"role": m["role"], "content": m["content"]} for m in parents[parent]]
    if error > 1:
        # The correct prefix ends the prompt as an assistant message; the export makes chosen and
        # rejected its continuation (curate.publish.export.continue_assistant_prefix).
        messages.append({"role": "assistant", "content": prefix_text(steps, error - 1)})
    by = {(True, True): "both", (True, False): "rollouts", (False, True): "arithmetic"}[
        (rollout_error == error, arithmetic_error == error)]
    source = "rollout" if error > 1 else "round1"
    details = {"solution_id": solution_id, "erroneous_step": error, "prefix_steps": error - 1,
               "steps": len(steps), "success_rates": rates, "rollouts": [len(group) for group in samples],
               "threshold": threshold, "chosen_from": source, "located_by": by,
               "rollout_step": rollout_error, "arithmetic_step": arithmetic_error,
               "failing_equation": failing.text if failing is not None else None}
    where = f"a rollout from the first {error - 1} steps" if error > 1 else "a correct round-1 solution"
    evidence = []
    if by != "arithmetic":
        evidence.append(f"P(correct) {rates[error - 1]:.3g} after {error - 1} steps, "
                        f"{rates[error]:.3g} <= {threshold:g} after {error}")
    if failing is not None:
        evidence.append(f"false equation {failing.text}")
    reason = (f"step-wise: step {error} of wrong solution {solution_id} is its first erroneous step "
              f"({'; '.join(evidence)}); chosen: the first step of {where} that reached the answer "
              f"({options.scorer}) and whose equations hold")
    return {
        "prompt_id": parent, "prompt": messages, "chosen": chosen[1], "rejected": rejected,
        "chosen_id": chosen[0], "rejected_id": f"{solution_id}#step{error}", "scorer": options.scorer,
        "chosen_score": before, "rejected_score": after, "margin": before - after, "reason": reason,
        "details_json": json.dumps(details, sort_keys=True),
    }


def _recut_pairs(prompts, candidates, scores, choosable, options) -> list[dict]:
    originals = original_prompts(prompts).select("prompt_id", "messages")
    correct = (usable_scores(scores, candidates, options.scorer, options.scorer_version)
               .filter(pl.col("score") >= CORRECT)
               .join(candidates.select("candidate_id", "completion_tokens").unique("candidate_id", keep="first"),
                     on="candidate_id")
               .filter(pl.col("completion_tokens").is_not_null() & (pl.col("completion_tokens") > 0))
               .join(originals.select("prompt_id"), on="prompt_id", how="semi"))
    messages = dict(originals.iter_rows())
    picks = []
    for (prompt_id,), group in sorted(correct.group_by("prompt_id"), key=lambda item: item[0]):
        rows = group.select("candidate_id", "completion_tokens", "text").rows()
        shortest_pool = [row for row in rows if row[0] in choosable]
        if len(rows) < 2 or not shortest_pool:
            continue
        shortest = min(shortest_pool, key=lambda r: (r[1], r[0]))
        longest = min(rows, key=lambda r: (-r[1], r[0]))
        ratio = longest[1] / shortest[1]
        if shortest[0] == longest[0] or ratio < options.min_length_ratio or shortest[2] == longest[2]:
            continue
        details = {"mode": "recut", "chosen_tokens": shortest[1], "rejected_tokens": longest[1],
                   "length_ratio": ratio, "correct": len(rows)}
        picks.append({
            "prompt_id": prompt_id, "prompt": [{"role": m["role"], "content": m["content"]}
                                               for m in messages[prompt_id]],
            "chosen": shortest[2], "rejected": longest[2], "chosen_id": shortest[0], "rejected_id": longest[0],
            "scorer": options.scorer, "chosen_score": 1.0, "rejected_score": 1.0, "margin": None,
            "reason": (f"ReCUT: both correct ({options.scorer}); the shortest correct solution "
                       f"({shortest[1]} tokens) over the longest ({longest[1]} tokens, x{ratio:.2f})"),
            "details_json": json.dumps(details, sort_keys=True),
        })
    return picks


# the audit ------------------------------------------------------------------------------------

def false_equations(text: str) -> list[str]:
    """The `a op b = c` links a text states that do not hold (sympy, curate.score.verify.arithmetic;
    what it cannot judge is left out, never called false)."""
    return [equation.text for equation in equations(text or "") if not equation.holds]


def check_arithmetic(pair: dict, prompt: dict | None = None, checker=false_equations) -> Verdict:
    """Every `a op b = c` stated in the correct prefix and the chosen step holds, and the rejected
    step states a false one."""
    if "erroneous_step" not in pair_details(pair):
        return Verdict("arithmetic", UNCHECKABLE, {"reason": "not a first-wrong-step pair"})
    messages = pair["prompt"] or []
    prefix = messages[-1]["content"] if messages and messages[-1]["role"] == "assistant" else ""
    found = {side: [str(e) for e in checker(text)] for side, text in
             (("prefix", prefix), ("chosen", pair["chosen"]), ("rejected", pair["rejected"]))}
    detail = {f"{side}_false": errors for side, errors in found.items()}
    if found["prefix"] or found["chosen"]:
        return Verdict("arithmetic", REFUTED, {**detail, "reason": "a false equation in the prefix or the chosen step"})
    if found["rejected"]:
        return Verdict("arithmetic", CONFIRMED, detail)
    return Verdict("arithmetic", UNCHECKABLE, {**detail, "reason": "no false equation in the rejected step"})


_ONE_STEP = "the chosen is one step, not a whole answer"
_STEP_WAIVED = {"score_order": "scores are prefix success rates from rollouts",
                "verifier": "chosen and rejected are single steps, not whole answers",
                "answer_verifier": _ONE_STEP, "answer_format": _ONE_STEP}


def _waived(pair: dict) -> dict[str, str]:
    return _STEP_WAIVED if "erroneous_step" in pair_details(pair) else {}


STRATEGY = Strategy(NAME, StepwiseOptions, build, derive, audit=StrategyAudit(
    checks=(AuditCheck("arithmetic", check_arithmetic, confirms=True),), waives=_waived,
    tie_by_design=lambda pair: "length_ratio" in pair_details(pair)))  # ReCUT: both correct, the shorter
