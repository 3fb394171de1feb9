"""Run configuration: a TOML file (see data/demo/demo.toml), validated into dataclasses.

Relative input paths are resolved against the config file's folder. Unknown keys are an
error, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import importlib
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from curate.dedup import DedupConfig
from curate.errors import UserError
from curate.ingest.imported import check_columns, check_lower_is_better
from curate.lake.catalog import redact, scheme_of
from curate.options import UnknownKey, parse_options
from curate.pairs.registry import PairSpec, pair_entry_dict, parse_pair_entry
from curate.runtime.shards import INLINE_BELOW
from curate.score.kind import ScorerOptions
from curate.score.registry import scorer_kind

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "data" / "demo" / "demo.toml"
# Defaults that fit each task: long enough for a worked solution (truncation is recorded).
DEFAULT_MAX_TOKENS = {"default": 1024, "math": 1024, "instruction": 768, "chat": 1024}
# What an export may require of every pair (`export_require`, `curate export --require`): "answer" is
# answer-level evidence, the audit's answer_verdict confirmed (curate.lake.audit_facts).
EXPORT_REQUIREMENTS = ("answer",)


@dataclass
class InputConfig:
    path: Path | None = None  # a prompt file (JSONL, Parquet, HF dataset dir) ...
    builtin: str | None = None  # ... or a built-in source: "ifeval", "humaneval"
    source: str | None = None  # part of each prompt's identity; default: file stem or builtin name
    limit: int | None = None  # built-in sources: take the first `limit` prompts
    generate: bool = True  # false: no generation for these prompts (re-curate the completions they hold)
    columns: dict[str, str] | None = None  # our field name -> the input's column, e.g. {prompt = "instruction"}
    lower_is_better: list[str] | None = None  # imported ratings where lower is better; default ["rank"] (Nectar)

    @property
    def label(self) -> str:
        return self.path.name if self.path is not None else f"builtin:{self.builtin}"


@dataclass
class GeneratorConfig:
    model: str = "embedded"  # "embedded" (SmolLM2-135M-Instruct) or a model directory
    name: str | None = None  # display name; identity is the model's fingerprint
    dtype: str = "auto"  # bfloat16 where the hardware has it, else float32
    max_model_len: int = 4096
    kv_cache_memory_bytes: int = 1 << 30
    # backend = "openai": any OpenAI-compatible server (model = the served model's name)
    backend: str = "vllm"
    base_url: str | None = None
    base_urls: list[str] | None = None  # several servers of the same model: balanced, with failover
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = 8
    max_retries: int = 20
    # GPU only (CPU runs use kv_cache_memory_bytes and eager mode)
    gpu_memory_utilization: float = 0.9
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    enable_prefix_caching: bool = True
    # placement = "ray": `replicas` engines on the run's Ray cluster ([runner] address), each with
    # cpus_per_replica CPUs and gpus_per_replica GPUs (default: tensor_parallel_size on a GPU cluster)
    placement: str = "local"
    replicas: int = 1
    cpus_per_replica: float = 1
    gpus_per_replica: float | None = None
    # Per-generator overrides of [sampling], and which tasks this generator answers (default all).
    n: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    tasks: list[str] | None = None


PLACEMENTS = ("local", "ray")


@dataclass
class SamplingConfig:
    n: int = 4
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int = 0
    chunk_size: int = 512
    max_tokens: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MAX_TOKENS))

    def max_tokens_for(self, task: str) -> int:
        return self.max_tokens.get(task, self.max_tokens.get("default", DEFAULT_MAX_TOKENS["default"]))


@dataclass
class AuditConfig:
    """[audit]: the pair audit's pairwise judge (none unless `judge` names a model: "generator", a
    generator's name, "embedded" or a directory); see curate.audit.checks."""
    judge: str | None = None
    judge_max_tokens: int = 16
    judge_max_retries: int = 1
    judge_reply_prefix: str = ""  # e.g. "[[" to start a small judge's reply at its verdict
    # answer_context: prompt + each side must fit this many tokens of the first generator's tokenizer
    # (None: that generator's max_model_len; 0: not checked)
    max_pair_tokens: int | None = None


RUNNER_KINDS = ("threads", "processes", "ray")


