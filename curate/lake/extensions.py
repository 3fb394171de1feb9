"""DuckDB extensions from their wheels (`duckdb-extension-<name>`), loaded with signature checks
on and no network."""

from __future__ import annotations

import importlib
from pathlib import Path

import duckdb

from curate.errors import UserError


def extension_path(name: str) -> Path:
    """The signed DuckDB extension `name` shipped by the `duckdb-extension-<name>` wheel (no network needed)."""
    wheel = f"duckdb-extension-{name.replace('_', '-')}=={duckdb.__version__}"
    try:
        package = importlib.import_module(f"duckdb_extension_{name}")
    except ImportError as exc:
        raise UserError(f"the duckdb extension {name} is not installed: pip install {wheel}") from exc
    root = Path(package.__file__).parent / "extensions"
    found = root / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not found.exists():
        raise UserError(f"no {name} extension for duckdb {duckdb.__version__} under {root}; install {wheel}")
    return found
