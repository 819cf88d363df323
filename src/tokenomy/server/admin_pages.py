"""Paged lists in the admin API: ``?limit=N&after=CURSOR``.

Every list route answers ``{"object": "list", "data": [...], "next": CURSOR}``:
``next`` is the cursor of the page after this one, or null on the last page. A
client walks a list by sending ``after=<next>`` until ``next`` is null
(`tokenomy.ledger.pages` says why no row is then read twice or missed).

A cursor is opaque to clients: base64url (unpadded) of a JSON array naming the
list and holding its last row's sort key, e.g. ``["keys", 1767225600.5,
"1f2e3d4c5b6a"]``. It is checked against the list it is sent to, so a
malformed cursor, or one from another list, is a 400 naming ``after``, never a
500 or a silently wrong page.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from ..errors import InvalidRequest
from ..ledger.pages import Page, SortKey

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PageQuery:
    limit: int
    after: SortKey | None


@dataclass(frozen=True, slots=True)
class ListCursor:
    """The cursors of one list: its name and the types of its sort key's values."""

    name: str
    types: tuple[type, ...]  # float (an int is taken too), int or str

    def encode(self, key: SortKey) -> str:
        raw = orjson.dumps([self.name, *key])
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def decode(self, text: str) -> SortKey:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            value = orjson.loads(raw)
        except (binascii.Error, ValueError) as exc:
            raise _bad_cursor() from exc
        if not (isinstance(value, list) and len(value) == len(self.types) + 1):
            raise _bad_cursor()
        if value[0] != self.name:
            raise _bad_cursor()
        return tuple(_typed(v, t) for v, t in zip(value[1:], self.types, strict=True))


def _typed(value: Any, want: type) -> Any:
    """``value`` as a sort key's value of type ``want``: a value the database would
    refuse (a NUL in PostgreSQL text, an integer past 64 bits) is a bad cursor
    here, not a 500 there."""
    ok = False
    if isinstance(value, bool):
        pass
    elif want is float and isinstance(value, int | float):
        value = float(value) if abs(value) < 1e308 else math.inf
        ok = math.isfinite(value)
    elif want is int:
        ok = isinstance(value, int) and -(2**63) <= value < 2**63
    elif want is str:
        ok = isinstance(value, str) and "\x00" not in value
    if not ok:
        raise _bad_cursor()
    return value


def _bad_cursor() -> InvalidRequest:
    return InvalidRequest(
        "'after' is not a cursor of this list: send the 'next' of its previous page",
        param="after",
        code="invalid_cursor",
    )


def page_query(query: Mapping[str, Sequence[str]], cursor: ListCursor) -> PageQuery:
    """The page a list route was asked for. A parameter it does not take is a 400:
    a misspelt ``after`` silently ignored would answer the first page for ever."""
    unknown = sorted(set(query) - {"limit", "after"})
    if unknown:
        names = ", ".join(repr(n) for n in unknown)
        raise InvalidRequest(f"unknown query parameter(s) {names}", param=unknown[0])
    limit = DEFAULT_LIMIT if "limit" not in query else _limit(_one(query, "limit"))
    after = None if "after" not in query else cursor.decode(_one(query, "after"))
    return PageQuery(limit, after)


def _one(query: Mapping[str, Sequence[str]], name: str) -> str:
    values = query[name]
    if len(values) != 1:
        raise InvalidRequest(f"give '{name}' once", param=name)
    return values[0]


def _limit(text: str) -> int:
    # Digits only: int() would also take "+5", " 5" and "1_000".
    if not (text.isascii() and text.isdigit() and len(text) <= 6):
        raise _bad_limit()
    limit = int(text)
    if not 1 <= limit <= MAX_LIMIT:
        raise _bad_limit()
    return limit


def _bad_limit() -> InvalidRequest:
    return InvalidRequest(f"'limit' must be a whole number from 1 to {MAX_LIMIT}", param="limit")


def list_body(page: Page[T], cursor: ListCursor, view: Callable[[T], Any]) -> dict[str, Any]:
    """The reply of a list route: the page's items and the cursor of the next page."""
    return {
        "object": "list",
        "data": [view(x) for x in page.items],
        "next": None if page.next is None else cursor.encode(page.next),
    }
