"""Run model-written Python against a prompt's tests in a sandbox.

`run_tests(code, tests, entry_point)` writes three directories into a fresh root-only temporary
directory (the candidate's code; the tests; the sandbox's own launcher) and runs them isolated
with stock Linux tools (util-linux and coreutils), never with Python's `preexec_fn` (not
thread-safe):

    timeout -s KILL <wall+3>           last resort, should this process die mid-run
      unshare --net --pid --ipc --uts --mount --mount-proc --fork --kill-child
        sh (pid 1 of the new PID namespace, root in the private mount namespace):
          mount --all --fstab: tmpfs over /tmp and /dev/shm (private, tmp_bytes each), and a
          read-only empty tmpfs over /home /root /run /var/tmp /var/lib /mnt /opt /work ... and
          over this project's directory; cp -a the three directories to /tmp
          python -I -B launcher.py         (root; harness/launcher.py: seccomp filter, then)
            setsid prlimit ... setpriv <candidate uid> ... python server.py    cwd /tmp/box
            setsid prlimit ... setpriv <judge uid> ... python judge.py         cwd /tmp/judge

- The verdict: the tests run in the judge's process (harness/judge.py), as a uid of its own, in a
  directory the candidate cannot read. The candidate's code runs in the server's process
  (harness/candidate_server.py); the judge calls its functions through proxies, and arguments and
  results cross two pipes as plain data tagged by exact type (harness/wire.py), which the judge
  rebuilds and compares with its own `==`. The candidate can reach no frame, global, object or
  file of the judge's, and never holds the pipe the verdict goes out on.
- Kernel surface: a seccomp filter (harness/seccomp.py) refuses new namespaces, mounts, chroot,
  io_uring, bpf, perf events, userfaultfd and keyrings, and other architectures' system calls.
- Network: a new network namespace has only a loopback device, and it is down; abstract unix
  sockets are per namespace and the filesystem ones under /run are hidden.
- Processes: when the launcher exits, pid 1 of the namespace exits and the kernel kills every
  process left in it; on a wall timeout we SIGKILL pid 1 (found as unshare's child, pinned by a
  pidfd) and wait for unshare, which returns only once the namespace is empty. The sandbox sees
  only its own processes in /proc.
- Users: each concurrent run gets two uids from a pool (61000..61063 by default, see
  `SANDBOX_UIDS`; uids with a passwd entry are skipped), held by flocks so that threads and
  processes never share one. A uid of its own makes RLIMIT_NPROC per process kind and run, and
  the candidate cannot signal, ptrace or read the judge, other runs, or us (root). No
  capabilities, no setuid binaries (NNP).
- Files: the only writable places are the private tmpfs mounts, which vanish with the namespace,
  so a disk-filling candidate fills at most tmp_bytes of memory; the host temporary directory is
  never visible to the candidate and is removed afterwards.
- Output: stdout and stderr are pipes drained by the caller, which keeps only the last
  `max_output_bytes` of each. Results come back on a separate pipe, held by the launcher and the
  judge only: sh writes "ready" there before anything of the candidate runs (else: setup failed,
  UserError), the judge's report line starts with a random nonce that only the judge reads (on
  its stdin), and the launcher adds how the candidate's process ended when the judge saw it go.
  A verdict's reason names an exception by its type and at most MESSAGE_CHARS (80) characters of
  its message, marked "candidate's message": a message can carry what the candidate read.

Memory: RLIMIT_AS caps each process, so one run can use at most 2 * max_processes * memory_bytes
(plus 2 * tmp_bytes of tmpfs); no cgroup is used.

Counting tests:

- HumanEval style (`tests` define `def check(candidate)`, `entry_point` names the function, or
  the tests call `check(name)` at top level): every `assert` inside `check` (non-constant ones;
  `assert True` is no test) is rewritten by AST into a try/except that counts it and goes on, so
  `tests_passed`/`tests_total` count assert *executions* (an assert in a loop counts once per
  iteration). When every assert holds the run is exactly HumanEval's (check runs to the end); a
  failure only differs in that later asserts still run. An exception in `check` outside any
  assert ends it and counts as one more failed test. A `check` that completes without any
  counted assert counts as one passed test.
- Assert style (top-level `assert` lines): every top-level statement runs on its own; each
  assert is one test; a failing non-assert statement counts as one failed test.
- Functions: no top-level asserts but `def test_*()` functions: each call is one test.

Status: "passed" (every test held), "failed", "error" (the candidate does not load, is not
defined, crashes its interpreter, exits early or does not report), "timeout" (wall-clock or CPU
limit). On "error" and "timeout" `tests_total` is the static count and `tests_passed` is 0.

What the tests cannot do here: use the candidate's own objects (a class instance, a generator),
see a mutation of an argument, or pass it a function; such tests fail. Values the candidate
returns can be right by chance or by lookup (the arguments cross to it), never by faking `==`.
"""

