"""Records a module declares (a scorer's `KIND`, a strategy's `STRATEGY`) as they travel to a worker
process: by their module and name, not by value (their functions may be lambdas, which do not
pickle). The worker imports the module and takes the record it declares, whether or not anything
registered it there, so a kind or strategy added at run time (a plugin, a test) works in
process-pool and Ray shards as in threads.
"""

from __future__ import annotations

import importlib
from typing import Any


def by_declaration(record: Any) -> tuple:
    """`__reduce__` of a record with a `name` and a `build` function defined in its module."""
    return declared, (record.build.__module__, type(record).__name__, record.name)


def declared(module: str, record_type: str, name: str) -> Any:
    """The `record_type` named `name` that `module` holds at its top level."""
    for value in vars(importlib.import_module(module)).values():
        if type(value).__name__ == record_type and getattr(value, "name", None) == name:
            return value
    raise LookupError(f"{module} declares no {record_type} named {name!r} at its top level")
