"""Keyset pages of a table: lists that stay fast and exact however long they grow.

A page is read with ``ORDER BY <sort key> LIMIT n + 1`` from just past the last
row of the page before (``after``, that row's sort key). The sort key is unique
(a tie-breaking id ends it), so a walk from page to page returns every row that
was there when it started exactly once, whatever is inserted or deleted between
pages; there is no ``OFFSET`` to shift under it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from .migrations import Cursor

T = TypeVar("T")

SortKey = tuple[Any, ...]
# A store's read: runs a function on a cursor and returns what it returned (a
# cursor in hand reads as ``lambda fn: fn(cur)``).
Read = Callable[[Callable[["Cursor"], list[Any]]], list[Any]]


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    # The last item's sort key when more rows follow: the ``after`` of the next
    # page. None on the last page.
    next: SortKey | None


def page_query(
    select: str,
    columns: Sequence[str],
    after: SortKey | None,
    limit: int,
    *,
    param: str,
    where: Sequence[str] = (),
    params: Sequence[Any] = (),
    descending: bool = False,
) -> tuple[str, tuple[Any, ...]]:
    """The SQL and parameters reading the page of ``limit`` rows past ``after``
    (None: the first page) in the order of ``columns``, plus one row to tell
    whether more follow; ``where`` and ``params`` narrow the rows (``param`` is
    the driver's placeholder).

    Past ``after`` is a row-value comparison; the first column is also compared
    on its own (``>=``), a condition an index on it serves in both engines.
    """
    if limit < 1:
        raise ValueError(f"a page holds at least one row, not {limit}")
    conds = list(where)
    args = list(params)
    op = "<" if descending else ">"
    if after is not None:
        if len(after) != len(columns):
            raise ValueError(f"a sort key of {len(columns)} values, not {after!r}")
        if len(columns) == 1:
            conds.append(f"{columns[0]} {op} {param}")
        else:
            marks = ", ".join([param] * len(columns))
            conds.append(f"{columns[0]} {op}= {param} AND ({', '.join(columns)}) {op} ({marks})")
            args.append(after[0])
        args.extend(after)
    direction = " DESC" if descending else ""
    sql = (
        select
        + (" WHERE " + " AND ".join(conds) if conds else "")
        + f" ORDER BY {', '.join(c + direction for c in columns)} LIMIT {param}"
    )
    return sql, (*args, limit + 1)


def page_of(
    rows: Sequence[Any], limit: int, item: Callable[[Any], T], key: Callable[[T], SortKey]
) -> Page[T]:
    """The page from the rows `page_query` read: the extra row only says that more
    follow."""
    items = [item(r) for r in rows[:limit]]
    return Page(items, key(items[-1]) if len(rows) > limit else None)


def read_page(
    read: Read,
    select: str,
    columns: Sequence[str],
    after: SortKey | None,
    limit: int,
    *,
    item: Callable[[Any], T],
    key: Callable[[T], SortKey],
    param: str,
    where: Sequence[str] = (),
    params: Sequence[Any] = (),
    descending: bool = False,
) -> Page[T]:
    """The page of ``limit`` items past ``after``: `page_query`'s rows, fetched
    with ``read``, each made an item by ``item``; ``key`` is an item's sort key
    (the values of ``columns``). The other arguments are `page_query`'s."""
    sql, args = page_query(
        select, columns, after, limit,
        param=param, where=where, params=params, descending=descending,
    )  # fmt: skip
    rows = read(lambda cur: cur.execute(sql, args).fetchall())
    return page_of(rows, limit, item, key)


def walk(fetch: Callable[[SortKey | None], Page[T]]) -> Iterator[T]:
    """Every item, page after page: ``fetch(after)`` reads the page past ``after``."""
    after: SortKey | None = None
    while True:
        page = fetch(after)
        yield from page.items
        if page.next is None:
            return
        after = page.next
