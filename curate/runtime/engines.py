"""The composition root: every model a run uses is built here, once, behind a `Backend`.

Generators ([[generators]]), the models of judge and log-prob scorers (a generator's own engine
when they name one, so no second copy is loaded), the configured scorers (built by their kind,
curate.score.registry) and the audit's pairwise judge. Nothing loads before it is first asked for.
"""

from __future__ import annotations

from pathlib import Path

from curate.audit.checks import PairTokens, audit_judge
from curate.config import GeneratorConfig, RunConfig
from curate.generate import Backend, SamplingSettings
from curate.generate.openai_backend import OpenAIBackend
from curate.generate.replicas import Placement, ReplicaPool, ReplicatedBackend
from curate.generate.vllm_backend import EngineSettings, VLLMBackend
from curate.runtime import ray_cluster
from curate.runtime.models import EMBEDDED_NAME, model_dir
from curate.score.registry import scorer_kind


class Engines:
    def __init__(self, config: RunConfig, data_dir: Path):
        self.config = config
        self.data_dir = Path(data_dir)
        self._backends: dict[int, Backend] = {}
        self._scorers: list | None = None
        self._pools: list[ReplicaPool] = []  # engine replicas on the Ray cluster, stopped by close()
        self._shared_pools: dict[tuple, ReplicaPool] = {}

    def model_path(self, model: str) -> Path:
        return model_dir(model, self.data_dir)

    def generator_backend(self, generator: GeneratorConfig) -> Backend:
        """The backend of one [[generators]] entry (one engine per entry and process)."""
        key = id(generator)
        if key not in self._backends:
            self._backends[key] = self._new_generator_backend(generator)
        return self._backends[key]

    def _new_generator_backend(self, generator: GeneratorConfig) -> Backend:
        if generator.backend == "openai":
            return OpenAIBackend(generator.base_urls or [generator.base_url], generator.model,
                                 api_key_env=generator.api_key_env,
                                 label=generator.name, max_concurrency=generator.max_concurrency,
                                 max_retries=generator.max_retries)
        label = generator.name or (EMBEDDED_NAME if generator.model == "embedded" else None)
        settings = EngineSettings(
            str(self.model_path(generator.model)), dtype=generator.dtype,
            max_model_len=generator.max_model_len, kv_cache_memory_bytes=generator.kv_cache_memory_bytes,
            gpu_memory_utilization=generator.gpu_memory_utilization,
            tensor_parallel_size=generator.tensor_parallel_size, data_parallel_size=generator.data_parallel_size,
            enable_prefix_caching=generator.enable_prefix_caching)
        if generator.placement == "ray":
            return self._replicated(settings, label, generator)
        return VLLMBackend(settings, label)

    def connect_ray(self) -> None:
        """This process joins the run's Ray cluster ([runner] address; unset: a local Ray)."""
        runner = self.config.runner
        ray_cluster.connect(runner.address, self.data_dir, runner.workers)

    def _placement(self, entry) -> Placement:
        return Placement(entry.replicas, entry.cpus_per_replica, entry.gpus_per_replica,
                         getattr(entry, "tensor_parallel_size", 1))

    def _replicated(self, settings: EngineSettings, label: str | None, entry) -> ReplicatedBackend:
        """A generation backend on engine replicas; generators of the same engine settings and
        placement share their replicas, as they share one engine in this process."""
        key = (settings.key(), self._placement(entry))
        if key not in self._shared_pools:
            name = label or Path(settings.model_path).name
            self._shared_pools[key] = self.replica_pool(name, VLLMBackend, (settings, label), entry)
        return ReplicatedBackend(settings, label, self._shared_pools[key])

    def replica_pool(self, name: str, build, args: tuple, entry) -> ReplicaPool:
        """Engine replicas of a model, placed as its config entry says: `build(*args)` in each (a
        reward model's scorer, a generator's VLLMBackend)."""
        pool = ReplicaPool(name, build, args, self._placement(entry), self.connect_ray)
        self._pools.append(pool)
        return pool

    def close(self) -> None:
        """Stops the run's engine replicas (in-process engines stay loaded for the next run)."""
        for pool in self._pools:
            pool.close()

    @property
    def backend(self) -> Backend:
        """The first generator's backend."""
        return self.generator_backend(self.config.generators[0])

    def scoring_backend(self, spec) -> Backend:
        """A judge's or log-prob scorer's model (`spec.model`): a generator (its engine, no second
        copy in memory), the embedded model, or a directory."""
        if spec.model == "generator":
            return self.backend
        for generator in self.config.generators:
            if generator.name and generator.name == spec.model:
                return self.generator_backend(generator)
        settings = EngineSettings(str(self.model_path(spec.model)), dtype=spec.dtype,
                                  max_model_len=spec.max_model_len, kv_cache_memory_bytes=spec.kv_cache_memory_bytes)
        if getattr(spec, "placement", "local") == "ray":
            return self._replicated(settings, spec.name, spec)
        return VLLMBackend(settings)

    def scorers(self) -> list:
        """(entry, scorer) of every [[scorers]] entry, built once per run."""
        if self._scorers is None:
            self._scorers = [(spec, scorer_kind(spec.kind).build(spec, self)) for spec in self.config.scorers]
        return self._scorers

    def scorer_versions(self) -> dict[str, str]:
        return {scorer.name: scorer.version for _, scorer in self.scorers()}

    def audit_judge(self):
        """The [audit] pairwise judge, or None."""
        return audit_judge(self.config.audit, self.scoring_backend)

    def pair_tokens(self) -> PairTokens | None:
        """The answer_context check's counter: the first local generator's tokenizer and
        [audit] max_pair_tokens (default: that generator's max_model_len); None when it is 0 or
        no generator runs a local model."""
        local = [g for g in self.config.generators if g.backend != "openai"]
        limit = self.config.audit.max_pair_tokens
        if not local or limit == 0:
            return None
        generator = local[0]
        model_dir = self.model_path(generator.model)
        if not (model_dir / "tokenizer_config.json").is_file() and not (model_dir / "tokenizer.json").is_file():
            return None
        return PairTokens(model_dir, limit or generator.max_model_len)

    def sampling_for_task(self, task: str, generator: GeneratorConfig | None = None) -> SamplingSettings:
        """[sampling] for one task, with the generator's own n, temperature and top_p where it sets them."""
        shared = self.config.sampling
        g = generator or self.config.generators[0]
        pick = lambda own, common: common if own is None else own  # noqa: E731
        return SamplingSettings(n=pick(g.n, shared.n), temperature=pick(g.temperature, shared.temperature),
                                top_p=pick(g.top_p, shared.top_p), max_tokens=shared.max_tokens_for(task),
                                seed=shared.seed)
