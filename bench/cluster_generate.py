"""Generation on engine replicas across a Ray cluster (curate.generate.replicas) against bare vLLM
on the same work: requests/s and output tokens/s with 1 and 2 replicas, and a replica killed
halfway through.

The work is the demo's 34 file prompts x `--n` samples (seeded, temperature 0.8, `--max-tokens`) per
replica: k replicas get k times the samples, so each has what one replica has alone (an engine's
throughput grows with its batch, and a split of the same work would compare smaller batches).
Bare vLLM is one `LLM.generate` call over the same token ids and sampling in a process of its own,
pinned to `--node-cpus` cores (taskset) with as many OpenMP threads: one replica's share. Without
`--address` the cluster is simulated on this machine (`ray.cluster_utils.Cluster`, 2 nodes of
`--node-cpus` CPUs each), each replica asking `--node-cpus` CPUs, so 2 replicas land on 2 nodes.
Engine start-up is not timed: each configuration starts its replicas, then times the generation.
The replicas' sum is "1 replica" twice: each replica alone does the same work on the same share
of cores. "bare vLLM x2" runs two bare processes at once, one per core: what the machine allows. Prints the machine's load beside the figures; take them on an idle machine.

    .venv/bin/python bench/cluster_generate.py [--n 2] [--max-tokens 96] [--node-cpus 1]
    # a GPU cluster: every node with this project installed and the model at the same path
    .venv/bin/python bench/cluster_generate.py --address auto --model /models/policy --dtype bfloat16 \
        --gpus-per-replica 1 --tensor-parallel-size 1 --replicas 1,2,4 --n 8 --max-tokens 512
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def plan(args, fingerprint: str, scale: int = 1):
    import polars as pl

    from curate.generate import SamplingSettings, plan_requests
    from curate.ingest.validate import ingest_file

    prompts = pl.concat([pl.from_arrow(ingest_file(ROOT / "data" / "demo" / f"{name}.jsonl", "bench")[0])
                         for name in ("math", "instruction", "chat")])
    sampling = SamplingSettings(n=args.n * scale, temperature=0.8, max_tokens=args.max_tokens)
    return plan_requests(prompts, fingerprint, lambda task: sampling)


def settings(args):
    from curate.generate.vllm_backend import EngineSettings
    from curate.runtime.models import embedded_model_dir

    model = args.model or str(embedded_model_dir(ROOT / "data" / "models"))
    return EngineSettings(model, dtype=args.dtype, max_model_len=args.max_model_len,
                          kv_cache_memory_bytes=args.kv_cache_bytes, tensor_parallel_size=args.tensor_parallel_size)


def bare_worker(args) -> None:
    """One LLM.generate over the planned requests, in this process; prints seconds and tokens."""
    from vllm import SamplingParams

    from curate.generate.vllm_backend import VLLMBackend, chat_token_ids

    backend = VLLMBackend(settings(args))
    requests = plan(args, backend.fingerprint)
    llm = backend.llm
    tokenizer = llm.get_tokenizer()
    inputs = [{"prompt_token_ids": chat_token_ids(tokenizer, r.messages)} for r in requests]
    params = [SamplingParams(n=1, temperature=r.sampling.temperature, top_p=r.sampling.top_p, seed=r.seed,
                             max_tokens=r.sampling.max_tokens, logprobs=0) for r in requests]
    began = time.perf_counter()
    outputs = llm.generate(inputs, sampling_params=params, use_tqdm=False)
    seconds = time.perf_counter() - began
    print(json.dumps({"seconds": seconds, "requests": len(requests),
                      "tokens": sum(len(o.outputs[0].token_ids) for o in outputs),
                      "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run_bare(args, copies: int = 1) -> dict:
    """Bare vLLM in `copies` processes at once, each pinned to its own `--node-cpus` cores; their
    tokens summed over the slowest one's time."""
    procs = []
    for copy in range(copies):
        command = [sys.executable, __file__, "--bare-worker", *sys.argv[1:]]
        env = dict(os.environ)
        if not args.gpus_per_replica:
            mine = sorted(os.sched_getaffinity(0))[copy * args.node_cpus:(copy + 1) * args.node_cpus]
            cores = ",".join(map(str, mine))
            command = ["taskset", "-c", cores, *command]
            env.update(OMP_NUM_THREADS=str(args.node_cpus), CURATE_VLLM_ONE_THREAD="1",
                       VLLM_CPU_OMP_THREADS_BIND=cores)
        procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    results = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"bare vLLM failed:\n{err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return {"seconds": max(r["seconds"] for r in results), "requests": sum(r["requests"] for r in results),
            "tokens": sum(r["tokens"] for r in results), "rss_mib": max(r["rss_mib"] for r in results)}


