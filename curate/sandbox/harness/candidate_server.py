# The candidate's process: `python -I -B server.py REQUESTS_FD REPLIES_FD` as the candidate's uid,
# in its own directory; wire.py is prepended. It loads solution.py, says which names it defines,
# then answers the judge's calls one line at a time. Nothing here is trusted: the candidate may
# rewrite all of it, and can still only send values that wire.py's decoder accepts.
import os
import sys

MESSAGE_CHARS = 200  # of an exception's message sent to the judge (which keeps 80)


def _said(exc):
    try:
        message = "%s" % (exc,)
    except BaseException:  # an exception whose __str__ fails
        message = ""
    return [type(exc).__name__[:60], message[:MESSAGE_CHARS + 1]]


def _main():
    requests = os.fdopen(int(sys.argv[1]), "rb")
    replies = int(sys.argv[2])

    def send(message):
        write_all(replies, wire_line(message))

    with open("solution.py", encoding="utf-8", errors="replace") as f:
        code = f.read()
    space = {"__name__": "__candidate__", "__builtins__": __builtins__}
    try:
        compiled = compile(code, "solution.py", "exec")
    except BaseException as exc:
        send({"loaded": False, "stage": "compile", "error": _said(exc)})
        return
    try:
        exec(compiled, space)
    except BaseException as exc:
        send({"loaded": False, "stage": "load", "error": _said(exc)})
        return
    names = {}
    for name, value in list(space.items()):
        if name.startswith("__"):
            continue
        if callable(value):
            names[name] = ["callable"]
        elif type(value) is type(os):
            names[name] = ["module", str(getattr(value, "__name__", ""))]
        else:
            try:
                names[name] = ["value", wire_encode(value)]
            except BaseException:  # a module, an object of the candidate's: the tests cannot use it
                pass
    send({"loaded": True, "names": names})
    for line in requests:
        request = wire_parse(line)
        function = space.get(request["call"])
        args = [wire_decode(a) for a in request["args"]]
        kwargs = {k: wire_decode(v) for k, v in request["kwargs"]}
        try:
            result = function(*args, **kwargs)
        except Exception as exc:
            send({"raise": _said(exc)})
            continue
        try:
            send({"return": wire_encode(result)})
        except BaseException as exc:
            send({"unsendable": "%s" % (exc,) if isinstance(exc, WireError) else _said(exc)[0]})


_main()
