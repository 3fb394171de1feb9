"""What a [[scorers]] kind declares; curate/score/registry.py holds the kinds a run can name.

A kind is one module's `KIND = ScorerKind(...)`: how the scorer is built, its options (a dataclass
the kind's [[scorers]] entry is parsed into by curate.options: any other key is an error, as it
would have no effect), whether it runs a model, and whether it is a correctness verifier (the views,
the card, gt pairs, the pairing rule and the audit ask the registry which kinds verify which task;
they keep no lists of their own). See docs/architecture.md, "Add a scorer".

A kind that needs no model is built where a shard runs, from the kind and its parsed entry: both
travel to a worker process (the kind as its module and name, curate.declarations), so a kind added
at run time works there too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from curate.declarations import by_declaration
from curate.options import option
from curate.score import Scorer


@dataclass
class ScorerOptions:
    """A [[scorers]] entry of a kind that reads nothing but its `kind`; a kind with options of its own
    subclasses this (ModelOptions below, RewardOptions in reward.py, ...)."""
    kind: str = option(help="the scorer kind (curate/score/registry.py)")


@dataclass
class ModelOptions(ScorerOptions):
    """A scorer that runs a model (reward, judge, log-prob)."""
    model: str | None = option(None, help="\"generator\" (the default: the first generator's engine), a "
                                          "generator's name, \"embedded\" or a model directory")
    name: str | None = option(None, help="the name in the scorer's label (default: the model's)")
    max_model_len: int = option(4096, help="the engine's context length")
    kv_cache_memory_bytes: int = option(1 << 29, help="the engine's KV cache (CPU)")
    dtype: str = option("auto", help="bfloat16 where the hardware has it, else float32")
    placement: Literal["local", "ray"] = option(
        "local", help="local (this process's engine) or ray: `replicas` engines on the run's Ray cluster "
                      "(a model directory's; a generator's model is placed by its generator)")
    replicas: int = option(1, help="engines of this model on the cluster (placement = \"ray\")")
    cpus_per_replica: float = option(1, help="CPUs each replica asks of the cluster")
    gpus_per_replica: float | None = option(None, help="GPUs each replica asks of the cluster (default: 1 on a "
                                                       "cluster with GPUs, else 0)")


class Models(Protocol):
    """What a kind's `build` may ask of the run (curate.runtime.engines.Engines is the one implementation)."""

    def scoring_backend(self, spec) -> Any: ...

    def model_path(self, model: str) -> Path: ...

    def replica_pool(self, name: str, build: Callable, args: tuple, entry) -> Any: ...


@dataclass(frozen=True)
class ScorerKind:
    name: str
    # (its parsed [[scorers]] entry, the run's Models) -> a Scorer; a kind with needs_model = False is
    # built with models = None where its shard runs
    build: Callable[[Any, Models | None], Scorer]
    options: type = ScorerOptions  # its [[scorers]] entry's dataclass (ScorerOptions: only `kind`)
    verifies: str | None = None  # the task whose answers it checks against the prompt's ground truth
    needs_model: bool = False  # built once in the run's process; otherwise shards build it where they run
    # (entry, folder of the config file, the run's generators) -> None: checks the entry and resolves
    # its model to a path; raises ValueError with the reason
    resolve: Callable[[Any, Path, list], None] | None = None
    configurable: bool = True  # False: always runs, named by no [[scorers]] entry (the quality gates)

    def __reduce__(self):
        return by_declaration(self)

    def default_entry(self) -> Any:
        """Its options with their defaults (a kind run with no [[scorers]] entry: the quality gates,
        the audit's verifiers)."""
        return self.options(kind=self.name)

    def build_here(self, entry: Any = None) -> Scorer:
        """The scorer of a kind that needs no model, built in this process (a shard's)."""
        if self.needs_model:
            raise ValueError(f"scorer {self.name!r} needs a model and does not run in shards")
        return self.build(entry if entry is not None else self.default_entry(), None)


def resolve_scoring_model(spec: ModelOptions, base_dir: Path, generators: list) -> None:
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
    return spec.name or backend_label(backend)


def backend_label(backend) -> str:
    """A backend's model label without its fingerprint ("SmolLM2-135M-Instruct")."""
    return backend.model_label.split("@")[0]
