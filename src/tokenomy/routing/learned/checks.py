"""Score one answer by checking what can be checked in it: its arithmetic.

A worked answer states results: "16 - 3 = 13", GSM8K's calculator notes
"<<9*2=18>>", "2 + 1/2 = 5/2 = 2.5". A claim whose arithmetic is false makes the
answer likely wrong, and it costs nothing to find: no second sample, no
log-probabilities, no verifier model. `arithmetic_defects` counts the false
claims; `check_score` is ``1 / (1 + defects)``: 1.0 when nothing wrong was
found, lower with each false claim, so a cascade keeps a clean draft and
escalates one that miscalculates.

Nothing here is learned or tuned. A claim is only checked when both of its sides
are plain arithmetic (numbers, ``+ - * / x ^``, the times and division signs, parentheses, ``$``, ``%``):
"3 apples + 2 = 5" is skipped (the words cut the left side), not judged. A
result may be rounded or truncated to the digits it shows ("10 / 3 = 3.33",
"7 / 2 = 4" when a count must be whole), a percentage may be read either way
("0.2 * 100 = 20%"), and a chain may go on from its result ("10 - 4 = 6 - 1 =
5"), so the checks err towards finding nothing.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction

_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_CALC = re.compile(r"<<([^<>=]*)=([^<>]*)>>")  # GSM8K's calculator notes
_ALLOWED = set("0123456789.+-*/x^()$% \t")
_TOKEN = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+|[-+*/x^()%])")
_LEAD = re.compile(r"(\$?\s*\d+(?:\.\d+)?)\s*[-+*/x^]")
_MAX_POWER = 64
# No worked step is longer or deeper than this: a longer expression is not read (a
# hostile "1+1+...": its cost), a deeper one neither (nesting past Python's stack).
_MAX_TOKENS = 256
_MAX_DEPTH = 32
# No everyday sum needs numbers longer than this; capping every intermediate value
# keeps a hostile text ("((9^64)^64)^64...") from costing seconds and gigabytes.
_MAX_BITS = 4096
_SIGNS = str.maketrans({"\u00d7": "*", "\u00f7": "/"})  # the times and division signs


class _Unparsed(Exception):
    pass


def _tokens(text: str) -> list[str]:
    text = text.replace("$", "").strip()
    out: list[str] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or len(out) >= _MAX_TOKENS:
            raise _Unparsed(text)
        out.append(m.group(1))
        pos = m.end()
    return out


class _Parser:
    """Recursive descent over + - * / ^ ( ) and postfix %, exact (fractions)."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = 0

    def _peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _take(self) -> str:
        tok = self._peek()
        if tok is None:
            raise _Unparsed("end")
        self.i += 1
        return tok

    def parse(self) -> Fraction:
        value = self._sum()
        if self._peek() is not None:
            raise _Unparsed("trailing")
        return value

    def _sum(self) -> Fraction:
        value = self._product()
        while self._peek() in ("+", "-"):
            op = self._take()
            right = self._product()
            value = _fit(value + right if op == "+" else value - right)
        return value

    def _product(self) -> Fraction:
        value = self._power()
        while self._peek() in ("*", "/", "x"):
            op = self._take()
            right = self._power()
            if op == "/":
                if right == 0:
                    raise _Unparsed("division by zero")
                value = _fit(value / right)
            else:
                value = _fit(value * right)
        return value

    def _power(self) -> Fraction:
        base = self._unary()
        if self._peek() == "^":
            self._take()
            exp = self._unary()
            if exp.denominator != 1 or abs(exp) > _MAX_POWER or (base == 0 and exp < 0):
                raise _Unparsed("power")
            size = max(base.numerator.bit_length(), base.denominator.bit_length())
            if size * abs(exp.numerator) > _MAX_BITS:
                raise _Unparsed("too large")
            return base**exp.numerator
        return base

    def _unary(self) -> Fraction:
        if self._peek() == "-":
            self._take()
            with self._nested():
                return -self._unary()
        return self._atom()

    def _atom(self) -> Fraction:
        tok = self._take()
        if tok == "(":
            with self._nested():
                value = self._sum()
            if self._take() != ")":
                raise _Unparsed("parenthesis")
        elif tok[0].isdigit() or tok[0] == ".":
            value = Fraction(tok)
        else:
            raise _Unparsed(tok)
        if self._peek() == "%":
            self._take()
            value /= 100
        return value


    @contextmanager
    def _nested(self) -> Iterator[None]:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise _Unparsed("too deep")
        try:
            yield
        finally:
            self.depth -= 1


def _fit(value: Fraction) -> Fraction:
    if max(value.numerator.bit_length(), value.denominator.bit_length()) > _MAX_BITS:
        raise _Unparsed("too large")
    return value