from __future__ import annotations

import ast
import dataclasses
import fcntl
import functools
import json
import os
import pwd
import secrets
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from curate.errors import UserError

MiB = 1024 * 1024
UID_BASE = int(os.environ.get("CURATE_SANDBOX_UID_BASE", "61000"))
UID_SLOTS = 64
SANDBOX_UIDS = range(UID_BASE, UID_BASE + UID_SLOTS)
SETUP_FAILED_RC = 97
_TOOL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_TOOLS = ("timeout", "unshare", "sh", "mount", "cp", "setsid", "prlimit", "setpriv")
# Read-only empty tmpfs over these (when they exist and do not hold the interpreter).
_HIDDEN = ("/home", "/root", "/run", "/var/tmp", "/var/lib", "/var/log", "/var/cache", "/var/mail",
           "/var/spool", "/var/backups", "/mnt", "/media", "/srv", "/opt", "/boot", "/work")
_SYSTEM = {"/", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/etc", "/proc", "/dev", "/sys",
           "/tmp", "/var"}


@dataclass(frozen=True)
class SandboxLimits:
    cpu_seconds: int = 5  # RLIMIT_CPU per process (SIGXCPU, then SIGKILL a second later)
    wall_seconds: float = 10.0  # the whole run, start to finish
    memory_bytes: int = 512 * MiB  # RLIMIT_AS per process
    max_processes: int = 16  # RLIMIT_NPROC for the run's own uid (threads count too)
    max_file_bytes: int = 1 * MiB  # RLIMIT_FSIZE
    max_output_bytes: int = 64 * 1024  # kept of stdout and of stderr, each (the tail)
    max_open_files: int = 64  # RLIMIT_NOFILE
    tmp_bytes: int = 16 * MiB  # size of the private /tmp (the box) and of /dev/shm


@dataclass
class SandboxResult:
    status: str  # passed | failed | error | timeout
    tests_passed: int
    tests_total: int
    duration_s: float
    stdout: str = ""  # tail, at most max_output_bytes
    stderr: str = ""
    reason: str = ""
    returncode: int | None = None
    output_truncated: bool = False
    tests_valid: bool = True  # False: the tests themselves are unusable (nothing was run)


# tests ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunPlan:
    format: str  # check | asserts | functions
    entry_point: str | None
    static_total: int


def _counted_assert(node: ast.AST) -> bool:
    return isinstance(node, ast.Assert) and not isinstance(node.test, ast.Constant)


def _is_check_call(stmt: ast.stmt) -> bool:
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
            and isinstance(stmt.value.func, ast.Name) and stmt.value.func.id == "check")


def plan_tests(tests: str, entry_point: str | None = None) -> RunPlan:
    """How the harness will run `tests`; ValueError when they cannot be run at all."""
    try:
        tree = ast.parse(tests)
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        raise ValueError(f"tests do not parse: {type(exc).__name__}: {exc}") from None
    check = next((s for s in tree.body if isinstance(s, ast.FunctionDef) and s.name == "check"), None)
    if check is not None:
        if not entry_point:
            calls = [s.value for s in tree.body if _is_check_call(s)]
            names = [c.args[0].id for c in calls if c.args and isinstance(c.args[0], ast.Name)]
            if not names:
                raise ValueError("tests define check(candidate) but no entry_point is given")
            entry_point = names[0]
        if not entry_point.isidentifier():
            raise ValueError(f"entry_point {entry_point!r} is not an identifier")
        return RunPlan("check", entry_point, sum(map(_counted_assert, ast.walk(check))))
    asserts = sum(map(_counted_assert, tree.body))
    if asserts:
        return RunPlan("asserts", entry_point, asserts)
    functions = [s for s in tree.body if isinstance(s, ast.FunctionDef) and s.name.startswith("test")]
    if functions:
        return RunPlan("functions", entry_point, len(functions))
    raise ValueError("no tests found: expected def check(candidate), top-level asserts or test_* functions")


