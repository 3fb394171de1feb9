"""LLM-as-judge through the generation backends: pointwise ratings and pairwise verdicts.

Pointwise: a rubric prompt per aspect (UltraFeedback-style), answered with "Rating: N" (1-10).
Pairwise: A vs B asked in both orders; a verdict that flips with the order is a tie.
Parsing is strict: anything but one clear verdict is retried (with sampling, new seeds) at most
`max_retries` times and then stored as "unparsed" with the raw text — never guessed, never a
number standing in for "no answer".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from curate.generate import Request, SamplingSettings
from curate.options import option
from curate.score import ScoreItem, ScoreResult
from curate.score.kind import ModelOptions, ScorerKind, model_label, resolve_scoring_model

TEMPLATE_VERSION = "1"
ASPECTS = {
    "helpfulness": "does the answer address the request usefully and completely?",
    "honesty": "is the answer truthful about what it knows, without making things up?",
    "instruction_following": "does the answer follow every instruction in the request?",
    "truthfulness": "are the facts and reasoning in the answer correct?",
}
POINTWISE_TEMPLATE = """You are grading an AI assistant's answer to a user's request.
Aspect: {aspect} ({question})

[User request]
{request}

[Assistant answer]
{response}

Rate the answer's {aspect} from 1 (worst) to 10 (best). End your reply with a line "Rating: N"."""
PAIRWISE_TEMPLATE = """Two AI assistants answered the same user request. Which answer is better?

[User request]
{request}

[Answer A]
{answer_a}

[Answer B]
{answer_b}

Reply with [[A]] if answer A is better, [[B]] if answer B is better, or [[tie]] if neither is."""

RATING = re.compile(r"rating\s*[:=]\s*\**\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
BRACKETED = re.compile(r"\[\[\s*(A|B|tie)\s*\]\]", re.IGNORECASE)
BARE = re.compile(r"^\s*\[?\s*(A|B|tie)\s*\]?\s*\.?\s*$", re.IGNORECASE)


def parse_rating(text: str) -> float | None:
    """The rating if the text gives exactly one value in 1..10, else None."""
    values = {float(v) for v in RATING.findall(text)}
    if len(values) != 1:
        return None
    value = values.pop()
    return value if 1 <= value <= 10 else None


def parse_verdict(text: str) -> str | None:
    """'A', 'B' or 'tie' from "[[A]]"-style markers (all agreeing) or a bare one-word reply."""
    marked = {m.upper() if m.lower() != "tie" else "tie" for m in BRACKETED.findall(text)}
    if len(marked) == 1:
        return marked.pop()
    if marked:
        return None
    bare = BARE.match(text)
    if bare:
        word = bare.group(1)
        return "tie" if word.lower() == "tie" else word.upper()
    return None


def render_request(messages: list[dict]) -> str:
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages if m["role"] != "system") or ""


@dataclass
class JudgeSettings:
    max_tokens: int = 256
    temperature: float = 0.0  # first ask greedily; retries sample
    retry_temperature: float = 0.7
    max_retries: int = 2
    seed: int = 0
    # Start the judge's reply with this text (e.g. "Rating:") so a small model answers the
    # question instead of continuing the conversation; parsing sees prefix + reply.
    reply_prefix: str = ""


def ask_until_parsed(backend, prompts: list[str], parse, settings: JudgeSettings) -> list[tuple[object, list[str]]]:
    """Ask each prompt, re-asking the unparsed ones; returns (parsed value or None, raw replies)."""
    results: list[tuple[object, list[str]]] = [(None, []) for _ in prompts]
    pending = list(range(len(prompts)))
    for attempt in range(settings.max_retries + 1):
        if not pending:
            break
        temperature = settings.temperature if attempt == 0 else settings.retry_temperature
        sampling = SamplingSettings(n=1, temperature=temperature, top_p=1.0, max_tokens=settings.max_tokens,
                                    seed=settings.seed + attempt)
        requests = [Request(f"judge-{i}-{attempt}", "", [{"role": "user", "content": prompts[i]}], 0,
                            settings.seed + 1000 * attempt + i, sampling, settings.reply_prefix)
                    for i in pending]
        generations = backend.generate(requests)
        still = []
        for index, generation in zip(pending, generations, strict=True):
            reply = None if generation.text is None else settings.reply_prefix + generation.text
            raw = reply if reply is not None else f"<error: {generation.error}>"
            value = parse(reply) if reply is not None else None
            results[index] = (value, results[index][1] + [raw])
            if value is None:
                still.append(index)
        pending = still
    return results


