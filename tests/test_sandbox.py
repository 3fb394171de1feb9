"""The code sandbox: hostile candidates must not harm this process, and every limit must hold.

Each hostile test runs one snippet through `run_tests` and then checks, through the `unharmed`
fixture, that no process of a sandbox uid is left, that no temporary directory is left, and that
this process can still start processes. The sandbox needs root; these tests run as root here.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import pytest

from curate.errors import UserError
from curate.ingest.validate import validate_row
from curate.sandbox import isolation as sandbox
from curate.sandbox.isolation import SANDBOX_UIDS, SandboxLimits, plan_tests, run_tests
from curate.score import ScoreItem
from curate.score.verify.code import CodeTestsScorer, extract_code

FAST = SandboxLimits(cpu_seconds=2, wall_seconds=4)
ADD = "def add(a, b):\n    return a + b\n"
CHECK_ADD = ("def check(candidate):\n    assert candidate(1, 2) == 3\n"
             "    for i in range(4):\n        assert candidate(i, i) == 2 * i\n")
TRIVIAL_TESTS = "assert f() == 1\n"
TRIVIAL = "def f():\n    return 1\n"


def _sandbox_pids(by_uid: dict | None = None) -> list[int]:
    """Processes of the sandbox uids; `by_uid` gets their count per uid (the candidate's and the
    judge's each have their own process limit)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path("/proc", entry, "status").read_text()
        except OSError:
            continue
        uid_line = next((line for line in status.splitlines() if line.startswith("Uid:")), "")
        if uid_line and int(uid_line.split()[1]) in SANDBOX_UIDS:
            pids.append(int(entry))
            if by_uid is not None:
                uid = int(uid_line.split()[1])
                by_uid[uid] = by_uid.get(uid, 0) + 1
    return pids


def _pids_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in Path("/proc", entry, "cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                pass
    return found


def _sandbox_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("curate-sandbox-*")
            if not p.name.startswith("curate-sandbox-slots-")}


class Watch(threading.Thread):
    """Samples the sandbox uids' processes while a run goes on: the most of one uid at once, the
    largest RSS."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop, self.max_procs, self.max_rss = threading.Event(), 0, 0

    def run(self):
        while not self.stop.is_set():
            by_uid: dict[int, int] = {}
            pids = _sandbox_pids(by_uid)
            self.max_procs = max(self.max_procs, *by_uid.values(), 0)
            for pid in pids:
                try:
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            self.max_rss = max(self.max_rss, int(line.split()[1]) * 1024)
                except OSError:
                    pass
            time.sleep(0.01)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.join()


@pytest.fixture
def unharmed(sandbox_to_itself):
    """After the test: no sandbox process or directory is left, and we can still start processes."""
    before = _sandbox_dirs()
    me = os.getpid()
    yield
    assert os.getpid() == me
    assert _sandbox_pids() == []
    assert _sandbox_dirs() - before == set()
    assert subprocess.run(["true"]).returncode == 0


def _run(code: str, tests: str = TRIVIAL_TESTS, entry_point: str | None = None,
         limits: SandboxLimits = FAST):
    start = time.monotonic()
    result = run_tests(code, tests, entry_point, limits)
    return result, time.monotonic() - start  # no upper bound asserted: a loaded machine is slow, not wrong


# hostile candidates ---------------------------------------------------------------------------

def test_fork_bomb(unharmed):
    code = ("import os\n"
            "while True:\n"
            "    try:\n"
            "        os.fork()\n"
            "    except OSError:\n"
            "        pass\n")
    with Watch() as watch:
        result, _ = _run(code)
    assert result.status == "timeout"
    assert 1 < watch.max_procs <= FAST.max_processes, watch.max_procs


def test_memory_bomb(unharmed):
    code = "chunks = []\nwhile True:\n    chunks.append(bytearray(32 * 1024 * 1024))\n"
    with Watch() as watch:
        result, _ = _run(code)
    assert result.status == "error"
    assert "MemoryError" in result.reason
    assert watch.max_rss <= FAST.memory_bytes


def test_infinite_loop_hits_the_wall_clock(unharmed):
    limits = SandboxLimits(cpu_seconds=30, wall_seconds=2)
    result, elapsed = _run("while True:\n    pass\n", limits=limits)
    assert result.status == "timeout" and "wall-clock" in result.reason
    assert elapsed >= limits.wall_seconds


def test_infinite_loop_hits_the_cpu_limit(unharmed):
    limits = SandboxLimits(cpu_seconds=1, wall_seconds=5)
    result, _ = _run("while True:\n    pass\n", limits=limits)
    assert result.status == "timeout" and "CPU" in result.reason  # the CPU limit, not the wall clock


def test_sleep_past_the_timeout(unharmed):
    limits = SandboxLimits(wall_seconds=2)
    result, _ = _run("import time\ntime.sleep(120)\n" + TRIVIAL, limits=limits)
    assert result.status == "timeout" and "wall-clock" in result.reason


def test_busy_children_die_with_the_run(unharmed):
    marker = f"curate-orphan-{secrets.token_hex(6)}"
    code = (
        "import os, subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-c', 'while True: pass', {marker!r}], start_new_session=True)\n"
        "if os.fork() == 0:\n"  # a daemon: double fork, new session, busy forever
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        os.execv(sys.executable,\n"
        f"                 [sys.executable, '-c', 'while True: pass', {marker + '-daemon'!r}])\n"
        "    os._exit(0)\n"
        "import time\n"
        "time.sleep(0.3)\n" + TRIVIAL)
    result, _ = _run(code)
    assert result.status == "passed"  # it did not wait for the children (that would be a timeout)
    assert _pids_with(marker) == []


def test_network_is_unreachable(unharmed):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        code = ("import socket\n"
                "def probe(port):\n"
                "    try:\n"
                "        socket.create_connection(('127.0.0.1', port), timeout=2).close()\n"
                "        return 'connected'\n"
                "    except OSError as exc:\n"
                "        return type(exc).__name__\n"
                "def interfaces():\n"
                "    return [name for _, name in socket.if_nameindex()]\n")
        tests = f"assert probe({port}) != 'connected'\nassert interfaces() == ['lo']\n"
        result, _ = _run(code, tests)
        assert (result.status, result.tests_passed, result.tests_total) == ("passed", 2, 2), result
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_cannot_write_outside_its_directory(unharmed):
    nonce = secrets.token_hex(6)
    targets = [f"/tmp/curate-sandbox-escape-{nonce}", f"/var/tmp/curate-sandbox-escape-{nonce}",
               f"/dev/shm/curate-sandbox-escape-{nonce}",
               str(Path(__file__).resolve().parent.parent / f"curate-sandbox-escape-{nonce}"),
               f"/etc/curate-sandbox-escape-{nonce}"]
    code = ("import os\n"
            "def attempt(path):\n"
            "    try:\n"
            "        with open(path, 'w') as f:\n"
            "            f.write('escaped')\n"
            "        return 'wrote'\n"
            "    except OSError as exc:\n"
            "        return type(exc).__name__\n"
            f"RESULTS = [attempt(p) for p in {targets!r}]\n"
            "print(RESULTS)\n" + TRIVIAL)
    result, _ = _run(code)
    assert result.status == "passed"
    for target in targets:
        assert not os.path.exists(target), target


def test_cannot_see_our_environment(unharmed, monkeypatch):
    secret = f"curate-secret-{secrets.token_hex(8)}"
    monkeypatch.setenv("CURATE_TEST_SECRET", secret)
    code = ("import glob, os\n"
            "def leaks():\n"
            "    found = [k for k in os.environ if k == 'CURATE_TEST_SECRET']\n"
            "    for path in glob.glob('/proc/*/environ') + [f'/proc/{os.getppid()}/environ']:\n"
            "        try:\n"
            "            if b'CURATE_TEST_SECRET' in open(path, 'rb').read():\n"
            "                found.append(path)\n"
            "        except OSError:\n"
            "            pass\n"
            "    return found\n"
            "def visible_pids():\n"
            "    return [p for p in os.listdir('/proc') if p.isdigit()]\n"
            "print(dict(os.environ))\n")
    tests = ("assert leaks() == []\n"
             "assert set(os.environ) <= {'PATH', 'LANG', 'HOME', 'PWD'}\n"
             "assert len(visible_pids()) <= 4\n")  # sh, the launcher, the judge and itself
    result, _ = _run(code, tests)
    assert (result.status, result.tests_passed, result.tests_total) == ("passed", 3, 3), result
    assert secret not in result.stdout
    assert "PATH" in result.stdout


def test_cannot_kill_us(unharmed):
    canary = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        code = ("import os, signal\n"
                f"for pid in (os.getppid(), 1, {os.getpid()}, {canary.pid}, {os.getppid()}, -1):\n"
                "    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGSTOP):\n"
                "        try:\n"
                "            os.kill(pid, sig)\n"
                "        except OSError:\n"
                "            pass\n" + TRIVIAL)
        result, _ = _run(code)
        assert result.status == "passed"
        assert canary.poll() is None
        assert os.kill(os.getppid(), 0) is None  # our parent is still there
    finally:
        canary.kill()
        canary.wait()


def test_huge_output_is_capped(unharmed):
    code = ("import sys\n"
            "for _ in range(100):\n"
            "    sys.stdout.write('x' * 1_000_000)\n"
            "sys.stdout.write('THE-END')\n"
            "sys.stderr.write('e' * 5_000_000)\n" + TRIVIAL)
    result, _ = _run(code)
    assert result.status == "passed"
    assert result.output_truncated
    assert len(result.stdout.encode()) <= FAST.max_output_bytes
    assert len(result.stderr.encode()) <= FAST.max_output_bytes
    assert result.stdout.endswith("THE-END")  # the tail is kept


def test_recursion_bomb(unharmed):
    code = ("import sys\n"
            "sys.setrecursionlimit(10**9)\n"
            "def down(n):\n"
            "    return down(n + 1) + 1\n"
            "down(0)\n")
    result, _ = _run(code)
    assert result.status in {"error", "timeout"}


def test_c_stack_overflow(unharmed):
    code = ("import sys\n"
            "sys.setrecursionlimit(10**9)\n"
            "nested = []\n"
            "for _ in range(10**6):\n"
            "    nested = [nested]\n"
            "repr(nested)\n")
    result, _ = _run(code)
    assert result.status == "error"
    assert "SIGSEGV" in result.reason or "Recursion" in result.reason or "Memory" in result.reason


def test_ctypes_segfault(unharmed):
    result, _ = _run("import ctypes\nctypes.string_at(0)\n")
    assert result.status == "error"
    assert "SIGSEGV" in result.reason


def test_file_size_and_disk_limits(unharmed):
    code = ("import errno, os\n"
            "def big():\n"
            "    try:\n"
            "        with open('big', 'wb') as f:\n"
            "            f.write(b'x' * (8 * 1024 * 1024))\n"
            "        return 'wrote'\n"
            "    except OSError as exc:\n"
            "        return errno.errorcode[exc.errno]\n"
            "def fill():\n"
            "    try:\n"
            "        for i in range(10_000):\n"
            "            with open(f'fill{i}', 'wb') as f:\n"
            "                f.write(b'x' * (1024 * 1024 - 1))\n"
            "        return 'filled'\n"
            "    except OSError as exc:\n"
            "        return errno.errorcode[exc.errno]\n")
    tests = "assert big() == 'EFBIG'\nassert fill() == 'ENOSPC'\n"
    result, elapsed = _run(code, tests)
    assert (result.status, result.tests_passed) == ("passed", 2), result


def test_no_privilege_escalation(unharmed):
    code = ("import os, subprocess\n"
            "def attempts():\n"
            "    out = []\n"
            "    for call in (lambda: os.setuid(0), lambda: open('/etc/shadow').read(),\n"
            "                 lambda: os.chroot('/'),\n"
            "                 lambda: os.mknod('dev', 0o600 | 0o020000, os.makedev(1, 3))):\n"
            "        try:\n"
            "            call()\n"
            "            out.append('allowed')\n"
            "        except OSError as exc:\n"
            "            out.append(type(exc).__name__)\n"
            "    return out\n")
    tests = "assert 'allowed' not in attempts()\nassert os.getuid() != 0 and os.geteuid() != 0\n"
    result, _ = _run(code, tests)
    assert (result.status, result.tests_passed) == ("passed", 2), result


def test_no_new_namespaces_mounts_or_chroot(unharmed):
    """The seccomp filter (harness/seccomp.py): no user namespace, so no mount or chroot either,
    through the tools or the system calls; threads and child processes still work. On the host,
    as root, the same `unshare -Ur` works: the refusal is the sandbox's."""
    code = ("import ctypes, os, subprocess, threading\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "def run(*argv):\n"
            "    return subprocess.run(argv, capture_output=True).returncode\n"
            "def attempts():\n"
            "    out = {'unshare(CLONE_NEWUSER)': libc.unshare(0x10000000),\n"
            "           'unshare(CLONE_NEWNS)': libc.unshare(0x00020000),\n"
            "           'unshare -Ur': run('unshare', '-Ur', 'true'),\n"
            "           'unshare -Urm mount': run('unshare', '-Urm', 'mount', '-t', 'tmpfs', 'x', '/tmp'),\n"
            "           'mount': run('mount', '-t', 'tmpfs', 'x', '/tmp'),\n"
            "           'chroot': run('/usr/sbin/chroot', '/', 'true')}\n"
            "    try:\n"
            "        os.chroot('/tmp')\n"
            "        out['os.chroot'] = 0\n"
            "    except OSError:\n"
            "        out['os.chroot'] = -1\n"
            "    return out\n"
            "def seccomp_mode():\n"
            "    return [l.split()[1] for l in open('/proc/self/status') if l.startswith('Seccomp:')][0]\n"
            "def still_works():\n"
            "    t = threading.Thread(target=lambda: None)\n"
            "    t.start()\n"
            "    t.join()\n"
            "    return run('true')\n")
    tests = ("found = attempts()\n"
             "assert [name for name, rc in found.items() if rc == 0] == []\n"
             "assert seccomp_mode() == '2'\n"
             "assert still_works() == 0\n")
    result, _ = _run(code, tests)
    assert (result.status, result.tests_passed, result.tests_total) == ("passed", 3, 3), result
    assert subprocess.run(["unshare", "-Ur", "true"]).returncode == 0


def test_forged_report_is_ignored(unharmed):
    code = ("import os\n"
            "fake = b'ready\\n' + b'0' * 32 + b' passed 9 9 \\n'\n"
            "for fd in range(1, 64):\n"
            "    try:\n"
            "        os.write(fd, fake)\n"
            "    except OSError:\n"
            "        pass\n"
            "os._exit(0)\n")
    result, _ = _run(code)
    assert result.status == "error"
    assert result.tests_passed == 0


def test_flooding_every_pipe_it_holds(unharmed):
    """The result pipe is the judge's, out of the candidate's reach: a candidate that writes 13 MB
    into every pipe it holds floods only its own reply to the judge, which the judge refuses."""
    code = ("import os\n"
            "def flood():\n"
            "    for fd in range(3, 64):\n"
            "        try:\n"
            "            if os.fstat(fd).st_mode & 0o170000 == 0o010000:\n"  # a pipe
            "                for _ in range(200):\n"
            "                    os.write(fd, b'z' * 65536)\n"
            "        except OSError:\n"
            "            pass\n"
            "    return 1\n")
    result, _ = _run(code, "assert flood() == 1\n")
    assert (result.status, result.tests_passed, result.tests_total) == ("failed", 0, 1), result
    assert "WireError" in result.reason


def test_stdin_is_closed(unharmed):
    result, _ = _run("x = input()\n")
    assert result.status == "error" and "EOFError" in result.reason


# normal candidates ----------------------------------------------------------------------------

def test_passing_humaneval_style(unharmed):
    result, _ = _run(ADD, CHECK_ADD, "add")
    assert (result.status, result.tests_passed, result.tests_total) == ("passed", 5, 5)
    assert result.reason == ""


def test_failing_humaneval_style_counts_each_assert(unharmed):
    result, _ = _run("def add(a, b):\n    return 2 * a\n", CHECK_ADD, "add")
    # candidate(1, 2) is 2 (wrong); candidate(i, i) == 2 * i holds for every i
    assert (result.status, result.tests_passed, result.tests_total) == ("failed", 4, 5)
    assert "line 2" in result.reason


def test_check_stopped_by_an_exception_counts_one_failure(unharmed):
    tests = ("def check(candidate):\n    assert candidate(1, 1) == 2\n    value = candidate(None, 1)\n"
             "    assert value == 1\n")
    result, _ = _run(ADD, tests, "add")
    assert (result.status, result.tests_passed, result.tests_total) == ("failed", 1, 2)
    assert "TypeError" in result.reason


def test_partial_assert_style(unharmed):
    tests = "assert add(1, 2) == 3\nassert add(0, 0) == 0\nassert add(5, 0) == 5\nassert True\n"
    result, _ = _run("def add(a, b):\n    return a - b\n", tests)
    assert (result.status, result.tests_passed, result.tests_total) == ("failed", 2, 3)


def test_test_functions(unharmed):
    tests = "def test_one():\n    assert add(1, 1) == 2\ndef test_two():\n    assert add(1, 1) == 3\n"
    result, _ = _run(ADD, tests)
    assert (result.status, result.tests_passed, result.tests_total) == ("failed", 1, 2)


def test_entry_point_from_a_check_call(unharmed):
    result, _ = _run(ADD, CHECK_ADD + "check(add)\n")
    assert (result.status, result.tests_passed, result.tests_total) == ("passed", 5, 5)


def test_syntax_error(unharmed):
    result, _ = _run("def add(a, b)\n    return a + b\n", CHECK_ADD, "add")
    assert result.status == "error" and "SyntaxError" in result.reason
    assert (result.tests_passed, result.tests_total) == (0, 2)  # the asserts in check, statically


def test_missing_entry_point(unharmed):
    result, _ = _run("def plus(a, b):\n    return a + b\n", CHECK_ADD, "add")
    assert result.status == "error" and "'add'" in result.reason


def test_invalid_tests_run_nothing():
    for tests in ("def check(candidate):\n    assert candidate(1) == 1\n",  # no entry point
                  "assert (\n", "x = 1\n"):
        result = run_tests(ADD, tests)
        assert result.status == "error" and not result.tests_valid
        assert result.duration_s == 0.0


def test_plan_tests():
    assert plan_tests(CHECK_ADD, "add").static_total == 2
    assert plan_tests(CHECK_ADD + "check(add)\n").entry_point == "add"
    assert plan_tests("assert f() == 1\nassert True\nassert f()\n").format == "asserts"
    assert plan_tests("assert f() == 1\nassert True\nassert f()\n").static_total == 2
    with pytest.raises(ValueError):
        plan_tests("print(1)\n")


def test_concurrent_runs_from_threads(unharmed):
    cases = [(ADD, CHECK_ADD, "add", ("passed", 5, 5)),
             ("def add(a, b):\n    return 2 * a\n", CHECK_ADD, "add", ("failed", 4, 5)),
             ("def add(a, b):\n    return a - b\n", "assert add(1, 2) == 3\nassert add(0, 0) == 0\n", None,
              ("failed", 1, 2)),
             ("import time\ntime.sleep(0.5)\n" + ADD, CHECK_ADD, "add", ("passed", 5, 5))] * 3
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda c: run_tests(c[0], c[1], c[2], FAST), cases))
    for case, result in zip(cases, results, strict=True):
        assert (result.status, result.tests_passed, result.tests_total) == case[3]


