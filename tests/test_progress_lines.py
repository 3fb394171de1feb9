"""Progress in a log file: one line per interval, never a redrawn bar (parallel bars interleave into
unreadable text there); a terminal keeps its bar."""

from __future__ import annotations

import re

import curate.progress
from curate.progress import progress


def test_a_log_file_gets_a_line_per_interval_and_one_at_the_end(monkeypatch, capsys):
    monkeypatch.setattr(curate.progress, "interactive", lambda: False)
    monkeypatch.setattr(curate.progress, "PROGRESS_INTERVAL_S", 0.0)
    assert list(progress(iter(range(3)), 3, "score constraints", "candidate")) == [0, 1, 2]
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [re.sub(r"^\d\d:\d\d:\d\d ", "", line).split(" (")[0] for line in lines[:3]] == [
        "score constraints: 1/3 candidates", "score constraints: 2/3 candidates", "score constraints: 3/3 candidates"]
    assert lines[-1].endswith(" s") and "\r" not in captured.out + captured.err


def test_a_short_stage_in_a_log_file_writes_nothing(monkeypatch, capsys):
    monkeypatch.setattr(curate.progress, "interactive", lambda: False)
    assert list(progress(range(5), 5, "score math_verify")) == list(range(5))
    assert capsys.readouterr() == ("", "")


def test_a_terminal_gets_a_bar(monkeypatch, capsys):
    monkeypatch.setattr(curate.progress, "interactive", lambda: True)
    assert list(progress(range(2), 2, "score code_tests", "candidate")) == [0, 1]
    assert "score code_tests" in capsys.readouterr().err


def test_the_gguf_conversion_draws_no_bar_in_a_log_file(monkeypatch, capsys):
    from transformers import modeling_gguf_pytorch_utils as gguf_loader

    import curate.runtime.models

    monkeypatch.setattr(curate.runtime.models, "interactive", lambda: False)
    monkeypatch.setattr(gguf_loader, "tqdm", gguf_loader.tqdm)  # restored after the test
    curate.runtime.models._no_gguf_bar_in_a_log_file()
    assert list(gguf_loader.tqdm(range(3), desc="Converting and de-quantizing GGUF tensors...")) == [0, 1, 2]
    assert capsys.readouterr().err == ""