# the programs that run inside the sandbox (curate/sandbox/harness) -------------------------

HARNESS_DIR = Path(__file__).resolve().parent / "harness"


def _harness_files() -> dict[str, str]:
    """The sandbox's own programs by their path in the box, each made self-contained."""
    def text(name: str) -> str:
        return (HARNESS_DIR / name).read_text(encoding="utf-8")

    return {"launch/launcher.py": text("seccomp.py") + "\n\n" + text("launcher.py"),
            "box/server.py": text("wire.py") + "\n\n" + text("candidate_server.py"),
            "judge/judge.py": text("wire.py") + "\n\n" + text("judge.py")}


# isolation ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Isolation:
    tools: dict[str, str]
    python: str
    hidden: tuple[str, ...]


_isolation: _Isolation | None = None
_isolation_lock = threading.Lock()


def _find_tool(name: str) -> str | None:
    return shutil.which(name, path=_TOOL_PATH)


def _world_executable(path: Path) -> bool:
    """Every directory above `path` is searchable, and `path` executable, by any user."""
    try:
        if not path.is_file() or not os.stat(path).st_mode & 0o001:
            return False
        return all(os.stat(parent).st_mode & 0o001 for parent in path.parents)
    except OSError:
        return False


def _project_root() -> Path:
    """The checkout (or site-packages folder) that holds the curate package: hidden in the sandbox."""
    return Path(__file__).resolve().parents[2]


def _find_python() -> str | None:
    """An interpreter that any user can run, outside this project (which the sandbox hides)."""
    explicit = os.environ.get("CURATE_SANDBOX_PYTHON")
    project = f"{_project_root()}/"
    for candidate in (explicit, getattr(sys, "_base_executable", None), sys.executable,
                      "/usr/bin/python3", "/usr/local/bin/python3"):
        if not candidate:
            continue
        path = os.path.realpath(candidate)
        if (candidate == explicit or not path.startswith(project)) and _world_executable(Path(path)):
            return path
    return None


_PRIVATE_TMPFS = ("/tmp", "/dev/shm")  # replaced by the sandbox's own tmpfs mounts (see _fstab)


def _hidden_dirs(python: str | None = None) -> list[str]:
    hidden = []
    for name in (*_HIDDEN, str(_project_root())):
        path = os.path.realpath(name)
        if path in _SYSTEM or not os.path.isdir(path) or path in hidden:
            continue
        if python and python.startswith(path.rstrip("/") + "/"):
            continue
        hidden.append(path)
    # A directory under another hidden one, or under the private /tmp and /dev/shm, is hidden
    # already (and its mount point is gone by the time its own mount would run).
    covered = [*hidden, *_PRIVATE_TMPFS]
    return [p for p in hidden if not any(p.startswith(q.rstrip("/") + "/") for q in covered)]


def isolation() -> _Isolation:
    """The tools and interpreter of the sandbox, checked once with a real run; UserError if not."""
    global _isolation
    with _isolation_lock:
        if _isolation is not None:
            return _isolation
        if os.geteuid() != 0:
            raise UserError(
                "the code sandbox needs root (to enter new network/PID/mount namespaces and switch "
                f"to an unprivileged uid); running as uid {os.geteuid()}. Refusing to run candidate "
                "code unsandboxed: run as root or drop the code_tests scorer.")
        tools = {name: _find_tool(name) for name in _TOOLS}
        missing = [name for name, path in tools.items() if path is None]
        if missing:
            raise UserError(f"the code sandbox needs {', '.join(missing)} (util-linux, coreutils), "
                            "which are missing: apt-get install util-linux coreutils")
        python = _find_python()
        if python is None:
            raise UserError("the code sandbox found no Python interpreter that an unprivileged user can "
                            "run (set CURATE_SANDBOX_PYTHON, e.g. /usr/bin/python3)")
        candidate = _Isolation(tools, python, tuple(_hidden_dirs(python)))
        probe = _run(candidate, "def f():\n    return 1\n", "assert f() == 1\n", None, SandboxLimits())
        if probe.status != "passed":
            raise UserError(f"the code sandbox does not work on this machine ({probe.status}: "
                            f"{probe.reason}; stderr: {probe.stderr[-500:]!r}); refusing to run "
                            "candidate code unsandboxed")
        _isolation = candidate
        return _isolation


