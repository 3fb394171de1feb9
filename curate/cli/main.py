"""The `curate` command line: run, query, stats, audit, export, report."""

from __future__ import annotations

import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Optional

import click
import duckdb
import polars as pl
import typer
from rich.table import Table

from curate.audit.checks import PairTokens, audit_lake, audit_summary, read_audits
from curate.cli.query_output import FORMATS, print_frame, result_table
from curate.config import DEMO_CONFIG, import_plugins, load_config
from curate.errors import UserError, describe_os_error, unexpected_error_line
from curate.generate.vllm_backend import EngineSettings, VLLMBackend
from curate.lake import schemas
from curate.lake.catalog import open_lake
from curate.lake.read_only_sql import check_size, confine, lock_down, read_only_statements, run_statements
from curate.pipeline import Pipeline
from curate.progress import (
    console,
    library_bars_follow_terminal,
    print_error,
    quiet_user_errors_in_prefect_logs,
    summary_table,
)
from curate.publish.card import CardContext
from curate.publish.export import ExportOptions, runs_between
from curate.publish.export import push_to_hub as push
from curate.publish.report import read_lake_frames, write_report
from curate.publish.stream import export_lake
from curate.publish.swap import refuse_inside
from curate.runtime.env import apply_offline_env
from curate.runtime.leftovers import mark_run, stop_leftovers
from curate.runtime.models import check_config_models, model_dir
from curate.score.judge import JudgeSettings, PairwiseJudge
from curate.score.kind import backend_label

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Build preference datasets: prompts in, (prompt, chosen, rejected) pairs out.")

DataDir = typer.Option(None, "--data-dir", help="Where the lake, models and exports live "
                       "[default: $CURATE_DATA_DIR or ./data]")


def _data_dir(value: Optional[Path]) -> Path:
    return Path(value or os.environ.get("CURATE_DATA_DIR") or "data")


def _print_frame(frame) -> None:
    console.print(result_table(frame))


@app.command()
def run(config: Optional[Path] = typer.Argument(None, help="Run config (TOML)"),
        demo: bool = typer.Option(False, "--demo", help="Run the embedded demo config"),
        data_dir: Optional[Path] = DataDir,
        no_prefect: bool = typer.Option(False, "--no-prefect", help="Run the steps without Prefect"),
        runner: Optional[str] = typer.Option(None, "--runner", help="threads, processes or ray: overrides the config's [runner] kind")):
    """Run the build pipeline for CONFIG (or --demo)."""
    if demo == (config is not None):
        raise UserError("give a CONFIG file or --demo (one of them)")
    if no_prefect and runner is not None:
        raise UserError("--runner picks the flow's task runner: it does not go with --no-prefect")
    config_path = DEMO_CONFIG if demo else config
    check_config_models(load_config(config_path))  # fail fast on a bad config or model, before Prefect starts
    directory = _data_dir(data_dir)
    apply_offline_env(directory)
    _own_the_data_dir(directory)
    if no_prefect:
        pipeline = Pipeline(load_config(config_path), directory)
        state = pipeline.run_all()
        pipeline.close()
    else:
        from flows.build import run_build

        quiet_user_errors_in_prefect_logs()
        state = run_build(config_path, directory, runner_kind=runner)["state"]
    console.print(summary_table(state))


def _own_the_data_dir(directory: Path) -> None:
    """Stop what an earlier, killed run of this data dir left running, mark this run's processes,
    and let SIGTERM end the run as Ctrl-C does: through its cleanup (the run is marked failed
    and Prefect's ephemeral server stopped), not at once."""
    stop_leftovers(directory)
    mark_run(directory)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


AsOf = typer.Option(None, "--as-of", help="Read the lake as it was at the end of a run (run id) or at a snapshot number")


def _open_lake(data_dir: Optional[Path], as_of: Optional[str]):
    """The lake read-only (at a past snapshot with --as-of); $CURATE_LAKE_CATALOG and
    $CURATE_LAKE_DATA_PATH point it at a PostgreSQL catalog and object storage."""
    directory = _data_dir(data_dir)
    if as_of is None:
        lake = open_lake(directory, read_only=True)
        lake.snapshot_read = lake.snapshot_id()
        return lake
    with open_lake(directory, read_only=True) as current:
        snapshot = current.snapshot_of_run(as_of)
    lake = open_lake(directory, snapshot=snapshot)
    lake.snapshot_read = snapshot  # snapshots() lists later ones too: remember which one was opened
    return lake


