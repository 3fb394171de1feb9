"""Arithmetic check of the equations a solution states ("3 * 4 = 12 + 1 = 13"), evaluated with sympy.

`equations(text)` finds every chain of `=` whose sides are plain arithmetic (numbers, + - * / ^,
parentheses; also ×, x or · between numbers, ÷, −, LaTeX \\times \\cdot \\div \\frac, thousands
commas, $ amounts) and checks each link of it. `first_false(text)` is the first link that is false.

A chain is checked only when it holds a computation (some side has an operator), so "x = 5" or
"of 50 = 10" are not statements we can judge. It is skipped, not judged, when it is glued to text
we cannot evaluate: a letter or digit touching it ("3x + 2 = 11", "= 5%"), an operator or an
operator word just before or after it ("... + 2 = 11", "20% of 50 = 10", "= 10 times"), a side
sympy cannot parse, or a power too large to evaluate. Being unable to judge is never "false".

Links are read the way people write running calculations: "3 * 4 = 12 + 1 = 13" holds when each
link is equal, or when the left value equals the number the right side starts with (12, then 12 +
1 = 13). Written decimals are roundings: when a side cannot be written exactly with the decimals
the link shows (10 / 3 = 3.33), a difference up to one unit in the last shown place is accepted;
otherwise (2.5 * 4 = 10.1, 9 * 11 = 98) equality is exact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

MAX_EXPONENT = 1000
MAX_SIDE_CHARS = 200

_EXPR = r"[-(]*[ \t]*\d(?:\d|\.(?=\d)|[ \t+\-*/()^])*"
_CHAIN = re.compile(rf"{_EXPR}(?:[ \t]*=(?!=)[ \t]*{_EXPR})+")
_OPERATOR = re.compile(r"\d[ \t)]*[-+*/^][ \t(]*-?[ \t]*\d")
# words that carry a computation on past the chain's edge ("20% of 50 = 10", "= 10 times 3")
_WORDS_BEFORE = {"of", "times", "plus", "minus", "by", "over", "per", "and", "into", "than", "from", "divided",
                 "multiplied", "squared", "cubed", "percent"}
_WORDS_AFTER = {"of", "times", "plus", "minus", "by", "over", "per", "divided", "multiplied", "squared", "cubed",
                "percent", "more", "less", "fewer"}
_NUMBER = re.compile(r"\d+(?:\.(\d+))?")


@dataclass(frozen=True)
class Equation:
    """One link of a chain: `left = right` as normalised text, and whether it holds."""

    left: str
    right: str
    holds: bool

    @property
    def text(self) -> str:
        return f"{self.left} = {self.right}"


def normalise(text: str) -> str:
    """Operators and numbers in the plain form the chain pattern reads."""
    text = re.sub(r"\\[()\[\]]", " ", text)                       # \( \) \[ \]
    text = re.sub(r"\\(?:left|right)\b", "", text)
    text = re.sub(r"\\d?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}", r"((\1)/(\2))", text)
    text = re.sub(r"\\(?:times|cdot)", "*", text)
    text = text.replace("\\div", "/")
    text = text.replace("{", "(").replace("}", ")")
    text = re.sub(r"^[ \t]*(?:[-*+•]|\d+[.)])[ \t]+", "", text, flags=re.MULTILINE)  # list markers
    text = re.sub(r"(?<=[\d)])[ \t]*\*\*[ \t]*(?=[\d(])", "^", text)
    text = text.replace("**", " ")                                 # markdown bold
    text = re.sub(r"(?<=[\d)])[ \t]*[x×·][ \t]*(?=[\d(])", " * ", text)
    text = text.replace("÷", "/").replace("−", "-").replace("–", "-")
    text = re.sub(r"\$(?=[ \t]*[-\d(])", "", text)
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)
    text = re.sub(r"(?<=\d)[ \t]*\((?=[ \t]*[-\d(])", " * (", text)  # 2(3 + 4)
    text = re.sub(r"\)[ \t]*(?=[\d(])", ") * ", text)
    return text


def _glued(text: str, start: int, end: int) -> bool:
    """Whether the chain text[start:end] continues into text we cannot evaluate."""
    before, after = text[:start], text[end:]
    if before[-1:].isalnum() or before[-1:] in ("_", ".", "^", "%", ":"):  # "3:00 + 2 = 5:00"
        return True
    left = before.rstrip(" \t")
    if left[-1:] in ("+", "-", "*", "/", "^", "(", "×", "÷"):
        return True
    words = re.findall(r"[A-Za-z]+", left[-20:])
    if words and left.endswith(words[-1]) and words[-1].lower() in _WORDS_BEFORE:
        return True
    if after[:1].isalnum() or after[:1] in ("_", "%", "(", "^", "!", ":"):
        return True
    following = re.match(r"[ \t]*([A-Za-z]+)", after)
    return bool(following and following.group(1).lower() in _WORDS_AFTER)


def _trim(side: str) -> str:
    side = side.strip(" \t")
    while side.startswith("(") and side.count("(") > side.count(")"):
        side = side[1:].strip(" \t")
    while side.endswith(")") and side.count(")") > side.count("("):
        side = side[:-1].strip(" \t")
    return side


def _value(side: str) -> Fraction | None:
    """The exact value of a side, or None when sympy cannot evaluate it safely."""
    if len(side) > MAX_SIDE_CHARS or side[-1:] in "+-*/^" or side.count("^") > 1:
        return None
    for exponent in re.findall(r"\^[ \t(]*-?[ \t]*(\d+(?:\.\d+)?)", side):
        if float(exponent) > MAX_EXPONENT:
            return None
    from sympy import Rational, nsimplify
    from sympy.parsing.sympy_parser import parse_expr, rationalize, standard_transformations

    try:
        value = parse_expr(side.replace("^", "**"), transformations=standard_transformations + (rationalize,),
                           evaluate=True)
        value = nsimplify(value, rational=True) if not isinstance(value, Rational) else value
    except Exception:  # sympy raises many kinds on text it cannot read; all mean "cannot evaluate"
        return None
    if not isinstance(value, Rational):
        return None  # irrational (a root), infinite (x / 0) or not a number
    return Fraction(int(value.p), int(value.q))


def _decimals(side: str) -> int:
    return max((len(match.group(1) or "") for match in _NUMBER.finditer(side)), default=0)


def _exact_at(value: Fraction, decimals: int) -> bool:
    return (value * 10**decimals).denominator == 1


def _equal(left: Fraction, right: Fraction, places: int) -> bool:
    if left == right:
        return True
    if _exact_at(left, places) and _exact_at(right, places):
        return False
    return abs(left - right) <= Fraction(1, 10**places)


def _leading_number(side: str) -> Fraction | None:
    """The number a running calculation's next side starts with ("12" in "12 + 1")."""
    match = re.match(r"(\d+(?:\.\d+)?)[ \t]*[-+*/^]", side)
    return Fraction(match.group(1)) if match else None


