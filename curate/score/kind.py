"""What a [[scorers]] kind declares; curate/score/registry.py holds the kinds a run can name.

A kind is one module's `KIND = ScorerKind(...)`: how the scorer is built, which [[scorers]] keys
it reads (any other key set in the config is an error: it would have no effect), whether it runs a
model, and whether it is a correctness verifier (the views, the card, gt pairs, the pairing rule and
the audit ask the registry which kinds verify which task; they keep no lists of their own).
See docs/architecture.md, "Adding a scorer".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from curate.score import Scorer

MODEL_FIELDS = frozenset({"model", "name", "dtype", "max_model_len", "kv_cache_memory_bytes"})


class Models(Protocol):
    """What a kind's `build` may ask of the run (curate.runtime.engines.Engines is the one implementation)."""

    def scoring_backend(self, spec) -> Any: ...

    def model_path(self, model: str) -> Path: ...


@dataclass(frozen=True)
class ScorerKind:
    name: str
    # (its [[scorers]] entry, or None for a kind with no config, and the run's Models) -> a Scorer.
    # A kind with needs_model = False is built with models = None inside shard tasks.
    build: Callable[[Any, Models | None], Scorer]
    fields: frozenset[str] = frozenset()  # the [[scorers]] keys it reads besides `kind`
    verifies: str | None = None  # the task whose answers it checks against the prompt's ground truth
    needs_model: bool = False  # built once in the run's process; otherwise shards build it where they run
    # (entry, folder of the config file, the run's generators) -> None: checks the entry and resolves
    # its model to a path; raises ValueError with the reason
    resolve: Callable[[Any, Path, list], None] | None = None
    configurable: bool = True  # False: always runs, named by no [[scorers]] entry (the quality gates)


def resolve_scoring_model(spec, base_dir: Path, generators: list) -> None:
    """A judge's or log-prob scorer's `model`: "generator" (the default: the first generator's
    engine), a generator's name, "embedded", or a directory relative to the config file."""
    spec.model = spec.model or "generator"
    if spec.model == "generator" and not generators:
        raise ValueError(f"a {spec.kind} scorer with model = \"generator\" needs a generator "
                         "(this run has none): name a model")
    named = {"generator", "embedded"} | {g.name for g in generators if g.name}
    if spec.model not in named and not Path(spec.model).is_absolute():
        spec.model = str((base_dir / spec.model).resolve())


def model_label(spec, backend) -> str:
    """The label in a model scorer's name: the entry's `name`, else the model's own."""
    return spec.name or backend.model_label.split("@")[0]
