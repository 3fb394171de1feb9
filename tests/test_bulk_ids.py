"""Bulk pair ids and dedup keys equal the per-row functions, on every strategy's id shapes and on real text."""

from __future__ import annotations

import polars as pl
import pytest

from curate import bulk_ids, ids
from curate.dedup import pair_dedup_key
from curate.ids import normalise_text
from curate.pairs.rows import MESSAGES

# Ids as each strategy writes them (curate/pairs/*.py: rows.side_models lists the non-candidate forms).
ID_SHAPES = {
    "margin": ("3f" * 16, "a1" * 16),
    "gt": ("reference", "0b" * 16),
    "reversal": ("c" * 32, "d" * 32),
    "stepwise": ("e" * 32, "f" * 32 + "#step3"),
    "short_to_long": ("1" * 32, "2" * 32),
    "code_evolution": ("commit:" + "ab" * 20 + ":after", "commit:" + "ab" * 20 + ":before"),
    "code_critiques": ("code_edit:" + "9" * 32 + ":after", "code_edit:" + "9" * 32 + ":before"),
}

AWKWARD = [
    "", " ", "plain ascii", "Tabs\tand\nnew\r\nlines\x0b\x0c here ", "quotes \" and \\ backslashes \\n",
    "file separators\x1c\x1d\x1e\x1fend", "controls \x00\x01\x07\x08\x1b\x7f kept", "  Leading and trailing\n\n",
    "NBSP\xa0and\u2028line\u2029sep\u3000ideographic \x85next", "Straße ß ẞ ﬁ ligature", "ΌΣΟΣ final sigma ς",
    "Full-width ＡＢＣ１２３", "emoji 🙂 and é vs e\u0301", "ǅ title case İ dotted", "mixed ascii then ü",
    "x" * 5000,
]


def _per_row(frame: pl.DataFrame, strategy: str) -> tuple[list[str], list[str]]:
    rows = frame.to_dicts()
    return ([ids.pair_id(strategy, r["chosen_id"], r["rejected_id"], r["prompt_id"]) for r in rows],
            [pair_dedup_key(r["prompt"], r["chosen"], r["rejected"]) for r in rows])


def _bulk(frame: pl.DataFrame, strategy: str) -> tuple[list[str], list[str]]:
    return (bulk_ids.pair_ids(strategy, frame["chosen_id"], frame["rejected_id"], frame["prompt_id"]).to_list(),
            bulk_ids.dedup_keys(frame["prompt"], frame["chosen"], frame["rejected"]).to_list())


def _frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"prompt_id": pl.Utf8, "prompt": MESSAGES, "chosen": pl.Utf8,
                                      "rejected": pl.Utf8, "chosen_id": pl.Utf8, "rejected_id": pl.Utf8})


@pytest.mark.parametrize("strategy", sorted(ID_SHAPES))
def test_bulk_ids_equal_per_row_ids_on_each_strategy_shape(strategy):
    chosen_id, rejected_id = ID_SHAPES[strategy]
    rows = []
    for k, text in enumerate(AWKWARD):
        prompt = [{"role": "system", "content": AWKWARD[-1 - k]}, {"role": "user", "content": text}]
        rows.append({"prompt_id": f"{k:032x}", "prompt": prompt if k % 3 else prompt[1:],
                     "chosen": text, "rejected": AWKWARD[(k + 5) % len(AWKWARD)],
                     "chosen_id": chosen_id if k else 'odd "id" \\ é', "rejected_id": rejected_id})
    rows.append({**rows[1], "prompt": []})  # no messages at all
    frame = _frame(rows)
    assert _bulk(frame, strategy) == _per_row(frame, strategy)


