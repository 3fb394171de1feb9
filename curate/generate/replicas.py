"""Engine replicas on a Ray cluster: `replicas` copies of one vLLM engine, each a Ray actor, fed by
the run's process (the driver) with continuous admission, as OpenRLHF and open-instruct run their
vLLM engines as Ray actors.

The driver keeps every request until its answer is back: a replica holds at most `window`
requests at a time and is topped up as it answers, so each engine stays full while the driver
commits. A replica that dies (its worker process or node is gone) loses only the requests it held;
the driver gives them to the other replicas, and the run fails only when no replica is left (what
was committed stays, and the next run generates only the rest). Answers come back as they finish,
in the order `curate.generate.generate_candidates` expects of any streaming backend.

Scoring work (log-probs, reward models) goes to the replicas in slices, one slice per call, with
the same failover (`ReplicaPool.map`).

A replica is built in its actor from a picklable (function, arguments) pair, so the module that
builds it must be importable on every node; the model directory must be at the same path there.
"""

from __future__ import annotations

import os
import resource
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from curate.generate import Generation, Request
from curate.generate.vllm_backend import EngineStream, sequence_tokens
from curate.progress import log
from curate.runtime.models import check_model_dir, fingerprint

WINDOW = 256  # requests one replica holds at a time (its engine batches from these)
TAKE_WAIT_S = 0.5  # how long one `take` call waits in the replica for a finished request
TAKE_BATCH = 16  # finished requests that make a `take` return before its wait is over
START_TIMEOUT_S = 900  # a replica that is not placed and loaded by then is given up


@dataclass(frozen=True)
class Placement:
    """Where a model's replicas run: how many, and what each asks of the cluster."""
    replicas: int = 1
    cpus_per_replica: float = 1
    gpus_per_replica: float | None = None  # None: its tensor-parallel size when the cluster has GPUs, else 0
    tensor_parallel_size: int = 1

    def gpus(self, cluster_gpus: float) -> float:
        if self.gpus_per_replica is not None:
            return self.gpus_per_replica
        return float(self.tensor_parallel_size) if cluster_gpus > 0 else 0.0


class EngineReplica:
    """One engine in a Ray actor. A thread of its own steps the engine whenever it holds requests;
    `submit` and `take` (called by the driver, concurrently) only touch the in- and out-boxes."""

    def __init__(self, build: Callable, args: tuple, cpus: float):
        if not os.environ.get("CUDA_VISIBLE_DEVICES"):
            # vLLM on CPU: as many OpenMP threads as the replica's CPUs, placed by the OS (several
            # replicas may share one machine, and each would otherwise bind every core)
            os.environ["OMP_NUM_THREADS"] = str(max(1, int(cpus)))
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = os.environ.get("CURATE_REPLICA_CPU_BIND", "nobind")
        self.worker = build(*args)
        self._lock = threading.Condition()
        self._inbox: list[Request] = []
        self._outbox: list[tuple[str, Generation]] = []
        self._failure: BaseException | None = None
        self._stream = None

    def ready(self) -> dict:
        """Loads the engine; where this replica runs."""
        import ray

        getattr(self.worker, "llm", None)  # a generation backend loads its engine on first use
        if hasattr(self.worker, "warm"):
            self.worker.warm()
        threading.Thread(target=self._run, daemon=True, name="engine").start()
        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()[:12],
                "host": os.uname().nodename}

    def peak_rss_mib(self) -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def submit(self, requests: list[Request]) -> None:
        with self._lock:
            self._inbox.extend(requests)
            self._lock.notify_all()

    def take(self, wait_s: float = TAKE_WAIT_S) -> list[tuple[str, Generation]]:
        """The (candidate id, generation) of every request finished since the last call: once
        TAKE_BATCH have finished, or all it holds, or after `wait_s` (fewer round trips to the
        driver: each costs CPU that the engines on a busy node would rather have)."""
        def enough() -> bool:
            idle = not self._inbox and (self._stream is None or not self._stream.busy())
            return len(self._outbox) >= TAKE_BATCH or bool(self._outbox and idle) or self._failure is not None

        with self._lock:
            self._lock.wait_for(enough, timeout=wait_s)
            if self._failure is not None:
                raise self._failure
            finished, self._outbox = self._outbox, []
        return finished

    def call(self, method: str, *args):
        """`worker.method(*args)` (scoring work), with the engine to itself: the generation stream
        is idle between the run's steps."""
        with self._lock:
            self._lock.wait_for(lambda: not self._inbox and (self._stream is None or not self._stream.busy()))
            return getattr(self.worker, method)(*args)

    def abort(self) -> None:
        """Drop what this replica holds (the driver stopped early and will not take it)."""
        with self._lock:
            self._inbox = []
            if self._stream is not None:
                self._stream.abort()
            self._outbox = []

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    self._lock.wait_for(lambda: self._inbox or (self._stream is not None and self._stream.busy()))
                    if self._stream is None:
                        self._stream = EngineStream(self.worker)
                    if self._inbox:
                        self._stream.admit(self._inbox)
                        self._inbox = []
                finished = self._stream.step()  # the engine's step, without holding up submit and take
                if finished:
                    with self._lock:
                        self._outbox.extend((r.candidate_id, g) for r, g in finished)
                        self._lock.notify_all()
        except BaseException as exc:  # the driver's next `take` raises it
            with self._lock:
                self._failure = exc
                self._lock.notify_all()