def test_refuses_without_isolation(monkeypatch):
    monkeypatch.setattr(sandbox, "_isolation", None)
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 1000)
    with pytest.raises(UserError, match="needs root"):
        run_tests(ADD, CHECK_ADD, "add")
    monkeypatch.undo()
    monkeypatch.setattr(sandbox, "_isolation", None)
    real = sandbox._find_tool
    monkeypatch.setattr(sandbox, "_find_tool", lambda name: None if name == "unshare" else real(name))
    with pytest.raises(UserError, match="unshare"):
        run_tests(ADD, CHECK_ADD, "add")
    monkeypatch.setattr(sandbox, "_find_tool", real)
    monkeypatch.setattr(sandbox, "_world_executable", lambda path: False)
    with pytest.raises(UserError, match="no Python interpreter"):
        run_tests(ADD, CHECK_ADD, "add")
    monkeypatch.undo()
    monkeypatch.setattr(sandbox, "_isolation", None)
    real_files = sandbox._harness_files
    monkeypatch.setattr(sandbox, "_harness_files",  # the probe run fails
                        lambda: {**real_files(), "launch/launcher.py": "import sys\nsys.exit(3)\n"})
    with pytest.raises(UserError, match="does not work"):
        run_tests(ADD, CHECK_ADD, "add")


