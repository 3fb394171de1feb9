"""Export: kept pairs as a training set, in the format a trainer reads.

`export_pairs(pairs, out_dir, options)` writes a frame of pairs (curate.publish.stream.export_lake
streams them from the lake, as `curate run` and `curate export` do): filters (`select_pairs`), a stable
train/test split by a hash of `pair_id`, four styles and three on-disk formats, and optionally a
dataset card (`curate.publish.card`). It takes the pairs frame as it is; reading the lake stays with
the caller:

    lake.read("pairs")                                                # now
    lake.query("SELECT * FROM pairs AT (VERSION => ?)", [snapshot])   # `--as-of SNAPSHOT`

(`curate.publish.report.read_lake_frames(lake, as_of=...)` reads every table at a snapshot, for the card.)

Styles (`ExportOptions.style`); every style also carries `LINEAGE_COLUMNS`:

- `trl_conversational` (default): `prompt` list of {role, content}, `chosen` and `rejected`
  one-message assistant lists. TRL's "conversational" preference format: DPOTrainer applies the
  model's own chat template (no doubled BOS/EOS from pre-rendered text).
- `trl_standard`: `prompt`, `chosen`, `rejected` plain strings, TRL's "standard" format. The
  prompt is the user message's text when the prompt is a single user message, otherwise its
  messages as "role: content" blocks joined by a blank line; it ends with a blank line
  (STANDARD_SEPARATOR), because TRL tokenises `prompt + chosen` as is: without one the prompt's
  last word and the answer's first merge into one token ("...list:1." in 5 of 42 demo rows). No
  chat template is applied and TRL appends EOS itself, so this style suits base models or a
  template you apply yourself; for chat models use `trl_conversational`.
- `openrlhf`: `chosen` and `rejected` are whole conversations (the prompt's messages followed by
  the assistant answer), no `prompt` key. That is what OpenRLHF's reward/DPO datasets read with
  their default keys (0.11: `--data.chosen_key chosen --data.rejected_key rejected`, no
  `--data.prompt_key`; before 0.11 the same flags without `data.`) and
  `--data.apply_chat_template`: the prompt is recovered as the chosen conversation minus its last
  message. Do not pass a prompt key: OpenRLHF would prepend a prompt to conversations that
  already hold it. OpenRLHF also reads a `margin` column, which it uses only for the reward
  model's margin loss (`--model.margin_loss_enable`, before 0.11 `--margin_loss`); ours is the
  scorer's raw margin, and 0.0 for pairs without one (a reversal or ground-truth pair: the lake's
  margin is null), OpenRLHF's own value for "no margin".
- `llamafactory`: LLaMA-Factory's sharegpt preference format: `conversations` (the prompt without
  its system message, as {from: human|gpt|observation, value}), `chosen` and `rejected`
  ({from: gpt, value}) and `system` (the system message, "" for the template's default). A
  `dataset_info.json` beside the data names one dataset per split, `<name>_train` and
  `<name>_test` (`formatting: sharegpt`, `ranking: true`); point LLaMA-Factory's `dataset_dir` at
  the export directory.

A step-wise pair's prompt ends with an assistant message, the correct prefix that chosen and
rejected continue (`split_assistant_prefix`). `trl_standard` ends its prompt string with the prefix
(after the separator),
so the completion is the step alone; the other styles, whose prompts are conversations, put the
prefix at the start of chosen and rejected (one assistant message: prefix + step), because trainers
render a conversational prompt's final assistant message as a closed turn. The prefix's tokens are
then the same on both sides: they cancel in DPO's sigmoid loss, not in length-normalised losses.

No trainer above rejects the lineage columns: TRL's DPOTrainer drops unused columns after
tokenising (`remove_unused_columns`, on by default), OpenRLHF and LLaMA-Factory map rows with
`remove_columns=` all input columns.

Formats (`ExportOptions.format`): `datasets` (a `DatasetDict` saved with `save_to_disk`:
`datasets.load_from_disk(out_dir)["train"]`), `jsonl` (`train.jsonl`, `test.jsonl`) or `parquet`
(`train.parquet`, `test.parquet`). The `test` split exists when `test_fraction > 0`, even if empty.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curate.audit.checks import audit_summary
from curate.config import EXPORT_REQUIREMENTS
from curate.lake import schemas
from curate.publish.card import write_dataset_card
from curate.publish.swap import relocated, staged

LINEAGE_COLUMNS = ["pair_id", "prompt_id", "strategy", "params_json", "scorer", "chosen_score",
                   "rejected_score", "margin", "weight", "details_json", "reason", "chosen_id", "rejected_id",
                   "run_id"]

FORMATS = ("datasets", "jsonl", "parquet")
# What `ExportOptions.require` may name (curate.config.EXPORT_REQUIREMENTS, shared with the run config).
REQUIREMENTS = EXPORT_REQUIREMENTS
STYLES = ("trl_conversational", "trl_standard", "openrlhf", "llamafactory")
SPLITS = ("train", "test")

_MESSAGE = pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())])
_SHAREGPT = pa.struct([pa.field("from", pa.string()), pa.field("value", pa.string())])
_SHAREGPT_ROLES = {"user": "human", "assistant": "gpt", "tool": "observation"}

# Files and folders an export writes; a new export replaces them (other files in its folder stay).
_EXPORT_FILES = ("dataset_dict.json", "dataset_info.json", "state.json", "README.md", "margins.png",
                 "lengths.png", *(f"{s}.{e}" for s in SPLITS for e in ("jsonl", "parquet")))


# ----------------------------------------------------------------------------------------------
# options, selection and split


@dataclass
class ExportOptions:
    """What to export and how. Filters left as None keep every pair.

    format: "datasets" | "jsonl" | "parquet".
    style: "trl_conversational" | "trl_standard" | "openrlhf" | "llamafactory".
    test_fraction: share of pairs in the `test` split, chosen by a hash of pair_id (no seed):
        a pair is always in the same split, and raising the fraction only moves pairs to test.
    strategies: keep pairs built by these strategies.
    min_margin: keep pairs with margin >= this; pairs without a margin (null) are dropped.
    runs: keep pairs built by these run ids (see `runs_between` for a range of runs).
    name: the dataset's name in the card and in LLaMA-Factory's dataset_info.json (default: the
        output directory's name).
    keep_refuted: keep pairs the audit refuted (an `audit_verdict` column on the pairs, see
        curate.audit.checks.with_verdicts); by default they are left out and counted.
    require: evidence a pair must have to be exported (REQUIREMENTS): "answer" keeps only pairs with
        answer-level evidence (an `answer_verdict` of "confirmed"); the others are left out and
        counted. Unaudited pairs have none.
    """

    format: str = "datasets"
    style: str = "trl_conversational"
    test_fraction: float = 0.0
    strategies: list[str] | None = None
    min_margin: float | None = None
    runs: list[str] | None = None
    name: str | None = None
    keep_refuted: bool = False
    require: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"unknown export format {self.format!r}; one of {', '.join(FORMATS)}")
        if self.style not in STYLES:
            raise ValueError(f"unknown export style {self.style!r}; one of {', '.join(STYLES)}")
        if not 0.0 <= float(self.test_fraction) < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction}")
        self.test_fraction = float(self.test_fraction)
        for name in ("strategies", "runs"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise ValueError(f"{name} must be a list of strings, not one string")
            if value is not None:
                setattr(self, name, list(value))
        self.require = () if self.require is None else self.require
        if isinstance(self.require, str):
            raise ValueError("require must be a list of strings, not one string")
        unknown = [r for r in self.require if r not in REQUIREMENTS]
        if unknown:
            raise ValueError(f"unknown export requirement {unknown[0]!r}; one of {', '.join(REQUIREMENTS)}")
        self.require = tuple(dict.fromkeys(self.require))

    def as_dict(self) -> dict:
        return asdict(self)


def split_bucket(pair_id: str) -> float:
    """A number in [0, 1) fixed by the pair id alone."""
    digest = hashlib.sha256(f"split|{pair_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(pair_id: str, test_fraction: float) -> str:
    """"test" for the pairs whose bucket falls under test_fraction, else "train"."""
    return "test" if split_bucket(pair_id) < test_fraction else "train"


def select_pairs(pairs: pl.DataFrame, options: ExportOptions | None = None) -> pl.DataFrame:
    """The pairs that pass the options' filters, sorted by pair_id, with a `split` column."""
    options = options or ExportOptions()
    frame = pairs
    if options.strategies is not None:
        frame = frame.filter(pl.col("strategy").is_in(options.strategies))
    if options.min_margin is not None:
        frame = frame.filter(pl.col("margin").is_not_null() & (pl.col("margin") >= options.min_margin))
    if options.runs is not None:
        frame = frame.filter(pl.col("run_id").is_in(options.runs))
    fraction = options.test_fraction
    return frame.sort("pair_id").with_columns(
        pl.col("pair_id").map_elements(lambda pid: split_of(pid, fraction), return_dtype=pl.String)
        .alias("split")
    )


def leave_out(pairs: pl.DataFrame, options: ExportOptions) -> tuple[pl.DataFrame, dict[str, int]]:
    """The pairs an export keeps, and how many each rule left out: {"refuted_left_out": pairs the
    audit refuted (`audit_verdict`; none unless the column is there and keep_refuted is off),
    "answer_left_out": of the rest, pairs without answer-level evidence (`answer_verdict` not
    confirmed, a missing column included) when options.require names "answer", else 0}."""
    counts = {"refuted_left_out": 0, "answer_left_out": 0}
    if not options.keep_refuted and "audit_verdict" in pairs.columns:
        refuted = pl.col("audit_verdict").fill_null("") == "refuted"
        counts["refuted_left_out"] = pairs.filter(refuted).height
        pairs = pairs.filter(~refuted)
    if "answer" in options.require:
        confirmed = (pl.col("answer_verdict").fill_null("") == "confirmed" if "answer_verdict" in pairs.columns
                     else pl.lit(False))
        counts["answer_left_out"] = pairs.filter(~confirmed).height
        pairs = pairs.filter(confirmed)
    return pairs, counts


def runs_between(runs: pl.DataFrame, first: str | None = None, last: str | None = None) -> list[str]:
    """Run ids from run `first` to run `last` inclusive, in order of start time (None: open end)."""
    ordered = runs.sort("started_at", "run_id")["run_id"].to_list()
    for run in (first, last):
        if run is not None and run not in ordered:
            raise ValueError(f"no run {run!r} in the lake")
    start = ordered.index(first) if first is not None else 0
    stop = ordered.index(last) + 1 if last is not None else len(ordered)
    return ordered[start:stop]


# ----------------------------------------------------------------------------------------------
# a reply that continues an assistant prefix (step-wise pairs)


def split_assistant_prefix(pairs: pl.DataFrame) -> pl.DataFrame:
    """The pairs with `assistant_prefix`: the text of a final assistant message of the prompt (a
    step-wise pair's correct prefix, which chosen and rejected continue), taken out of `prompt`;
    "" for prompts that end with a user message.

    No trainer continues a final assistant message of a conversational prompt: TRL's DPOTrainer
    renders the prompt with a generation prompt, so prefix and step would be two assistant turns
    with an end-of-turn token between them. Each style therefore puts the prefix where the model
    reads it as the start of its reply and the step as the continuation (see `_style_row`).
    """
    prompt = pl.col("prompt")
    continued = (prompt.list.len() > 0) & (prompt.list.last().struct.field("role") == "assistant")
    return pairs.with_columns(
        pl.when(continued).then(prompt.list.last().struct.field("content")).otherwise(pl.lit(""))
        .fill_null("").alias("assistant_prefix"),
        pl.when(continued).then(prompt.list.head(prompt.list.len() - 1)).otherwise(prompt).alias("prompt"),
    )


# ----------------------------------------------------------------------------------------------
# styles


STANDARD_SEPARATOR = "\n\n"  # between a trl_standard prompt and what continues it


def render_prompt_text(messages: list[dict]) -> str:
    """A chat prompt as one plain string (the trl_standard style's prompt)."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)


def _lineage_schema() -> list[pa.Field]:
    declared = schemas.table("pairs").arrow_schema()
    return [declared.field(name) for name in LINEAGE_COLUMNS]


def style_schema(style: str) -> pa.Schema:
    """The Arrow schema of an exported style (its columns, in order)."""
    if style == "trl_conversational":
        head = [pa.field("prompt", pa.list_(_MESSAGE)), pa.field("chosen", pa.list_(_MESSAGE)),
                pa.field("rejected", pa.list_(_MESSAGE))]
    elif style == "trl_standard":
        head = [pa.field("prompt", pa.string()), pa.field("chosen", pa.string()),
                pa.field("rejected", pa.string())]
    elif style == "openrlhf":
        head = [pa.field("chosen", pa.list_(_MESSAGE)), pa.field("rejected", pa.list_(_MESSAGE))]
    elif style == "llamafactory":
        head = [pa.field("conversations", pa.list_(_SHAREGPT)), pa.field("chosen", _SHAREGPT),
                pa.field("rejected", _SHAREGPT), pa.field("system", pa.string())]
    else:
        raise ValueError(f"unknown export style {style!r}; one of {', '.join(STYLES)}")
    return pa.schema(head + _lineage_schema())


def _sharegpt(prompt: list[dict]) -> tuple[list[dict], str]:
    system = ""
    messages = list(prompt)
    if messages and messages[0]["role"] == "system":
        system = messages.pop(0)["content"]
    conversations = []
    for message in messages:
        role = _SHAREGPT_ROLES.get(message["role"])
        if role is None:
            raise ValueError(f"llamafactory style: no sharegpt role for a {message['role']!r} message")
        conversations.append({"from": role, "value": message["content"]})
    return conversations, system


def _style_row(row: dict, style: str) -> dict:
    prompt, prefix, chosen, rejected = row["prompt"], row["assistant_prefix"], row["chosen"], row["rejected"]
    if style == "trl_standard":  # a string prompt can end inside the reply: the completion is the step alone
        text = render_prompt_text(prompt).rstrip() + STANDARD_SEPARATOR + prefix
        head = {"prompt": text, "chosen": chosen, "rejected": rejected}
        return {**head, **{column: row[column] for column in LINEAGE_COLUMNS}}
    # a conversation cannot: the reply is the prefix and its continuation, one assistant message
    chosen, rejected = prefix + chosen, prefix + rejected
    if style == "trl_conversational":
        head = {"prompt": prompt, "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}]}
    elif style == "openrlhf":
        head = {"chosen": [*prompt, {"role": "assistant", "content": chosen}],
                "rejected": [*prompt, {"role": "assistant", "content": rejected}]}
        if row["margin"] is None:  # OpenRLHF's margin loss reads a number
            return {**head, **{column: row[column] for column in LINEAGE_COLUMNS}, "margin": 0.0}
    else:
        conversations, system = _sharegpt(prompt)
        head = {"conversations": conversations, "chosen": {"from": "gpt", "value": chosen},
                "rejected": {"from": "gpt", "value": rejected}, "system": system}
    return {**head, **{column: row[column] for column in LINEAGE_COLUMNS}}


def to_style(pairs: pl.DataFrame, style: str = "trl_conversational") -> pa.Table:
    """The pairs (in their given order) as rows of an export style, as an Arrow table."""
    schema = style_schema(style)
    split = split_assistant_prefix(pairs)
    if style == "trl_conversational" and not split.is_empty():  # (the default) column-wise: _style_row's rows
        def reply(side: str) -> pl.Expr:
            content = (pl.col("assistant_prefix") + pl.col(side)).alias("content")
            return pl.concat_list(pl.struct(pl.lit("assistant").alias("role"), content)).alias(side)

        return split.select("prompt", reply("chosen"), reply("rejected"), *LINEAGE_COLUMNS).to_arrow().cast(schema)
    rows = [_style_row(row, style) for row in split.select(
        "prompt", "assistant_prefix", "chosen", "rejected", *LINEAGE_COLUMNS).iter_rows(named=True)]
    return pa.Table.from_pylist(rows, schema=schema)


# ----------------------------------------------------------------------------------------------
# writing

# what the card reads of each exported pair besides the texts' lengths (kept for every pair)
CARD_COLUMNS = ("pair_id", "prompt_id", "strategy", "scorer", "chosen_score", "rejected_score", "margin", "weight",
                "chosen_id", "rejected_id", "run_id", "split", "audit_verdict", "answer_verdict")


def export_pairs(pairs: pl.DataFrame, out_dir: Path | str, options: ExportOptions | None = None,
                 card_context=None) -> dict:
    """Filter, split and write a frame of pairs (rows of the `pairs` table, with the audit's
    `audit_verdict` and `answer_verdict` where known); returns what was written. The lake's pairs
    go through `curate.publish.stream.export_lake`, batch by batch, by the same `write_batches`.

    The export is written aside and replaces what an earlier export wrote into out_dir only once
    it is whole (curate.publish.swap); other files there are kept. card_context: a
    `curate.publish.card.CardContext` to also write README.md (the dataset card) and its figures
    into out_dir; None writes no card.

    Returns {"out_dir", "format", "style", "files": {split: path}, "counts": {split: rows},
    "strategies": {split: {strategy: rows}}, "total", "card": path or None, "dataset_info": path or
    None, "refuted_left_out": pairs the audit refuted that were left out, "answer_left_out": pairs
    left out for want of answer-level evidence (`require=("answer",)`; see `leave_out`)}.
    """
    audited = "audit_verdict" in pairs.columns
    for column in ("audit_verdict", "answer_verdict"):
        if column not in pairs.columns:
            pairs = pairs.with_columns(pl.lit(None, dtype=pl.String).alias(column))
    return write_batches([pairs], pairs.head(0), out_dir, options, lambda kept: card_context, audited=audited)


def write_batches(batches, empty: pl.DataFrame, out_dir: Path | str, options: ExportOptions | None,
                  card_for, audited: bool = True) -> dict:
    """The export of pairs given in frames (`export_pairs`' result): each frame filtered, split and
    written as it comes, so memory follows the frame. `empty`: a frame of no pairs with their columns
    (for an export of none); `card_for(kept)`: the CardContext of the kept pairs' lineage, or None
    for no card; `audited`: False when the pairs carry no audit verdicts (the card then says nothing
    of the audit)."""
    out_dir = Path(out_dir)
    options = replace(options or ExportOptions(), name=(options and options.name) or out_dir.name)
    with staged(out_dir, _EXPORT_FILES, SPLITS) as scratch:
        written = _write_batches(batches, empty, scratch, options, card_for, audited)
    return {**relocated(written, scratch, out_dir), "out_dir": out_dir}


def _write_batches(batches, empty: pl.DataFrame, out_dir: Path, options: ExportOptions, card_for,
                   audited: bool) -> dict:
    splits = ["train", "test"] if options.test_fraction > 0 else ["train"]
    scratch = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    writers = {split: _SplitWriter(out_dir, split, options, scratch) for split in splits}
    lineage = []  # per selected pair: what the card reads (CARD_COLUMNS, the texts' lengths)
    try:
        for batch in batches:
            selected = select_pairs(batch, options)
            lineage.append(_lineage(selected))
            selected, _ = leave_out(selected, options)
            for split in splits:
                part = selected.filter(pl.col("split") == split)
                if part.height:
                    writers[split].write(to_style(part, options.style))
        for writer in writers.values():
            writer.close()
        files = _finish_files(writers, out_dir, options, splits)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    every = pl.concat(lineage) if lineage else _lineage(select_pairs(empty, options))
    audit = audit_summary(every, None) if audited else None
    kept, left_out = leave_out(every, options)
    dataset_info = _write_dataset_info(out_dir, options.name, files) if options.style == "llamafactory" else None
    card = None
    context = card_for(kept)
    if context is not None:
        data_files = {split: _hub_data_path(out_dir, split, options.format) for split in splits}
        card = write_dataset_card(kept, context.scores, context.runs, out_dir, context=context, options=options,
                                  data_files=data_files, name=options.name, audit=audit, **left_out)
    strategies = {split: dict(sorted(kept.filter(pl.col("split") == split).group_by("strategy").len().iter_rows()))
                  for split in splits}
    return {"out_dir": out_dir, "format": options.format, "style": options.style, "files": files,
            "counts": {split: writers[split].rows for split in splits}, "strategies": strategies,
            "total": kept.height, "card": card, "dataset_info": dataset_info, **left_out}


def _lineage(selected: pl.DataFrame) -> pl.DataFrame:
    return selected.select(*CARD_COLUMNS, pl.col("chosen").str.len_chars().alias("chosen_chars"),
                           pl.col("rejected").str.len_chars().alias("rejected_chars"))


class _SplitWriter:
    """One split's output file, written a batch at a time."""

    def __init__(self, out_dir: Path, split: str, options: ExportOptions, scratch: Path):
        self.schema = style_schema(options.style)
        self.format, self.rows = options.format, 0
        if options.format == "parquet":
            self.path = out_dir / f"{split}.parquet"
            self._writer = pq.ParquetWriter(self.path, self.schema, compression="zstd")
        elif options.format == "jsonl":
            self.path = out_dir / f"{split}.jsonl"
            self._file = open(self.path, "wb")
        else:  # an Arrow stream file that datasets memory-maps, then saves in its own layout
            self.path = scratch / f"{split}.arrow"
            self._sink = pa.OSFile(str(self.path), "wb")
            self._writer = pa.ipc.new_stream(self._sink, self.schema)

    def write(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        if self.format == "jsonl":
            if table.num_rows:
                pl.from_arrow(table).write_ndjson(self._file)
        else:
            self._writer.write_table(table)

    def close(self) -> None:
        if self.format == "jsonl":
            self._file.close()
        else:
            if self.format == "datasets" and self.rows == 0:  # datasets cannot read a stream of no batch
                self._writer.write_batch(pa.RecordBatch.from_pylist([], schema=self.schema))
            self._writer.close()
            if self.format == "datasets":
                self._sink.close()


def _finish_files(writers: dict, out_dir: Path, options: ExportOptions, splits: list[str]) -> dict[str, Path]:
    if options.format != "datasets":
        return {split: writers[split].path for split in splits}
    import datasets

    dataset_dict = datasets.DatasetDict({split: datasets.Dataset.from_file(str(writers[split].path))
                                         for split in splits})
    # An empty split saved with the default sharding cannot be loaded back; one shard can.
    # LLaMA-Factory names one file per split, so its style is saved in one shard too.
    one_shard = options.style == "llamafactory"
    num_shards = {split: 1 if one_shard or writers[split].rows == 0 else None for split in splits}
    dataset_dict.save_to_disk(str(out_dir), num_shards=None if all(v is None for v in num_shards.values())
                              else num_shards)
    files = {}
    for split in splits:
        shards = sorted((out_dir / split).glob("*.arrow"))
        files[split] = shards[0] if len(shards) == 1 else out_dir / split
    return files


def _write_dataset_info(out_dir: Path, name: str, files: dict[str, Path]) -> Path:
    path = out_dir / "dataset_info.json"
    entries = {f"{name}_{split}": {"file_name": file.relative_to(out_dir).as_posix(), "formatting": "sharegpt",
                                   "ranking": True,
                                   "columns": {"messages": "conversations", "chosen": "chosen",
                                               "rejected": "rejected", "system": "system"}}
               for split, file in files.items()}
    path.write_text(json.dumps(entries, indent=2) + "\n")
    return path


def _hub_data_path(out_dir: Path, split: str, fmt: str) -> str:
    """The data_files pattern of a split, relative to the export (for the card's front matter)."""
    if fmt == "datasets":
        return f"{split}/*.arrow"
    return f"{split}.{fmt}"


def push_to_hub(source, repo_id: str, *, private: bool | None = None, token: str | None = None):
    """Publish an export to the Hugging Face Hub (a thin call; needs network and a token).

    source: a `datasets.DatasetDict`/`Dataset`, or an export directory. For a directory, the card
    (README.md), its figures and dataset_info.json are uploaded first, then the data goes up with
    `datasets`' `push_to_hub`, which keeps the card's text and rewrites its `configs` to the
    Parquet files it uploads.
    """
    import datasets

    if isinstance(source, (datasets.Dataset, datasets.DatasetDict)):
        return source.push_to_hub(repo_id, private=private, token=token)
    out_dir = Path(source)
    if (out_dir / "dataset_dict.json").exists() or (out_dir / "state.json").exists():
        data = datasets.load_from_disk(str(out_dir))
    else:
        found = {split: str(p) for split in SPLITS for p in out_dir.glob(f"{split}.*")
                 if p.suffix in (".jsonl", ".parquet")}
        if not found:
            raise FileNotFoundError(f"no export in {out_dir}")
        builder = "json" if next(iter(found.values())).endswith(".jsonl") else "parquet"
        data = datasets.load_dataset(builder, data_files=found)
    extras = [p.name for p in out_dir.iterdir() if p.name == "README.md" or p.suffix == ".png"
              or p.name == "dataset_info.json"]
    if extras:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=str(out_dir),
                          allow_patterns=extras)
    return data.push_to_hub(repo_id, private=private, token=token)
