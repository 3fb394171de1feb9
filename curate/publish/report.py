"""`curate report`: the dataset card's figures and tables for the whole lake, as one HTML page.

`write_report(lake_frames, out_path)` writes a self-contained page (inline CSS, PNGs embedded as
base64 data URIs, no JavaScript): rows per table, pairs per strategy / source / run / model,
margin and length histograms, verifier agreement and the pair audit per strategy, score distributions per scorer,
rejects by reason, dedup drops by reason, and the runs. `read_lake_frames(lake, as_of=None)` reads
the tables it needs from a lake, at a snapshot if given.
"""

from __future__ import annotations

import base64
import html
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import polars as pl

from curate.audit.checks import audit_summary
from curate.lake import export_reads, schemas
from curate.publish.card import (
    AGREEMENT_HEADERS,
    AGREEMENT_TEXT,
    ANSWER_HEADERS,
    ANSWER_TEXT,
    empty_frame,
    length_figure,
    lineage,
    margin_figure,
    margin_summary,
    model_counts,
    save_figure,
    score_figure,
    verifier_agreement,
)

# Columns not needed by the report (large texts and vectors) are left out when reading the lake.
_SKIP_COLUMNS = {"candidates": {"text"}, "embeddings": {"vector"}}

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2rem auto;
       max-width: 1000px; color: #222; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2rem; }
