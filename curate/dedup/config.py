"""DedupConfig, the text each stage compares, and rows for the `dedup_drops` table."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

import polars as pl

from curate.ids import content_hash, normalise_text
from curate.lake import schemas
from curate.options import option, parse_options

REASONS = ("exact", "minhash", "semantic", "contamination")


@dataclass(frozen=True)
class DedupConfig:
    """Settings of every dedup stage; defaults are the ones measured in tests/test_dedup_*.py.

    minhash_threshold 0.5 on 3-word shingles with 256 permutations in 64 bands of 4 rows: planted
    light edits (1-4 words changed, inserted or deleted in 40-80-word texts) have a true Jaccard of
    0.56 and up, texts that share half their words 0.34 at most; recall and precision over planted
    pairs are both 1.0 for any threshold from 0.4 to 0.55 (tests/test_dedup_minhash.py). The bands
    must divide num_perm. semantic_threshold 0.9: the paraphrases in tests/test_dedup_semantic.py have
    cosine 0.925 and up, the near-misses (same topic, another question) 0.869 and below.
    Contamination n-grams are `contamination_ngram` words long for benchmark items of 8 * that many
    words or more, and shorter (words // 8, at least `contamination_min_ngram`) for shorter items, so
    that a few edited words still leave most n-grams of a short question intact; an overlap of 0.5
    catches IFEval prompts with 3 words replaced about 97% of the time, while 2 of 271 IFEval prompts
    match another IFEval prompt (they share constraint sentences). `benchmarks` are what
    `decontaminate_prompts` loads when it is given no benchmark texts.
    """

    exact: bool = option(True, help="drop pairs whose normalised prompt, chosen and rejected are equal")
    minhash: bool = option(True, help="drop near-duplicates by MinHash LSH")
    minhash_threshold: float = option(0.5, help="MinHash: least Jaccard similarity of a near-duplicate, in (0, 1]")
    num_perm: int = option(256, help="MinHash: permutations")
    bands: int = option(64, help="MinHash LSH: bands (must divide num_perm)")
    shingle_size: int = option(3, help="MinHash: words per shingle")
    minhash_seed: int = option(42, help="MinHash: seed of the permutations")
    semantic: bool = option(True, help="drop paraphrases by embedding similarity (false: no embedding model)")
    semantic_threshold: float = option(0.9, help="semantic: least cosine similarity of a paraphrase, in (0, 1]")
    semantic_cluster_size: int = option(500, help="semantic: k-means k = ceil(n / this), the mean cluster size")
    semantic_probes: int = option(2, help="semantic: every item belongs to its this-many nearest clusters")
    semantic_window: int = option(
        1_000_000, help="semantic: across runs, compare with the newest this-many kept pairs of the lake (0: all)")
    embed_batch_size: int = option(64, help="semantic: texts embedded per batch")
    contamination_ngram: int = option(13, help="contamination: n-gram words for long benchmark items")
    contamination_min_ngram: int = option(3, help="contamination: shortest n-gram, for short items")
    contamination_threshold: float = option(
        0.5, help="contamination: share of an item's n-grams a prompt must hold to be dropped, in (0, 1]")
    contamination_boilerplate: int = option(
        10, help="contamination: n-grams found in more benchmark items than this are ignored")
    benchmarks: list[str] = option(
        default_factory=list,
        help='benchmarks to decontaminate prompts against: "humaneval", "ifeval" or files (relative to the config)')

    def __post_init__(self) -> None:
        for name in ("minhash_threshold", "semantic_threshold", "contamination_threshold"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        for name in ("num_perm", "bands", "shingle_size", "semantic_cluster_size", "semantic_probes",
                     "embed_batch_size",
                     "contamination_ngram", "contamination_min_ngram", "contamination_boilerplate"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.semantic_window, int) or isinstance(self.semantic_window, bool) or self.semantic_window < 0:
            raise ValueError(f"semantic_window must be a non-negative integer, got {self.semantic_window!r}")
        if self.num_perm % self.bands:
            raise ValueError(f"bands ({self.bands}) must divide num_perm ({self.num_perm})")
        if self.contamination_min_ngram > self.contamination_ngram:
            raise ValueError("contamination_min_ngram must not exceed contamination_ngram")
        object.__setattr__(self, "benchmarks", [str(b) for b in self.benchmarks])

    @classmethod
    def from_mapping(cls, values: dict) -> "DedupConfig":
        """From a TOML table (curate.options.parse_options: unknown keys and wrong types are errors)."""
        return parse_options(cls, values, "dedup")

    def minhash_params(self) -> dict:
        return {"threshold": self.minhash_threshold, "num_perm": self.num_perm, "bands": self.bands,
                "shingle_size": self.shingle_size, "seed": self.minhash_seed}


def prompt_text(messages: list[dict]) -> str:
    """A chat prompt as one normalised text, one `role: content` line per message."""
    return "\n".join(f"{m['role']}: {normalise_text(m['content'])}" for m in messages)


def drop_id(item_kind: str, item_id: str, reason: str) -> str:
    return content_hash("dedup-drop", item_kind, item_id, reason)


def empty_drops() -> pl.DataFrame:
    return pl.from_arrow(schemas.table("dedup_drops").arrow_schema().empty_table())


def drop_rows(item_kind: str, drops: list[tuple[str, str | None, float | None, dict]], reason: str,
              run_id: str, now: datetime | None = None) -> list[dict]:
    """`dedup_drops` rows for (item_id, kept_id, similarity, detail) tuples."""
    if reason not in REASONS:
        raise ValueError(f"unknown drop reason {reason!r}")
    now = now or datetime.now(timezone.utc)
    return [{"drop_id": drop_id(item_kind, item_id, reason), "item_kind": item_kind, "item_id": item_id,
             "reason": reason, "kept_id": kept_id,
             "similarity": None if similarity is None else float(similarity),
             "detail_json": json.dumps(detail, sort_keys=True), "run_id": run_id, "created_at": now}
            for item_id, kept_id, similarity, detail in drops]


def drops_frame(rows: list[dict]) -> pl.DataFrame:
    return pl.from_arrow(schemas.conform("dedup_drops", rows)) if rows else empty_drops()
