"""What the steps share: the run's context (config, lake, models, shard runner) and its state."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from curate.config import RunConfig
from curate.dedup import DedupConfig, load_benchmark_texts
from curate.engines import Engines
from curate.lake import Lake
from curate.shards import Shards


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
    shards: Shards  # where shard work runs (curate.shards)
    dedup: DedupConfig
    _benchmarks: list | None = None

    def benchmark_texts(self) -> list:
        if self._benchmarks is None:
            self._benchmarks = load_benchmark_texts(self.dedup.benchmarks)
        return self._benchmarks

    def run_prompts_and_candidates(self, state: RunState):
        return (self.lake.rows_where_in("prompts", "prompt_id", state.prompt_ids),
                self.lake.rows_where_in("candidates", "candidate_id", state.candidate_ids))