def _reason(exc: BaseException) -> str:
    """The line of a remote traceback that says what went wrong."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    said = [line for line in lines if "error" in line.lower() and not line.startswith(("File ", "For further", "The "))
            and "isn't serializable" not in line]
    return (said or lines or [type(exc).__name__])[-1][:400]


def _is_lost_replica(exc: BaseException) -> bool:
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

    return isinstance(exc, (RayActorError, ActorDiedError, ActorUnavailableError))


class ReplicaPool:
    """`placement.replicas` EngineReplica actors of one model, started on first use."""

    def __init__(self, name: str, build: Callable, args: tuple, placement: Placement,
                 connect: Callable[[], None]):
        self.name = name
        self.build, self.args = build, args
        self.placement = placement
        self._connect = connect
        self._actors: dict[str, object] = {}  # replica name -> actor handle, the live ones
        self.where: dict[str, dict] = {}  # replica name -> its node, host and pid
        self.lost: list[str] = []  # replicas that died during this run
        self.requeued = 0  # requests given to another replica after theirs died

    def _start(self) -> None:
        if self._actors or self.lost:
            return
        self._connect()  # first: Ray reads its settings (curate.runtime.ray_cluster) as it is imported
        import ray

        gpus = self.placement.gpus(ray.cluster_resources().get("GPU", 0))
        actor = ray.remote(EngineReplica)
        run = uuid.uuid4().hex[:6]
        names = [f"{self.name}/{index}" for index in range(self.placement.replicas)]
        handles = [actor.options(num_cpus=self.placement.cpus_per_replica, num_gpus=gpus, max_concurrency=4,
                                 max_restarts=0, scheduling_strategy="SPREAD",
                                 name=f"curate-{self.name}-{run}-{index}").remote(
            self.build, self.args, self.placement.cpus_per_replica) for index in range(len(names))]
        log(f"replicas: starting {len(names)} replica(s) of {self.name} ({self.placement.cpus_per_replica} CPUs, "
            f"{gpus:g} GPUs each)")
        readiness = [handle.ready.remote() for handle in handles]  # every replica loads its engine at once
        for name, handle, ready in zip(names, handles, readiness, strict=True):
            try:
                where = ray.get(ready, timeout=START_TIMEOUT_S)
            except ray.exceptions.GetTimeoutError:
                ray.kill(handle)
                free = ray.available_resources()
                log(f"replicas: {name} did not start in {START_TIMEOUT_S} s (the cluster has "
                    f"{free.get('CPU', 0):g} CPUs and {free.get('GPU', 0):g} GPUs free; each replica asks "
                    f"{self.placement.cpus_per_replica:g} CPUs, {gpus:g} GPUs)")
                continue
            except Exception as exc:  # noqa: BLE001 - one replica that cannot start is reported, not fatal
                ray.kill(handle)
                log(f"replicas: {name} did not start: {_reason(exc)}")
                continue
            self._actors[name] = handle
            self.where[name] = where
            log(f"replicas: {name} ready on node {where['node']} ({where['host']}, pid {where['pid']})")
        if not self._actors:
            raise RuntimeError(f"no replica of {self.name} started (see the lines above)")
        if ray.available_resources().get("CPU", 0) < 1:
            log("replicas: the replicas hold every CPU of the cluster until the run ends; Ray shard tasks "
                "([runner] kind = \"ray\") will wait for them (give the cluster more CPUs or lower cpus_per_replica)")

    def _lose(self, name: str, exc: BaseException) -> None:
        import ray

        ray.kill(self._actors.pop(name))  # gone, or unreachable: it must not answer later either
        self.lost.append(name)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log(f"replicas: {name} is gone ({first_line}); {len(self._actors)} left")
        if not self._actors:
            raise RuntimeError(f"every replica of {self.name} is gone; committed rows stay, "
                               "the next run generates the rest") from exc

    def _ray(self):
        """The ray module, once this process is connected and the replicas are up (Ray must not be
        imported before `connect` has set its environment)."""
        self._start()
        if not self._actors:
            raise RuntimeError(f"every replica of {self.name} is gone (see the lines above)")
        import ray

        return ray

    def live(self) -> list[str]:
        self._start()
        return list(self._actors)

    def peak_rss_mib(self) -> dict[str, float]:
        """Each live replica's peak resident memory."""
        ray = self._ray()
        return {name: ray.get(handle.peak_rss_mib.remote()) for name, handle in self._actors.items()}

    # -- generation -----------------------------------------------------------------------

    def generate_stream(self, requests: list[Request], window: int = WINDOW
                        ) -> Iterator[tuple[Request, Generation]]:
        ray = self._ray()
        queue = deque(requests)
        held: dict[str, dict[str, Request]] = {name: {} for name in self._actors}
        taking: dict[object, str] = {}  # a pending `take` -> its replica

        def top_up() -> None:
            # round robin in slices, so a short run spreads over every replica
            while queue:
                open_ = [n for n in self._actors if len(held[n]) < window]
                if not open_:
                    return
                share = max(1, min(32, -(-len(queue) // len(open_))))
                for name in open_:
                    batch = [queue.popleft() for _ in range(min(share, window - len(held[name]), len(queue)))]
                    if batch:
                        held[name].update((r.candidate_id, r) for r in batch)
                        self._actors[name].submit.remote(batch)

        try:
            top_up()
            while queue or any(held.values()):
                for name in self._actors:
                    if held[name] and name not in taking.values():
                        taking[self._actors[name].take.remote()] = name
                ready, _ = ray.wait(list(taking), num_returns=1, timeout=60)
                for ref in ready:
                    name = taking.pop(ref)
                    try:
                        finished = ray.get(ref)
                    except Exception as exc:
                        if not _is_lost_replica(exc):
                            raise
                        lost = sorted(held.pop(name).values(), key=lambda r: (r.prompt_id, r.sample_index))
                        queue.extendleft(reversed(lost))
                        self.requeued += len(lost)
                        self._lose(name, exc)
                        log(f"replicas: {len(lost)} requests {name} held go to the others")
                        continue
                    for candidate_id, generation in finished:
                        request = held[name].pop(candidate_id, None)
                        if request is not None:  # None: already answered (never happens twice)
                            yield request, generation
                top_up()
        finally:
            for name in [n for n, mine in held.items() if mine and n in self._actors]:
                self._actors[name].abort.remote()  # stopped early: the replicas drop what they hold

    def generate(self, requests: list[Request]) -> list[Generation]:
        by_id = {r.candidate_id: g for r, g in self.generate_stream(requests)}
        return [by_id[r.candidate_id] for r in requests]

    # -- scoring --------------------------------------------------------------------------

    def map(self, method: str, items: list, slice_size: int = 64) -> list:
        """`method(slice)` on the replicas for consecutive slices of `items`, results concatenated
        in order; a slice whose replica dies goes to another."""
        ray = self._ray()
        slices = deque((start, items[start:start + slice_size]) for start in range(0, len(items), slice_size))
        results: dict[int, list] = {}
        running: dict[object, tuple[str, int, list]] = {}
        while slices or running:
            busy = {name for name, _, _ in running.values()}
            for name in [n for n in self._actors if n not in busy]:
                if slices:
                    start, part = slices.popleft()
                    running[self._actors[name].call.remote(method, part)] = (name, start, part)
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                name, start, part = running.pop(ref)
                try:
                    results[start] = ray.get(ref)
                except Exception as exc:
                    if not _is_lost_replica(exc):
                        raise
                    slices.appendleft((start, part))
                    self._lose(name, exc)
        return [value for start in sorted(results) for value in results[start]]

    def close(self) -> None:
        if not self._actors:
            return
        import ray

        for handle in self._actors.values():
            ray.kill(handle)
        self._actors.clear()


class ReplicatedBackend:
    """A generation backend (as VLLMBackend) whose engines are replicas on the run's Ray cluster.
    Identity (fingerprint, label) and tokenizing are the driver's, from the same model directory."""

    def __init__(self, settings, label: str | None, pool: ReplicaPool):
        check_model_dir(settings.model_path)
        self.settings = settings
        self.fingerprint = fingerprint(Path(settings.model_path))
        self.model_label = f"{label or Path(settings.model_path).name}@{self.fingerprint}"
        self.pool = pool  # shared by the generators and scorers of the same engine settings
        self._tokenizer = None

    def generate_stream(self, requests: list[Request]) -> Iterator[tuple[Request, Generation]]:
        return self.pool.generate_stream(requests)

    def generate(self, requests: list[Request]) -> list[Generation]:
        return self.pool.generate(requests)

    def sequence_tokens(self, messages: list[dict], text: str) -> tuple[list[int], int]:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.settings.model_path)
        return sequence_tokens(self._tokenizer, messages, text)

    def response_logprobs(self, conversations: list[tuple[list[dict], str]]) -> list:
        return self.pool.map("response_logprobs", conversations)

    def close(self) -> None:
        self.pool.close()
