"""The `curate` command line: run, query, stats, export."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from curate.errors import UserError, describe_os_error
from curate.progress import console, print_error

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Build preference datasets: prompts in, (prompt, chosen, rejected) pairs out.")

DataDir = typer.Option(None, "--data-dir", help="Where the lake, models and exports live "
                       "[default: $CURATE_DATA_DIR or ./data]")


def _data_dir(value: Optional[Path]) -> Path:
    return Path(value or os.environ.get("CURATE_DATA_DIR") or "data")


def _print_frame(frame) -> None:
    from curate.query_output import result_table

    console.print(result_table(frame))


@app.command()
def run(config: Optional[Path] = typer.Argument(None, help="Run config (TOML)"),
        demo: bool = typer.Option(False, "--demo", help="Run the embedded demo config"),
        data_dir: Optional[Path] = DataDir,
        no_prefect: bool = typer.Option(False, "--no-prefect", help="Run the steps without Prefect"),
        runner: Optional[str] = typer.Option(None, "--runner", help="threads or ray: overrides the config's [runner] kind")):
    """Run the build pipeline for CONFIG (or --demo)."""
    from curate.config import DEMO_CONFIG, load_config
    from curate.env import apply_offline_env
    from curate.models import check_config_models
    from curate.progress import summary_table

    if demo == (config is not None):
        raise UserError("give a CONFIG file or --demo (one of them)")
    if no_prefect and runner is not None:
        raise UserError("--runner picks the flow's task runner: it does not go with --no-prefect")
    config_path = DEMO_CONFIG if demo else config
    check_config_models(load_config(config_path))  # fail fast on a bad config or model, before Prefect starts
    directory = _data_dir(data_dir)
    apply_offline_env(directory)
    if no_prefect:
        from curate.pipeline import Pipeline

        pipeline = Pipeline(load_config(config_path), directory)
        state = pipeline.run_all()
        pipeline.close()
    else:
        from flows.build import run_build

        state = run_build(config_path, directory, runner_kind=runner)["state"]
    console.print(summary_table(state))


AsOf = typer.Option(None, "--as-of", help="Read the lake as it was at the end of a run (run id) or at a snapshot number")


def _open_lake(data_dir: Optional[Path], as_of: Optional[str]):
    """The lake read-only (at a past snapshot with --as-of); $CURATE_LAKE_CATALOG and
    $CURATE_LAKE_DATA_PATH point it at a PostgreSQL catalog and object storage."""
    from curate.lake import open_lake

    directory = _data_dir(data_dir)
    if as_of is None:
        return open_lake(directory, read_only=True)
    with open_lake(directory, read_only=True) as current:
        snapshot = current.snapshot_of_run(as_of)
    return open_lake(directory, snapshot=snapshot)


@app.command()
def query(sql: str = typer.Argument(..., help="SQL over the lake's tables and views: statements that read only"),
          format: str = typer.Option("table", "--format", "-f", help="table | csv | json | jsonl"),
          data_dir: Optional[Path] = DataDir, as_of: Optional[str] = AsOf):
    """Run a read-only SQL query on the lake and print the result (of its last statement)."""
    import duckdb
    import polars as pl

    from curate.query_output import FORMATS, print_frame
    from curate.read_only_sql import duckdb_error_line, lock_down, read_only_statements

    if format not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, not {format!r}")
    with _open_lake(data_dir, as_of) as lake:
        if not lake.read_only:
            raise UserError("internal: curate query needs the lake open read-only")
        statements = read_only_statements(lake.con, sql)  # refuses before anything runs
        lock_down(lake.con)
        try:
            for statement in statements:
                result = lake.con.execute(statement)
            frame = pl.from_arrow(result.to_arrow_table())
        except duckdb.Error as exc:
            raise UserError(f"query failed: {duckdb_error_line(exc)}") from exc
    print_frame(frame, format, console)


@app.command()
def stats(data_dir: Optional[Path] = DataDir, as_of: Optional[str] = AsOf):
    """Row counts per table and pairs per strategy."""
    from curate import schemas

    with _open_lake(data_dir, as_of) as lake:
        counts = {name: lake.count(name) for name in schemas.TABLES}
        table = Table(title=f"lake {lake.location} (snapshot {lake.snapshot_id()})")
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
def serve(config: Path = typer.Argument(..., help="Run config (TOML) of the nightly build"),
          cron: str = typer.Option("0 2 * * *", help="Schedule (cron, server time zone)"),
          name: str = typer.Option("nightly", help="Deployment name"),
          data_dir: Optional[Path] = DataDir):
    """Serve the build flow as a scheduled Prefect deployment (needs PREFECT_API_URL: see README)."""
    from curate.config import load_config
    from curate.env import apply_offline_env

    load_config(config)
    directory = _data_dir(data_dir)
    apply_offline_env(directory)
    if not os.environ.get("PREFECT_API_URL"):
        raise UserError("serving needs a Prefect server: run `prefect server start` and set PREFECT_API_URL "
                        "to the address it prints (http://127.0.0.1:4200/api by default)")
    from flows.nightly import serve_nightly

    console.print(f"serving deployment build/{name} on {cron!r}; Ctrl-C stops")
    serve_nightly(str(config), str(directory), cron, name)


@app.command()
def export(out: Path = typer.Argument(..., help="Output directory"),
           format: str = typer.Option("datasets", "--format", help="datasets | jsonl | parquet"),
           style: str = typer.Option("trl_conversational", "--style",
                                     help="trl_conversational | trl_standard | openrlhf | llamafactory"),
           test_fraction: float = typer.Option(0.0, "--test-fraction", help="Share of pairs in the test split "
                                               "(stable: chosen by a hash of pair_id)"),
           strategy: Optional[list[str]] = typer.Option(None, "--strategy", help="Keep these strategies (repeat)"),
           min_margin: Optional[float] = typer.Option(None, "--min-margin", help="Keep pairs with margin >= this"),
           first_run: Optional[str] = typer.Option(None, "--from-run", help="Keep pairs from this run on"),
           last_run: Optional[str] = typer.Option(None, "--to-run", help="Keep pairs up to this run"),
           push_to_hub: Optional[str] = typer.Option(None, "--push-to-hub", help="Also push to this Hub repo id"),
           data_dir: Optional[Path] = DataDir, as_of: Optional[str] = AsOf):
    """Export kept pairs with a dataset card (README.md with plots) for a trainer."""
    from curate.card import CardContext
    from curate.export import ExportOptions, export_pairs, runs_between
    from curate.export import push_to_hub as push

    with _open_lake(data_dir, as_of) as lake:
        pairs, runs = lake.read("pairs"), lake.read("runs")
        context = CardContext(scores=lake.read("scores"), runs=runs,
                              candidates=lake.query("SELECT candidate_id, model FROM candidates"),
                              as_of=lake.snapshot_id() if as_of else None, source=lake.location)
    try:
        run_ids = runs_between(runs, first_run, last_run) if (first_run or last_run) else None
        options = ExportOptions(format=format, style=style, test_fraction=test_fraction, strategies=strategy,
                                min_margin=min_margin, runs=run_ids)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    written = export_pairs(pairs, out, options, card_context=context)
    counts = ", ".join(f"{split} {n}" for split, n in written["counts"].items())
    console.print(f"exported {written['total']} pairs ({counts}) as {format}/{style} to {out}")
    if push_to_hub:
        push(out, push_to_hub)
        console.print(f"pushed to the Hub as {push_to_hub}")


@app.command()
def report(out: Path = typer.Argument(Path("report.html"), help="HTML file to write"),
           data_dir: Optional[Path] = DataDir, as_of: Optional[str] = AsOf):
    """Write an HTML report of the whole lake: counts, margins, lengths, agreement, scores, rejects."""
    from curate.report import read_lake_frames, write_report

    with _open_lake(data_dir, as_of) as lake:
        frames = read_lake_frames(lake)
        snapshot = lake.snapshot_id()
        source = lake.location
    path = write_report(frames, out, source=source, as_of=snapshot if as_of else None)
    console.print(f"report written to {path}")


def main() -> None:
    try:
        app(standalone_mode=False)
    except UserError as exc:
        print_error(str(exc))
        sys.exit(2)
    except OSError as exc:  # a file we cannot read or write, a full disk: the system's reason, one line
        print_error(describe_os_error(exc))
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
