"""A commit that runs out of disk leaves the lake as it was, and the next one after space comes
back succeeds. The lake lives on a small tmpfs (mounting one needs root: skipped otherwise)."""

from __future__ import annotations

import os
import random
import string
import subprocess

import pytest

from curate.lake.catalog import Lake
from tests.test_lake import prompt_row, run_row

SIZE_KB = 6144


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_KB}k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(mount, leave_kb: int):
    stats = os.statvfs(mount)
    free = stats.f_bavail * stats.f_frsize
    with open(mount / "filler", "wb") as out:
        out.write(b"\0" * max(free - leave_kb * 1024, 0))


def test_a_commit_that_fills_the_disk_changes_nothing(small_disk):
    rng = random.Random(0)
    big = [prompt_row(f"big{i}", "".join(rng.choices(string.ascii_letters, k=4000))) for i in range(600)]
    root = small_disk / "lake"
    with Lake(root) as lake:
        lake.commit({"runs": [run_row()], "prompts": [prompt_row(f"p{i}") for i in range(50)]})
        before = (lake.snapshot_id(), lake.count("prompts"), lake.count("runs"))
        _fill(small_disk, leave_kb=256)  # ~2.4 MB of incompressible text will not fit
        with pytest.raises(Exception, match="(?i)space|disk|write"):
            lake.commit({"prompts": big, "runs": [run_row("r2")]})
        assert (lake.snapshot_id(), lake.count("prompts"), lake.count("runs")) == before
    with Lake(root, read_only=True) as reader:  # what another process finds
        assert (reader.snapshot_id(), reader.count("prompts"), reader.count("runs")) == before
    (small_disk / "filler").unlink()
    with Lake(root) as lake:
        assert lake.commit({"prompts": big, "runs": [run_row("r2")]}) == {"prompts": 600, "runs": 1}
        assert lake.snapshot_id() == before[0] + 1
