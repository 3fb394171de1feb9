"""The build pipeline as plain steps over a lake: ingest → generate → score → pairs → dedup → export.

Each step reads what it needs from the lake, runs a stage function, and commits the result
in one lake transaction (generation commits chunk by chunk). `flows/build.py` wraps these
steps in Prefect tasks; tests and notebooks can call them directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pyarrow as pa

import curate
from curate import ids, schemas
from curate.config import RunConfig, config_as_dict
from curate.dedup import DedupConfig, decontaminate_prompts, dedup_pairs, load_benchmark_texts
from curate.dedup import MODEL_NAME as EMBEDDING_MODEL
from curate.dedup.lake_index import KeptPairs
from curate.background_commit import commit_while_producing
from curate.card import CardContext
from curate.export import ExportOptions
from curate.export_stream import export_lake
from curate.generate import SamplingSettings, generate_candidates, plan_requests
from curate.imported import INGEST_BATCH_ROWS, imported_of
from curate.ingest import Ingested, ingest_batches, read_rows
from curate.lake import open_lake
from curate.pairs import rule as pair_rule
from curate.pairs.registry import PairSpec, run_options, strategy_named
from curate.pairs.derive import derived_prompt_rows, original_prompts
from curate.errors import UserError, describe_os_error, one_line
from curate.progress import log, warn
from curate.shards import PORTABLE_SCORERS, InProcess, ShardedEmbedder, score_shard, split_frame
from curate.sources import builtin_rows


@dataclass
class RunState:
    """What one run has done so far; becomes the summary table and the runs row."""

    run_id: str
    prompt_ids: list[str] = field(default_factory=list)
    candidate_ids: list[str] = field(default_factory=list)
    no_generation: set[str] = field(default_factory=set)  # prompts only of inputs with generate = false
    counts: dict[str, int] = field(default_factory=dict)
    pairs_by_strategy: dict[str, int] = field(default_factory=dict)
    refused_by_strategy: dict[str, dict[str, int]] = field(default_factory=dict)  # the pairing rule's refusals
    timings: dict[str, float] = field(default_factory=dict)
    export_path: str | None = None
    audit: dict[str, dict] = field(default_factory=dict)  # per strategy: pairs, confirmed, refuted, ...

    def add(self, key: str, value: int) -> None:
        self.counts[key] = self.counts.get(key, 0) + value


def _ingest_remark(prompts: int, rejects: int) -> str:
    if prompts + rejects == 0:
        return " (the input holds no rows)"
    if prompts == 0:
        return " (every row failed: see `curate query \"select location, reason from rejects\"`)"
    return ""


def _count_failed_generations(table: pa.Table, state: RunState) -> None:
    """Requests that produced no text (a prompt longer than the generator's max_model_len, a
    server's refusal): stored as candidates with finish_reason 'error', counted and logged."""
    import pyarrow.compute as pc

    failed = table.filter(pc.equal(table.column("finish_reason"), "error"))
    if failed.num_rows:
        state.add("candidates_error", failed.num_rows)
        reasons = sorted(set(failed.column("error").to_pylist()), key=str)
        log(f"generate: {failed.num_rows} requests failed, stored with finish_reason 'error' "
            f"(e.g. {reasons[0]})")


def count_gates(state: RunState, scores: pl.DataFrame) -> None:
    """Of the run's candidates: quality_checked, quality_gated (a gate stopped them) and
    quality_gate_<gate> (candidates each gate flagged), from their newest quality rows."""
    from curate.score.quality import NAME

    rows = (scores.filter((pl.col("scorer") == NAME) & (pl.col("status") == "ok"))
            .sort(["created_at", "score_id"], descending=True).unique("candidate_id", keep="first"))
    state.counts["quality_checked"] = rows.height
    gated = rows.filter(pl.col("score") <= 0)
    state.counts["quality_gated"] = gated.height
    for detail in gated["detail_json"].to_list():
        for gate in {g["gate"] for g in json.loads(detail or "{}").get("gates", [])}:
            state.add(f"quality_gate_{gate}", 1)


def code_version() -> str:
    root = Path(curate.__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        sha = ""
    return f"curate {curate.__version__}" + (f" ({sha})" if sha else "")


class Pipeline:
    def __init__(self, config: RunConfig, data_dir: Path):
        self.config = config
        self.data_dir = Path(data_dir)
        self.lake = open_lake(self.data_dir, config.lake)
        self._backends: dict[int, object] = {}
        self._benchmarks = None
        self._scorers = None
        self.dedup_config = DedupConfig.from_mapping(config.dedup)
        # Where shard work runs: here, one shard after the other, unless the flow hands the
        # steps its task runner (flows/build.py).
        self.shards = InProcess(config.runner.shards)

    # helpers -------------------------------------------------------------------------

    def _model_path(self, model: str) -> Path:
        from curate.models import embedded_model_dir

        models_dir = Path(os.environ.get("CURATE_MODELS_DIR") or self.data_dir / "models")
        return embedded_model_dir(models_dir) if model == "embedded" else Path(model)

    def backend_for(self, generator):
        """The generation backend of one [[generators]] entry (engines are shared per process)."""
        from curate.generate.vllm_backend import EngineSettings, VLLMBackend
        from curate.models import EMBEDDED_NAME

        key = id(generator)
        if key not in self._backends and generator.backend == "openai":
            from curate.generate.openai_backend import OpenAIBackend

            self._backends[key] = OpenAIBackend(
                generator.base_url, generator.model, api_key_env=generator.api_key_env, label=generator.name,
                max_concurrency=generator.max_concurrency, max_retries=generator.max_retries)
        if key not in self._backends:
            label = generator.name or (EMBEDDED_NAME if generator.model == "embedded" else None)
            settings = EngineSettings(
                str(self._model_path(generator.model)), dtype=generator.dtype,
                max_model_len=generator.max_model_len, kv_cache_memory_bytes=generator.kv_cache_memory_bytes,
                gpu_memory_utilization=generator.gpu_memory_utilization,
                tensor_parallel_size=generator.tensor_parallel_size,
                data_parallel_size=generator.data_parallel_size,
                enable_prefix_caching=generator.enable_prefix_caching)
            self._backends[key] = VLLMBackend(settings, label)
        return self._backends[key]

    @property
    def backend(self):
        """The first generator's backend."""
        return self.backend_for(self.config.generators[0])

    def _scoring_backend(self, spec):
        """A judge's or log-prob scorer's model: a generator (same engine, no second copy in
        memory), the embedded model, or a directory."""
        from curate.generate.vllm_backend import EngineSettings, VLLMBackend

        if spec.model == "generator":
            return self.backend
        for generator in self.config.generators:
            if generator.name and generator.name == spec.model:
                return self.backend_for(generator)
        return VLLMBackend(EngineSettings(str(self._model_path(spec.model)), dtype=spec.dtype,
                                          max_model_len=spec.max_model_len,
                                          kv_cache_memory_bytes=spec.kv_cache_memory_bytes))

    def _judge(self, spec):
        from curate.score.judge import JudgeSettings, PointwiseJudge

        backend = self._scoring_backend(spec)
        label = spec.name or backend.model_label.split("@")[0]
        settings = JudgeSettings(max_tokens=spec.max_tokens, max_retries=spec.max_retries,
                                 reply_prefix=spec.reply_prefix)
        tasks = frozenset(spec.tasks) if spec.tasks else None
        return PointwiseJudge(backend, label, spec.aspects, settings, tasks)

    def scorers(self) -> list:
        """The configured scorers, built once per pipeline (score, derive and pairs use them)."""
        if self._scorers is None:
            self._scorers = self._build_scorers()
        return self._scorers

    def _build_scorers(self) -> list:
        from curate.score.verifiers import ConstraintScorer, MathAnswerScorer

        built = []
        for spec in self.config.scorers:
            if spec.kind == "math_verify":
                built.append(MathAnswerScorer())
            elif spec.kind == "constraints":
                built.append(ConstraintScorer())
            elif spec.kind == "code_tests":
                from curate.score.verify.code import CodeTestsScorer

                built.append(CodeTestsScorer())
            elif spec.kind == "judge":
                built.append(self._judge(spec))
            elif spec.kind == "logprob":
                from curate.score.logprob import SequenceLogprobScorer

                backend = self._scoring_backend(spec)
                built.append(SequenceLogprobScorer(backend, spec.name or backend.model_label.split("@")[0]))
            else:
                from curate.generate.vllm_backend import EngineSettings
                from curate.score.reward import RewardModelScorer

                settings = EngineSettings(spec.model, dtype=spec.dtype, max_model_len=spec.max_model_len,
                                          kv_cache_memory_bytes=spec.kv_cache_memory_bytes, runner="pooling")
                built.append(RewardModelScorer(settings, spec.name, engine=spec.engine))
        return built

    def sampling_for_task(self, task: str, generator=None) -> SamplingSettings:
        s = self.config.sampling
        g = generator or self.config.generators[0]
        pick = lambda own, shared: shared if own is None else own  # noqa: E731
        return SamplingSettings(n=pick(g.n, s.n), temperature=pick(g.temperature, s.temperature),
                                top_p=pick(g.top_p, s.top_p), max_tokens=s.max_tokens_for(task), seed=s.seed)

    def _where_in(self, table: str, column: str, values: list[str]) -> pl.DataFrame:
        if not values:
            return pl.from_arrow(schemas.table(table).arrow_schema().empty_table())
        self.lake.con.register("_ids", pl.DataFrame({"id": values}).to_arrow())
        try:
            return self.lake.query(f"SELECT t.* FROM {table} t JOIN _ids ON t.{column} = _ids.id")
        finally:
            self.lake.con.unregister("_ids")

    # steps ---------------------------------------------------------------------------

    def start(self) -> RunState:
        # A local lake has one writer, this process: a run still marked running is one that died.
        # A shared (PostgreSQL) catalog may have runs going on other machines: those stay as they are.
        if not self.lake.is_postgres and self.lake.query(
                "SELECT count(*) AS n FROM runs WHERE status = 'running'")["n"][0]:
            self.lake.con.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'")
        state = RunState(run_id=uuid.uuid4().hex[:16])
        self.lake.commit({"runs": [{
            "run_id": state.run_id, "started_at": datetime.now(timezone.utc), "finished_at": None,
            "status": "running", "config_json": json.dumps(config_as_dict(self.config)),
            "code_version": code_version(), "counts_json": None,
        }]})
        log(f"run {state.run_id} ({self.config.name}) started; lake at {self.lake.location}")
        return state

    def ingest(self, state: RunState) -> None:
        began = time.monotonic()
        generating: set[str] = set()  # prompts of inputs that generate (a prompt may come from both kinds)
        for spec in self.config.inputs:
            read: dict[str, set | int] = {"prompts": set(), "new": 0, "rejects": 0, "candidates": 0}
            for part in self._read_input(spec, state.run_id):
                self._commit_ingested(part, state, read)
            (generating if spec.generate else state.no_generation).update(read["prompts"])
            prompts, rejects = len(read["prompts"]), read["rejects"]
            if not prompts + rejects:
                warn(f"{spec.label}: the input holds no rows")
            imported = f", {read['candidates']} completions imported" if read["candidates"] else ""
            log(f"ingest {spec.label}: {prompts} prompts ({read['new']} new){imported}, {rejects} rejected"
                f"{_ingest_remark(prompts, rejects)}" + ("" if spec.generate else " (generate = false)"))
        state.no_generation -= generating
        state.prompt_ids = sorted(set(state.prompt_ids))
        state.candidate_ids = sorted(set(state.candidate_ids))
        if not state.prompt_ids:
            log("ingest: no valid prompts in any input; the run goes on with nothing to generate")
            warn(f"no prompts: every input failed or was empty ({state.counts.get('rejects_read', 0)} rejected); "
                 "the run goes on with zeros. See: curate query \"select location, reason from rejects\"")
        state.timings["ingest"] = time.monotonic() - began

    def _commit_ingested(self, part: Ingested, state: RunState, read: dict) -> None:
        """One batch of an input: prompts (decontaminated when benchmarks are configured), rejects,
        and the candidates and ratings it imports, in one commit."""
        prompts, drops = part.prompts, None
        if self.dedup_config.benchmarks:
            kept, drops = decontaminate_prompts(pl.from_arrow(prompts), self.benchmark_texts(),
                                                self.dedup_config, state.run_id)
            prompts = kept.to_arrow()
            state.add("prompts_contaminated", drops.height)
        prompt_ids = prompts.column("prompt_id").to_pylist()
        candidates, scores = imported_of(part, prompt_ids)
        added = self.lake.commit({"prompts": prompts, "rejects": part.rejects, "candidates": candidates,
                                  "scores": scores, **({"dedup_drops": drops.to_arrow()} if drops is not None else {})})
        state.prompt_ids.extend(prompt_ids)
        state.candidate_ids.extend(candidates.column("candidate_id").to_pylist())
        read["prompts"].update(prompt_ids)
        read["new"] += added["prompts"]
        read["rejects"] += part.rejects.num_rows
        read["candidates"] += candidates.num_rows
        for key, count in (("prompts_read", prompts.num_rows), ("prompts_new", added["prompts"]),
                           ("rejects_read", part.rejects.num_rows), ("rejects_new", added["rejects"])):
            state.add(key, count)
        for key, count in (("candidates_imported", candidates.num_rows),
                           ("candidates_imported_new", added["candidates"]), ("scores_imported_new", added["scores"])):
            if count:  # runs that import nothing keep their counts as they were
                state.add(key, count)

    def _read_input(self, spec, run_id: str) -> Iterator[Ingested]:
        """Batches of one [[inputs]] entry. An input that cannot be read at all is one reject
        naming the input and why, and a warning; the other inputs go on."""
        source = spec.source or (spec.path.stem if spec.path is not None else spec.builtin)
        try:
            rows = read_rows(spec.path) if spec.path is not None else builtin_rows(spec.builtin, spec.limit)
            yield from ingest_batches(rows, source, run_id, columns=spec.columns, batch_rows=INGEST_BATCH_ROWS,
                                      input_name=str(spec.path) if spec.path is not None else f"builtin:{spec.builtin}")
            return
        except (UserError, OSError, UnicodeError) as exc:
            reason = f"input not read: {one_line(exc if isinstance(exc, UserError) else describe_os_error(exc))}"
        warn(f"{spec.label}: {reason}")
        reject = {"reject_id": ids.content_hash("reject", source, str(spec.path or spec.builtin), reason),
                  "source": source, "location": str(spec.path or f"builtin:{spec.builtin}"), "raw": "",
                  "reason": reason, "stage": "ingest", "run_id": run_id, "created_at": datetime.now(timezone.utc)}
        yield Ingested(schemas.conform("prompts", []), schemas.conform("rejects", [reject]),
                       schemas.conform("candidates", []), schemas.conform("scores", []))

    def _generate(self, prompts: pl.DataFrame, generators, state: RunState) -> None:
        for generator in generators:
            backend = self.backend_for(generator)
            answered = prompts if not generator.tasks else prompts.filter(pl.col("task").is_in(generator.tasks))
            planned = plan_requests(answered, backend.fingerprint,
                                    lambda task, g=generator: self.sampling_for_task(task, g))
            if not planned:
                continue
            planned_ids = [r.candidate_id for r in planned]
            state.candidate_ids.extend(planned_ids)
            done = self.lake.existing_ids("candidates", planned_ids)
            missing = [r for r in planned if r.candidate_id not in done]
            state.add("candidates_reused", len(done))
            log(f"generate: {len(planned)} candidates planned, {len(done)} already in the lake, "
                f"{len(missing)} to generate with {backend.model_label}")
            committed = 0

            def commit(table) -> None:
                nonlocal committed
                committed += self.lake.commit({"candidates": table})["candidates"]
                state.add("candidates_new", table.num_rows)
                _count_failed_generations(table, state)
                log(f"generate: committed {committed}/{len(missing)} candidates")

            # the engine generates the next chunk while this one is written
            commit_while_producing(generate_candidates(missing, backend, state.run_id,
                                                       self.config.sampling.chunk_size), commit)

    def generate(self, state: RunState) -> None:
        began = time.monotonic()
        wanted = [p for p in state.prompt_ids if p not in state.no_generation]
        if len(wanted) < len(state.prompt_ids):
            log(f"generate: {len(state.prompt_ids) - len(wanted)} prompts of inputs with generate = false skipped")
        if wanted and not self.config.generators:
            log(f"generate: no generators in this run; {len(wanted)} prompts keep only their imported completions")
        self._generate(self._where_in("prompts", "prompt_id", wanted), self.config.generators, state)
        state.timings["generate"] = time.monotonic() - began


    def benchmark_texts(self) -> list:
        if self._benchmarks is None:
            self._benchmarks = load_benchmark_texts(self.dedup_config.benchmarks)
        return self._benchmarks

    def _cached_embeddings(self, hashes: list[str]) -> dict:
        if not hashes:
            return {}
        rows = self.lake.query(
            "SELECT text_hash, vector FROM embeddings WHERE model = ? AND text_hash IN (SELECT unnest(?::VARCHAR[]))",
            [EMBEDDING_MODEL, hashes])
        return dict(rows.iter_rows())

    def _run_prompts_and_candidates(self, state: RunState) -> tuple[pl.DataFrame, pl.DataFrame]:
        return (self._where_in("prompts", "prompt_id", state.prompt_ids),
                self._where_in("candidates", "candidate_id", state.candidate_ids))

    def _score_one_scorer(self, kind: str, scorer, prompts: pl.DataFrame, candidates: pl.DataFrame,
                          run_id: str) -> pa.Table:
        from curate.score import score_candidates, unscored

        todo = unscored(prompts, candidates, scorer, lambda wanted: self.lake.existing_ids("scores", wanted))
        if kind not in PORTABLE_SCORERS:  # a model scorer runs on this process's engine
            return score_candidates(prompts, todo, [scorer], run_id)
        calls = [(kind, prompts.filter(pl.col("prompt_id").is_in(part["prompt_id"].unique().implode())),
                  part, run_id) for part in split_frame(todo, "prompt_id", self.shards.count)]
        tables = self.shards.map(score_shard, calls)
        return pa.concat_tables(tables) if tables else schemas.conform("scores", [])

    def score(self, state: RunState) -> None:
        """The quality gates first (always: no model, no config), then the configured scorers."""
        from curate.score.quality import QualityScorer

        began = time.monotonic()
        prompts, candidates = self._run_prompts_and_candidates(state)
        plan = [("quality", QualityScorer()),
                *((spec.kind, scorer) for spec, scorer in zip(self.config.scorers, self.scorers(), strict=True))]
        for kind, scorer in plan:
            scores = self._score_one_scorer(kind, scorer, prompts, candidates, state.run_id)
            added = self.lake.commit({"scores": scores})["scores"]
            state.add("scores_new", added)
            statuses = {}
            for status in scores.column("status").to_pylist():
                statuses[status] = statuses.get(status, 0) + 1
            for status, count in statuses.items():
                if status != "ok":  # unparsed verdicts, errors: excluded from pairs, but counted
                    state.add(f"scores_{status}", count)
            detail = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))
            if scores.num_rows:
                log(f"score {scorer.name}: {added} new scores" + (f" ({detail})" if detail else ""))
        state.timings["score"] = state.timings.get("score", 0.0) + time.monotonic() - began

    def derive(self, state: RunState) -> None:
        """Strategies that drive generation (curate.pairs.derive): their prompts, then the
        candidates and scores of those prompts, before any pair is built; a strategy with
        derive_rounds > 1 derives again from what the earlier rounds generated."""
        specs = [spec for spec in self.config.pairs if strategy_named(spec.strategy).derive]
        if specs and not self.config.generators:
            log(f"derive: no generator in this run; {', '.join(s.strategy for s in specs)} derive nothing")
            return
        rounds = {spec.strategy: strategy_named(spec.strategy).derive_rounds for spec in specs}
        for round_index in range(max(rounds.values(), default=0)):
            self._derive_round(state, [s for s in specs if rounds[s.strategy] > round_index], round_index)

    def _derive_round(self, state: RunState, specs: list[PairSpec], round_index: int) -> None:
        began = time.monotonic()
        prompts, candidates = self._run_prompts_and_candidates(state)
        if round_index == 0:
            prompts = original_prompts(prompts)
        scores = self._where_in("scores", "candidate_id", state.candidate_ids)
        tables = []
        for spec in specs:
            derived = strategy_named(spec.strategy).derive(prompts, candidates, scores, spec.options)
            tables.append(derived_prompt_rows(derived, spec.strategy, state.run_id))
            for key, count in sorted(getattr(derived, "counts", {}).items()):
                state.add(f"derive_{spec.strategy}_{key}", count)
            log(f"derive {spec.strategy}: {len(derived)} prompts"
                + (f" (round {round_index + 1})" if round_index else ""))
        rows = pa.concat_tables(tables)
        added = self.lake.commit({"prompts": rows})["prompts"]
        fresh = sorted(set(rows.column("prompt_id").to_pylist()) - set(state.prompt_ids))
        state.add("derived_prompts", len(fresh))
        state.add("derived_prompts_new", added)
        state.prompt_ids = sorted(set(state.prompt_ids) | set(fresh))
        self._generate(self._where_in("prompts", "prompt_id", fresh), self.config.generators[:1], state)
        state.timings["derive"] = state.timings.get("derive", 0.0) + time.monotonic() - began
        self.score(state)

    def pairs(self, state: RunState) -> None:
        began = time.monotonic()
        prompts, candidates = self._run_prompts_and_candidates(state)
        scores = self._where_in("scores", "candidate_id", state.candidate_ids)
        count_gates(state, scores)
        versions = {scorer.name: scorer.version for scorer in self.scorers()}
        built = []
        for spec in self.config.pairs:
            strategy = strategy_named(spec.strategy)
            options = run_options(spec, versions)  # a named scorer: pair on its current version
            seen = prompts if strategy.derive else original_prompts(prompts)
            with pair_rule.counting() as refused:
                built.append(strategy.build(seen, candidates, scores, options, state.run_id))
            for reason, count in refused.items():
                state.add(f"pairs_refused_{reason}", count)
                state.refused_by_strategy.setdefault(spec.strategy, {}).setdefault(reason, 0)
                state.refused_by_strategy[spec.strategy][reason] += count
        built = [b for b in built if not b.is_empty()]
        all_pairs = pl.concat(built) if built else pl.from_arrow(schemas.table("pairs").arrow_schema().empty_table())
        # Two [[pairs]] entries of one strategy may pick the same pair (e.g. margin by an imported
        # rating and by the verifier): one pair_id, one pair (the first entry's).
        all_pairs = all_pairs.unique("pair_id", keep="first", maintain_order=True)
        # Pairs rebuilt from unchanged inputs have the same ids: drop those before dedup.
        stored = self.lake.existing_ids("pairs", all_pairs["pair_id"].to_list())
        fresh = all_pairs.filter(~pl.col("pair_id").is_in(list(stored)))
        embedder = ShardedEmbedder(self.shards, lookup=self._cached_embeddings,
                                   batch_size=self.dedup_config.embed_batch_size)
        # only the kept pairs that can collide with these are read (curate.dedup.lake_index)
        index = KeptPairs(self.lake, self.dedup_config, embed=embedder, model=EMBEDDING_MODEL)
        if fresh.height:
            index.sync()
        kept, drops = (dedup_pairs(fresh, index.candidates(fresh), self.dedup_config, embed=embedder,
                                   run_id=state.run_id) if fresh.height else (fresh, None))
        tables = {"pairs": kept.to_arrow()}
        if drops is not None:
            tables.update(dedup_drops=drops.to_arrow(), pair_dedup_index=index.index_rows(kept),
                          embeddings=embedder.take_new_rows())
        added = self.lake.commit(tables)["pairs"]
        index.save()
        dropped = drops.height if drops is not None else 0
        for reason, count in (drops.group_by("reason").len().iter_rows() if dropped else []):
            state.add(f"pairs_dropped_{reason}", count)
        state.add("pairs_built", all_pairs.height)
        state.add("pairs_new", added)
        state.add("pairs_duplicates_dropped", dropped)
        for strategy, count in kept.group_by("strategy").len().iter_rows():
            state.pairs_by_strategy[strategy] = state.pairs_by_strategy.get(strategy, 0) + count
        log(f"pairs: {all_pairs.height} built, {len(stored)} already stored, {dropped} dropped by dedup, "
            f"{added} new")
        state.timings["pairs"] = time.monotonic() - began

    def audit(self, state: RunState) -> None:
        """Re-check every pair not audited yet (curate.audit); refuted pairs stay out of exports."""
        from curate.audit import audit_lake, audit_judge

        began = time.monotonic()
        judge = audit_judge(self.config.audit, self._scoring_backend)
        result = audit_lake(self.lake, state.run_id, judge=judge, only_unaudited=True)
        state.audit = {row["strategy"]: row for row in result["summary"].to_dicts()}
        state.add("pairs_audited", result["audited"])
        refuted = sum(row["refuted"] for row in state.audit.values())
        log(f"audit: {result['audited']} pairs checked, {result['rows_new']} verdicts new; {refuted} pairs refuted")
        state.timings["audit"] = time.monotonic() - began

    def export(self, state: RunState) -> None:
        if not self.config.export_path:
            return

        began = time.monotonic()
        out = Path(self.config.export_path)
        out = out if out.is_absolute() else self.data_dir / out
        # Everything this run writes to the lake is in: the run is finished before its card is
        # written, so the card names a finished run and the snapshot it read (finish() runs again
        # after the export with the final counts, or marks the run failed).
        self.finish(state)
        snapshot = self.lake.snapshot_id()
        # streamed from the lake in batches; the card reads the scores of the exported pairs only
        context = CardContext(runs=self.lake.read("runs"), as_of=snapshot, source=self.lake.location)
        written = export_lake(self.lake, out, ExportOptions(), card_context=context)  # a DatasetDict + README card
        state.export_path = str(out)
        state.add("pairs_exported", written["total"])
        state.add("pairs_refuted_left_out", written["refuted_left_out"])
        log(f"export: {written['total']} pairs to {out} ({written['refuted_left_out']} refuted left out)")
        state.timings["export"] = time.monotonic() - began

    def finish(self, state: RunState, status: str = "completed") -> None:
        self.lake.update_run(state.run_id, status=status, finished_at=datetime.now(timezone.utc),
                             counts_json=json.dumps({**state.counts, "pairs_by_strategy": state.pairs_by_strategy,
                                                      "pairs_refused_by_strategy": state.refused_by_strategy,
                                                      "seconds": {k: round(v, 2) for k, v in state.timings.items()}}))

    def run_all(self) -> RunState:
        """Every step in order, without Prefect (the flow does the same, as tasks)."""
        state = self.start()
        try:
            for step in (self.ingest, self.generate, self.score, self.derive, self.pairs, self.audit,
                         self.export):
                step(state)
        except BaseException:
            self.finish(state, "failed")
            raise
        self.finish(state)
        return state

    def close(self) -> None:
        self.lake.close()