@app.command()
def query(sql: str = typer.Argument(..., help="SQL over the lake's tables and views: statements that read only"),
          format: str = typer.Option("table", "--format", "-f", help="table | csv | json | jsonl"),
          data_dir: Optional[Path] = DataDir, as_of: Optional[str] = AsOf,
          timeout: float = typer.Option(300.0, "--timeout", help="seconds before the query is stopped"),
          read_files: bool = typer.Option(False, "--read-files",
                                          help="let the SQL read files outside the lake (read_csv('x.csv'), glob)"),
          max_rows: int = typer.Option(100_000, "--max-rows", min=0,
                                       help="print at most this many rows (0: all); the rest is not fetched")):
    """Run a read-only SQL query on the lake and print the result (of its last statement).
    It reads only the lake's own files unless --read-files is given."""
    if format not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, not {format!r}")
    if not timeout > 0:
        raise UserError(f"--timeout must be a positive number of seconds, not {timeout:g}")
    check_size(sql)
    with _open_lake(data_dir, as_of) as lake:
        if not lake.read_only:
            raise UserError("internal: curate query needs the lake open read-only")
        statements = read_only_statements(lake.con, sql)  # refuses before anything runs
        folders = None if read_files else lake.own_folders()
        if folders is not None:
            confine(lake.con, folders)
        lock_down(lake.con)
        table, cut = run_statements(lake.con, statements, timeout, max_rows)
    print_frame(pl.from_arrow(table), format, console)
    if cut:
        typer.echo(f"result cut at {max_rows:,} rows (--max-rows 0 prints all)", err=True)


@app.command()
def stats(data_dir: Optional[Path] = DataDir, as_of: Optional[str] = AsOf):
    """Row counts per table and pairs per strategy."""
    with _open_lake(data_dir, as_of) as lake:
        present = lake.table_names()  # a lake from an older curate lacks the newer tables
        counts = {name: lake.count(name) if name in present else 0 for name in schemas.TABLES}
        table = Table(title=f"lake {lake.location} (snapshot {lake.snapshot_read})")
        table.add_column("table")
        table.add_column("rows", justify="right")
        for name, count in counts.items():
            table.add_row(name, str(count))
        console.print(table)
        _print_frame(lake.pair_stats_by_strategy())
        summary = _audit_summary(lake)
        answers = [c for c in summary.columns if c.startswith("answer_")]
        console.print("pair audit per strategy (curate audit):")
        _print_frame(summary.drop(answers))
        console.print("answer-level evidence per strategy (the chosen answer itself checked; unchecked: the pair "
                      "rests on its strategy's claim alone; export --require answer keeps only confirmed):")
        _print_frame(summary.select("strategy", "pairs", *answers))


def _audit_summary(lake) -> pl.DataFrame:
    """The pair_audit_summary view; counted from the pairs on a lake no writer opened since the
    audit's tables (or the answer verdicts) came (read-only, it has no such view to read)."""
    if "pair_audit_facts" in lake.table_names():
        try:
            summary = lake.audit_summary()
            if "answer_confirmed" in summary.columns:
                return summary
        except duckdb.CatalogException:  # the table without the views: a writer stopped in between
            pass
    return audit_summary(lake.pair_strategies(), read_audits(lake))


@app.command()
def serve(config: Path = typer.Argument(..., help="Run config (TOML) of the nightly build"),
          cron: str = typer.Option("0 2 * * *", help="Schedule (cron, server time zone)"),
          name: str = typer.Option("nightly", help="Deployment name"),
          data_dir: Optional[Path] = DataDir):
    """Serve the build flow as a scheduled Prefect deployment (needs PREFECT_API_URL: see README)."""
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
           keep_refuted: bool = typer.Option(False, "--keep-refuted", help="Keep pairs the audit refuted "
                                             "(left out and counted by default)"),
           require: Optional[list[str]] = typer.Option(None, "--require", help="Evidence every exported pair "
                                                       "must have (repeat): answer = answer-level evidence (the "
                                                       "audit confirmed the chosen answer itself)"),
           push_to_hub: Optional[str] = typer.Option(None, "--push-to-hub", help="Also push to this Hub repo id"),
           data_dir: Optional[Path] = DataDir, as_of: Optional[str] = AsOf):
    """Export kept pairs with a dataset card (README.md with plots) for a trainer."""
    with _open_lake(data_dir, as_of) as lake:  # streamed: the pairs are read in batches
        runs = lake.read("runs")
        context = CardContext(runs=runs, as_of=lake.snapshot_read, source=lake.location)
        try:
            run_ids = runs_between(runs, first_run, last_run) if (first_run or last_run) else None
            options = ExportOptions(format=format, style=style, test_fraction=test_fraction, strategies=strategy,
                                    min_margin=min_margin, runs=run_ids, keep_refuted=keep_refuted,
                                    require=tuple(require or ()))
        except ValueError as exc:
            raise UserError(str(exc)) from exc
        refuse_inside(out, lake.root)
        written = export_lake(lake, out, options, card_context=context)
    counts = ", ".join(f"{split} {n}" for split, n in written["counts"].items())
    console.print(f"exported {written['total']} pairs ({counts}) as {format}/{style} to {out}"
                  + (f"; {written['refuted_left_out']} refuted by the audit left out (--keep-refuted keeps them)"
                     if written["refuted_left_out"] else "")
                  + (f"; {written['answer_left_out']} without answer-level evidence left out (--require answer)"
                     if written["answer_left_out"] else ""))
    if push_to_hub:
        push(out, push_to_hub)
        console.print(f"pushed to the Hub as {push_to_hub}")


