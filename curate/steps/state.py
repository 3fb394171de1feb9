"""What the steps share: the run's context (config, lake, models, shard runner) and its state."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from curate.config import RunConfig
from curate.dedup import DedupConfig, load_benchmark_texts
from curate.lake.catalog import Lake
from curate.runtime.engines import Engines
from curate.runtime.shards import Shards


@dataclass
class RunState:
    """What one run has done so far; becomes the summary table and the runs row."""

    run_id: str
    prompt_ids: list[str] = field(default_factory=list)
    candidate_ids: list[str] = field(default_factory=list)
    no_generation: set[str] = field(default_factory=set)  # prompts only of inputs with generate = false
    derived_to_generate: list[str] = field(default_factory=list)  # new derived prompts of the last derive round
    counts: dict[str, int] = field(default_factory=dict)
    pairs_by_strategy: dict[str, int] = field(default_factory=dict)
    refused_by_strategy: dict[str, dict[str, int]] = field(default_factory=dict)  # the pairing rule's refusals
    timings: dict[str, float] = field(default_factory=dict)
    export_path: str | None = None
    audit: dict[str, dict] = field(default_factory=dict)  # per strategy: pairs, confirmed, refuted, ...

    def add(self, key: str, value: int) -> None:
        self.counts[key] = self.counts.get(key, 0) + value

    def took(self, step: str, seconds: float) -> None:
        self.timings[step] = self.timings.get(step, 0.0) + seconds


@dataclass
class RunContext:
    config: RunConfig
    data_dir: Path
    lake: Lake
    engines: Engines
    shards: Shards  # where shard work runs (curate.runtime.shards)
    dedup: DedupConfig
    _benchmarks: list | None = None

    def benchmark_texts(self) -> list:
        if self._benchmarks is None:
            self._benchmarks = load_benchmark_texts(self.dedup.benchmarks)
        return self._benchmarks

    def run_prompts_and_candidates(self, state: RunState) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The whole run's prompts and candidates (derive needs them all: a strategy's derived
        prompts point at their parents)."""
        return (self.lake.rows_where_in("prompts", "prompt_id", state.prompt_ids),
                self.lake.rows_where_in("candidates", "candidate_id", state.candidate_ids))

    def prompt_batches(self, state: RunState, with_scores: bool = False) -> Iterator[tuple[pl.DataFrame, ...]]:
        """The run's prompts and their candidates of this run (and with_scores: those candidates'
        scores), `[runner] batch_prompts` prompts at a time (a prompt's candidates stay together):
        what a step holds at once follows the batch size, not the run's. The run's rows are read
        from the lake once, into local files ordered by batch (Lake.grouped_copy). Scores are
        copied as they are when the iteration starts."""
        ours = pl.Series(state.candidate_ids, dtype=pl.Utf8).sort()
        size = self.config.runner.batch_prompts
        ids, batches = state.prompt_ids, [k // size for k in range(len(state.prompt_ids))]
        with contextlib.ExitStack() as stack:
            copies = [stack.enter_context(self.lake.grouped_copy(table, "prompt_id", ids, batches))
                      for table in ("prompts", "candidates", "scores")[:3 if with_scores else 2]]
            for batch in range(-(-len(ids) // size)):
                prompts, candidates, *scores = (rows(batch) for rows in copies)
                yield (prompts, candidates.filter(_among(candidates["candidate_id"], ours)),
                       *(part.filter(_among(part["candidate_id"], ours)) for part in scores))

    def batch_count(self, state: RunState) -> int:
        return -(-len(state.prompt_ids) // self.config.runner.batch_prompts)


def _among(values: pl.Series, ours: pl.Series) -> pl.Series:
    """Which of `values` are in `ours` (sorted): a binary search per value. (`is_in` would hash
    the run's million ids again for every batch.)"""
    if ours.is_empty():
        return pl.Series([False] * len(values), dtype=pl.Boolean)
    found = ours.gather(ours.search_sorted(values).clip(0, len(ours) - 1))
    return (found == values).fill_null(False)