class _UidSlots:
    """Uids of the pool held for one run (the candidate's and the judge's): flock on root-only
    files, across threads and processes."""

    _dir = Path(tempfile.gettempdir()) / f"curate-sandbox-slots-{os.getuid()}"

    def __init__(self, count: int = 2):
        self.count, self._fds = count, []

    def __enter__(self) -> tuple[int, ...]:
        self._dir.mkdir(mode=0o700, exist_ok=True)
        usable = _usable_uids()
        if len(usable) < self.count:
            raise UserError(f"fewer than {self.count} uids in {SANDBOX_UIDS} lack a passwd entry; "
                            "set CURATE_SANDBOX_UID_BASE")
        held: list[int] = []
        while True:
            for uid in usable:
                if uid in held:
                    continue
                fd = os.open(self._dir / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                self._fds.append(fd)
                held.append(uid)
                if len(held) == self.count:
                    return tuple(held)
            time.sleep(0.02)

    def __exit__(self, *exc) -> None:
        for fd in self._fds:
            os.close(fd)  # releases the flock
        self._fds = []


@functools.cache
def _usable_uids() -> tuple[int, ...]:
    """The pool's uids that no account uses (no passwd entry)."""
    usable = []
    for uid in SANDBOX_UIDS:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            usable.append(uid)
    return tuple(usable)


def _fstab_path(path: str) -> str:
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in path)


def _fstab(iso: _Isolation, limits: SandboxLimits) -> str:
    """The namespace's mounts, for one `mount -a` (a distinct source name, so that mount does not
    take /dev/shm for mounted already)."""
    writable = f"size={limits.tmp_bytes},mode=1777,nosuid,nodev"
    lines = [f"curate-sandbox /tmp tmpfs {writable} 0 0", f"curate-sandbox /dev/shm tmpfs {writable} 0 0"]
    lines += [f"curate-sandbox {_fstab_path(path)} tmpfs ro,size=4k,mode=755,nosuid,nodev,noexec 0 0"
              for path in iso.hidden]
    return "\n".join(lines) + "\n"


def _script(iso: _Isolation, result_fd: int) -> str:
    """Run by sh as root, pid 1 of the namespaces, in the host work directory (argument 1): the
    mounts, the three directories copied in, then the launcher (harness/launcher.py)."""
    t = {k: shlex.quote(v) for k, v in iso.tools.items()}
    lines = [
        f'fail() {{ echo "curate sandbox setup failed: $1" >&2; exit {SETUP_FAILED_RC}; }}',
        'cd "$1" || fail "cd"',
        f"{t['mount']} --all --fstab ./fstab || fail mount",
        f"{t['cp']} -a box judge launch /tmp/ || fail cp",  # owned by their uids already
        "cd /tmp/launch || fail 'cd launch'",
        "unset OLDPWD PWD",
        f"printf 'ready\\n' > /proc/self/fd/{result_fd} || fail ready",
        f"{shlex.quote(iso.python)} -I -B launcher.py {result_fd}",
        "exit $?",
    ]
    return "\n".join(lines) + "\n"


class _Tail:
    """The last `cap` bytes of a stream (and its first 64, for the result pipe's "ready" line)."""

    def __init__(self, cap: int):
        self.cap, self.data, self.total, self.head = cap, bytearray(), 0, b""

    def add(self, chunk: bytes) -> None:
        if len(self.head) < 64:
            self.head += chunk[:64 - len(self.head)]
        self.total += len(chunk)
        self.data += chunk
        if len(self.data) > 2 * self.cap:
            del self.data[:-self.cap]

    def text(self) -> str:
        return bytes(self.data[-self.cap:]).decode("utf-8", "replace") if self.cap else ""


