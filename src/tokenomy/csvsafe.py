"""CSV that a spreadsheet reads as data, whatever the clients chose to send.

Teams, users, tags, customers and model names are chosen by clients, so a text
cell that starts like a formula (``=``, ``+``, ``-``, ``@``, a tab or a CR) is
written with a leading apostrophe; numbers are never text here, so a negative
amount stays a number. A field holding a bare CR is quoted, so it cannot split
its row. Rows end in LF.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

__all__ = ["FORMULA_START", "csv_cell", "plain", "write_csv"]

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def plain(value: Any) -> Any:
    """A cell for CSV or JSON: decimals as exact strings."""
    if isinstance(value, Decimal):
        return format(value, "f")
    return value


def csv_cell(value: Any) -> Any:
    """A cell for CSV: empty for None, decimals exact, text never a formula."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return plain(value)


class _Lines:
    """Where `csv.writer` writes, one row per call. The writer quotes a field that
    holds a character of its line terminator, so it is given CR LF (a bare CR in a
    client's value would otherwise split the row unquoted); each row ends in LF."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, line: str) -> int:
        self.lines.append(line.removesuffix("\r\n") + "\n")
        return len(line)


def write_csv(rows: Iterable[Sequence[Any]]) -> str:
    """``rows`` (the header first) as CSV text, every cell through `csv_cell`."""
    out = _Lines()
    w = csv.writer(out, lineterminator="\r\n")
    for row in rows:
        w.writerow([csv_cell(v) for v in row])
    return "".join(out.lines)
