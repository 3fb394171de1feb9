"""The dataset card: README.md written into an export, with its figures beside it.

`write_dataset_card(pairs, scores, runs, out_dir)` writes README.md: YAML front matter in the form
the Hugging Face Hub reads (`configs` with one `data_files` entry per split), then counts per split
and strategy, models, scorers, margins, lengths, verifier agreement per strategy, the audit per strategy
(claim-level verdicts and answer-level evidence) and lineage (run ids, code versions, config
hashes, the lake snapshot). Two PNGs are saved next to it and linked:
`margins.png` (margin histogram per strategy) and `lengths.png` (chosen and rejected lengths, and
their ratio). `curate.publish.report` draws the same figures for the whole lake.

Figures use matplotlib's object API on the Agg canvas (no pyplot, no display, no global state).
Lengths are in characters (no tokenizer is assumed).
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from curate.ids import content_hash
from curate.lake import schemas
from curate.lake.agreement import pair_verifier_verdicts
from curate.pairs.rows import side_models

FIGURE_SIZE = (8.0, 4.5)  # inches
FIGURE_DPI = 100  # so every PNG is 800 x 450 pixels
MARGINS_PNG = "margins.png"
LENGTHS_PNG = "lengths.png"
_COLORS = {"chosen": "#2b7bba", "rejected": "#d95f02"}


AGREEMENT_TEXT = ("Share of pairs whose chosen response a verifier scores strictly higher than the rejected one, "
                  "where that verifier scored both (`any`: every applicable verifier agrees). A tie is not "
                  "agreement. n/a: no verifier applies.")
AGREEMENT_HEADERS = {"pairs": "pairs checked", "agree": "chosen > rejected", "tie": "tie",
                     "disagree": "chosen < rejected"}
ANSWER_COLUMNS = ("answer_confirmed", "answer_refuted", "answer_unchecked")  # curate.audit.checks.audit_summary's
ANSWER_TEXT = ("Answer-level evidence: a check of the chosen answer itself against the prompt as the pair states "
               "it (its task's verifier passed in full, or a judge model on the request without its constraints), "
               "beyond the strategy's claim that the chosen beats the rejected. Checks that need no model (the "
               "requested format, constraints met by the answer's own words, grounding in the source, the context "
               "length) can refute an answer but not confirm it. Without a judge model (`[audit] judge`, `curate "
               "audit --judge`), instruction-following and free-text pairs (reversal, margin on constraints or a "
               "judge's ratings, short_to_long, code_evolution commits, stepwise) rest on their claim alone; the "
               "demo's 135M model is too weak to serve as that judge.")
ANSWER_HEADERS = {"answer_confirmed": "answer-level evidence", "answer_refuted": "refuted at the answer level",
                  "answer_unchecked": "claim alone (unchecked)"}


@dataclass
class CardContext:
    """What the card needs besides the pairs; every part is optional.

    scores: the lake's `scores` rows (verifier agreement, scorer versions).
    runs: the lake's `runs` rows (lineage).
    candidates: `candidates` rows (only candidate_id and model are used): models per side.
    models: model names to list when no candidates frame is given.
    as_of: the lake snapshot the pairs were read at (None: the latest).
    source: where the pairs came from (e.g. the lake's path), shown as is.
    """

    scores: pl.DataFrame | None = None
    runs: pl.DataFrame | None = None
    candidates: pl.DataFrame | None = None
    models: list[str] | None = None
    as_of: int | None = None
    source: str | None = None


def empty_frame(table: str) -> pl.DataFrame:
    return pl.from_arrow(schemas.table(table).arrow_schema().empty_table())


# ----------------------------------------------------------------------------------------------
# numbers


def with_lengths(pairs: pl.DataFrame) -> pl.DataFrame:
    if "chosen" not in pairs.columns and "chosen_chars" in pairs.columns:
        return pairs  # lengths measured already (a streamed export keeps no texts)
    return pairs.with_columns(
        pl.col("chosen").str.len_chars().alias("chosen_chars"),
        pl.col("rejected").str.len_chars().alias("rejected_chars"),
    )


def verifier_agreement(pairs: pl.DataFrame, scores: pl.DataFrame | None) -> pl.DataFrame:
    """Per strategy and verifier: how often the verifier scores the chosen strictly higher.

    The definition is curate.lake.agreement's (shared with the views and the report): a verifier
    applies to a pair when it has an ok score for both sides (the newest per candidate); a tie is
    not agreement. Columns: strategy, verifier, pairs (where it applies), agree (chosen >
    rejected), tie, disagree (chosen < rejected), agreement (agree / pairs). Each strategy also has
    an "any" row over its pairs where at least one verifier applies, agreeing when every applicable
    verifier agrees (tie: none disagrees and one ties); a strategy where no verifier applies has
    just that row with pairs = 0 and agreement null ("n/a").
    """
    strategies = sorted(set(pairs["strategy"].to_list()))
    counts = {"pairs": pl.Int64, "agree": pl.Int64, "tie": pl.Int64, "disagree": pl.Int64}
    schema = {"strategy": pl.String, "verifier": pl.String, **counts, "agreement": pl.Float64}
    verdicts = pair_verifier_verdicts(pairs, scores)

    def tally(frame):
        return [pl.len().cast(pl.Int64).alias("pairs"), pl.col("agree").sum().cast(pl.Int64),
                pl.col("tie").sum().cast(pl.Int64), pl.col("disagree").sum().cast(pl.Int64)]

    per_verifier = verdicts.group_by("strategy", "verifier").agg(*tally(verdicts))
    per_pair = verdicts.group_by("pair_id", "strategy").agg(
        pl.col("agree").all(), pl.col("disagree").any()).with_columns(
        (~pl.col("agree") & ~pl.col("disagree")).alias("tie"))
    overall = per_pair.group_by("strategy").agg(pl.lit("any").alias("verifier"), *tally(per_pair))
    missing = [s for s in strategies if s not in set(overall["strategy"].to_list())]
    none_apply = pl.DataFrame({"strategy": missing, "verifier": ["any"] * len(missing),
                               **{c: [0] * len(missing) for c in counts}},
                              schema={k: v for k, v in schema.items() if k != "agreement"})
    result = pl.concat([per_verifier.select(none_apply.columns), overall.select(none_apply.columns), none_apply])
    return result.with_columns(
        pl.when(pl.col("pairs") > 0).then(pl.col("agree") / pl.col("pairs")).otherwise(None)
        .cast(pl.Float64).alias("agreement")
    ).sort("strategy", pl.col("verifier") == "any", "verifier").select(list(schema))


def margin_summary(pairs: pl.DataFrame) -> pl.DataFrame:
    """Per strategy and scorer: pairs, pairs with a margin, mean/min/max margin, mean lengths."""
    return (
        with_lengths(pairs)
        .group_by("strategy", "scorer")
        .agg(pl.len().alias("pairs"), pl.col("margin").count().alias("with_margin"),
             pl.col("margin").mean().alias("mean_margin"), pl.col("margin").min().alias("min_margin"),
             pl.col("margin").max().alias("max_margin"),
             pl.col("chosen_chars").mean().alias("mean_chosen_chars"),
             pl.col("rejected_chars").mean().alias("mean_rejected_chars"))
        .sort("strategy", "scorer", nulls_last=True)
    )


def model_counts(pairs: pl.DataFrame, candidates: pl.DataFrame | None) -> pl.DataFrame:
    """Per model: how many chosen and rejected responses it wrote (curate.pairs.rows.side_models:
    candidates' models, and what references, mined commits and step-wise steps are)."""
    schema = {"model": pl.String, "chosen": pl.UInt32, "rejected": pl.UInt32}
    if candidates is None:
        return pl.DataFrame(schema=schema)
    sides = side_models(pairs.select("pair_id", "chosen_id", "rejected_id"), candidates)

    def side(column: str, name: str) -> pl.DataFrame:
        return sides.select(pl.col(column).fill_null("(unknown)").alias("model")).group_by("model").len(name=name)

    return (side("chosen_model", "chosen")
            .join(side("rejected_model", "rejected"), on="model", how="full", coalesce=True)
            .with_columns(pl.col("chosen", "rejected").fill_null(0).cast(pl.UInt32))
            .sort("model").select(list(schema)))


def config_hash(config_json: str) -> str:
    try:
        return content_hash(json.loads(config_json))[:12]
    except (TypeError, ValueError):
        return content_hash(config_json)[:12]


def lineage(pairs: pl.DataFrame, runs: pl.DataFrame | None) -> pl.DataFrame:
    """The runs that built the pairs: run_id, name, started, status, code_version, config_hash, pairs."""
    per_run = pairs.group_by("run_id").len(name="pairs")
    schema = {"run_id": pl.String, "name": pl.String, "started_at": pl.String, "status": pl.String,
              "code_version": pl.String, "config_hash": pl.String, "pairs": pl.UInt32}
    if runs is None or runs.height == 0:
        return per_run.with_columns(*[pl.lit(None, dtype=pl.String).alias(c) for c in
                                      ("name", "started_at", "status", "code_version", "config_hash")]
                                    ).select(list(schema)).sort("run_id")
    described = runs.select(
        "run_id", "status", "code_version",
        pl.col("config_json").map_elements(lambda c: _config_name(c), return_dtype=pl.String).alias("name"),
        pl.col("started_at").dt.strftime("%Y-%m-%d %H:%M:%S").alias("started_at"),
        pl.col("config_json").map_elements(config_hash, return_dtype=pl.String).alias("config_hash"),
    )
    return (per_run.join(described, on="run_id", how="left").select(list(schema))
            .with_columns(pl.col("pairs").cast(pl.UInt32)).sort("started_at", "run_id", nulls_last=True))


def _config_name(config_json: str) -> str | None:
    try:
        return json.loads(config_json).get("name")
    except (TypeError, ValueError, AttributeError):
        return None


# ----------------------------------------------------------------------------------------------
# figures


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGURE_SIZE, dpi=FIGURE_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _counts_axis(axes) -> None:
    from matplotlib.ticker import MaxNLocator

    axes.yaxis.set_major_locator(MaxNLocator(integer=True))


def _histogram(axes, values: list[float], color: str) -> None:
    """20 bins over the values' range (a single value gets a unit-wide range around it)."""
    low, high = min(values), max(values)
    if low == high:
        low, high = low - 0.5, high + 0.5
    axes.hist(values, bins=20, range=(low, high), color=color, edgecolor="white")


def _empty(figure, text: str):
    axes = figure.add_subplot()
    axes.text(0.5, 0.5, text, ha="center", va="center", fontsize=14, color="#666666")
    axes.set_axis_off()
    return figure


def _panels(figure, names: list[str]):
    """(name, axes) for a grid of panels, three to a row."""
    columns = min(len(names), 3)
    rows = math.ceil(len(names) / columns)
    return [(name, figure.add_subplot(rows, columns, index + 1)) for index, name in enumerate(names)]


def _figure_per_group(title: str, groups: list[str], nothing: str):
    """A titled figure and its (group, axes) panels; with no groups, the figure says `nothing`."""
    figure = _figure()
    figure.suptitle(title, fontsize=11)
    if not groups:
        return _empty(figure, nothing), []
    return figure, _panels(figure, groups)


def margin_figure(pairs: pl.DataFrame, title: str = "Margin (chosen score − rejected score) per strategy"):
    """One histogram per strategy (each on its own x range: scorers' scales differ)."""
    figure, panels = _figure_per_group(title, sorted(set(pairs["strategy"].to_list())), "no pairs")
    for strategy, axes in panels:
        margins = pairs.filter(pl.col("strategy") == strategy)["margin"]
        values = [v for v in margins.to_list() if v is not None and math.isfinite(v)]
        missing = margins.len() - len(values)
        label = f"{strategy} (n={margins.len()}" + (f", {missing} without margin)" if missing else ")")
        if values:
            _histogram(axes, values, "#4c72b0")
            _counts_axis(axes)
        else:
            axes.text(0.5, 0.5, "no margins", ha="center", va="center", transform=axes.transAxes, color="#666666")
            axes.set_xticks([])
            axes.set_yticks([])
        axes.set_title(label, fontsize=9)
        axes.set_xlabel("margin", fontsize=8)
        axes.set_ylabel("pairs", fontsize=8)
        axes.tick_params(labelsize=7)
    return figure


def length_figure(pairs: pl.DataFrame, title: str = "Response lengths (characters)"):
    """Left: chosen and rejected length histograms; right: log2(chosen / rejected length)."""
    figure = _figure()
    figure.suptitle(title, fontsize=11)
    if pairs.height == 0:
        return _empty(figure, "no pairs")
    lengths = with_lengths(pairs)
    chosen = lengths["chosen_chars"].to_list()
    rejected = lengths["rejected_chars"].to_list()
    left, right = figure.subplots(1, 2)
    high = max(max(chosen), max(rejected), 1)
    for name, values in (("chosen", chosen), ("rejected", rejected)):
        left.hist(values, bins=30, range=(0, high), alpha=0.55, color=_COLORS[name],
                  label=f"{name} (mean {sum(values) / len(values):.0f})")
    left.set_xlabel("characters", fontsize=8)
    left.set_ylabel("responses", fontsize=8)
    left.legend(fontsize=8)
    left.set_title("chosen vs rejected", fontsize=9)
    ratios = [math.log2(c / r) for c, r in zip(chosen, rejected) if c > 0 and r > 0]
    skipped = len(chosen) - len(ratios)
    if ratios:
        bound = max(1.0, max(abs(x) for x in ratios))
        right.hist(ratios, bins=30, range=(-bound, bound), color="#55a868", edgecolor="white")
        right.axvline(0.0, color="#333333", linewidth=1, linestyle="--")
    right.set_xlabel("log2(chosen length / rejected length)", fontsize=8)
    right.set_ylabel("pairs", fontsize=8)
    right.set_title("length ratio" + (f" ({skipped} empty responses left out)" if skipped else ""), fontsize=9)
    for axes in (left, right):
        axes.tick_params(labelsize=7)
        _counts_axis(axes)
    return figure


def score_figure(scores: pl.DataFrame, title: str = "Scores per scorer (status ok)"):
    """One histogram per scorer over its ok scores (for the lake report)."""
    figure, panels = _figure_per_group(title, sorted(set(scores["scorer"].to_list())), "no scores")
    for scorer, axes in panels:
        rows_of = scores.filter(pl.col("scorer") == scorer)
        values = [v for v in rows_of.filter(pl.col("status") == "ok")["score"].to_list()
                  if v is not None and math.isfinite(v)]
        not_ok = rows_of.height - len(values)
        if values:
            _histogram(axes, values, "#8172b3")
        axes.set_title(f"{scorer} (n={len(values)}" + (f", {not_ok} not ok)" if not_ok else ")"), fontsize=9)
        axes.set_xlabel("score", fontsize=8)
        axes.tick_params(labelsize=7)
        _counts_axis(axes)
    return figure


def save_figure(figure, path: Path | None = None) -> bytes:
    """PNG bytes of the figure; also written to `path` when given."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=FIGURE_DPI)
    data = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


# ----------------------------------------------------------------------------------------------
# markdown


def _cell(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pl.DataFrame, headers: dict[str, str] | None = None) -> str:
    headers = headers or {}
    names = [headers.get(c, c) for c in frame.columns]
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for row in frame.iter_rows():
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    if frame.height == 0:
        lines.append("| " + " | ".join("" for _ in names) + " |")
    return "\n".join(lines)


def _front_matter(name: str, data_files: dict[str, str], total: int) -> str:
    from huggingface_hub import DatasetCardData

    size = ("n<1K" if total < 1_000 else "1K<n<10K" if total < 10_000 else "10K<n<100K" if total < 100_000
            else "100K<n<1M" if total < 1_000_000 else "n>1M")
    data = DatasetCardData(
        pretty_name=name,
        tags=["dpo", "preference", "curate"],
        task_categories=["text-generation"],
        size_categories=[size],
        configs=[{"config_name": "default",
                  "data_files": [{"split": s, "path": p} for s, p in data_files.items()]}],
    )
    return "---\n" + data.to_yaml() + "\n---\n"


def _split_strategy_table(pairs: pl.DataFrame, splits: list[str]) -> pl.DataFrame:
    counts = pairs.group_by("strategy", "split").len()
    table = pl.DataFrame({"strategy": sorted(set(pairs["strategy"].to_list()))}, schema={"strategy": pl.String})
    for split in splits:
        part = counts.filter(pl.col("split") == split).select("strategy", pl.col("len").alias(split))
        table = table.join(part, on="strategy", how="left").with_columns(pl.col(split).fill_null(0))
    return table.with_columns(pl.sum_horizontal(*splits).alias("total"))


def _usage(options, name: str) -> str:
    fmt = getattr(options, "format", "datasets")
    style = getattr(options, "style", "trl_conversational")
    if fmt == "datasets":
        load = 'import datasets\nds = datasets.load_from_disk("PATH")  # DatasetDict: ds["train"]'
    elif fmt == "jsonl":
        load = 'import datasets\nds = datasets.load_dataset("json", data_files={"train": "PATH/train.jsonl"})'
    else:
        load = 'import datasets\nds = datasets.load_dataset("parquet", data_files={"train": "PATH/train.parquet"})'
    notes = {
        "trl_conversational": "TRL's conversational preference format: `DPOTrainer(model, train_dataset=ds[\"train\"], "
                              "processing_class=tokenizer, ...)` applies the model's chat template.",
        "trl_standard": "TRL's standard preference format (plain strings, no chat template applied; TRL appends EOS).",
        "openrlhf": "OpenRLHF: `--dataset PATH --chosen_key chosen --rejected_key rejected --apply_chat_template` "
                    "(no `--prompt_key`: `chosen`/`rejected` hold the whole conversation).",
        "llamafactory": f"LLaMA-Factory (sharegpt, ranking): `dataset_dir: PATH`, `dataset: {name}_train` "
                        "(entries in `dataset_info.json`).",
    }
    return f"```python\n{load}\n```\n\n{notes.get(style, '')}\n"


def write_dataset_card(pairs: pl.DataFrame, scores: pl.DataFrame | None, runs: pl.DataFrame | None,
                       out_dir: Path | str, *, context: CardContext | None = None,
                       candidates: pl.DataFrame | None = None, models: list[str] | None = None,
                       options=None, data_files: dict[str, str] | None = None,
                       name: str | None = None, as_of: int | None = None, audit: pl.DataFrame | None = None,
                       refuted_left_out: int = 0, answer_left_out: int = 0) -> Path:
    """Write README.md (and margins.png, lengths.png) into out_dir; returns the README's path.

    pairs: the exported pairs (rows of `pairs`, optionally with the `split` column that
        `curate.publish.export.select_pairs` adds; without it every pair counts as train).
    scores, runs: the lake's tables (or None): verifier agreement, scorers, lineage.
    context: a CardContext; its candidates/models/as_of/source fill what the keywords leave None.
    options: the ExportOptions used (format, style and filters are shown).
    data_files: split -> path pattern for the front matter (default: train.jsonl / test.jsonl).
    audit: the pair audit per strategy over the selected pairs (curate.audit.checks.audit_summary), with
        `refuted_left_out` of them left out of the export, and `answer_left_out` more left out for
        want of answer-level evidence (options.require names "answer"); None: not audited.
    """
    context = context or CardContext()
    candidates = candidates if candidates is not None else context.candidates
    models = models if models is not None else context.models
    as_of = as_of if as_of is not None else context.as_of
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = name or getattr(options, "name", None) or out_dir.name
    if "split" not in pairs.columns:
        pairs = pairs.with_columns(pl.lit("train").alias("split"))
    splits = list(data_files) if data_files else sorted(set(pairs["split"].to_list()) or {"train"},
                                                         key=lambda s: (s != "train", s))
    data_files = data_files or {s: f"{s}.jsonl" for s in splits}

    save_figure(margin_figure(pairs), out_dir / MARGINS_PNG)
    save_figure(length_figure(pairs), out_dir / LENGTHS_PNG)

    per_split = {s: pairs.filter(pl.col("split") == s).height for s in splits}
    agreement = verifier_agreement(pairs, scores)
    model_table = model_counts(pairs, candidates)
    scorer_rows = pairs.group_by("scorer").len(name="pairs").sort("scorer", nulls_last=True)

    parts = [_front_matter(name, data_files, pairs.height)]
    parts.append(f"# {name}\n")
    fmt = getattr(options, "format", None)
    style = getattr(options, "style", None)
    parts.append(
        f"{pairs.height} preference pairs exported by curate"
        + (f" as `{fmt}` in the `{style}` style" if fmt else "")
        + f" on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
        + (f", from lake snapshot {as_of}" if as_of is not None else ", from a lake snapshot not recorded")
        + (f" ({context.source})" if context.source else "") + ". "
        "Every row carries its lineage: pair_id, prompt_id, strategy, params_json, scorer, chosen/rejected "
        "scores, margin, weight, details_json, reason, chosen_id, rejected_id and run_id.\n"
    )

    parts.append("## Splits\n")
    parts.append(markdown_table(pl.DataFrame({"split": list(per_split), "pairs": list(per_split.values())})))
    fraction = getattr(options, "test_fraction", 0.0) or 0.0
    parts.append(f"\nThe split is fixed by a hash of each pair_id (test fraction {fraction:g}): a pair stays in "
                 "its split across exports.\n")

    parts.append("## Strategies\n")
    parts.append(markdown_table(_split_strategy_table(pairs, splits)) + "\n")

    parts.append("## Models\n")
    if model_table.height:
        parts.append(markdown_table(model_table, {"chosen": "chosen responses", "rejected": "rejected responses"}) + "\n")
    elif models:
        parts.append("\n".join(f"- {m}" for m in models) + "\n")
    elif candidates is not None:
        parts.append("No pairs.\n")
    else:
        parts.append("Not recorded (no candidates given).\n")

    parts.append("## Scorers\n")
    parts.append("Scorer that chose each pair:\n")
    parts.append(markdown_table(scorer_rows.with_columns(pl.col("scorer").fill_null("(none)"))) + "\n")
    if scores is not None and scores.height:
        ids = set(pairs["chosen_id"].to_list()) | set(pairs["rejected_id"].to_list())
        used = (scores.filter(pl.col("candidate_id").is_in(list(ids)))
                .group_by("scorer").agg(pl.col("scorer_version").unique().sort().str.join(", ").alias("versions"),
                                        pl.len().alias("scores"),
                                        (pl.col("status") != "ok").sum().alias("not_ok"))
                .sort("scorer"))
        parts.append("\nScores stored for the exported candidates:\n")
        parts.append(markdown_table(used, {"not_ok": "not ok"}) + "\n")

    parts.append("## Margins\n")
    parts.append(f"![Margin histogram per strategy]({MARGINS_PNG})\n")
    summary = margin_summary(pairs).select("strategy", "scorer", "pairs", "with_margin", "mean_margin",
                                           "min_margin", "max_margin")
    parts.append(markdown_table(summary, {"with_margin": "with margin", "mean_margin": "mean margin",
                                          "min_margin": "min", "max_margin": "max"}) + "\n")

    parts.append("## Lengths\n")
    parts.append(f"![Chosen and rejected lengths]({LENGTHS_PNG})\n")
    lengths = margin_summary(pairs).group_by("strategy").agg(
        pl.col("pairs").sum()).join(
        with_lengths(pairs).group_by("strategy").agg(
            pl.col("chosen_chars").mean().alias("mean chosen chars"),
            pl.col("rejected_chars").mean().alias("mean rejected chars")), on="strategy").sort("strategy")
    parts.append(markdown_table(lengths) + "\n")

    parts.append("## Verifier agreement\n")
    parts.append(AGREEMENT_TEXT + "\n")
    parts.append(markdown_table(agreement, AGREEMENT_HEADERS) + "\n")

    parts.append("## Audit\n")
    require = tuple(getattr(options, "require", ()) or ())
    required = (f"This export used `{' '.join(f'--require {r}' for r in require)}`"
                if require else "This export used no `--require`")
    if audit is None:
        parts.append("The pairs were not audited (curate audit). " + required
                     + (f": {answer_left_out} pairs without answer-level evidence were left out.\n"
                        if "answer" in require else ".\n"))
    else:
        parts.append("Every pair re-checked with evidence its strategy did not use (curate.audit.checks): refuted if any "
                     "check refutes it, confirmed if one confirms and none refutes, else uncheckable. "
                     + (f"{refuted_left_out} refuted pairs were left out of this export."
                        if refuted_left_out else "No refuted pair was left out.") + "\n")
        parts.append(markdown_table(audit.drop(ANSWER_COLUMNS, strict=False)) + "\n")
        parts.append("### Answer-level evidence\n")
        parts.append(ANSWER_TEXT + " " + required
                     + (f": only pairs with answer-level evidence were exported, {answer_left_out} without it were "
                        "left out." if "answer" in require else ": pairs resting on their claim alone are included.")
                     + " Counts are over the selected pairs before anything was left out; unaudited pairs count in "
                     "none of these columns.\n")
        answers = audit.select("strategy", "pairs", *[
            (pl.col(c) if c in audit.columns else pl.lit(0, pl.Int64)).alias(c) for c in ANSWER_COLUMNS])
        parts.append(markdown_table(answers, ANSWER_HEADERS) + "\n")

    parts.append("## Lineage\n")
    filters = []
    if options is not None:
        if getattr(options, "strategies", None) is not None:
            filters.append(f"strategies = {', '.join(options.strategies)}")
        if getattr(options, "min_margin", None) is not None:
            filters.append(f"margin ≥ {options.min_margin:g}")
        if getattr(options, "runs", None) is not None:
            filters.append(f"runs = {', '.join(options.runs)}")
        if getattr(options, "require", None):
            filters.append(f"required: {', '.join(options.require)}")
    parts.append(f"Lake snapshot: {as_of if as_of is not None else 'not recorded'}. "
                 f"Filters: {'; '.join(filters) if filters else 'none'}.\n")
    parts.append(markdown_table(lineage(pairs, runs), {"started_at": "started (UTC)",
                                                       "code_version": "code version",
                                                       "config_hash": "config hash"}) + "\n")

    parts.append("## Loading\n")
    parts.append(_usage(options, name))

    path = out_dir / "README.md"
    path.write_text("\n".join(parts).rstrip("\n") + "\n")
    return path