# the scorer -----------------------------------------------------------------------------------

def test_extract_code():
    assert extract_code("Here:\n```python\nx = 1\n```\nand\n```python\nx = 2\n```\n") == "x = 2\n"
    assert extract_code("```\nx = 3\n```") == "x = 3\n"
    assert extract_code("```python\nx = 1\n```\n```text\nout\n```") == "x = 1\n"
    assert extract_code("x = 4") == "x = 4"
    assert extract_code("```python\nx = 5\n") == "x = 5\n"  # cut off before the closing fence


# SmolLM2-135M's own answer to HumanEval/2 in the demo: the function, then a block of example calls
TRUNCATE_WITH_USAGE = ("```python\ndef truncate_number(number: float) -> float:\n    return number * 10, -number\n```\n\n"
                       "Example usage:\n```python\nprint(truncate_number(3.5))  # Output: 0.5\n"
                       "print(truncate_number(1.25))  # Output: 0.25\n```")


def test_extract_code_takes_the_block_that_defines_the_entry_point():
    assert extract_code(TRUNCATE_WITH_USAGE).startswith("print(")  # no entry point: the last block
    assert extract_code(TRUNCATE_WITH_USAGE, "truncate_number").startswith("def truncate_number(")
    assert extract_code(TRUNCATE_WITH_USAGE, "other").startswith("print(")  # none defines it: the last
    assert extract_code("```python\ndef add_one(x): pass\n```\n```python\nclass add: pass\n```", "add") \
        == "class add: pass\n"