def test_normalised_matches_normalise_text_on_every_character():
    # every code point of the BMP but the surrogates, in runs with spaces around them
    chars = [chr(c) for c in range(0x10000) if not 0xD800 <= c < 0xE000]
    texts = [" A" + "".join(chars[i:i + 64]) + " b " for i in range(0, len(chars), 64)]
    texts += [f"x{c}y  {c}" for c in chars[:0x3000]]
    assert bulk_ids.normalised(pl.Series(texts)).to_list() == [normalise_text(t) for t in texts]


def test_bulk_ids_on_real_prompts_and_code():
    from curate.ingest.sources import builtin_rows

    ifeval = [r.value for r in builtin_rows("ifeval")][:120]
    humaneval = [r.value for r in builtin_rows("humaneval")][:60]
    texts = [r["messages"][-1]["content"] for r in ifeval] + [r["reference_solution"] + r["tests"] for r in humaneval]
    rows = [{"prompt_id": f"p{k}", "prompt": [{"role": "user", "content": t}], "chosen": t,
             "rejected": texts[(k + 1) % len(texts)], "chosen_id": f"c{k}", "rejected_id": f"r{k}"}
            for k, t in enumerate(texts)]
    frame = _frame(rows)
    assert _bulk(frame, "margin") == _per_row(frame, "margin")


def test_finish_pairs_ids_equal_per_row_ids():
    from curate.pairs.rows import finish_pairs

    picked = _frame([{"prompt_id": f"p{k}", "prompt": [{"role": "user", "content": AWKWARD[k]}],
                      "chosen": AWKWARD[-k], "rejected": "no", "chosen_id": f"c{k}", "rejected_id": f"r{k}"}
                     for k in range(len(AWKWARD))]).with_columns(
        scorer=pl.lit("s"), chosen_score=pl.lit(1.0), rejected_score=pl.lit(0.0), margin=pl.lit(1.0),
        reason=pl.lit("test"))
    pairs = finish_pairs(picked, "margin", {}, "r1")
    assert (pairs["pair_id"].to_list(), pairs["dedup_key"].to_list()) == _per_row(pairs, "margin")


@pytest.mark.parametrize("start", [0, 1, 2])
def test_json_string_and_normalised_on_slices_and_gathers(start):
    """The byte scans read a column's whole buffer: a slice or gather of plain rows out of a column
    with awkward ones (and the reverse) still gets exactly the per-row result."""
    import json

    column = pl.Series("t", ["plain", 'a "quote"', "also plain", "Straße", "x\ty", "last plain"] * 3)
    for part in (column.slice(start, 1), column.slice(start, 4), column.gather([start, 2, 5]),
                 column.gather([1, 3, 4]), column.slice(start).filter(column.slice(start).str.contains("plain"))):
        assert bulk_ids.json_string(part).to_list() == [json.dumps(t, ensure_ascii=False) for t in part]
        assert bulk_ids.normalised(part).to_list() == [normalise_text(t) for t in part]


def test_score_ids_equal_per_row_ids():
    from curate.bulk_ids import score_ids
    from curate.ids import score_id

    rows = [("a" * 32, "quality", "4"), ("b" * 32, "imported:Rating \"x\"", "src/é"), ("c", "judge:m", "1\n2")]
    columns = [pl.Series([row[k] for row in rows]) for k in range(3)]
    assert score_ids(*columns).to_list() == [score_id(*row) for row in rows]


def test_content_hashes_equal_content_hash_on_awkward_text():
    """The ids ingest and the audit compute column-wise (imported candidates, audit rows) are the
    per-row ones, whatever the text holds."""
    from curate.ingest import imported
    texts = pl.Series(AWKWARD, dtype=pl.String)
    others = pl.Series(AWKWARD[::-1], dtype=pl.String)
    assert bulk_ids.content_hashes("audit", texts, "check", "1", others).to_list() == [
        ids.content_hash("audit", text, "check", "1", other) for text, other in zip(AWKWARD, AWKWARD[::-1])]
    assert imported.candidate_ids(others, texts, texts).to_list() == [
        imported.candidate_id(other, text, text) for text, other in zip(AWKWARD, AWKWARD[::-1])]