_SIGNALS = {int(s): s.name for s in signal.Signals}


def _run(iso: _Isolation, code: str, tests: str, entry_point: str | None,
         limits: SandboxLimits) -> SandboxResult:
    start = time.monotonic()
    try:
        plan = plan_tests(tests, entry_point)
    except ValueError as exc:
        return SandboxResult("error", 0, 0, 0.0, reason=f"invalid tests: {exc}", tests_valid=False)
    nonce = secrets.token_hex(16)
    workdir = tempfile.mkdtemp(prefix="curate-sandbox-")  # root-only; the sandbox never sees it
    try:
        with _UidSlots() as (candidate_uid, judge_uid):
            inputs = {"box/solution.py": code, "judge/tests.py": tests,
                      "judge/spec.json": json.dumps({"format": plan.format, "entry_point": plan.entry_point,
                                                     "static_total": plan.static_total}),
                      "launch/launch.json": json.dumps({
                          **{name: iso.tools[name] for name in ("setsid", "prlimit", "setpriv")},
                          "python": iso.python, "candidate_uid": candidate_uid,
                          "judge_uid": judge_uid, "limits": dataclasses.asdict(limits)})}
            owners = {"box": candidate_uid, "judge": judge_uid, "launch": 0}
            for folder, owner in owners.items():
                Path(workdir, folder).mkdir(mode=0o700)
            for name, text in {**_harness_files(), **inputs}.items():
                path = Path(workdir, name)
                path.write_text(text, encoding="utf-8", errors="surrogatepass")
                os.chmod(path, 0o644)
            for folder, owner in owners.items():
                os.chown(Path(workdir, folder), owner, owner)
            Path(workdir, "fstab").write_text(_fstab(iso, limits))
            return _spawn(iso, workdir, nonce, plan, limits, start)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _spawn(iso: _Isolation, workdir: str, nonce: str, plan: RunPlan, limits: SandboxLimits,
           start: float) -> SandboxResult:
    t = iso.tools
    result_r, result_w = os.pipe()
    command = [t["timeout"], "-s", "KILL", str(int(limits.wall_seconds) + 3),
               t["unshare"], "--net", "--pid", "--ipc", "--uts", "--mount", "--propagation=private",
               "--mount-proc", "--fork", "--kill-child=SIGKILL", "--",
               t["sh"], "-c", _script(iso, result_w), "curate-sandbox", workdir]
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp/box"}
    try:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, pass_fds=(result_w,), env=env, cwd="/",
                                start_new_session=True)
    except BaseException:
        os.close(result_r)
        os.close(result_w)
        raise
    os.close(result_w)
    out, err, res = _Tail(limits.max_output_bytes), _Tail(limits.max_output_bytes), _Tail(64 * 1024)
    timed_out = False
    try:
        try:
            proc.stdin.write((nonce + "\n").encode())
            proc.stdin.close()
        except OSError:
            pass
        deadline = start + limits.wall_seconds
        sinks = {proc.stdout.fileno(): out, proc.stderr.fileno(): err, result_r: res}
        with selectors.DefaultSelector() as selector:
            for fd in sinks:
                os.set_blocking(fd, False)
                selector.register(fd, selectors.EVENT_READ)
            while selector.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if not timed_out:
                        timed_out = True
                        _kill(proc)
                        deadline = time.monotonic() + 5  # drain what is left, then give up
                        continue
                    break
                for key, _ in selector.select(timeout=min(remaining, 1.0)):
                    try:
                        chunk = os.read(key.fd, 65536)
                    except BlockingIOError:
                        continue
                    if chunk:
                        sinks[key.fd].add(chunk)
                    else:
                        selector.unregister(key.fd)
        try:
            proc.wait(timeout=max(0.0, start + limits.wall_seconds - time.monotonic()) + 0.2)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill(proc)
            proc.wait()
    finally:
        if proc.returncode is None:
            _kill(proc)
            proc.wait()
        os.close(result_r)
        proc.stdout.close()
        proc.stderr.close()
    duration = time.monotonic() - start
    result = SandboxResult("error", 0, plan.static_total, round(duration, 3), out.text(), err.text(),
                           returncode=proc.returncode,
                           output_truncated=out.total > limits.max_output_bytes
                           or err.total > limits.max_output_bytes)
    lines = bytes(res.data[-res.cap:]).decode("utf-8", "replace").splitlines()
    if not res.head.startswith(b"ready\n"):
        if timed_out:
            raise UserError(f"the code sandbox did not start within {limits.wall_seconds} s")
        raise UserError(f"the code sandbox could not be set up (exit {proc.returncode}): "
                        f"{err.text()[-1000:].strip()}")
    ours = [line[len(nonce) + 1:].split(" ") for line in lines if line.startswith(nonce + " ")]
    ended = next((int(f[1]) for f in ours if f[0] == "candidate-ended" and len(f) > 1
                  and f[1].lstrip("-").isdigit()), None)
    report = next((f for f in ours if f[0] != "candidate-ended"), None)
    if timed_out:
        result.status, result.reason = "timeout", f"wall-clock limit of {limits.wall_seconds} s"
        return result
    if report is not None:
        try:
            status, passed, total, reason = (report + [""])[:4]
            result.status, result.tests_passed, result.tests_total = status, int(passed), int(total)
            result.reason = bytes.fromhex(reason).decode("utf-8", "replace")
            if status in {"passed", "failed", "error"}:
                return result
            if status == "gone":  # the judge saw the candidate's process end: how it ended says why
                result.tests_passed, result.tests_total = 0, plan.static_total
                if ended is None:
                    result.status, result.reason = "error", f"the candidate's process ended {result.reason}"
                else:
                    result.status, result.reason = _how_it_ended(ended, duration, limits, err.text())
                return result
        except ValueError:
            pass
        result.status, result.tests_passed, result.tests_total = "error", 0, plan.static_total
        result.reason = "harness sent a malformed report"
        return result
    result.status, result.reason = _how_it_ended(proc.returncode, duration, limits, err.text())
    return result


