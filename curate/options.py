"""Typed options: one strict parser from a TOML table to a dataclass (a pair strategy's options,
DedupConfig, the run config's sections).

An options class is a dataclass whose fields carry a help text, `option(default, help=...)`
(`field(metadata={"help": ...})`, as TRL's config classes do); the README's option tables are
generated from those texts (curate/cli/options_tables.py). `parse_options(cls, values, name)`:

- an unknown key is an error naming it and the known ones; a key the class lists in its
  `RETIRED` mapping (key -> why) says why it is gone;
- a value of the wrong type is an error, checked against the field's annotation: bool is not an
  int, an int is accepted for a float (and kept as given: a class that wants floats converts in
  `__post_init__`), `X | None`, `list[str]`, `dict[str, str]`, `Literal[...]` for enumerations, and
  a nested dataclass for a nested table (its keys are checked the same way);
- a class with a `mode` field whose other fields name their `modes` accepts only the keys of the
  chosen mode; a key of another mode says which;
- range checks live in the class's `__post_init__` (they hold for direct construction too);
- an option set in the table that has no effect under the others is an error: the class's
  `without_effect()` lists (key, why) for the options that would be ignored.

Errors are ValueError with a one-line message starting with `name` ("margin: ...");
`UnknownKey` (a ValueError) also carries every unknown key and the known ones.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, get_args, get_origin, get_type_hints


class UnknownKey(ValueError):
    def __init__(self, message: str, unknown: list[str], known: list[str]):
        super().__init__(message)
        self.unknown, self.known = unknown, known


def option(default: Any = dataclasses.MISSING, *, help: str, default_factory: Any = dataclasses.MISSING,
           modes: tuple[str, ...] | None = None, path: bool = False) -> Any:
    """A dataclass field with its help text. `modes`: the values of the class's `mode` under which
    the option exists; `path`: a file or folder, relative to the config file's folder."""
    metadata = {"help": help, **({"modes": modes} if modes else {}), **({"path": True} if path else {})}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def parse_options(cls: type, values: Any, name: str, *, check_types: bool = True, prefix: str = "") -> Any:
    """`cls` built from the table `values`, or ValueError "<name>: ..." (module docstring).
    `check_types=False` skips the annotation check (the run config's sections, whose paths and
    numbers are checked where they are resolved); `prefix` names a nested table in messages."""
    if not isinstance(values, Mapping):
        raise ValueError(f"{name}: {prefix.rstrip('.') or 'options'} must be a table, not {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = get_type_hints(cls)
    mode = _mode(fields, hints, values, name, prefix) if any("modes" in f.metadata for f in fields.values()) else None
    for key, why in getattr(cls, "RETIRED", {}).items():
        if key in values:
            raise ValueError(f"{name}: {prefix}{key} is no longer an option: {why}")
    known = sorted(key for key, spec in fields.items() if mode in spec.metadata.get("modes", (mode,)))
    unknown = [key for key in values if key not in known]
    if unknown:
        key = unknown[0]
        other = [m for f in fields.values() if f.name == key for m in f.metadata.get("modes", ())]
        where = (f" (a key of mode {other[0]!r}, not {mode!r})" if other
                 else f" (known: {', '.join(prefix + k for k in known)})")
        raise UnknownKey(f"{name}: unknown config key {prefix + str(key)!r}{where}",
                         sorted(map(str, unknown)), known)
    missing = [key for key, spec in fields.items() if key not in values and _required(spec)]
    if missing:
        raise ValueError(f"{name}: {prefix}{missing[0]} is required")
    given = {key: _checked(value, hints[key], name, prefix + key) if check_types else value
             for key, value in values.items()}
    try:
        options = cls(**given)
    except ValueError as exc:
        message = str(exc)
        raise ValueError(message if message.startswith(f"{name}:") else f"{name}: {prefix}{message}") from None
    for key, why in getattr(options, "without_effect", lambda: ())():
        if key in values:
            raise ValueError(f"{name}: {prefix}{key} {why}")
    return options


def options_dict(options: Any) -> dict:
    """The options as a plain dict (nested dataclasses as dicts); under a mode, only its options."""
    mode = getattr(options, "mode", None)
    return {spec.name: _plain(getattr(options, spec.name)) for spec in dataclasses.fields(options)
            if spec.init and mode in spec.metadata.get("modes", (mode,))}


def as_floats(options: Any, *names: str) -> None:
    """Store these fields as floats (for a frozen class, in `__post_init__`)."""
    for key in names:
        object.__setattr__(options, key, float(getattr(options, key)))


def non_empty(options: Any, *names: str) -> None:
    """Range check: these string options, where set, are not blank."""
    for key in names:
        value = getattr(options, key)
        if value is not None and not value.strip():
            raise ValueError(f"{key} must be a non-empty string, not {value!r}")


def positive(options: Any, *names: str) -> None:
    """Range check: these integer options are at least 1."""
    for key in names:
        if getattr(options, key) < 1:
            raise ValueError(f"{key} must be a positive integer, not {getattr(options, key)!r}")


def _plain(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def _required(spec: dataclasses.Field) -> bool:
    return spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING


def _mode(fields: dict, hints: dict, values: Mapping, name: str, prefix: str) -> str:
    default = fields["mode"].default
    return _checked(values.get("mode", default), hints["mode"], name, prefix + "mode")


def _checked(value: Any, hint: Any, name: str, key: str) -> Any:
    """The value (a nested table parsed into its dataclass), or ValueError naming the key."""
    members = _members(hint)
    if isinstance(value, float) and not math.isfinite(value) and float in members:  # TOML's nan and inf
        raise ValueError(f"{name}: {key} must be a finite number, not {value!r}")
    for member in members:
        if dataclasses.is_dataclass(member) and isinstance(value, Mapping):
            return parse_options(member, value, name, prefix=key + ".")
        if _matches(value, member):
            return value
    literals = [v for m in members if get_origin(m) is Literal for v in get_args(m)]
    if all(get_origin(m) is Literal for m in members if m is not type(None)):
        raise ValueError(f"{name}: {key} must be one of {', '.join(map(repr, literals))}, not {value!r}")
    raise ValueError(f"{name}: {key} must be {type_text(hint)}, not {value!r}")


def _members(hint: Any) -> list:
    """The alternatives of a union (a Literal stays whole)."""
    if get_origin(hint) in (typing.Union, types.UnionType):
        return [m for arg in get_args(hint) for m in _members(arg)]
    return [hint]


def _matches(value: Any, hint: Any) -> bool:
    origin = get_origin(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin is Literal:
        return any(type(value) is type(choice) and value == choice for choice in get_args(hint))
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        (item,) = get_args(hint) or (Any,)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if origin is dict:
        key, item = get_args(hint) or (Any, Any)
        return isinstance(value, Mapping) and all(_matches(k, key) and _matches(v, item) for k, v in value.items())
    return isinstance(value, origin or hint)


def type_text(hint: Any) -> str:
    """What a value of this annotation is, in words ("a number", "'none' or 'z'"); None left out."""
    return " or ".join(_describe(m) for m in _members(hint) if m is not type(None))


def _describe(hint: Any) -> str:
    origin = get_origin(hint)
    if origin is Literal:
        return " or ".join("true" if v is True else "false" if v is False else repr(v) for v in get_args(hint))
    if origin is list:
        return "a list of strings" if get_args(hint) == (str,) else "a list"
    if origin is dict or dataclasses.is_dataclass(hint):
        return "a table"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        hint, getattr(hint, "__name__", str(hint)))