def _item(text: str, row: dict, n: int) -> ScoreItem:
    prompt = validate_row(row, "test", "run", datetime.now(timezone.utc))
    return ScoreItem(f"c{n}", prompt["prompt_id"], "code", prompt["messages"], text, prompt)


def test_code_tests_scorer(unharmed):
    row = {"prompt": "Write add(a, b).", "task": "code", "tests": CHECK_ADD, "entry_point": "add"}
    asserts = {"prompt": "Write add(a, b).", "task": "code",
               "tests": "assert add(1, 2) == 3\nassert add(0, 0) == 0\n"}
    items = [_item(f"Sure:\n```python\n{ADD}```\n", row, 0),
             _item("```python\ndef add(a, b):\n    return 2 * a\n```", row, 1),
             _item("def add(a, b):\n    return a - b\n", asserts, 2),
             _item("```python\nwhile True: pass\n```", row, 3),
             _item("no code", {"prompt": "x", "task": "code", "tests": "x = 1\n"}, 4),
             _item(f"```python\n{ADD}```\nExample:\n```python\nprint(add(1, 2))  # 3\n```", row, 5)]
    scorer = CodeTestsScorer(SandboxLimits(cpu_seconds=1, wall_seconds=2))
    assert (scorer.name, scorer.version, scorer.tasks) == ("code_tests", "3", frozenset({"code"}))
    results = scorer.score(items)
    assert [r.score for r in results] == [1.0, 0.8, 0.5, 0.0, None, 1.0]  # the last: its usage block aside
    assert [r.status for r in results] == ["ok", "ok", "ok", "ok", "error", "ok"]
    assert results[0].detail["status"] == "passed"
    assert results[3].detail["status"] == "timeout"
    assert set(results[1].detail) == {"status", "tests_passed", "tests_total", "reason", "duration_s"}
    json.dumps([r.detail for r in results])