def _check_chain(sides: list[str]) -> list[Equation] | None:
    values = [_value(side) for side in sides]
    if any(value is None for value in values):
        return None
    links = []
    for (left, right), (lv, rv) in zip(zip(sides, sides[1:]), zip(values, values[1:])):
        places = max(_decimals(left), _decimals(right))
        holds = _equal(lv, rv, places)
        if not holds:
            leading = _leading_number(right)
            holds = leading is not None and _equal(lv, leading, max(_decimals(left), places))
        links.append(Equation(left, right, holds))
    return links


def equations(text: str) -> list[Equation]:
    """Every checkable equation link in the text, in order."""
    found = []
    for line in normalise(text or "").split("\n"):
        for match in _CHAIN.finditer(line):
            chain = match.group(0).rstrip(" \t")
            end = match.start() + len(chain)
            chain = chain.lstrip(" \t")
            start = end - len(chain)
            sides = [_trim(side) for side in chain.split("=")]
            if _glued(line, start, end) or not any(_OPERATOR.search(side) for side in sides):
                continue
            links = _check_chain(sides)
            if links:
                found.extend(links)
    return found


def first_false(text: str) -> Equation | None:
    """The first equation link in the text that does not hold, or None."""
    return next((equation for equation in equations(text) if not equation.holds), None)