h3 { font-size: 1rem; margin-bottom: .3rem; }
p.meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .25rem .6rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
nav a { margin-right: .8rem; }
.empty { color: #888; font-style: italic; }
"""

SECTIONS = [("tables", "Tables"), ("pairs", "Pairs"), ("margins", "Margins"), ("lengths", "Lengths"),
            ("verifiers", "Verifier agreement"), ("audit", "Audit"), ("scores", "Scores"), ("rejects", "Rejects"),
            ("dedup", "Dedup drops"), ("runs", "Runs")]


def read_lake_frames(lake, as_of: int | None = None, tables=schemas.DATA_TABLES) -> dict[str, pl.DataFrame]:
    """The lake's tables as frames (at snapshot `as_of` when given); a table missing there is empty."""
    frames = {}
    for name in tables:
        declared = schemas.table(name).arrow_schema()
        skip = _SKIP_COLUMNS.get(name, set())
        try:
            present = export_reads.columns_at(lake, name, as_of)
        except (duckdb.CatalogException, duckdb.BinderException, duckdb.InvalidInputException):
            frames[name] = empty_frame(name).drop(list(skip))
            continue
        # A lake written by an older curate may lack newer columns: they read as nulls.
        wanted = [c for c in declared.names if c not in skip]
        frame = export_reads.rows_at(lake, name, [c for c in wanted if c in present], as_of)
        dtypes = empty_frame(name).schema
        missing = [pl.lit(None, dtype=dtypes[c]).alias(c) for c in wanted if c not in present]
        frames[name] = frame.with_columns(missing).select(wanted) if missing else frame.select(wanted)
    return frames


def _frames(lake_frames: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    frames = {}
    for name in schemas.DATA_TABLES:
        frame = lake_frames.get(name)
        frames[name] = frame if frame is not None else empty_frame(name)
    return frames


def _esc(value) -> str:
    return html.escape("" if value is None else str(value))


def _code_spans(text: str) -> str:
    """Escaped text with its `code` spans (the card's markdown) as <code> elements."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _esc(text))


def _format(value) -> tuple[str, bool]:
    if value is None:
        return "n/a", False
    if isinstance(value, bool):
        return str(value), False
    if isinstance(value, float):
        return ("n/a" if value != value else f"{value:.3f}"), True
    if isinstance(value, int):
        return f"{value:,}", True
    return str(value), False


def html_table(frame: pl.DataFrame, headers: dict[str, str] | None = None, empty: str = "none") -> str:
    if frame.height == 0:
        return f'<p class="empty">{_esc(empty)}</p>'
    headers = headers or {}
    head = "".join(f"<th>{_esc(headers.get(c, c))}</th>" for c in frame.columns)
    rows = []
    for row in frame.iter_rows():
        cells = []
        for value in row:
            text, numeric = _format(value)
            cells.append(f'<td class="num">{_esc(text)}</td>' if numeric else f"<td>{_esc(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _img(figure, alt: str) -> str:
    data = base64.b64encode(save_figure(figure)).decode("ascii")
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def write_report(lake_frames: dict[str, pl.DataFrame], out_path: Path | str, *, title: str = "curate lake report",
                 source: str | None = None, as_of: int | None = None) -> Path:
    """Write the HTML report for the given tables (name -> frame; missing ones count as empty)."""
    frames = _frames(lake_frames)
    pairs, prompts, scores = frames["pairs"], frames["prompts"], frames["scores"]
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)

    body = [f"<h1>{_esc(title)}</h1>"]
    meta = f"Written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    if source:
        meta += f" from {source}"
    meta += f", snapshot {as_of}" if as_of is not None else ", latest snapshot"
    body.append(f'<p class="meta">{_esc(meta)}.</p>')
    body.append("<nav>" + "".join(f'<a href="#{key}">{_esc(label)}</a>' for key, label in SECTIONS) + "</nav>")

    def section(key: str, label: str, *content: str) -> None:
        body.append(f'<section id="{key}"><h2>{_esc(label)}</h2>{"".join(content)}</section>')

    counts = pl.DataFrame({"table": list(schemas.DATA_TABLES), "rows": [frames[t].height for t in schemas.DATA_TABLES]})
    section("tables", "Tables", html_table(counts))

    by_strategy = margin_summary(pairs).select("strategy", "scorer", "pairs", "mean_margin")
    sources = prompts.select("prompt_id", "source").unique("prompt_id")
    by_source = (pairs.join(sources, on="prompt_id", how="left")
                 .with_columns(pl.col("source").fill_null("(unknown prompt)"))
                 .group_by("source").len(name="pairs").sort("source"))
    by_run = lineage(pairs, frames["runs"]).select("run_id", "name", "started_at", "status", "pairs")
    by_model = model_counts(pairs, frames["candidates"])
    section("pairs", "Pairs",
            "<h3>Per strategy</h3>", html_table(by_strategy, {"mean_margin": "mean margin"}, "no pairs"),
            "<h3>Per source</h3>", html_table(by_source, empty="no pairs"),
            "<h3>Per run</h3>", html_table(by_run, {"started_at": "started (UTC)"}, "no pairs"),
            "<h3>Per model</h3>", html_table(by_model, {"chosen": "chosen responses",
                                                        "rejected": "rejected responses"}, "no pairs"))

    section("margins", "Margins", _img(margin_figure(pairs), "Margin histogram per strategy"),
            html_table(margin_summary(pairs).select("strategy", "scorer", "pairs", "with_margin", "mean_margin",
                                                    "min_margin", "max_margin"),
                       {"with_margin": "with margin", "mean_margin": "mean", "min_margin": "min",
                        "max_margin": "max"}, "no pairs"))

    lengths = margin_summary(pairs).select("strategy", "scorer", "pairs", "mean_chosen_chars", "mean_rejected_chars")
    section("lengths", "Lengths", _img(length_figure(pairs), "Chosen and rejected lengths"),
            html_table(lengths, {"mean_chosen_chars": "mean chosen chars",
                                 "mean_rejected_chars": "mean rejected chars"}, "no pairs"))

    agreement = verifier_agreement(pairs, scores)
    section("verifiers", "Verifier agreement", f"<p>{_esc(AGREEMENT_TEXT)}</p>",
            html_table(agreement, AGREEMENT_HEADERS, "no pairs"))

    audits = frames["pair_audits"]
    by_check = (audits.sort(["created_at", "audit_id"], descending=True).unique(["pair_id", "check_name"])
                .join(pairs.select("pair_id", "strategy"), on="pair_id")
                .group_by("strategy", "check_name", "verdict").len(name="pairs")
                .sort("strategy", "check_name", "verdict"))
    section("audit", "Audit",
            "<p>Every pair re-checked with evidence its strategy did not use (curate audit): refuted if any check "
            "refutes it, confirmed if one confirms and none refutes, else uncheckable.</p>",
            "<p>" + _code_spans(ANSWER_TEXT + " `curate export --require answer` exports only pairs with it.") + "</p>",
            html_table(audit_summary(pairs, audits), ANSWER_HEADERS, empty="no pairs"),
            "<h3>Per check</h3>", html_table(by_check, empty="not audited"))

    status = (scores.group_by("scorer", "status").len(name="scores").sort("scorer", "status"))
    section("scores", "Scores", _img(score_figure(scores), "Score distributions per scorer"),
            html_table(status, empty="no scores"))

    rejects = frames["rejects"]
    by_reason = (rejects.with_columns(pl.col("reason").str.slice(0, 200))
                 .group_by("stage", "reason").len(name="rows").sort("rows", "stage", "reason",
                                                                    descending=[True, False, False]))
    section("rejects", "Rejects", html_table(by_reason, empty="no rejected rows"))

    drops = frames["dedup_drops"].group_by("item_kind", "reason").len(name="rows").sort("item_kind", "reason")
    section("dedup", "Dedup drops", html_table(drops, empty="nothing dropped"))

    runs = frames["runs"]
    run_table = runs.select(
        "run_id",
        pl.col("config_json").map_elements(lambda c: _name(c), return_dtype=pl.String).alias("name"),
        pl.col("started_at").dt.strftime("%Y-%m-%d %H:%M:%S").alias("started (UTC)"),
        "status", pl.col("code_version").alias("code version"),
    ).sort("started (UTC)") if runs.height else runs.select("run_id", "status")
    section("runs", "Runs", html_table(run_table, empty="no runs"))

    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
    out_path.write_text(page, encoding="utf-8")
    return out_path


def _name(config_json: str) -> str | None:
    try:
        return json.loads(config_json).get("name")
    except (TypeError, ValueError, AttributeError):
        return None