def test_the_project_root_is_the_folder_that_holds_the_curate_package():
    root = sandbox._project_root()
    assert (root / "curate" / "sandbox" / "isolation.py").is_file()
    # model-written code never sees the project or its lake: hidden, or under the sandbox's own /tmp
    covered = [*sandbox._hidden_dirs(), *sandbox._PRIVATE_TMPFS]
    assert any(str(root) == h or str(root).startswith(h.rstrip("/") + "/") for h in covered), covered


def test_a_checkout_under_tmp_is_not_mounted_over(monkeypatch, tmp_path):
    """CI may clone the project under /tmp, which the sandbox replaces with its own tmpfs: hiding
    the checkout there would fail ("mount point does not exist") and is needless."""
    monkeypatch.setattr(sandbox, "_project_root", lambda: tmp_path)
    hidden = sandbox._hidden_dirs()
    assert str(tmp_path) not in hidden and not any(h.startswith("/tmp/") for h in hidden)


def test_a_verdict_keeps_no_more_than_a_short_marked_excerpt_of_what_the_candidate_said(unharmed):
    """A candidate that raises with a file's contents as its message (here /etc/passwd, which the
    sandbox shows): the verdict keeps the exception's type and 80 characters of its message,
    marked as the candidate's."""
    loud = "raise RuntimeError(open('/etc/passwd').read() * 3)\n"
    result, _ = _run(loud, "assert True == True\n")
    assert result.status == "error" and "RuntimeError (candidate's message: 'root:" in result.reason
    assert len(result.reason) < 160 and result.reason.endswith("...')")
    failing = "def add(a, b):\n    raise ValueError('x' * 5000)\n"
    result, _ = _run(failing, CHECK_ADD, "add")
    assert result.status == "failed" and "ValueError (candidate's message: 'xxx" in result.reason
    assert len(result.reason) < 160
