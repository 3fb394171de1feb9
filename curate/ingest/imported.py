"""Completions an input row already holds: imported as candidates, their ratings as scores.

Shapes a row may have, besides its prompt (`messages` or `prompt`, validated as any prompt):

- a completion list: `completions` or `responses`, each a string or an object with its text
  (`text`, `response`, `content`, `completion` or `output`), an optional `model` and ratings;
  row-level lists as long as the completion list go with it item by item (`models` names the
  models; a list of numbers such as RLHFlow's `rewards` is a rating per completion);
- a binarized pair: `chosen` / `rejected` as strings or message lists (the list's last message is
  the reply, the messages before it the prompt), with optional `score_chosen` / `score_rejected`
  (any `<name>_chosen`, `chosen_<name>` or `chosen-<name>`: a number is rating `<name>`, a string
  named `model` the side's model). The pair's own verdict is rating `preference`: 1 chosen, 0 rejected,
  unless the row's own numbers rank the rejected higher (a reject says so) or both sides are the
  same text (the chosen is imported alone; the rejected is a reject);
- an HH-RLHF transcript: `chosen` / `rejected` as "\\n\\nHuman: ... \\n\\nAssistant: ..." strings,
  split into the shared conversation (the prompt) and each final reply.

Ratings: a number in a completion object, a numeric string or {"Rating": ...} object under
`annotations`, `ratings` or `scores` (UltraFeedback's per-aspect ratings), or a field whose value is
such an object. Each becomes a score row of scorer `imported:<name>` (version: the input's source),
usable by every strategy; a rating that is not a number ("N/A") is stored with status `unparsed`.
An imported scorer is never a task's verifier (curate.pairs.rule names those by their own names).

A malformed completion (no text, empty text, a non-string model, a bad character) is a reject
with its reason and location ("line 3 completions[1]"); the rest of the row goes on. Imported
candidates have content ids (prompt, model, text): importing the same file again adds nothing.
Their `sampling_json` records the lineage: {"origin": "imported", "source", "input", "location", "field"}.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from curate import bulk_ids, ids
from curate.ingest.readers import RowError, value_problem

INGEST_BATCH_ROWS = 10_000  # input rows validated and committed together (memory is bounded by a batch)
ORIGIN = "imported"
UNNAMED_MODEL = "imported"  # the model of a completion whose row names none
SCORER_PREFIX = "imported:"
LIST_KEYS = ("completions", "responses", "answers")  # answers: Nectar's
TEXT_KEYS = ("text", "response", "content", "completion", "output", "answer")
# Ratings where a lower number is the better answer unless [[inputs]] lower_is_better says otherwise:
# Nectar's `rank` (1 = best of 7). Stored negated, so that a higher score is better for every strategy.
DEFAULT_LOWER_IS_BETTER = ("rank",)
RATING_GROUPS = ("annotations", "ratings", "scores")
RATING_VALUE_KEYS = ("Rating", "rating", "score", "value")
NOT_RATINGS = frozenset({"id", "idx", "index", "seed", "sample_index", "role", "prompt_id", "completion_id"})
PREFERENCE = "preference"
# Names a column mapping may give ([[inputs]] columns = {prompt = "instruction"}): the fields ingest
# reads; `text` and `model` apply inside completion objects.
MAPPABLE = frozenset({"prompt", "messages", "task", "completions", "responses", "answers", "chosen", "rejected",
                      "score_chosen", "score_rejected", "models", "text", "model", "reference_answer",
                      "reference_solution", "constraints", "base_prompt", "tests", "entry_point", "context",
                      "question", "before", "after", "message"})
_HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):[ \t]?")
_SIDE_FIELD = re.compile(r"^(?:(chosen|rejected)[_-](.+)|(.+)_(chosen|rejected))$")
_SORTED_JSON = json.JSONEncoder(sort_keys=True).encode  # one encoder, not one per call


@dataclass
class Completion:
    field: str  # where in the row: "completions[2]", "chosen"
    text: str
    model: str
    sample_index: int  # the n-th completion of this model in the row (teacher/student pairing by index)
    ratings: dict[str, float | str] = field(default_factory=dict)  # name -> number, or the raw non-number


@dataclass
class RowParts:
    prompt_row: dict  # what ingest validates as the prompt
    completions: list[Completion] = field(default_factory=list)
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (field, raw, reason)


def check_columns(columns) -> dict[str, str]:
    """A [[inputs]] column mapping: {our name: the input's column}; ValueError when malformed."""
    if columns is None:
        return {}
    if not isinstance(columns, dict) or not all(isinstance(v, str) and v for v in columns.values()):
        raise ValueError("columns must map field names to column names (strings)")
    unknown = sorted(set(columns) - MAPPABLE)
    if unknown:
        raise ValueError(f"columns: unknown field(s) {unknown} (known: {sorted(MAPPABLE)})")
    return dict(columns)


def apply_columns(row: dict, columns: dict[str, str]) -> dict:
    """The row with the mapped columns renamed to our field names (`text`/`model` inside
    completion objects)."""
    if not columns:
        return row
    row = dict(row)
    inner = {ours: theirs for ours, theirs in columns.items() if ours in ("text", "model")}
    for ours, theirs in columns.items():
        if ours not in inner and theirs in row:
            row[ours] = row.pop(theirs)
    if inner:
        for key in LIST_KEYS:
            if isinstance(row.get(key), list):
                row[key] = [_renamed(item, inner) for item in row[key]]
    return row


def _renamed(item, mapping: dict[str, str]):
    if not isinstance(item, dict):
        return item
    item = dict(item)
    for ours, theirs in mapping.items():
        if theirs in item:
            item[ours] = item.pop(theirs)
    return item


# the three shapes ------------------------------------------------------------------------------

def split_row(row: dict) -> RowParts:
    """The prompt part of a row and the completions it holds. Raises RowError only when no prompt
    can be made of the row at all (e.g. an HH-RLHF row whose transcripts both fail to parse)."""
    if any(key in row for key in LIST_KEYS):
        parts = _completion_list(row)
    elif "chosen" in row or "rejected" in row:
        parts = _binarized(row)
    else:
        parts = RowParts(row)
    parts.prompt_row = _prompt_turns(parts.prompt_row)
    return parts


def _prompt_turns(prompt_row: dict) -> dict:
    """A `prompt` string in Human/Assistant transcript form ("\\n\\nHuman: ...\\n\\nAssistant:", Nectar's
    and HH-RLHF's) as `messages`: one message per turn, the empty Assistant turn it ends with left out."""
    prompt = prompt_row.get("prompt")
    if "messages" in prompt_row or not isinstance(prompt, str) or not _is_transcript(prompt):
        return prompt_row
    turns = _turns(prompt)
    if turns and turns[-1]["role"] == "assistant" and not turns[-1]["content"]:
        turns.pop()
    if not turns or turns[-1]["role"] != "user" or not all(turn["content"] for turn in turns):
        raise RowError("prompt: a Human/Assistant transcript must end with a Human turn "
                       "(or an empty Assistant turn), and no turn may be empty")
    return {**{k: v for k, v in prompt_row.items() if k != "prompt"}, "messages": turns}


def _completion_list(row: dict) -> RowParts:
    key = next(k for k in LIST_KEYS if k in row)
    items = row[key]
    prompt_row = {k: v for k, v in row.items() if k not in LIST_KEYS}
    parts = RowParts(prompt_row)
    if not isinstance(items, list):
        parts.problems.append((key, _raw(items), f"{key} must be a list of completions"))
        return parts
    parallel = {name: value for name, value in row.items()
                if name not in LIST_KEYS and isinstance(value, list) and value and len(value) == len(items)
                and (name == "models" or all(_is_number(v) or v is None for v in value))}
    for name in parallel:
        prompt_row.pop(name)
    seen_per_model: dict[str, int] = {}
    for index, item in enumerate(items):
        where = f"{key}[{index}]"
        extra = {name: values[index] for name, values in parallel.items()}
        try:
            completion = _completion(item, where, extra)
        except RowError as exc:
            parts.problems.append((where, _raw(item), str(exc)))
            continue
        completion.sample_index = seen_per_model.get(completion.model, 0)
        seen_per_model[completion.model] = completion.sample_index + 1
        parts.completions.append(completion)
    return parts


def _completion(item, where: str, extra: dict) -> Completion:
    if problem := value_problem({where: item, **extra}):  # the message names the path: completions[3].text
        raise RowError(problem)
    model = extra.pop("models", None)
    if isinstance(item, str):
        return Completion(where, _text(item, where), _model(model, where), 0, _ratings(extra, where))
    if not isinstance(item, dict):
        raise RowError(f"{where} must be a string or an object with the completion's text")
    key = next((k for k in TEXT_KEYS if k in item), None)
    if key is None:
        raise RowError(f"{where} has no text (expected one of {', '.join(TEXT_KEYS)})")
    rest = {k: v for k, v in item.items() if k != key}
    model = rest.pop("model", model)
    return Completion(where, _text(item[key], f"{where}.{key}"), _model(model, f"{where}.model"), 0,
                      _ratings({**rest, **extra}, where))


def _binarized(row: dict) -> RowParts:
    sides = {side: row[side] for side in ("chosen", "rejected") if side in row}
    side_fields: dict[str, dict] = {"chosen": {}, "rejected": {}}
    prompt_row = {}
    for name, value in row.items():
        if name in sides:
            continue
        if found := _SIDE_FIELD.match(name):
            side, field_name = (found.group(1), found.group(2)) if found.group(1) else (found.group(4), found.group(3))
            side_fields[side][field_name] = value
        else:
            prompt_row[name] = value
    parts = RowParts(prompt_row)
    replies, conversation = {}, None
    for side, value in sides.items():
        try:
            turns, reply = _reply_of(value, side)
        except RowError as exc:
            parts.problems.append((side, _raw(value), str(exc)))
            continue
        if turns:
            if conversation is None:
                conversation = turns
            elif ids.normalise_messages(turns) != ids.normalise_messages(conversation):
                parts.problems.append((side, _raw(value), f"{side}: its conversation before the final reply "
                                                          "differs from the chosen's"))
                continue
        replies[side] = reply
    if conversation is not None:  # the transcripts' shared conversation is the prompt
        prompt_row.pop("prompt", None)
        prompt_row["messages"] = conversation
    elif "messages" not in prompt_row and "prompt" not in prompt_row and parts.problems:
        raise RowError(parts.problems[0][2])
    if len(replies) == 2 and ids.same_text(replies["chosen"], replies["rejected"]):
        parts.problems.append(("rejected", _raw(sides["rejected"]),
                               "rejected: the same text as the chosen (Unicode NFC, outer whitespace aside): "
                               "no preference to import; the chosen is imported alone"))
        del replies["rejected"]
    for side, text in replies.items():
        extra = dict(side_fields[side])
        model = extra.pop("model", None)
        where = side
        try:
            if problem := value_problem({f"{side}_{name}": value for name, value in extra.items()}):
                raise RowError(problem)
            ratings = _ratings(extra, side)
            if len(sides) == 2 and len(replies) == 2:
                ratings.setdefault(PREFERENCE, 1.0 if side == "chosen" else 0.0)
            model = _model(model, f"{side}_model")
            index = sum(c.model == model for c in parts.completions)
            parts.completions.append(Completion(where, text, model, index, ratings))
        except RowError as exc:
            parts.problems.append((where, _raw(text), str(exc)))
    _check_label_against_scores(parts)
    return parts


def _check_label_against_scores(parts: RowParts) -> None:
    """A binarized row whose own numbers rank its rejected above its chosen (score_chosen 3,
    score_rejected 7): the label and the scores disagree, so neither is trusted as the pair's
    preference. The scores are imported; the `preference` rating is not, and the row is a reject
    with both numbers (pairs on the scores still follow the scores)."""
    sides = {c.field: c for c in parts.completions if c.field in ("chosen", "rejected")}
    if len(sides) != 2:
        return
    chosen, rejected = sides["chosen"].ratings, sides["rejected"].ratings
    against = [name for name in chosen if name != PREFERENCE and isinstance(chosen[name], float)
               and isinstance(rejected.get(name), float) and chosen[name] < rejected[name]]
    if against:
        name = against[0]
        for completion in sides.values():
            completion.ratings.pop(PREFERENCE, None)
        parts.problems.append(("preference", json.dumps({f"{name}_chosen": chosen[name], f"{name}_rejected": rejected[name]}),
                               f"the label contradicts the row's {name}: {name}_chosen {chosen[name]:g} < "
                               f"{name}_rejected {rejected[name]:g}; rating `preference` not imported"))


def _reply_of(value, side: str) -> tuple[list[dict] | None, str]:
    """(the conversation before the reply, or None when the value is the reply alone; the reply)."""
    if problem := value_problem({side: value}):
        raise RowError(problem)
    if isinstance(value, list):
        if not value or not all(isinstance(m, dict) for m in value):
            raise RowError(f"{side} must be a non-empty list of messages")
        last = value[-1]
        if last.get("role") != "assistant":
            raise RowError(f"{side}: the last message must be the assistant's reply")
        turns = [{"role": m.get("role"), "content": m.get("content")} for m in value[:-1]]
        return turns or None, _text(last.get("content"), f"{side}[{len(value) - 1}].content")
    if isinstance(value, str) and _is_transcript(value):
        return _transcript(value, side)
    return None, _text(value, side)


def _is_transcript(text: str) -> bool:
    return text.lstrip().startswith("Human:") and "\n\nAssistant:" in text


def _turns(text: str) -> list[dict]:
    """The messages of a Human/Assistant transcript; two turns in a row by one speaker are one message."""
    body = text.lstrip()
    marks = list(_HH_TURN.finditer(body))
    turns = []
    for mark, following in zip(marks, [*marks[1:], None]):
        content = body[mark.end(): following.start() if following else len(body)].strip()
        role = "user" if mark.group(1) == "Human" else "assistant"
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + content
        else:
            turns.append({"role": role, "content": content})
    return turns


def _transcript(text: str, side: str) -> tuple[list[dict], str]:
    """An HH-RLHF transcript as (the conversation, the final assistant reply)."""
    turns = _turns(text)
    if not turns or turns[-1]["role"] != "assistant":
        raise RowError(f"{side}: the transcript does not end with an Assistant turn")
    return turns[:-1], _text(turns[-1]["content"], f"{side} (final Assistant turn)")


# values ----------------------------------------------------------------------------------------

def _text(value, where: str) -> str:
    if not isinstance(value, str):
        raise RowError(f"{where} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise RowError(f"{where} is empty")
    return value


def _model(value, where: str) -> str:
    if value is None or value == "":
        return UNNAMED_MODEL
    if not isinstance(value, str):
        raise RowError(f"{where} must be a string")
    return value.strip() or UNNAMED_MODEL


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _rating_value(value):
    """A number, the raw text of a rating that is no number, or None when the value is no rating."""
    if _is_number(value):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value.strip()
        return number if number == number and abs(number) != float("inf") else value.strip()
    if isinstance(value, dict):
        key = next((k for k in RATING_VALUE_KEYS if k in value), None)
        return _rating_value(value[key]) if key is not None else None
    return None


def _ratings(values: dict, where: str) -> dict[str, float | str]:
    ratings: dict[str, float | str] = {}
    for name, value in values.items():
        if name in NOT_RATINGS or value is None:
            continue
        if name in RATING_GROUPS and isinstance(value, dict):
            for aspect, inner in value.items():
                if (rating := _rating_value(inner)) is not None:
                    ratings.setdefault(str(aspect), rating)
        elif _is_number(value):
            ratings.setdefault(name, float(value))
        elif isinstance(value, dict) and (rating := _rating_value(value)) is not None:
            ratings.setdefault(name, rating)
    return ratings


def _raw(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


# rows ------------------------------------------------------------------------------------------

def candidate_id(prompt_id: str, model: str, text: str) -> str:
    return ids.content_hash("imported_candidate", prompt_id, model, text)


def candidate_ids(prompt_id: pl.Series, model: pl.Series, text: pl.Series) -> pl.Series:
    """`candidate_id` per row, over whole columns."""
    return bulk_ids.content_hashes("imported_candidate", prompt_id, model, text).alias("candidate_id")


def candidate_row(completion: Completion, prompt_id: str, lineage: dict, run_id: str, now) -> dict:
    """The candidates row of a completion; its candidate_id is left to `candidate_ids` (in bulk)."""
    return {
        "candidate_id": None,
        "prompt_id": prompt_id, "model": completion.model,
        "sampling_json": _SORTED_JSON({"origin": ORIGIN, **lineage, "field": completion.field}),
        "sample_index": completion.sample_index, "seed": 0, "text": completion.text,
        "prompt_tokens": None, "completion_tokens": None, "finish_reason": None,
        "cumulative_logprob": None, "error": None, "run_id": run_id, "created_at": now,
    }


def check_lower_is_better(names) -> tuple[str, ...]:
    """[[inputs]] lower_is_better: the ratings where a lower number is better (default: Nectar's rank)."""
    if names is None:
        return DEFAULT_LOWER_IS_BETTER
    if not isinstance(names, list) or not all(isinstance(name, str) and name for name in names):
        raise ValueError("lower_is_better must be a list of rating names, e.g. [\"rank\"] (or [] for none)")
    return tuple(names)


def score_rows(candidate: dict, completion: Completion, version: str, run_id: str, now,
               lower_is_better: tuple[str, ...] = DEFAULT_LOWER_IS_BETTER) -> list[dict]:
    """One score row per rating, with the candidate's ids as `candidate` has them (score_id: None,
    for bulk_ids.score_ids). A rating where lower is better is stored negated (rank 1 -> -1.0,
    rank 7 -> -7.0), its own value and direction in detail_json, so that every strategy's higher is
    better holds."""
    rows = []
    for name, value in completion.ratings.items():
        scorer = SCORER_PREFIX + name
        ok = isinstance(value, float)
        reversed_ = ok and name in lower_is_better
        detail = {"field": name, "completion": completion.field}
        if reversed_:
            detail.update(value=value, lower_is_better=True)
        elif not ok:
            detail.update(value=value[:200], reason="not a number")
        rows.append({
            "score_id": None,
            "candidate_id": candidate["candidate_id"], "prompt_id": candidate["prompt_id"],
            "scorer": scorer, "scorer_version": version,
            "score": (-value if reversed_ else value) if ok else None,
            "status": "ok" if ok else "unparsed",
            "detail_json": json.dumps(detail),
            "run_id": run_id, "created_at": now,
        })
    return rows


def imported_of(part, prompt_ids: list[str]):
    """(candidates, scores) of an ingested batch whose prompt is among `prompt_ids` (decontamination
    may have dropped some)."""
    kept = pa.array(prompt_ids, pa.string())
    return tuple(table.filter(pc.is_in(table.column("prompt_id"), value_set=kept))
                 for table in (part.candidates, part.scores))
