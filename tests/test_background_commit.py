"""Commits on a writer thread: in order, overlapping production, nothing produced is lost."""

from __future__ import annotations

import threading

import pytest

from curate.lake.background_commit import commit_while_producing


def test_items_are_committed_in_order():
    committed = []
    commit_while_producing(iter(range(50)), committed.append)
    assert committed == list(range(50))


def test_production_goes_on_while_a_commit_runs():
    second_produced = threading.Event()
    overlapped = []

    def produce():
        yield 1
        yield 2
        second_produced.set()

    def commit(item):
        if item == 1:  # the first commit waits until the producer has made the next item
            overlapped.append(second_produced.wait(timeout=10))

    commit_while_producing(produce(), commit)
    assert overlapped == [True]


def test_what_was_produced_before_the_producer_fails_is_committed():
    committed = []

    def produce():
        yield from range(3)
        raise RuntimeError("engine died")

    with pytest.raises(RuntimeError, match="engine died"):
        commit_while_producing(produce(), committed.append)
    assert committed == [0, 1, 2]


def test_a_failed_commit_stops_the_producer_and_is_raised():
    produced, committed, closed = [], [], []

    def produce():
        try:
            for i in range(1000):
                produced.append(i)
                yield i
        finally:
            closed.append(True)  # what aborts the engine's requests in the vLLM backend

    def commit(item):
        if item == 2:
            raise OSError("disk full")
        committed.append(item)

    with pytest.raises(OSError, match="disk full"):
        commit_while_producing(produce(), commit)
    assert committed == [0, 1] and closed == [True] and len(produced) < 1000