def _evaluate(expr: str) -> Fraction | None:
    try:
        return _Parser(_tokens(expr)).parse()
    except (_Unparsed, ZeroDivisionError, OverflowError, ValueError):
        return None


def _is_operation(expr: str) -> bool:
    """An expression with an operator between operands (not a lone, maybe signed, number)."""
    return bool(re.search(r"[\d)%]\s*[-+*/x^]\s*[\d.(]", expr))


def _left(segment: str) -> str:
    """The arithmetic at the end of the text before an '=' ('' when words cut into it)."""
    i = len(segment)
    while i > 0 and segment[i - 1] in _ALLOWED:
        i -= 1
    expr = segment[i:]
    expr = re.split(r"\.\s", expr)[-1]  # "1. 5 + 3": a list number or a full stop
    stripped = expr.strip()
    if not stripped or stripped[0] in "+*/x^%)" or stripped.startswith(("- ", "-\t")):
        return ""  # starts with an operator: words cut off its left operand
    return stripped


def _right(segment: str) -> tuple[str, bool]:
    """The arithmetic at the start of the text after an '=', and whether words cut into it."""
    i = 0
    while i < len(segment) and segment[i] in _ALLOWED:
        i += 1
    expr = segment[:i].rstrip()
    cut = i < len(segment) and segment[i] not in "\n,;:!?=<>" and not segment[i:].startswith(". ")
    glued = 0 < i < len(segment) and segment[i].isalnum() and not segment[i - 1].isspace()
    if glued:  # "= 5A / 5": a number glued to a word is not a result
        return "", True
    expr = expr.rstrip(".")
    if expr and expr[-1] in "+-*/x^(":
        return "", True
    return expr.strip(), cut and _is_operation(expr)


def _decimals(expr: str) -> int | None:
    """Digits shown after the point when the side is one number, else None."""
    m = re.fullmatch(r"\$?\s*-?\s*\$?(\d*)(?:\.(\d+))?\s*%?", expr)
    if not m or not (m.group(1) or m.group(2)):
        return None
    return len(m.group(2) or "")


def _holds(left: Fraction, right_expr: str, right: Fraction) -> bool:
    candidates = [right]
    if right_expr.endswith("%"):  # "0.2 * 100 = 20%": read the % either way
        candidates.append(right * 100)
    decimals = _decimals(right_expr)
    for value in candidates:
        if decimals is None:
            if abs(left - value) <= abs(value) * Fraction(1, 10**6):
                return True
        elif abs(left - value) < Fraction(1, 10**decimals):  # rounded or truncated
            return True
    return False


def claims(text: str) -> list[tuple[str, str]]:
    """The checkable claims of a text, as (left expression, right expression)."""
    text = _THOUSANDS.sub("", text).translate(_SIGNS)
    found: list[tuple[str, str]] = []
    for m in _CALC.finditer(text):
        left, right = m.group(1).strip(), m.group(2).strip()
        if _is_operation(left) and _decimals(right) is not None:
            found.append((left, right))
    text = _CALC.sub(" ", text)
    for line in text.splitlines():
        parts = line.split("=")
        for before, after in itertools.pairwise(parts):
            left = _left(before)
            right, cut = _right(after)
            if not left or not right or cut:
                continue
            if not (_is_operation(left) or _is_operation(right)):
                continue  # "x = 5", "13 = 13": nothing to check
            found.append((left, right))
    unique: dict[tuple[str, str], tuple[str, str]] = {}
    for left, right in found:  # "9 * $2 = $<<9*2=18>>18" states one claim twice
        unique.setdefault((_plain(left), _plain(right)), (left, right))
    return list(unique.values())


def _plain(expr: str) -> str:
    return re.sub(r"[\s$]", "", expr)


def arithmetic_defects(text: str) -> int:
    """How many checkable claims in the text are false."""
    bad = 0
    for left_expr, right_expr in claims(text):
        left, right = _evaluate(left_expr), _evaluate(right_expr)
        if left is None or right is None:
            continue
        if _holds(left, right_expr, right):
            continue
        lead = _LEAD.match(right_expr)
        if lead and _is_operation(right_expr):  # "10 - 4 = 6 - 1 = 5": a chain, 6 the result
            value = _evaluate(lead.group(1))
            if value is not None and _holds(left, lead.group(1), value):
                continue
        bad += 1
    return bad


def check_score(text: str) -> float:
    """1.0 when no false claim was found, 1 / (1 + false claims) otherwise."""
    return 1.0 / (1 + arithmetic_defects(text))


__all__ = ["arithmetic_defects", "check_score", "claims"]
