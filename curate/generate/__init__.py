"""Generate: candidate responses for prompts, only for the (prompt, sample) pairs not yet stored.

`plan_requests` decides what is missing; `generate_candidates` runs a backend over those
requests and yields candidates tables as requests finish, so the caller can commit each one as
it lands and a killed run loses only what was not yet committed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Protocol

import polars as pl
import pyarrow as pa

from curate import ids
from curate.lake import schemas


@dataclass(frozen=True)
class SamplingSettings:
    n: int = 4
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 512
    seed: int = 0

    def identity(self) -> dict:
        """The settings that change what is generated (n does not: sample i is sample i)."""
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens}


@dataclass(frozen=True)
class Request:
    candidate_id: str
    prompt_id: str
    messages: list[dict]
    sample_index: int
    seed: int
    sampling: SamplingSettings
    assistant_prefix: str = ""  # text the reply is forced to start with (not part of the returned text)


@dataclass
class Generation:
    text: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str
    cumulative_logprob: float | None = None
    error: str | None = None


class Backend(Protocol):
    """A generation backend (curate.runtime.engines builds them): a local vLLM engine or an OpenAI-compatible
    server. `fingerprint` is the model's identity (part of every candidate id), `model_label` the
    name rows carry. vLLM's backend also streams (`generate_stream`) and gives log-probs
    (`response_logprobs`, for the log-prob scorer)."""

    fingerprint: str
    model_label: str

    def generate(self, requests: list[Request]) -> list[Generation]: ...


def _with_derived_overrides(sampling: SamplingSettings, task_fields_json: str | None
                            ) -> tuple[SamplingSettings, str]:
    """A derived prompt (curate.pairs.derive) says how it wants to be generated: n, max_tokens,
    temperature and an assistant prefix override the run's sampling settings."""
    derived = json.loads(task_fields_json).get("derived") if task_fields_json else None
    if derived is None:
        return sampling, ""
    wanted = derived.get("generation", {})
    overrides = {k: wanted[k] for k in ("n", "max_tokens", "temperature", "top_p") if k in wanted}
    return replace(sampling, **overrides), wanted.get("assistant_prefix", "")


def plan_requests(
    prompts: pl.DataFrame,
    model_fingerprint: str,
    sampling_for_task: Callable[[str], SamplingSettings],
    existing: Callable[[list[str]], set[str]] = lambda ids_: set(),
) -> list[Request]:
    """Every (prompt, sample) request whose candidate is not stored yet, ordered by id.

    The order is by (prompt, sample) so that a prompt's samples share a batch (and its prefix
    cache), and so that a resumed run forms the same chunks as the run it resumes: batch
    composition can change low-order bits of the logits, and so the sampled text.
    """
    requests = []
    columns = ["prompt_id", "task", "messages"]
    if "task_fields_json" in prompts.columns:
        columns.append("task_fields_json")
    for row in prompts.select(columns).iter_rows(named=True):
        sampling, prefix = _with_derived_overrides(sampling_for_task(row["task"]), row.get("task_fields_json"))
        for index in range(sampling.n):
            seed = ids.sample_seed(row["prompt_id"], index, sampling.seed)
            candidate = ids.candidate_id(row["prompt_id"], model_fingerprint, sampling.identity(), index, seed)
            requests.append(Request(candidate, row["prompt_id"], row["messages"], index, seed, sampling, prefix))
    done = existing([r.candidate_id for r in requests])
    return sorted((r for r in requests if r.candidate_id not in done),
                  key=lambda r: (r.prompt_id, r.sample_index))


def candidate_rows(requests: list[Request], generations: list[Generation], model_label: str,
                   run_id: str) -> pa.Table:
    now = datetime.now(timezone.utc)
    rows = [
        {
            "candidate_id": r.candidate_id, "prompt_id": r.prompt_id, "model": model_label,
            "sampling_json": json.dumps(r.sampling.identity(), sort_keys=True),
            "sample_index": r.sample_index, "seed": r.seed, "text": g.text,
            "prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens,
            "finish_reason": g.finish_reason, "cumulative_logprob": g.cumulative_logprob,
            "error": g.error, "run_id": run_id, "created_at": now,
        }
        for r, g in zip(requests, generations, strict=True)
    ]
    return schemas.conform("candidates", rows)


def generate_candidates(requests: list[Request], backend, run_id: str,
                        chunk_size: int = 512) -> Iterator[pa.Table]:
    """Candidates tables of at most `chunk_size` rows, each yielded as soon as it is complete,
    so the caller commits it while the backend goes on: a killed run loses at most what was
    not yet committed.

    A backend with `generate_stream` (vLLM) keeps its engine fed across chunks: a chunk holds
    the requests that finished first, so a resumed run may sample different text for requests
    that were still running (their ids are the same). Other backends answer chunk by chunk.
    """
    if not requests:
        return  # nothing to generate: the engine is not even loaded
    stream = getattr(backend, "generate_stream", None)
    if stream is None:
        for start in range(0, len(requests), chunk_size):
            chunk = requests[start:start + chunk_size]
            yield candidate_rows(chunk, backend.generate(chunk), backend.model_label, run_id)
        return
    finished: list[tuple[Request, Generation]] = []
    for pair in stream(requests):
        finished.append(pair)
        if len(finished) == chunk_size:
            yield _rows_of(finished, backend.model_label, run_id)
            finished = []
    if finished:
        yield _rows_of(finished, backend.model_label, run_id)


def _rows_of(finished: list[tuple[Request, Generation]], model_label: str, run_id: str) -> pa.Table:
    finished.sort(key=lambda pair: (pair[0].prompt_id, pair[0].sample_index))
    return candidate_rows([r for r, _ in finished], [g for _, g in finished], model_label, run_id)
