"""Worked arithmetic as it is written, rewritten as the plain form `checks` reads.

Answers write the same sums in many notations: LaTeX (``\\(6 \\times 7 = 42\\)``,
``\\frac{1}{2}``, ``2^{10}``, ``&=``), Markdown (``**42**``, ``- 6 * 7 = 42`` as a
list item), typography (the times, dot and minus signs, superscript digits),
currencies (euro, pound, yen, rupee), digit grouping (``1,200``, ``1'200``,
Indian ``1,00,000``, a thin space) and scientific notation (``3e8``). `plain`
rewrites each as ``* / - ^ ( ) $`` and bare digits, so a claim in any of them is
read the same way; what it does not know stays as it is, and then cuts the claim
(words are never arithmetic).

Every pattern is linear in the text (no nested repetition, bounded lookaheads),
since answers are read on the gateway's event loop.
"""

from __future__ import annotations

import re
from decimal import Decimal

# \frac{a}{b} with no braces inside: rewritten innermost first, a few levels deep
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_FRAC_LEVELS = 3
_LATEX: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\\boxed\s*\{([^{}]*)\}"), r" \1 "),
    (re.compile(r"\\(?:times|cdot|ast)(?![A-Za-z])"), " * "),
    (re.compile(r"\\div(?![A-Za-z])"), " / "),
    (re.compile(r"\\left\s*\("), "("),
    (re.compile(r"\\right\s*\)"), ")"),
    (re.compile(r"\\[()\[\]]"), " "),  # \( \) \[ \]: math delimiters
    (re.compile(r"\\\\[ \t]*$", re.MULTILINE), ""),  # a row's end in aligned equations
    (re.compile(r"\\([%$])"), r"\1"),
    (re.compile(r"\{,\}"), ","),  # 1{,}200, 2{,}5: a comma in a number
    (re.compile(r"(?<=\d)\\[,!; ](?=\d{3}(?!\d))"), ""),  # 1\,200: a thin space
    (re.compile(r"\\[,;!: ]"), " "),
)
_BRACED_POWER = re.compile(r"\^\s*\{([^{}]*)\}")  # 2^{10}
_ALIGN = re.compile(r"&\s*=|=\s*&")  # aligned equations: "x &= 6 \times 7"
_SIGNS = str.maketrans(
    {
        "\u00d7": "*",  # the times sign
        "\u22c5": "*",  # the dot operator
        "\u00b7": "*",  # the middle dot
        "\u2217": "*",  # the asterisk operator
        "\u00f7": "/",  # the division sign
        "\u2212": "-",  # the minus sign (a dash is not: an unspaced one marks a range)
        "\u20ac": "$",  # euro, pound, yen, rupee: a currency, as $
        "\u00a3": "$",
        "\u00a5": "$",
        "\u20b9": "$",
    }
)
# "$2,430 - $2,100" with an en dash: spaced between numbers, a minus (unspaced, a range)
_DASH_MINUS = re.compile(r"([\d)%])([ \t]+)\u2013([ \t]+)(?=[\d.($])")
_SUPERSCRIPT = re.compile("[\u2070\u00b9\u00b2\u00b3\u2074-\u2079]+")
_SUPER_DIGITS = str.maketrans(
    "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079", "0123456789"
)
_POWER_STARS = re.compile(r"(?<=[\d)])\*\*(?=[\d(])")  # 2**3: a power
_EMPHASIS = re.compile(r"\*\*|__")  # **42**: bold
_LIST_ITEM = re.compile(
    r"^[ \t>]*(?:[-*+\u2022]|\(?[0-9A-Za-z]{1,2}\))[ \t]+(?![-+*/x^=])", re.MULTILINE
)  # "- ", "* ", "a) ", "(2) " before an item's text ("1. " is read as a full stop)
_INDIAN = re.compile(r"(?<=\d),(?=(?:\d{2},){1,6}\d{3}(?!\d))")  # 1,00,000
_GROUPS = re.compile(r"(?<=\d)[,'\u2019\u00a0\u2009\u202f](?=\d{3}(?!\d))")  # 1,200 1'200
# 3e8, 1.5e-3: written out (700000000, 0.0015) while the exponent is everyday-sized
_SCIENTIFIC = re.compile(r"(?<!\w)(?<!\d\.)\d+(?:\.\d+)?[eE][-+]?\d{1,2}(?!\w|\.\d)")
_MAX_EXPONENT = 30


def _scientific(m: re.Match[str]) -> str:
    value = Decimal(m.group(0))
    exponent = value.adjusted()
    return m.group(0) if abs(exponent) > _MAX_EXPONENT else format(value, "f")


def _superscript(m: re.Match[str]) -> str:
    return "^" + m.group(0).translate(_SUPER_DIGITS)


def plain(text: str) -> str:
    """``text`` with its arithmetic in plain notation (see the module's docstring)."""
    if "\\" in text:
        for _ in range(_FRAC_LEVELS):
            text, n = _FRAC.subn(r"((\1)/(\2))", text)
            if not n:
                break
        for pattern, repl in _LATEX:
            text = pattern.sub(repl, text)
    if "{" in text:
        text = _BRACED_POWER.sub(r"^(\1)", text)
    if "&" in text:
        text = _ALIGN.sub("=", text)
    text = _SUPERSCRIPT.sub(_superscript, text.translate(_SIGNS))
    if "\u2013" in text:
        text = _DASH_MINUS.sub(r"\1\2-\3", text)
    text = _EMPHASIS.sub("", _POWER_STARS.sub("^", text))
    text = _LIST_ITEM.sub("", text)
    text = _GROUPS.sub("", _INDIAN.sub("", text))
    return _SCIENTIFIC.sub(_scientific, text)


__all__ = ["plain"]