def _how_it_ended(rc: int, duration: float, limits: SandboxLimits, stderr: str) -> tuple[str, str]:
    """(status, reason) of a process that ended before a verdict, from its exit status."""
    signum = -rc if rc < 0 else rc - 128 if rc > 128 else None
    if signum == signal.SIGXCPU or (signum == signal.SIGKILL and duration >= limits.cpu_seconds):
        return "timeout", f"CPU time limit of {limits.cpu_seconds} s (killed by {_SIGNALS.get(signum)})"
    if signum in _SIGNALS:
        return "error", f"the candidate's interpreter died: {_SIGNALS[signum]} (exit {rc})"
    last = stderr.strip().splitlines()[-1:] or [""]
    return "error", f"exited with code {rc} before reporting results {last[0][:300]}".rstrip()


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def _kill(proc: subprocess.Popen) -> None:
    """End the run: SIGKILL pid 1 of its PID namespace (timeout -> unshare -> pid 1), so that the
    kernel kills everything in the namespace and unshare, then timeout, exit only once it is
    empty. Falls back to the whole process group (timeout, unshare, pid 1) if pid 1 is not found
    or the chain is not gone in 5 s. Only called while `proc` is not reaped yet."""
    for unshare in _children(proc.pid):
        for init in _children(unshare):
            try:
                pidfd = os.pidfd_open(init)
            except OSError:
                continue
            try:
                if init in _children(unshare):  # still the same process, now pinned by the pidfd
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            except OSError:
                pass
            finally:
                os.close(pidfd)
    try:
        proc.wait(timeout=5)
        return
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_tests(code: str, tests: str, entry_point: str | None = None,
              limits: SandboxLimits = SandboxLimits()) -> SandboxResult:
    """Run `tests` against `code` in the sandbox (see the module docstring). Thread-safe.

    Raises UserError when the sandbox cannot be set up here; never runs code unsandboxed.
    """
    return _run(isolation(), code, tests, entry_point, limits)


__all__ = ["SandboxLimits", "SandboxResult", "isolation", "plan_tests", "run_tests", "SANDBOX_UIDS"]
