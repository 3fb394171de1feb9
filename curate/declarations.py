"""Records a module declares (a scorer's `KIND`, a strategy's `STRATEGY`) as they travel to a worker
process: by their module and name, not by value (their functions may be lambdas, which do not
pickle). The worker imports the module and takes the record it declares, whether or not anything
registered it there, so a kind or strategy added at run time (a plugin, a test) works in
process-pool and Ray shards as in threads.
"""

from __future__ import annotations

import importlib
import pickle
from typing import Any


def by_declaration(record: Any) -> tuple:
    """`__reduce__` of a record with a `name` and a `build` function defined in its module: the
    record must be the one its module holds at its top level (not a copy or a variant of it, which
    the worker would not find), else a PicklingError says so here rather than a worker later."""
    module, record_type = record.build.__module__, type(record).__name__
    try:
        found = declared(module, record_type, record.name)
    except LookupError as exc:
        raise pickle.PicklingError(f"{record_type} {record.name!r} cannot go to a worker: {exc}") from None
    if found is not record:
        raise pickle.PicklingError(f"{record_type} {record.name!r} cannot go to a worker: it is not the one "
                                   f"{module} declares (a copy or a variant: declare it in a module of its own)")
    return declared, (module, record_type, record.name)


def declared(module: str, record_type: str, name: str) -> Any:
    """The `record_type` named `name` that `module` holds at its top level."""
    for value in vars(importlib.import_module(module)).values():
        if type(value).__name__ == record_type and getattr(value, "name", None) == name:
            return value
    raise LookupError(f"{module} declares no {record_type} named {name!r} at its top level")