class PointwiseJudge:
    """Scorer: mean 1-10 rating over the configured aspects; 'unparsed' if any aspect stays unparsed."""

    tasks = None

    def __init__(self, backend, label: str = "judge", aspects: list[str] | None = None,
                 settings: JudgeSettings | None = None, tasks: frozenset[str] | None = None):
        self.backend = backend
        self.aspects = aspects or ["helpfulness"]
        unknown = [a for a in self.aspects if a not in ASPECTS]
        if unknown:
            raise ValueError(f"unknown judge aspect(s) {unknown}; known: {sorted(ASPECTS)}")
        self.settings = settings or JudgeSettings()
        self.tasks = tasks
        self.name = f"judge:{label}"
        prefix = f":prefix={self.settings.reply_prefix!r}" if self.settings.reply_prefix else ""
        self.version = f"t{TEMPLATE_VERSION}:{'+'.join(self.aspects)}{prefix}:{backend.fingerprint}"

    def score(self, items: list[ScoreItem]) -> list[ScoreResult]:
        prompts = [POINTWISE_TEMPLATE.format(aspect=aspect, question=ASPECTS[aspect],
                                             request=render_request(item.messages), response=item.text)
                   for item in items for aspect in self.aspects]
        answers = ask_until_parsed(self.backend, prompts, parse_rating, self.settings)
        results = []
        per_item = len(self.aspects)
        for position in range(len(items)):
            chunk = answers[position * per_item:(position + 1) * per_item]
            ratings = {aspect: value for aspect, (value, _) in zip(self.aspects, chunk)}
            detail = {"ratings": ratings, "attempts": {a: len(raw) for a, (_, raw) in zip(self.aspects, chunk)}}
            if any(value is None for value in ratings.values()):
                detail["raw"] = {a: raw[-1][:2000] for a, (value, raw) in zip(self.aspects, chunk) if value is None}
                results.append(ScoreResult(None, "unparsed", detail))
            else:
                results.append(ScoreResult(sum(ratings.values()) / per_item, "ok", detail))
        return results


@dataclass
class PairVerdict:
    winner: str  # "a", "b", "tie" or "unparsed"
    first_order: str | None  # verdict with a shown as A
    second_order: str | None  # verdict with b shown as A, mapped back to a/b
    raw: list[list[str]] = field(default_factory=list)


class PairwiseJudge:
    """Compares two responses to one prompt, asking with each shown first."""

    def __init__(self, backend, settings: JudgeSettings | None = None, label: str | None = None):
        self.backend = backend
        self.settings = settings or JudgeSettings(max_tokens=64)
        self.label = label or getattr(backend, "model_label", "judge")

    def compare(self, pairs: list[tuple[list[dict], str, str]]) -> list[PairVerdict]:
        """pairs: (prompt messages, response a, response b) -> one verdict per pair."""
        prompts = []
        for messages, a, b in pairs:
            request = render_request(messages)
            prompts.append(PAIRWISE_TEMPLATE.format(request=request, answer_a=a, answer_b=b))
            prompts.append(PAIRWISE_TEMPLATE.format(request=request, answer_a=b, answer_b=a))
        answers = ask_until_parsed(self.backend, prompts, parse_verdict, self.settings)
        verdicts = []
        for index in range(len(pairs)):
            (first, raw_first), (second, raw_second) = answers[2 * index], answers[2 * index + 1]
            first_order = {"A": "a", "B": "b", "tie": "tie"}.get(first) if first else None
            second_order = {"A": "b", "B": "a", "tie": "tie"}.get(second) if second else None
            if first_order is None or second_order is None:
                winner = "unparsed"
            elif first_order == second_order:
                winner = first_order
            else:
                winner = "tie"  # the verdict followed the position, not the content
            verdicts.append(PairVerdict(winner, first_order, second_order, [raw_first, raw_second]))
        return verdicts


def _build_pointwise(spec, models) -> PointwiseJudge:
    backend = models.scoring_backend(spec)
    settings = JudgeSettings(max_tokens=spec.max_tokens, max_retries=spec.max_retries, reply_prefix=spec.reply_prefix)
    return PointwiseJudge(backend, model_label(spec, backend), spec.aspects, settings,
                          frozenset(spec.tasks) if spec.tasks else None)


def _resolve(spec, base_dir, generators) -> None:
    unknown = [a for a in spec.aspects if a not in ASPECTS]
    if unknown:
        raise ValueError(f"unknown judge aspect(s) {unknown} (known: {sorted(ASPECTS)})")
    resolve_scoring_model(spec, base_dir, generators)


@dataclass
class JudgeOptions(ModelOptions):
    aspects: list[str] = option(default_factory=lambda: ["helpfulness"], help="what the judge rates: "
                                + ", ".join(sorted(ASPECTS)))
    tasks: list[str] | None = option(None, help="the tasks it judges (default: all)")
    max_tokens: int = option(256, help="tokens of the judge's reply")
    max_retries: int = option(2, help="asks again when a reply has no verdict")
    reply_prefix: str = option("", help="the start of the judge's reply, e.g. \"Rating:\" to bring a small "
                                        "judge straight to its verdict")


KIND = ScorerKind("judge", _build_pointwise, JudgeOptions, needs_model=True, resolve=_resolve)
