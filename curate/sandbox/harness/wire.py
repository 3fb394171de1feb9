"""What crosses between the candidate's process and the judge's: plain Python data, tagged by its
exact type. The judge rebuilds its own objects from the tags and compares them with its own `==`;
anything else (a class of the candidate's, a subclass of int, a generator) cannot cross."""

import json
import os

WIRE_MAX_DEPTH = 64
WIRE_MAX_LINE = 16 * 1024 * 1024
_SEQUENCES = {list: "L", tuple: "T", set: "E", frozenset: "Z"}
_BUILDERS = {"L": list, "T": tuple, "E": set, "Z": frozenset}


class WireError(Exception):
    """A value that cannot cross, or a message that is not one."""


def wire_encode(value, depth=0):
    if depth > WIRE_MAX_DEPTH:
        raise WireError("a value nested deeper than %d levels" % WIRE_MAX_DEPTH)
    kind = type(value)
    if value is None:
        return ["N"]
    if kind is bool:
        return ["B", value]
    if kind is int:
        try:
            return ["I", int.__repr__(value)]
        except ValueError:  # more digits than str() allows
            raise WireError("an int too long to send") from None
    if kind is float:
        return ["F", float.__repr__(value)]
    if kind is complex:
        return ["C", float.__repr__(value.real), float.__repr__(value.imag)]
    if kind is str:
        return ["S", value]
    if kind is bytes:
        return ["Y", bytes.hex(value)]
    if kind in _SEQUENCES:
        return [_SEQUENCES[kind], [wire_encode(item, depth + 1) for item in kind.__iter__(value)]]
    if kind is dict:
        return ["D", [[wire_encode(k, depth + 1), wire_encode(v, depth + 1)] for k, v in dict.items(value)]]
    raise WireError("a value of type %s cannot be sent" % (kind.__name__[:60],))


def wire_decode(item, depth=0):
    """The value a tagged item stands for; WireError for anything that is not one."""
    if depth > WIRE_MAX_DEPTH:
        raise WireError("a value nested deeper than %d levels" % WIRE_MAX_DEPTH)
    if type(item) is not list or not item or type(item[0]) is not str:
        raise WireError("not a tagged value")
    tag, rest = item[0], item[1:]
    try:
        if tag == "N" and not rest:
            return None
        if tag == "B" and len(rest) == 1 and type(rest[0]) is bool:
            return rest[0]
        if tag in ("I", "F", "S", "Y") and len(rest) == 1 and type(rest[0]) is str:
            return {"I": int, "F": float, "S": str, "Y": bytes.fromhex}[tag](rest[0])
        if tag == "C" and len(rest) == 2 and all(type(part) is str for part in rest):
            return complex(float(rest[0]), float(rest[1]))
        if tag in _BUILDERS and len(rest) == 1 and type(rest[0]) is list:
            return _BUILDERS[tag](wire_decode(part, depth + 1) for part in rest[0])
        if tag == "D" and len(rest) == 1 and type(rest[0]) is list:
            pairs = []
            for pair in rest[0]:
                if type(pair) is not list or len(pair) != 2:
                    raise WireError("not a key-value pair")
                pairs.append((wire_decode(pair[0], depth + 1), wire_decode(pair[1], depth + 1)))
            return dict(pairs)
    except (TypeError, ValueError, OverflowError) as exc:  # unhashable keys, bad digits
        raise WireError("a malformed %s value: %s" % (tag[:2], type(exc).__name__)) from None
    raise WireError("an unknown tag")


def wire_line(message):
    return (json.dumps(message, separators=(",", ":")) + "\n").encode("utf-8", "surrogatepass")


def wire_parse(line):
    """The JSON object of one message line; WireError when it is not one."""
    if len(line) > WIRE_MAX_LINE or not line.endswith(b"\n"):
        raise WireError("a message longer than %d bytes or cut short" % WIRE_MAX_LINE)
    try:
        message = json.loads(line.decode("utf-8", "surrogatepass"))
    except (ValueError, RecursionError):
        raise WireError("a message that is not JSON") from None
    if type(message) is not dict:
        raise WireError("a message that is not an object")
    return message


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
