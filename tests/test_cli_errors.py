"""What a user gets wrong reaches them as one verbatim line, never a traceback: config errors
(brackets intact), model directories without a chat template or files, inputs that cannot be read
or are empty, and a config whose every input fails (the run completes with zeros and says so)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from curate.lake.catalog import Lake
from curate.runtime.models import check_model_dir
from tests.helpers import write_config, write_prompts

CLI = [sys.executable, "-m", "curate.cli.main"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600)


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def _config(tmp_path: Path, body: str) -> Path:
    (tmp_path / "p.jsonl").write_text(json.dumps({"prompt": "hi"}) + "\n")
    path = tmp_path / "run.toml"
    path.write_text('[[inputs]]\npath = "p.jsonl"\n' + body)
    return path


@pytest.mark.parametrize("body, expected", [
    ("[sampling]\nseeed = 1\n", "config: unknown key(s) ['seeed'] in [sampling] (known: "),
    ("[[pairs]]\nscorer = \"x\"\n", "config: [[pairs]] entry 0 needs a `strategy`"),
    ("[generator]\nbackend = \"[bold]x[/bold]\"\n", "backend must be vllm or openai, not '[bold]x[/bold]'"),
    ("[sampling\nn = 1\n", "not valid TOML"),
    ("[[pairs]]\nstrategy = \"margin\"\nscorer = \"x\"\nmin_margin = nan\n", "min_margin must be a finite number, not nan"),
    ("[[pairs]]\nstrategy = \"margin\"\nscorer = \"x\"\nmin_margin = inf\n", "min_margin must be a finite number, not inf"),
])
def test_config_errors_print_verbatim_on_one_line(tmp_path, body, expected):
    line = _one_error_line(_cli("run", str(_config(tmp_path, body)), "--data-dir", str(tmp_path / "data")))
    assert expected in line
    assert not (tmp_path / "data" / "lake").exists()


def test_a_config_that_is_not_utf8_is_one_line(tmp_path):
    path = _config(tmp_path, "")
    path.write_bytes(path.read_bytes() + b'name = "caf\xe9"\n')  # Latin-1
    line = _one_error_line(_cli("run", str(path), "--data-dir", str(tmp_path / "data")))
    assert "not UTF-8 text" in line


def test_an_export_path_inside_the_lake_is_refused_before_the_run(tmp_path):
    path = _config(tmp_path, "")
    path.write_text('export_path = "lake/files/pairs"\n' + path.read_text())  # a top-level key
    line = _one_error_line(_cli("run", str(path), "--data-dir", str(tmp_path / "data"), "--no-prefect"))
    assert "is inside the lake" in line
    with Lake(tmp_path / "data" / "lake", read_only=True) as lake:
        assert lake.count("runs") == 0 and lake.count("candidates") == 0
    export = _cli("export", str(tmp_path / "data" / "lake" / "x"), "--data-dir", str(tmp_path / "data"))
    assert "is inside the lake" in _one_error_line(export)


def _without_chat_template(model: Path) -> None:
    (model / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((model / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (model / "tokenizer_config.json").write_text(json.dumps(config))


MODEL_PROBLEMS = {
    "no chat template": (_without_chat_template, "has no chat template"),
    "no weights": (lambda m: (m / "model.safetensors").unlink(), "has no weights"),
    "no config.json": (lambda m: (m / "config.json").unlink(), "is not a model directory (no config.json)"),
    "no tokenizer": (lambda m: [(m / n).unlink() for n in ("tokenizer.json", "tokenizer_config.json")],
                     "has no tokenizer"),
    "missing directory": (lambda m: shutil.rmtree(m), "does not exist"),
}


def test_a_complete_model_passes_the_check(tiny_generator):
    assert check_model_dir(tiny_generator) == tiny_generator


@pytest.mark.parametrize("problem", list(MODEL_PROBLEMS))
def test_model_directory_problems_stop_the_run_before_anything_loads(tmp_path, tiny_generator, problem):
    model = tmp_path / "model"
    shutil.copytree(tiny_generator, model)
    breaks, expected = MODEL_PROBLEMS[problem]
    breaks(model)
    prompts = write_prompts(tmp_path / "prompts.jsonl", broken=False)
    config = write_config(tmp_path / "run.toml", prompts, model, None, export=None)
    line = _one_error_line(_cli("run", str(config), "--data-dir", str(tmp_path / "data"), "--no-prefect"))
    assert f"generators.0 model {model} {expected}" in line
    assert not (tmp_path / "data" / "lake").exists()


def test_reward_model_without_chat_template_is_named(tmp_path, tiny_generator, tiny_reward):
    reward = tmp_path / "reward"
    shutil.copytree(tiny_reward, reward)
    _without_chat_template(reward)
    prompts = write_prompts(tmp_path / "prompts.jsonl", broken=False)
    config = write_config(tmp_path / "run.toml", prompts, tiny_generator, reward, export=None)
    line = _one_error_line(_cli("run", str(config), "--data-dir", str(tmp_path / "data"), "--no-prefect"))
    assert f"scorers.2 (reward) model {reward} has no chat template" in line


def _failing_inputs(tmp_path: Path) -> list[tuple[str, str]]:
    """Inputs that cannot be read or hold no rows, with the reason each must get."""
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "blank.jsonl").write_text("\n  \n\n")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "note.txt").write_text("not a dataset")
    return [("empty.jsonl", "the input holds no rows"), ("blank.jsonl", "the input holds no rows"),
            ("broken.parquet", "input not read: "), ("folder", "input not read: "),
            ("missing.jsonl", "input not read: prompt file not found")]


def test_a_config_whose_every_input_fails_completes_with_zeros(tmp_path, tiny_generator):
    inputs = _failing_inputs(tmp_path)
    config = tmp_path / "run.toml"
    config.write_text("".join(f'[[inputs]]\npath = "{name}"\n' for name, _ in inputs)
                      + f'[generator]\nmodel = "{tiny_generator}"\n[[scorers]]\nkind = "math_verify"\n'
                      '[[pairs]]\nstrategy = "margin"\nscorer = "math_verify"\n')
    data = tmp_path / "data"
    result = _cli("run", str(config), "--data-dir", str(data), "--no-prefect")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == len(inputs) + 1 and all(line.startswith("warning: ") for line in lines), result.stderr
    for (name, reason), line in zip(inputs, lines):
        assert line.startswith(f"warning: {name}: ") and reason in line
    assert "no prompts: every input failed or was empty (3 rejected); the run goes on with zeros" in lines[-1]
    assert "curate run" in result.stdout  # the summary table

    rejects = _cli("query", "select location, reason from rejects order by location", "--data-dir", str(data),
                   "--format", "jsonl")
    stored = [json.loads(line) for line in rejects.stdout.splitlines()]
    unreadable = [(name, reason) for name, reason in inputs if "not read" in reason]
    assert sorted((row["location"], row["reason"][:len("input not read: ")]) for row in stored) == \
        sorted((str(tmp_path / name), "input not read: ") for name, _ in unreadable)
    runs = _cli("query", "select status, counts_json from runs", "--data-dir", str(data), "--format", "json")
    (run,) = json.loads(runs.stdout)
    assert run["status"] == "completed" and json.loads(run["counts_json"])["prompts_read"] == 0


@pytest.mark.slow
def test_bad_inputs_beside_a_good_one_do_not_stop_the_run(tmp_path, tiny_generator):
    inputs = _failing_inputs(tmp_path)[1:4]
    prompts = write_prompts(tmp_path / "prompts.jsonl", broken=False)
    config = write_config(tmp_path / "run.toml", prompts, tiny_generator, None, n=1, export=None)
    others = "".join(f'[[inputs]]\npath = "{tmp_path / name}"\n' for name, _ in inputs)
    config.write_text(config.read_text().replace('source = "test"\n', 'source = "test"\n' + others, 1))
    data = tmp_path / "data"
    result = _cli("run", str(config), "--data-dir", str(data), "--no-prefect")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert [w.split(":")[1].strip() for w in warnings] == [name for name, _ in inputs]
    counts = _cli("query", "select (select count(*) from prompts) as p, (select count(*) from candidates) as c",
                  "--data-dir", str(data), "--format", "jsonl")
    assert json.loads(counts.stdout) == {"p": 5, "c": 5}


def test_an_unexpected_failure_is_one_line_with_its_traceback_in_a_file(tmp_path):
    script = ("from curate.cli import main as cli\n"
              "def broken(**kwargs):\n"
              "    raise RuntimeError('Timed out while attempting to connect to ephemeral Prefect API\\nserver.')\n"
              "cli.app = broken\n"
              "cli.main()\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "CURATE_TRACEBACK"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: RuntimeError: Timed out while attempting to connect to ephemeral Prefect API "
                           "server.; the machine may be too busy")
    saved = Path(line.rsplit("traceback in ", 1)[1].rstrip(")"))
    assert "Traceback (most recent call last)" in saved.read_text()
    saved.unlink()


@pytest.mark.slow
def test_a_user_error_inside_a_prefect_step_is_one_line(tmp_path, tiny_generator):
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "notrepo").mkdir()
    config = tmp_path / "run.toml"
    config.write_text(f'[[inputs]]\npath = "empty.jsonl"\n[generator]\nmodel = "{tiny_generator}"\n'
                      '[[pairs]]\nstrategy = "code_evolution"\nmode = "commits"\nrepo = "notrepo"\n')
    result = _cli("run", str(config), "--data-dir", str(tmp_path / "data"))  # through Prefect
    assert result.returncode == 2 and "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]
    assert len(errors) == 1 and errors[0].startswith("error: code_evolution: `git rev-parse` failed in "), errors