def run_replicas(args, replicas: int, connect, kill_at: float | None = None) -> dict:
    from curate.generate.replicas import Placement, ReplicaPool, ReplicatedBackend
    from curate.generate.vllm_backend import VLLMBackend

    engine = settings(args)
    placement = Placement(replicas, args.node_cpus if not args.cpus_per_replica else args.cpus_per_replica,
                          args.gpus_per_replica, args.tensor_parallel_size)
    pool = ReplicaPool("bench", VLLMBackend, (engine, "bench"), placement, connect)
    backend = ReplicatedBackend(engine, "bench", pool)
    requests = plan(args, backend.fingerprint, replicas)  # the same work per replica
    pool.live()  # start-up is not timed
    answered: list[str] = []
    tokens = 0
    began = time.perf_counter()
    for request, generation in backend.generate_stream(requests):
        answered.append(request.candidate_id)
        tokens += generation.completion_tokens or 0
        if kill_at is not None and len(answered) == int(len(requests) * kill_at):
            victim = sorted(pool.where)[-1]
            os.kill(pool.where[victim]["pid"], signal.SIGKILL)
    seconds = time.perf_counter() - began
    rss = pool.peak_rss_mib()
    pool.close()
    exactly_once = sorted(answered) == sorted(r.candidate_id for r in requests)
    return {"seconds": seconds, "requests": len(requests), "tokens": tokens, "exactly_once": exactly_once,
            "lost": len(pool.lost), "requeued": pool.requeued, "rss_mib": max(rss.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2, help="samples per prompt")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--replicas", default="1,2", help="replica counts to time, e.g. 1,2,4")
    parser.add_argument("--node-cpus", type=int, default=1, help="simulated cluster: CPUs per node and per replica")
    parser.add_argument("--cpus-per-replica", type=float, default=None)
    parser.add_argument("--gpus-per-replica", type=float, default=None)
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    parser.add_argument("--address", default=None, help="an existing Ray cluster (default: a simulated one)")
    parser.add_argument("--model", default=None, help="a model directory (default: the embedded SmolLM2)")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--kv-cache-bytes", type=int, default=256 << 20)
    parser.add_argument("--no-loss", action="store_true", help="skip the run that kills a replica")
    parser.add_argument("--bare-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    from curate.runtime.env import apply_offline_env

    work = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    apply_offline_env(work)
    if args.bare_worker:
        bare_worker(args)
        return

    load = os.getloadavg()
    bare = run_bare(args)
    bare_pair = run_bare(args, 2) if not args.gpus_per_replica and len(os.sched_getaffinity(0)) >= 2 * args.node_cpus \
        else None
    cluster = None
    if args.address is None:
        for name in [n for n in os.environ if n.startswith("RAY_")]:
            del os.environ[name]
        os.environ.update(RAY_TMPDIR=str(work / "ray"), RAY_USAGE_STATS_ENABLED="0")
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": args.node_cpus,
                                                               "include_dashboard": False})
        cluster.add_node(num_cpus=args.node_cpus)
        cluster.wait_for_nodes()
    from curate.runtime import ray_cluster

    address = args.address or cluster.address

    def connect() -> None:
        ray_cluster.connect(address, work)

    rows = [("bare vLLM, one LLM.generate", bare)]
    if bare_pair:
        rows.append(("bare vLLM x2 at once, own cores", bare_pair))
    counts = [int(c) for c in args.replicas.split(",")]
    for count in counts:
        rows.append((f"{count} replica{'s' if count > 1 else ''}", run_replicas(args, count, connect)))
    if not args.no_loss and max(counts) >= 2:
        rows.append((f"{max(counts)} replicas, one killed at 50%", run_replicas(args, max(counts), connect, 0.5)))
    if cluster is not None:
        import ray

        ray.shutdown()  # the driver leaves before its cluster goes
        cluster.shutdown()

    base = bare["tokens"] / bare["seconds"]
    print(f"\n{bare['requests']} requests per engine (demo prompts x {args.n}, max_tokens {args.max_tokens}); "
          f"{'simulated 2-node cluster, ' + str(args.node_cpus) + ' CPU(s) per node' if cluster else address}; "
          f"load before {load[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    print(f"{'':32s} {'seconds':>8s} {'req/s':>7s} {'out tok/s':>10s} {'vs bare':>8s} {'lost':>5s} "
          f"{'requeued':>9s} {'once':>5s} {'peak RSS MiB':>13s}")
    for name, row in rows:
        rate = row["tokens"] / row["seconds"]
        print(f"{name:32s} {row['seconds']:8.2f} {row['requests'] / row['seconds']:7.2f} {rate:10.1f} "
              f"{rate / base:8.3f} {row.get('lost', 0):5d} {row.get('requeued', 0):9d} "
              f"{str(row.get('exactly_once', True)).lower():>5s} {row['rss_mib']:13.0f}")
    first = 2 if bare_pair else 1
    by_count = dict(zip(counts, rows[first:first + len(counts)], strict=True))
    if 1 in by_count and 2 in by_count:
        one, two = by_count[1][1], by_count[2][1]
        ratio = (two["tokens"] / two["seconds"]) / (2 * one["tokens"] / one["seconds"])
        print(f"2 replicas / the sum of each replica alone (output tokens/s): {ratio:.3f}")
        if bare_pair:
            pair_rate = bare_pair["tokens"] / bare_pair["seconds"]
            print(f"bare vLLM x2 at once / twice bare alone: {pair_rate / (2 * base):.3f} (what the machine allows); "
                  f"2 replicas / bare x2 at once: {(two['tokens'] / two['seconds']) / pair_rate:.3f}")
    print(f"driver peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
