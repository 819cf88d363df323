"""Score one answer by checking what can be checked in it: its arithmetic.

A worked answer states results: "16 - 3 = 13", GSM8K's calculator notes
"<<9*2=18>>", "2 + 1/2 = 5/2 = 2.5". A claim whose arithmetic is false makes the
answer likely wrong, and it costs nothing to find: no second sample, no
log-probabilities, no verifier model. `arithmetic_defects` counts the false
claims; `check_score` is ``1 / (1 + defects)``: 1.0 when nothing wrong was
found, lower with each false claim, so a cascade keeps a clean draft and
escalates one that miscalculates.

Nothing here is learned or tuned. The answer's notation is made plain first
(`tokenomy.routing.learned.notation`: LaTeX, Markdown, the times and minus signs,
currencies, digit grouping, scientific notation). A claim is then only checked
when both of its sides are plain arithmetic (numbers, ``+ - * / x ^``,
parentheses, ``$``, ``%``): "3 apples + 2 = 5" is skipped (the words cut the left
side), and so is a side that begins or ends inside a number written in a way it
does not read ("8:15 - 6", "1,5 * 2"), a range ("5-10", the first number
smaller) or a date ("3/4/2024", "2024-03-04"). A result may be rounded or
truncated to the digits it shows ("10 / 3 = 3.33", "7 / 2 = 4" when a count must
be whole) and is never judged finer than a double's precision; where a notation
has two readings, either will do: a percentage as a share or as a number
("0.2 * 100 = 20%"), a percentage added as a calculator adds it ("50 + 10% =
55"), a sign before a power ("-2^2" as -4 or 4), dots as decimal points or
thousands' separators ("1.200 + 300 = 1.500"); and a chain may go on from its
result ("10 - 4 = 6 - 1 = 5"). So the checks err towards finding nothing.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction

from .notation import plain

_CALC = re.compile(r"<<([^<>=]*)=([^<>]*)>>")  # GSM8K's calculator notes
_ALLOWED = set("0123456789.+-*/x^()$% \t")
_TOKEN = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+|[-+*/x^()%])")
_LEAD = re.compile(r"(\$?\s*\d+(?:\.\d+)?)\s*[-+*/x^]")
_OPERATION = re.compile(r"[\d)%]\s*[-+*/x^]\s*-?\s*[\d.(]")  # read without its $ signs
# A number goes on past the scan in a notation not read here: 8:15, 1,5, 1.5.2
_NUMBER_MARKS = ",:'\u2019"
_RANGE = re.compile(r"\$?(\d+(?:\.\d+)?)-\$?(\d+(?:\.\d+)?)\s*%?")
_DATE = re.compile(
    r"(?<![\d/.])\d{1,2}/\d{1,2}/\d{4}(?![\d/])|(?<![\d-])\d{4}-\d{1,2}-\d{1,2}(?![\d-])"
)
_DOTTED_THOUSANDS = re.compile(r"(?<=\d)\.(?=\d{3}(?!\d))")
_MAX_POWER = 64
# No worked step is longer or deeper than this: a longer expression is not read (a
# hostile "1+1+...": its cost), a deeper one neither (nesting past Python's stack).
_MAX_TOKENS = 256
_MAX_DEPTH = 32
# No everyday sum needs numbers longer than this; capping every intermediate value
# keeps a hostile text ("((9^64)^64)^64...") from costing seconds and gigabytes.
_MAX_BITS = 4096
# A double holds about 16 significant digits: "10 / 3 = 3.3333333333333335" holds.
_DOUBLE = Fraction(1, 10**15)


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
    """Recursive descent over + - * / ^ ( ) and postfix %, exact (fractions), in
    one reading of the conventions that differ: ``sign_first`` binds a leading
    minus before a power (a spreadsheet's -2^2 = 4, not 4's negation), and
    ``calculator`` adds or takes off a bare percentage as a share of what it
    follows (50 + 10% = 55)."""

    def __init__(self, tokens: list[str], *, sign_first: bool, calculator: bool) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = 0
        self.sign_first = sign_first
        self.calculator = calculator

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
            start = self.i
            right = self._product()
            if self.calculator and self.tokens[start + 1 : self.i] == ["%"]:
                right = value * right  # "50 + 10%": 10% of 50
            value = _fit(value + right if op == "+" else value - right)
        return value

    def _product(self) -> Fraction:
        value = self._unary()
        while self._peek() in ("*", "/", "x"):
            op = self._take()
            if op == "x" and self._peek() == "-":
                raise _Unparsed("a variable")  # "3x-5", "2x - 230": x is unknown
            right = self._unary()
            if op == "/":
                if right == 0:
                    raise _Unparsed("division by zero")
                value = _fit(value / right)
            else:
                value = _fit(value * right)
        return value

    def _unary(self) -> Fraction:
        if self._peek() == "-" and not self.sign_first:
            self._take()
            with self._nested():
                return -self._unary()
        return self._power()

    def _power(self) -> Fraction:
        base = self._signed()
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

    def _signed(self) -> Fraction:
        if self._peek() == "-" and self.sign_first:
            self._take()
            with self._nested():
                return -self._signed()
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


def _values(expr: str) -> list[Fraction]:
    """The values of ``expr`` in each reading its signs allow (none: not arithmetic)."""
    try:
        tokens = _tokens(expr)
    except _Unparsed:
        return []
    readings = [(False, False)]
    if "-" in tokens and "^" in tokens:
        readings.append((True, False))
    if "%" in tokens and ("+" in tokens or "-" in tokens):
        readings.append((False, True))
    values = []
    for sign_first, calculator in readings:
        try:
            values.append(_Parser(tokens, sign_first=sign_first, calculator=calculator).parse())
        except (_Unparsed, ZeroDivisionError, OverflowError, ValueError):
            continue
    return values


def _is_operation(expr: str) -> bool:
    """An expression with an operator between operands (not a lone, maybe signed, number)."""
    return bool(_OPERATION.search(expr.replace("$", "")))


def _began_inside(text: str, i: int) -> bool:
    """Whether the side scanned back to position ``i`` began inside a word or a number
    written in a notation not read here: "f(4) = ...", "8:15 - 6 = ...", "1,5 * 2 = ..."."""
    if not 0 < i < len(text) or text[i].isspace():
        return False
    before = text[i - 1]
    if before.isalnum() or before == "_":
        return True
    return before in _NUMBER_MARKS and i >= 2 and text[i - 2].isdigit()


def _ends_inside(text: str, i: int) -> bool:
    """Whether the side scanned up to position ``i`` ends inside such a number: "= 1:45"."""
    return (
        0 < i < len(text) - 1
        and text[i] in _NUMBER_MARKS
        and text[i - 1].isdigit()
        and text[i + 1].isdigit()
    )


def _left(segment: str) -> str:
    """The arithmetic at the end of the text before an '=' ('' when words cut into it)."""
    i = len(segment)
    while i > 0 and segment[i - 1] in _ALLOWED:
        i -= 1
    expr = segment[i:]
    parts = re.split(r"\.\s", expr)  # "1. 5 + 3": a list number or a full stop
    if len(parts) == 1 and _began_inside(segment, i):
        return ""  # "f(4)", "8:15 - 6", "1,5 * 2": it began before the scan
    stripped = parts[-1].strip()
    if not stripped or stripped[0] in "+*/x^%)" or stripped.startswith(("- ", "-\t")):
        return ""  # starts with an operator: words cut off its left operand
    return stripped


def _right(segment: str) -> tuple[str, bool]:
    """The arithmetic at the start of the text after an '=', and whether words follow it
    (what cuts an operation: "= 4 * the price")."""
    i = 0
    while i < len(segment) and segment[i] in _ALLOWED:
        i += 1
    if i < len(segment) and unicodedata.category(segment[i]) == "Pd":
        return "", True  # "= $2430 - $2100" with an en dash: the expression goes on
    expr = segment[:i].rstrip()
    remark = expr.endswith((" (", "\t("))  # "= 48 (cookies)": a remark follows the result
    if remark:
        expr = expr[:-1]
    words = i < len(segment) and segment[i] not in "\n,;:!?=<>" and not segment[i:].startswith(". ")
    glued = (
        0 < i < len(segment) and segment[i].isalnum() and not segment[i - 1].isspace()
    ) and not remark
    if glued or _ends_inside(segment, i):  # "= 5A / 5", "= 1:45": not a result
        return "", True
    expr = expr.rstrip(".")
    if expr and expr[-1] in "+-*/x^(":
        return "", True
    return expr.strip(), words


def _not_arithmetic(expr: str) -> bool:
    """A range ("5-10", the first number the smaller) or a date ("3/4/2024")."""
    m = _RANGE.fullmatch(expr)
    if m and Fraction(m.group(1)) < Fraction(m.group(2)):
        return True
    return _DATE.search(expr) is not None


def _decimals(expr: str) -> int | None:
    """Digits shown after the point when the side is one number, else None."""
    m = re.fullmatch(r"\$?\s*-?\s*\$?(\d*)(?:\.(\d+))?\s*%?\s*\$?", expr)  # $5, 5 $, 5%
    if not m or not (m.group(1) or m.group(2)):
        return None
    return len(m.group(2) or "")


def _holds(left: Fraction, right_expr: str, right: Fraction) -> bool:
    candidates = [right]
    if right_expr.endswith("%"):  # "0.2 * 100 = 20%": read the % either way
        candidates.append(right * 100)
    decimals = _decimals(right_expr)
    for value in candidates:
        off = abs(left - value)
        if off <= abs(value) * (_DOUBLE if decimals is not None else Fraction(1, 10**6)):
            return True
        if decimals is not None and off < Fraction(1, 10**decimals):  # rounded, truncated
            return True
    return False


def claims(text: str) -> list[tuple[str, str]]:
    """The checkable claims of a text, as (left expression, right expression)."""
    text = plain(text)
    found: list[tuple[str, str]] = []
    for m in _CALC.finditer(text):
        left, right = m.group(1).strip(), m.group(2).strip()
        if _is_operation(left) and _decimals(right) is not None:
            found.append((left, right))
    text = _CALC.sub(" ", text)
    carried: str | None = None  # the previous line's last right side
    for line in text.splitlines():
        parts = line.split("=")
        if carried is not None and not parts[0].strip():
            parts[0] = carried  # "= 12 + 2" on a line of its own goes on from the last
        carried = parts[-1] if len(parts) > 1 else None
        for before, after in itertools.pairwise(parts):
            left = _left(before)
            right, words = _right(after)
            if not left or not right or (words and _is_operation(right)):
                continue
            if words and "$" in left and "$" not in right:
                continue  # "$2.50 - $2.24 = 26 cents": a unit of its own
            if not (_is_operation(left) or _is_operation(right)):
                continue  # "x = 5", "13 = 13": nothing to check
            if _not_arithmetic(left) or _not_arithmetic(right):
                continue
            found.append((left, right))
    unique: dict[tuple[str, str], tuple[str, str]] = {}
    for left, right in found:  # "9 * $2 = $<<9*2=18>>18" states one claim twice
        unique.setdefault((_key(left), _key(right)), (left, right))
    return list(unique.values())


def _key(expr: str) -> str:
    return re.sub(r"[\s$]", "", expr)


def _spellings(left: str, right: str) -> list[tuple[str, str]]:
    """The claim as written and, when its dots may group thousands, read so."""
    out = [(left, right)]
    if _DOTTED_THOUSANDS.search(left) or _DOTTED_THOUSANDS.search(right):
        out.append((_DOTTED_THOUSANDS.sub("", left), _DOTTED_THOUSANDS.sub("", right)))
    return out


def _is_false(left_expr: str, right_expr: str) -> bool:
    """Whether the claim is false in every reading of it that is arithmetic."""
    read = False
    for left_text, right_text in _spellings(left_expr, right_expr):
        lefts, rights = _values(left_text), _values(right_text)
        if not lefts or not rights:
            continue
        read = True
        if any(_holds(lv, right_text, rv) for lv in lefts for rv in rights):
            return False
        lead = _LEAD.match(right_text)
        if lead and _is_operation(right_text):  # "10 - 4 = 6 - 1 = 5": a chain, 6 the result
            first = lead.group(1)
            if any(_holds(lv, first, v) for lv in lefts for v in _values(first)):
                return False
    return read


def arithmetic_defects(text: str) -> int:
    """How many checkable claims in the text are false."""
    return sum(1 for left, right in claims(text) if _is_false(left, right))


def check_score(text: str) -> float:
    """1.0 when no false claim was found, 1 / (1 + false claims) otherwise."""
    return 1.0 / (1 + arithmetic_defects(text))


__all__ = ["arithmetic_defects", "check_score", "claims"]
