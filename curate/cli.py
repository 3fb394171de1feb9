"""The `curate` command line: run, query, stats, export."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from curate.errors import UserError
from curate.progress import console

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Build preference datasets: prompts in, (prompt, chosen, rejected) pairs out.")

DataDir = typer.Option(None, "--data-dir", help="Where the lake, models and exports live "
                       "[default: $CURATE_DATA_DIR or ./data]")


def _data_dir(value: Optional[Path]) -> Path:
    return Path(value or os.environ.get("CURATE_DATA_DIR") or "data")


def _print_frame(frame) -> None:
    table = Table(show_lines=False)
    for column in frame.columns:
        table.add_column(column)
    for row in frame.iter_rows():
        table.add_row(*["" if v is None else str(v) for v in row])
    console.print(table)


@app.command()
def run(config: Optional[Path] = typer.Argument(None, help="Run config (TOML)"),
        demo: bool = typer.Option(False, "--demo", help="Run the embedded demo config"),
        data_dir: Optional[Path] = DataDir,
        no_prefect: bool = typer.Option(False, "--no-prefect", help="Run the steps without Prefect")):
    """Run the build pipeline for CONFIG (or --demo)."""
    from curate.config import DEMO_CONFIG, load_config
    from curate.env import apply_offline_env
    from curate.progress import summary_table

    if demo == (config is not None):
        raise UserError("give a CONFIG file or --demo (one of them)")
    config_path = DEMO_CONFIG if demo else config
    load_config(config_path)  # fail fast on a bad config, before Prefect starts
    directory = _data_dir(data_dir)
    apply_offline_env(directory)
    if no_prefect:
        from curate.pipeline import Pipeline

        pipeline = Pipeline(load_config(config_path), directory)
        state = pipeline.run_all()
        pipeline.close()
    else:
        from flows.build import build

        state = build(str(config_path), str(directory))["state"]
    console.print(summary_table(state))


@app.command()
def query(sql: str = typer.Argument(..., help="SQL over the lake's tables (read-only)"),
          data_dir: Optional[Path] = DataDir):
    """Run a read-only SQL query on the lake and print the result."""
    import duckdb

    from curate.lake import Lake

    with Lake(_data_dir(data_dir) / "lake", read_only=True) as lake:
        try:
            frame = lake.query(sql)
        except duckdb.Error as exc:
            raise UserError(f"query failed: {str(exc).splitlines()[0]}") from exc
    _print_frame(frame)


@app.command()
def stats(data_dir: Optional[Path] = DataDir):
    """Row counts per table and pairs per strategy."""
    from curate import schemas
    from curate.lake import Lake

    with Lake(_data_dir(data_dir) / "lake", read_only=True) as lake:
        counts = {name: lake.count(name) for name in schemas.TABLES}
        table = Table(title=f"lake {lake.root} (snapshot {lake.snapshot_id()})")
        table.add_column("table")
        table.add_column("rows", justify="right")
        for name, count in counts.items():
            table.add_row(name, str(count))
        console.print(table)
        _print_frame(lake.query(
            "SELECT strategy, scorer, count(*) AS pairs, round(avg(margin), 3) AS mean_margin, "
            "round(avg(length(chosen)) / nullif(avg(length(rejected)), 0), 3) AS length_ratio "
            "FROM pairs GROUP BY ALL ORDER BY ALL"))


@app.command()
def export(out: Path = typer.Argument(..., help="Output directory for the datasets.Dataset"),
           data_dir: Optional[Path] = DataDir):
    """Export all kept pairs as a Hugging Face dataset (TRL conversational columns + lineage)."""
    from curate.export import export_dataset
    from curate.lake import Lake

    with Lake(_data_dir(data_dir) / "lake", read_only=True) as lake:
        pairs = lake.read("pairs")
    export_dataset(pairs, out)
    console.print(f"exported {pairs.height} pairs to {out}")


def main() -> None:
    try:
        app(standalone_mode=False)
    except UserError as exc:
        console.print(f"[red]error:[/red] {exc}")
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