@app.command()
def audit(data_dir: Optional[Path] = DataDir,
          judge: Optional[str] = typer.Option(None, "--judge", help="A pairwise judge: \"embedded\" or a model "
                                              "directory (none by default)"),
          judge_max_tokens: int = typer.Option(16, "--judge-max-tokens", help="The judge's reply length"),
          max_pair_tokens: int = typer.Option(0, "--max-pair-tokens", min=0,
                                              help="answer_context: prompt + each side must fit this many tokens "
                                                   "of --tokenizer's chat template (0: not checked)"),
          tokenizer: str = typer.Option("embedded", "--tokenizer", help="The model directory whose tokenizer "
                                        "counts --max-pair-tokens (\"embedded\": SmolLM2-135M-Instruct)"),
          plugin: Optional[list[str]] = typer.Option(None, "--plugin", help="A module of the run config's "
                                                     "`plugins`, whose strategies' pairs are then checked by "
                                                     "their own audit (repeatable)")):
    """Re-check every pair with evidence its strategy did not use; verdicts go to pair_audits."""
    directory = _data_dir(data_dir)
    import_plugins(list(plugin or []))

    def existing_dir(name: str, option: str) -> Path:
        path = model_dir(name, directory)
        if not path.is_dir():
            raise UserError(f"{option}: no model directory at {path}")
        return path

    tokens = PairTokens(existing_dir(tokenizer, "--tokenizer"), max_pair_tokens) if max_pair_tokens else None
    judge_model = None
    if judge is not None:
        path = existing_dir(judge, "--judge")
        backend = VLLMBackend(EngineSettings(str(path), max_model_len=4096, kv_cache_memory_bytes=1 << 29))
        judge_model = PairwiseJudge(backend, JudgeSettings(max_tokens=judge_max_tokens, max_retries=1),
                                    label=backend_label(backend))
    with open_lake(directory) as lake:  # writable: an older lake gets its pair_audits table here
        result = audit_lake(lake, f"audit-{uuid.uuid4().hex[:12]}", judge=judge_model, tokens=tokens)
    console.print(f"audited {result['audited']} pairs: {result['rows_new']} new verdicts")
    _print_frame(result["summary"])


@app.command()
def report(out: Path = typer.Argument(Path("report.html"), help="HTML file to write"),
           data_dir: Optional[Path] = DataDir, as_of: Optional[str] = AsOf):
    """Write an HTML report of the whole lake: counts, margins, lengths, agreement, scores, rejects."""
    with _open_lake(data_dir, as_of) as lake:
        frames = read_lake_frames(lake)
        snapshot = lake.snapshot_read
        source = lake.location
    path = write_report(frames, out, source=source, as_of=snapshot)
    console.print(f"report written to {path}")


def _is_usage_error(exc: Exception) -> bool:
    return isinstance(exc, click.ClickException) or (callable(getattr(exc, "show", None))
                                                     and isinstance(getattr(exc, "exit_code", None), int))


def main() -> None:
    try:
        library_bars_follow_terminal()
        code = app(standalone_mode=False)  # Ctrl-C: typer's click returns 130 here instead of raising
        if isinstance(code, int) and code:
            sys.exit(code)
    except UserError as exc:
        print_error(str(exc))
        sys.exit(2)
    except OSError as exc:  # a file we cannot read or write, a full disk: the system's reason, one line
        print_error(describe_os_error(exc))
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        if _is_usage_error(exc):  # typer vendors click: its errors are no click.ClickException
            option = getattr(exc, "option_name", None) or ""
            if option.startswith("-") and any(c.isspace() for c in option):  # SQL that opens with a comment
                print_error("an argument that starts with '-' reads as an option: put -- before the SQL "
                            "(curate query -- \"-- my comment ...\")")
                sys.exit(2)
            exc.show()
            sys.exit(exc.exit_code)
        if os.environ.get("CURATE_TRACEBACK"):
            raise
        print_error(unexpected_error_line(exc))
        sys.exit(1)


if __name__ == "__main__":
    main()
