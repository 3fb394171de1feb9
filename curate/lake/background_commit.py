"""Commit what a producer yields on one writer thread, so that the producer (the vLLM engine)
keeps working while a chunk is written to the lake."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from queue import Queue
from typing import TypeVar

T = TypeVar("T")


def commit_while_producing(items: Iterator[T], commit: Callable[[T], None], depth: int = 2) -> None:
    """Call `commit` on every item of `items`, in order, on a writer thread, at most `depth` items
    waiting. Whatever was produced before the producer fails is still committed; when a commit
    fails, production stops (the generator is closed) and the commit's error is raised."""
    waiting: Queue = Queue(maxsize=depth)
    failed: list[BaseException] = []

    def write() -> None:
        while (item := waiting.get()) is not None:
            if failed:
                continue  # drain: nothing after a failed commit is written
            try:
                commit(item)
            except BaseException as error:  # handed to the producer's thread and raised there
                failed.append(error)

    writer = threading.Thread(target=write, name="curate-commit", daemon=True)
    writer.start()
    try:
        for item in items:
            if failed:
                break
            waiting.put(item)
    finally:
        waiting.put(None)
        writer.join()
        close = getattr(items, "close", None)
        if close is not None:
            close()
    if failed:
        raise failed[0]
