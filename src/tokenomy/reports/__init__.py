"""Reports over the ledger: spend and tokens by any dimension and time range.

`build_report` gives every section ``tokenomy report`` prints; `scan` reads a
time range once (whole days from the daily rollups, partial days from the
rows) and `Scan.group` sums it by any of `DIMENSIONS`, so the dashboard can cut
the same data several ways. `top_requests` lists the most expensive requests.
Money is exact `Decimal`; a request whose price is unknown is counted apart,
never as $0. See ``docs/reports.md``.
"""

from __future__ import annotations

from ..csvsafe import plain
from .build import build_report
from .export import SECTIONS, TABLES, to_csv, to_json
from .model import DIMENSIONS, NO_FILTER, Filters, Group, Report, Totals, check_dimension, iso
from .query import Scan, scan, top_requests

__all__ = [
    "DIMENSIONS",
    "NO_FILTER",
    "SECTIONS",
    "TABLES",
    "Filters",
    "Group",
    "Report",
    "Scan",
    "Totals",
    "build_report",
    "check_dimension",
    "iso",
    "plain",
    "scan",
    "to_csv",
    "to_json",
    "top_requests",
]
