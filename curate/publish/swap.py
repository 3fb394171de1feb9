"""Exports that are whole or absent: written aside, then swapped in.

An export is written into a scratch folder beside its target (`.<name>.export-*`), and replaces the
target only once it is complete, with two renames: the previous export stays loadable until then,
and a kill at any point leaves either the old export or the new one. Files of the user's own in
the target (anything an export does not write) are linked into the new export before the swap.
Scratch that a killed export left behind is removed by the next export to the same target, and a
kill between the two renames (the target moved aside, the new one not yet in) is undone by putting
the previous export back first.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

from curate.errors import UserError

SCRATCH = ".{name}.export-"
PREVIOUS = ".{name}.previous-"


def _is_export_entry(name: str, export_files: tuple[str, ...], splits: tuple[str, ...]) -> bool:
    return name in export_files or name in splits or (name.startswith("data-") and name.endswith(".arrow"))


def _link_tree(source: Path, target: Path) -> None:
    def link(src, dst):
        try:
            os.link(src, dst)
        except OSError:  # another filesystem, or links not allowed: a copy
            shutil.copy2(src, dst)

    if source.is_dir():
        shutil.copytree(source, target, copy_function=link, symlinks=True)
    else:
        link(source, target)


def recover(out_dir: Path) -> None:
    """Undo what a killed export left beside `out_dir`: put a moved-aside export back, remove scratch."""
    parent, name = out_dir.parent, out_dir.name
    if not parent.is_dir():
        return
    previous = sorted(parent.glob(PREVIOUS.format(name=name) + "*"))
    if previous and not out_dir.exists():
        os.rename(previous.pop(), out_dir)
    for leftover in [*previous, *parent.glob(SCRATCH.format(name=name) + "*")]:
        shutil.rmtree(leftover, ignore_errors=True)


@contextmanager
def staged(out_dir: Path | str, export_files: tuple[str, ...], splits: tuple[str, ...]):
    """Yields an empty scratch folder to write the export into; on a clean exit it becomes
    `out_dir`. An exception leaves `out_dir` as it was."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    recover(out_dir)
    scratch = Path(tempfile.mkdtemp(prefix=SCRATCH.format(name=out_dir.name), dir=out_dir.parent))
    try:
        yield scratch
        if out_dir.is_dir():
            for entry in out_dir.iterdir():
                if not _is_export_entry(entry.name, export_files, splits) and not (scratch / entry.name).exists():
                    _link_tree(entry, scratch / entry.name)
            previous = out_dir.with_name(PREVIOUS.format(name=out_dir.name) + uuid.uuid4().hex[:12])
            os.rename(out_dir, previous)
            os.rename(scratch, out_dir)
            shutil.rmtree(previous, ignore_errors=True)
        else:
            os.rename(scratch, out_dir)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def relocated(value, scratch: Path, out_dir: Path):
    """`value` (a result of an export: paths, dicts and lists of them) with paths under `scratch`
    moved to `out_dir`."""
    if isinstance(value, Path):
        try:
            return out_dir / value.relative_to(scratch)
        except ValueError:
            return value
    if isinstance(value, dict):
        return {key: relocated(item, scratch, out_dir) for key, item in value.items()}
    if isinstance(value, list):
        return [relocated(item, scratch, out_dir) for item in value]
    return value


def refuse_inside(out_dir: Path | str, lake_root: Path | str) -> None:
    """A one-line error where an export would be written among the lake's own files."""
    out, lake = Path(out_dir).resolve(), Path(lake_root).resolve()
    if out == lake or lake in out.parents:
        raise UserError(f"export path {out_dir} is inside the lake at {lake_root}: give a folder outside it")
