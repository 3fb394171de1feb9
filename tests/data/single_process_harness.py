# The code sandbox's harness before curate 0.1's split (commit 368cdd1): the tests ran in the
# candidate's own interpreter. Kept only as the control of tests/test_sandbox_faking.py, which
# shows that its corpus of test-faking programs passes here and fails on the split harness.

import ast, json, os, secrets, sys

MESSAGE_CHARS = 80  # of a candidate's exception message kept in a verdict


def _main():
    write = os.write
    fd = int(sys.argv[1])
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
    with open("solution.py", encoding="utf-8", errors="replace") as f:
        code = f.read()
    with open("tests.py", encoding="utf-8", errors="replace") as f:
        tests = f.read()
    for name in ("tests.py", "spec.json"):
        os.unlink(name)
    fmt, entry, static = spec["format"], spec["entry_point"], spec["static_total"]

    tag = "_curate_" + secrets.token_hex(8)
    counts = [0, 0]
    failures = []

    def said(exc):
        # the exception's type, and its message cut short and marked as the candidate's: a message
        # can carry what the candidate read (a file's contents), which no verdict should keep
        try:
            message = "%s" % (exc,)
        except BaseException:  # a candidate's exception whose __str__ fails
            message = ""
        cut = message[:MESSAGE_CHARS] + ("..." if len(message) > MESSAGE_CHARS else "")
        return "%s (candidate's message: %r)" % (type(exc).__name__, cut) if message else type(exc).__name__

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

    g = {"__name__": "__candidate__", "__builtins__": __builtins__,
         tag + "_ok": ok, tag + "_fail": fail, tag + "_exc": Exception}

    try:
        compiled = compile(code, "solution.py", "exec")
    except BaseException as exc:
        report("error", 0, static, "candidate does not compile: %s" % (said(exc),))
        return
    try:
        exec(compiled, g)
    except BaseException as exc:
        report("error", 0, static, "candidate raised on load: %s" % (said(exc),))
        return

    class Wrap(ast.NodeTransformer):
        def visit_Assert(self, node):
            if isinstance(node.test, ast.Constant):
                return node
            call = lambda name: ast.Expr(ast.Call(ast.Name(tag + name, ast.Load()), [], []))
            handler = ast.ExceptHandler(type=ast.Name(tag + "_exc", ast.Load()), name=None,
                                        body=[call("_fail")])
            return ast.copy_location(ast.Try(body=[node], handlers=[handler],
                                             orelse=[call("_ok")], finalbody=[]), node)

    tree = ast.parse(tests, "tests.py")
    aborted = None
    if fmt == "check":
        tree.body = [s for s in tree.body if not (
            isinstance(s, ast.Expr) and isinstance(s.value, ast.Call)
            and isinstance(s.value.func, ast.Name) and s.value.func.id == "check")]
        tree = ast.fix_missing_locations(Wrap().visit(tree))
        try:
            exec(compile(tree, "tests.py", "exec"), g)
        except BaseException as exc:
            report("error", 0, static, "tests raised on load: " + describe(exc))
            return
        candidate = g.get(entry)
        if not callable(candidate):
            report("error", 0, static, "entry point %r is not defined by the candidate" % (entry,))
            return
        try:
            g["check"](candidate)
        except BaseException as exc:
            aborted = describe(exc)
    elif fmt == "asserts":
        for stmt in tree.body:
            unit = compile(ast.Module(body=[stmt], type_ignores=[]), "tests.py", "exec")
            counted = isinstance(stmt, ast.Assert) and not isinstance(stmt.test, ast.Constant)
            try:
                exec(unit, g)
            except BaseException:
                fail()
            else:
                if counted:
                    ok()
    else:
        try:
            exec(compile(tree, "tests.py", "exec"), g)
        except BaseException as exc:
            report("error", 0, static, "tests raised on load: " + describe(exc))
            return
        for stmt in tree.body:
            if isinstance(stmt, ast.FunctionDef) and stmt.name.startswith("test"):
                try:
                    g[stmt.name]()
                except BaseException:
                    fail()
                else:
                    ok()
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
