# The judge: `python -I -B judge.py RESULT_FD REQUESTS_FD REPLIES_FD` as a uid of its own, in a
# directory the candidate cannot read; wire.py is prepended. It reads the report's nonce from
# stdin, runs the tests with the candidate's functions as proxies (every call crosses to the
# candidate's process and back as plain data), counts the asserts and writes the verdict on
# RESULT_FD, which the candidate's process never holds.
import ast
import builtins
import importlib
import json
import os
import secrets
import sys

MESSAGE_CHARS = 80  # of a candidate's exception message kept in a verdict


class CandidateGone(BaseException):
    """The candidate's process ended (or its replies broke off): no later call can be answered.
    A BaseException, so that no test's `except Exception` takes it for a failed assert."""


class CandidateError(Exception):
    """An exception the candidate raised whose type is not one of Python's built-in ones."""

    def __init__(self, type_name, message):
        super().__init__(message)
        self.type_name = type_name


def _exception(type_name, message):
    """The candidate's exception as the tests can catch it: a built-in class of that name (so
    `except ValueError` in a test works), else CandidateError."""
    cls = getattr(builtins, type_name, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(message)
        except Exception:
            pass
    return CandidateError(type_name, message)


class Link:
    def __init__(self, requests_fd, replies_fd):
        self.requests, self.replies = requests_fd, os.fdopen(replies_fd, "rb")
        self.gone = False

    def receive(self):
        if self.gone:
            raise CandidateGone()
        line = self.replies.readline(WIRE_MAX_LINE + 1)
        if not line:
            self.gone = True
            raise CandidateGone()
        try:
            return wire_parse(line)
        except WireError:
            if not line.endswith(b"\n"):  # an oversized line: the replies are out of step from here
                self.gone = True
            raise

    def call(self, name, args, kwargs):
        request = {"call": name, "args": [wire_encode(a) for a in args],
                   "kwargs": [[k, wire_encode(v)] for k, v in kwargs.items()]}
        if self.gone:
            raise CandidateGone()
        try:
            write_all(self.requests, wire_line(request))
        except OSError:
            self.gone = True
            raise CandidateGone() from None
        reply = self.receive()
        if "return" in reply:
            return wire_decode(reply["return"])
        if "raise" in reply and type(reply["raise"]) is list and len(reply["raise"]) == 2:
            return_type, message = (str(part) for part in reply["raise"])
            raise _exception(return_type, message)
        raise WireError("the candidate's reply cannot be used: %s" % (str(reply.get("unsendable", "malformed"))[:120],))


_NOT_IMPORTED = {"this", "antigravity", "turtle", "turtledemo", "tkinter", "idlelib", "webbrowser"}


def _importable(name):
    """A standard-library module the candidate imported, which the tests may use by that name."""
    top = str(name).split(".")[0]
    return (type(name) is str and top in sys.stdlib_module_names and top not in _NOT_IMPORTED
            and all(part.isidentifier() for part in name.split(".")))


class Remote:
    """One of the candidate's functions, as the tests see it."""

    def __init__(self, link, name):
        self._link, self.__name__ = link, name

    def __call__(self, *args, **kwargs):
        return self._link.call(self.__name__, args, kwargs)

    def __repr__(self):
        return "<the candidate's %s>" % (self.__name__,)


def _main():
    write = os.write
    fd, requests_fd, replies_fd = (int(a) for a in sys.argv[1:4])
    marker = sys.stdin.readline().strip() + " "
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)

    def report(status, passed, total, reason):
        text = ("%s" % (reason,)).encode("utf-8", "replace")[:1000].hex()
        # one write below PIPE_BUF is atomic; the leading newline ends any partial line before it
        write(fd, ("\n%s%s %d %d %s\n" % (marker, status, passed, total, text)).encode())

    with open("spec.json", encoding="utf-8") as f:
        spec = json.loads(f.read())
    with open("tests.py", encoding="utf-8", errors="replace") as f:
        tests = f.read()
    fmt, entry, static = spec["format"], spec["entry_point"], spec["static_total"]

    tag = "_curate_" + secrets.token_hex(8)
    counts = [0, 0]
    failures = []

    def said(exc):
        # the exception's type, and its message cut short and marked as the candidate's: a message
        # can carry what the candidate read (a file's contents), which no verdict should keep
        if isinstance(exc, WireError):  # ours, about what the candidate sent
            return "WireError: %s" % ("%s" % (exc,))[:160]
        if isinstance(exc, CandidateError):
            name = exc.type_name
        else:
            name = type(exc).__name__
        try:
            message = "%s" % (exc,)
        except BaseException:
            message = ""
        cut = message[:MESSAGE_CHARS] + ("..." if len(message) > MESSAGE_CHARS else "")
        return "%s (candidate's message: %r)" % (name, cut) if message else name

    def describe(exc):
        line = None
        tb = exc.__traceback__ if exc is not None else None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == "tests.py":
                line = tb.tb_lineno
                break
            tb = tb.tb_next
        text = said(exc)
        return ("tests.py line %s: %s" % (line, text) if line else text)[:500]

    def ok():
        counts[0] += 1

    def fail():
        counts[1] += 1
        if not failures:
            failures.append(describe(sys.exc_info()[1]))

    link = Link(requests_fd, replies_fd)
    try:
        hello = link.receive()
    except CandidateGone:
        report("gone", 0, static, "before it loaded")
        return
    except WireError:
        report("error", 0, static, "the candidate's process sent no usable greeting")
        return
    if not hello.get("loaded"):
        error = hello.get("error")
        if type(error) is not list or len(error) != 2:
            error = ["Exception", ""]
        stage = "does not compile" if hello.get("stage") == "compile" else "raised on load"
        report("error", 0, static, "candidate %s: %s" % (stage, said(CandidateError(str(error[0])[:60], str(error[1])))))
        return

    g = {"__name__": "__tests__", "__builtins__": __builtins__,
         tag + "_ok": ok, tag + "_fail": fail, tag + "_exc": Exception}
    names = hello.get("names")
    for name, kind in (names.items() if type(names) is dict else ()):
        if type(name) is not str or not name.isidentifier() or type(kind) is not list or not kind:
            continue
        if kind[0] == "callable":
            g[name] = Remote(link, name)
        elif kind[0] == "module" and len(kind) == 2 and _importable(kind[1]):
            try:
                g[name] = importlib.import_module(kind[1])  # the judge's own copy: `math` in a test
            except Exception:
                pass
        elif kind[0] == "value" and len(kind) == 2:
            try:
                g[name] = wire_decode(kind[1])
            except WireError:
                pass

    class Wrap(ast.NodeTransformer):
        def visit_Assert(self, node):
            if isinstance(node.test, ast.Constant):
                return node
            call = lambda name: ast.Expr(ast.Call(ast.Name(tag + name, ast.Load()), [], []))
            handler = ast.ExceptHandler(type=ast.Name(tag + "_exc", ast.Load()), name=None,
                                        body=[call("_fail")])
            return ast.copy_location(ast.Try(body=[node], handlers=[handler],
                                             orelse=[call("_ok")], finalbody=[]), node)

    def loaded(tree):
        """Run the tests module's top level; False (and the report sent) when it raises."""
        try:
            exec(compile(tree, "tests.py", "exec"), g)
        except CandidateGone:
            raise
        except BaseException as exc:
            report("error", 0, static, "tests raised on load: " + describe(exc))
            return False
        return True

    tree = ast.parse(tests, "tests.py")
    aborted = None
    try:
        if fmt == "check":
            tree.body = [s for s in tree.body if not (
                isinstance(s, ast.Expr) and isinstance(s.value, ast.Call)
                and isinstance(s.value.func, ast.Name) and s.value.func.id == "check")]
            tree = ast.fix_missing_locations(Wrap().visit(tree))
            if not loaded(tree):
                return
            candidate = g.get(entry)
            if not isinstance(candidate, Remote):
                report("error", 0, static, "entry point %r is not defined by the candidate" % (entry,))
                return
            try:
                g["check"](candidate)
            except CandidateGone:
                raise
            except BaseException as exc:
                aborted = describe(exc)
        elif fmt == "asserts":
            for stmt in tree.body:
                unit = compile(ast.Module(body=[stmt], type_ignores=[]), "tests.py", "exec")
                counted = isinstance(stmt, ast.Assert) and not isinstance(stmt.test, ast.Constant)
                try:
                    exec(unit, g)
                except CandidateGone:
                    raise
                except BaseException:
                    fail()
                else:
                    if counted:
                        ok()
        else:
            if not loaded(tree):
                return
            for stmt in tree.body:
                if isinstance(stmt, ast.FunctionDef) and stmt.name.startswith("test"):
                    try:
                        g[stmt.name]()
                    except CandidateGone:
                        raise
                    except BaseException:
                        fail()
                    else:
                        ok()
    except CandidateGone:
        report("gone", 0, static, "during the tests")
        return
    passed, failed = counts
    if aborted is not None:
        failed += 1
        failures.insert(0, "check stopped: " + aborted)
    if passed + failed == 0:
        passed = 1
    status = "passed" if failed == 0 else "failed"
    report(status, passed, passed + failed, failures[0] if failures else "")


try:
    _main()
finally:
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