@dataclass
class RunnerConfig:
    kind: str = "threads"  # "threads", "processes" (this machine's cores) or "ray" (prefect-ray's RayTaskRunner)
    address: str | None = None  # ray: an existing cluster ("ray://head:10001", "auto"); None: start a local one
    workers: int | None = None  # threads, processes: pool size; local ray: CPUs (None: all)
    shards: int = 4  # shard tasks per stage; the same count gives the same rows on any runner
    dashboard: bool = False  # local ray: start Ray's dashboard
    # prompts per batch of the score and pairs steps: a step holds one batch's candidates and scores
    batch_prompts: int = 10_000
    # shard work on fewer items (MinHash signatures, a chunk's audit checks) runs in the run's process
    inline_below: int = INLINE_BELOW


@dataclass
class LakeConfig:
    """Where the lake lives; unset fields fall back to $CURATE_LAKE_CATALOG / $CURATE_LAKE_DATA_PATH,
    then to the SQLite catalog and folder under the data dir (see curate.lake.catalog.open_lake)."""
    catalog: str | None = None  # a DuckDB file or "postgres:<libpq connection string>"
    data_path: str | None = None  # a folder or an object-storage prefix (s3://bucket/prefix/)


@dataclass
class RunConfig:
    name: str = "run"
    plugins: list[str] = field(default_factory=list)  # modules imported first: scorer kinds, strategies they register
    inputs: list[InputConfig] = field(default_factory=list)
    generators: list[GeneratorConfig] = field(default_factory=lambda: [GeneratorConfig()])
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    scorers: list[ScorerOptions] = field(default_factory=list)  # each its kind's options (curate.score.kind)
    pairs: list[PairSpec] = field(default_factory=list)
    export_path: str | None = None  # relative to the data dir unless absolute
    export_require: list[str] = field(default_factory=list)  # EXPORT_REQUIREMENTS the run's export requires
    dedup: DedupConfig = field(default_factory=DedupConfig)  # [dedup]; its benchmarks decontaminate prompts
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    lake: LakeConfig = field(default_factory=LakeConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    source_file: Path | None = None


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise UserError(f"config: [{where}] must be a table")
    try:
        return parse_options(cls, values, where, check_types=False)
    except UnknownKey as exc:
        raise UserError(f"config: unknown key(s) {exc.unknown} in [{where}] (known: {exc.known})") from exc
    except ValueError as exc:
        raise UserError(f"config: {exc}") from exc


def parse_config(values: dict, base_dir: Path, source_file: Path | None = None) -> RunConfig:
    values = dict(values)
    values["plugins"] = import_plugins(values.get("plugins", []))  # before the entries that name what they add
    inputs = []
    for index, item in enumerate(values.pop("inputs", [])):
        spec = _build(InputConfig, item, f"inputs.{index}")
        if (spec.path is None) == (spec.builtin is None):
            raise UserError(f"config: [[inputs]] entry {index} needs exactly one of `path` or `builtin`")
        if spec.path is not None:
            spec.path = (base_dir / spec.path).resolve()
        if not isinstance(spec.generate, bool):
            raise UserError(f"config: inputs.{index}.generate must be true or false")
        try:
            spec.columns = check_columns(spec.columns)
            spec.lower_is_better = list(check_lower_is_better(spec.lower_is_better))
        except ValueError as exc:
            raise UserError(f"config: inputs.{index}.{exc}") from exc
        inputs.append(spec)
    if not inputs:
        raise UserError("config: no [[inputs]] given")
    if "generator" in values and "generators" in values:
        raise UserError("config: give [generator] or [[generators]], not both")
    # `generators = []` is a run that generates nothing: it re-curates the completions its inputs hold.
    specs = values.pop("generators") if "generators" in values else [values.pop("generator", {})]
    if not isinstance(specs, list):
        raise UserError("config: [[generators]] must be a list of tables")
    generators = []
    for index, spec in enumerate(specs):
        generator = _build(GeneratorConfig, spec, f"generators.{index}")
        if generator.backend not in ("vllm", "openai"):
            raise UserError(f"config: generators.{index}: backend must be vllm or openai, not {generator.backend!r}")
        check_placement(generator, f"generators.{index}")
        if generator.backend == "openai":
            if bool(generator.base_url) == bool(generator.base_urls):
                raise UserError(f"config: generators.{index}: an openai backend needs `base_url` or `base_urls`")
            if generator.placement != "local":
                raise UserError(f"config: generators.{index}: placement = {generator.placement!r} is for vllm "
                                "engines; served models are placed by their servers (give `base_urls`)")
        elif generator.model != "embedded" and not Path(generator.model).is_absolute():
            generator.model = str((base_dir / generator.model).resolve())
        generators.append(generator)
    names = [g.name for g in generators]
    if len(generators) > 1 and (None in names or len(set(names)) < len(names)):
        raise UserError("config: with several [[generators]], give each a distinct `name`")
    sampling_values = dict(values.pop("sampling", {}))
    given = sampling_values.pop("max_tokens", {})
    # A `default` the user gives covers every task they do not name; otherwise the per-task
    # built-in defaults apply.
    max_tokens = dict(given) if "default" in given else {**DEFAULT_MAX_TOKENS, **given}
    sampling = _build(SamplingConfig, {**sampling_values, "max_tokens": max_tokens}, "sampling")
    if sampling.n < 1 or sampling.chunk_size < 1:
        raise UserError("config: sampling.n and sampling.chunk_size must be at least 1")
    scorers = [_scorer(entry, index, base_dir, generators) for index, entry in enumerate(values.pop("scorers", []))]
    dedup = dict(values.pop("dedup", {}))
    benchmarks = [b if b in ("humaneval", "ifeval") or Path(b).is_absolute() else str((base_dir / b).resolve())
                  for b in dedup.get("benchmarks", [])]
    if benchmarks:
        dedup["benchmarks"] = benchmarks
    try:
        values["dedup"] = DedupConfig.from_mapping(dedup)
    except ValueError as exc:
        raise UserError(f"config: {exc}") from exc
    values["runner"] = _runner(values.pop("runner", {}))
    values["audit"] = _audit(values.pop("audit", {}), base_dir, generators)
    pairs = []
    for index, spec in enumerate(values.pop("pairs", [])):
        if not isinstance(spec, dict) or "strategy" not in spec:
            raise UserError(f"config: [[pairs]] entry {index} needs a `strategy`")
        try:
            pairs.append(parse_pair_entry(spec, base_dir))  # path options are relative to the config file
        except ValueError as exc:
            raise UserError(f"config: [[pairs]] entry {index} ({spec['strategy']}): {exc}") from exc
    lake = _build(LakeConfig, values.pop("lake", {}), "lake")
    for key in ("catalog", "data_path"):
        value = getattr(lake, key)
        if value is not None and not isinstance(value, str):
            raise UserError(f"config: [lake] {key} must be a string")

    # A local catalog file or data folder is relative to the config file, like the inputs.
    if lake.catalog and not scheme_of(lake.catalog):
        lake.catalog = str((base_dir / lake.catalog).resolve())
    if lake.data_path and not scheme_of(lake.data_path):
        lake.data_path = str((base_dir / lake.data_path).resolve())
    config = _build(RunConfig, {**values, "inputs": inputs, "generators": generators, "sampling": sampling,
                                "scorers": scorers, "pairs": pairs, "lake": lake}, "run")
    config.export_require = _export_require(config.export_require)
    config.source_file = source_file
    placed = [e for e in [*generators, *scorers] if getattr(e, "placement", "local") == "ray"]
    if config.runner.address is not None and config.runner.kind != "ray" and not placed:
        raise UserError("config: runner.address is for kind = \"ray\" or models with placement = \"ray\"")
    return config


def import_plugins(modules) -> list[str]:
    """Import the modules a config's `plugins` names (each registers the scorer kinds and strategies
    it declares: `register_scorer(KIND)`, `register(STRATEGY)`). They must be importable where shards
    run too: a worker process or Ray worker imports a plugin's module when it is sent its kind or
    strategy (curate.declarations)."""
    if not isinstance(modules, list) or not all(isinstance(m, str) and m.strip() for m in modules):
        raise UserError(f"config: plugins must be a list of module names, e.g. [\"my_team.scorers\"] (got {modules!r})")
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # any failure of a user's module is one line naming it
            raise UserError(f"config: plugins: cannot import {module!r}: {type(exc).__name__}: {exc}") from exc
    return list(modules)


def check_placement(entry, where: str) -> None:
    """placement, replicas and the replica resources of a generator or a model scorer."""
    if entry.placement not in PLACEMENTS:
        raise UserError(f"config: {where}: placement must be {' or '.join(PLACEMENTS)}, not {entry.placement!r}")
    if entry.replicas < 1 or entry.cpus_per_replica <= 0 or (entry.gpus_per_replica or 0) < 0:
        raise UserError(f"config: {where}: replicas must be at least 1, cpus_per_replica above 0 and "
                        "gpus_per_replica at least 0")
    if entry.placement == "local" and entry.replicas > 1:
        raise UserError(f"config: {where}: replicas = {entry.replicas} needs placement = \"ray\"")


def _scorer(values: dict, index: int, base_dir: Path, generators: list) -> ScorerOptions:
    """One [[scorers]] entry, parsed into its kind's options (curate.score.kind) and checked by the kind."""
    where = f"scorers.{index}"
    if not isinstance(values, dict):
        raise UserError(f"config: [{where}] must be a table")
    if "kind" not in values:
        raise UserError(f"config: {where}: kind is required")
    if values["kind"] == "quality":
        raise UserError("config: the quality scorer always runs, on every candidate; drop its [[scorers]] entry")
    try:
        kind = scorer_kind(values["kind"])
        try:
            spec = parse_options(kind.options, values, where)
        except UnknownKey as exc:
            reads = ", ".join(key for key in exc.known if key != "kind") or "nothing but `kind`"
            raise ValueError(f"{where}: {', '.join(exc.unknown)} has no effect on a {kind.name} scorer "
                             f"(it reads {reads})") from None
        if kind.resolve is not None:
            kind.resolve(spec, base_dir, generators)
    except ValueError as exc:
        raise UserError(f"config: {exc}") from exc
    if hasattr(spec, "placement"):
        check_placement(spec, where)
    return spec


def _audit(values: dict, base_dir: Path, generators: list) -> AuditConfig:
    audit = _build(AuditConfig, values, "audit")
    if audit.max_pair_tokens is not None and (isinstance(audit.max_pair_tokens, bool)
                                              or not isinstance(audit.max_pair_tokens, int)
                                              or audit.max_pair_tokens < 0):
        raise UserError(f"config: audit.max_pair_tokens must be an integer >= 0 (0: not checked), "
                        f"not {audit.max_pair_tokens!r}")
    if audit.judge is not None:
        if not isinstance(audit.judge, str) or not audit.judge.strip():
            raise UserError("config: audit.judge must be a model: \"generator\", a generator's name, "
                            "\"embedded\" or a directory")
        if audit.judge == "generator" and not generators:
            raise UserError("config: audit.judge = \"generator\" needs a generator (this run has none): name a model")
        named = {"generator", "embedded"} | {g.name for g in generators if g.name}
        if audit.judge not in named and not Path(audit.judge).is_absolute():
            audit.judge = str((base_dir / audit.judge).resolve())
    return audit


def _export_require(value) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError(f"config: export_require must be a list of strings, e.g. [\"answer\"] (got {value!r})")
    unknown = [v for v in value if v not in EXPORT_REQUIREMENTS]
    if unknown:
        raise UserError(f"config: export_require: unknown requirement {unknown[0]!r} "
                        f"(known: {', '.join(EXPORT_REQUIREMENTS)})")
    return list(dict.fromkeys(value))


def _runner(values: dict) -> RunnerConfig:
    runner = _build(RunnerConfig, values, "runner")
    types = {"kind": (str,), "address": (str, type(None)), "workers": (int, type(None)), "shards": (int,),
             "dashboard": (bool,), "batch_prompts": (int,), "inline_below": (int,)}
    for name, allowed in types.items():
        value = getattr(runner, name)
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise UserError(f"config: runner.{name} has the wrong type ({value!r})")
    if runner.kind not in RUNNER_KINDS:
        raise UserError(f"config: runner.kind must be threads, processes or ray, not {runner.kind!r}")
    if runner.shards < 1 or runner.batch_prompts < 1 or (runner.workers is not None and runner.workers < 1):
        raise UserError("config: runner.shards, runner.batch_prompts and runner.workers must be at least 1")
    if runner.inline_below < 0:
        raise UserError("config: runner.inline_below must be at least 0")
    return runner


def load_config(path: Path) -> RunConfig:
    path = Path(path)
    if not path.exists():
        raise UserError(f"config file not found: {path}")
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start + 1]!r})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from exc
    return parse_config(values, path.resolve().parent, path.resolve())


def config_as_dict(config: RunConfig) -> dict:
    """The resolved config, JSON-ready, for the runs table."""
    def plain(value):
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    values = plain(asdict(config))
    values["pairs"] = [plain(pair_entry_dict(spec)) for spec in config.pairs]  # flat, as written
    if values["lake"]["catalog"]:
        values["lake"]["catalog"] = redact(values["lake"]["catalog"])  # the runs table keeps no password
    return values
