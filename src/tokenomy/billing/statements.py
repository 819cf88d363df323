"""A customer's statement for one period, from the request ledger and the credit ledger.

Usage, provider cost and the price charged come from ``requests`` (rows whose
``end_user`` is the customer and whose ``ts``, the request's start, falls in the
period); the charge is computed from each record with the plan terms copied
into it when the request was admitted (``decisions.billing``), so a later change
of plan never rewrites an old statement. The plans named are those in force
during the period, from the recorded plan changes (`plan_changes`). Balances
come from ``credit_ledger``: the opening balance is the sum of every entry
before the period, the closing balance that plus the period's entries. Every
sum is exact (PostgreSQL ``NUMERIC``; on SQLite an exact decimal aggregate) and
every amount is written as a plain decimal string. The formats are specified in ``docs/billing.md``.

Nothing is cut at a row count: requests are read a page at a time and summed as
they come, and every top-up of the period is listed (`TopUps`), written a page
at a time by `Statement.csv_chunks` and `Statement.json_chunks`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from ..csvsafe import write_csv
from ..errors import InvalidRequest
from ..ledger.charges import route_field, with_sides
from ..ledger.migrations import Cursor
from ..ledger.pages import Page, SortKey, read_page, walk
from ..records import UsageRecord
from ..usage import Usage
from ._db import DB, money_or_none, money_out
from .credits import BillingStore, CreditEntry
from .plan_changes import PlanSpan, plans_between
from .plans import money_text, record_charge

__all__ = ["CSV_COLUMNS", "Period", "Statement", "TopUps", "build_statement", "parse_period"]

_PERIOD = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_ZERO = Decimal(0)
PAGE = 5000  # rows a statement reads at a time (requests; top-ups a fifth of it)


@dataclass(frozen=True, slots=True)
class Period:
    label: str  # "2026-11", "2026-11-05" or "2026"
    start: datetime  # inclusive, aware
    end: datetime  # exclusive, aware

    @property
    def bounds(self) -> tuple[float, float]:
        return self.start.timestamp(), self.end.timestamp()


def parse_period(text: str, timezone: str = "UTC") -> Period:
    """A calendar year, month or day (``2026``, ``2026-11``, ``2026-11-05``) in ``timezone``."""
    m = _PERIOD.match(text.strip())
    try:
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidRequest(f"unknown time zone {timezone!r}") from exc
    if m is None:
        raise InvalidRequest(f"period {text!r}: use YYYY-MM (or YYYY, YYYY-MM-DD)", param="period")
    year, month, day = int(m.group(1)), m.group(2), m.group(3)
    try:
        if day is not None:
            start = datetime(year, int(month or 1), int(day), tzinfo=tz)
            end = (start.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=tz)
        elif month is not None:
            start = datetime(year, int(month), 1, tzinfo=tz)
            end = datetime(year + (start.month == 12), start.month % 12 + 1, 1, tzinfo=tz)
        else:
            start, end = datetime(year, 1, 1, tzinfo=tz), datetime(year + 1, 1, 1, tzinfo=tz)
    except (ValueError, OverflowError) as exc:  # OverflowError: the day after 9999-12-31
        raise InvalidRequest(f"period {text!r}: {exc}", param="period") from exc
    return Period(text.strip(), start, end)


@dataclass(slots=True)
class ModelUsage:
    model: str
    requests: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    unpriced_requests: int = 0  # provider price unknown: not in provider_cost_usd
    provider_cost_usd: Decimal = _ZERO
    charged_usd: Decimal = _ZERO

    def add(self, other: ModelUsage) -> None:
        self.requests += other.requests
        self.input_tokens += other.input_tokens
        self.cached_input_tokens += other.cached_input_tokens
        self.output_tokens += other.output_tokens
        self.unpriced_requests += other.unpriced_requests
        self.provider_cost_usd += other.provider_cost_usd
        self.charged_usd += other.charged_usd

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "output_tokens": self.output_tokens,
            "unpriced_requests": self.unpriced_requests,
            "provider_cost_usd": self.provider_cost_text(),
            "charged_usd": _s(self.charged_usd),
        }

    def provider_cost_text(self) -> str | None:
        """The provider cost; None (unknown) when no request of the line has a price:
        an unknown price is never shown as $0."""
        if self.requests and self.unpriced_requests == self.requests:
            return None
        return _s(self.provider_cost_usd)


@dataclass(slots=True)
class Balance:
    unit: str
    opening: Decimal = _ZERO
    topups: Decimal = _ZERO
    debits: Decimal = _ZERO  # negative
    adjustments: Decimal = _ZERO
    refunds: Decimal = _ZERO

    @property
    def closing(self) -> Decimal:
        return self.opening + self.topups + self.debits + self.adjustments + self.refunds

    def as_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "opening": _s(self.opening),
            "topups": _s(self.topups),
            "debits": _s(self.debits),
            "adjustments": _s(self.adjustments),
            "refunds": _s(self.refunds),
            "closing": _s(self.closing),
        }


@dataclass(frozen=True, slots=True)
class TopUps:
    """A period's top-ups, oldest first, read from the credit ledger a page at a
    time each time they are iterated: a statement lists every one, however many,
    holding one page. Only entries up to ``through`` (`BillingStore.last_entry_id`),
    the ones the statement's balance sums, so the list adds up to its total."""

    billing: BillingStore
    customer: str
    since: float
    until: float
    through: int
    page: int = PAGE // 5

    def __iter__(self) -> Iterator[CreditEntry]:
        return walk(self._page)

    def _page(self, after: SortKey | None) -> Page[CreditEntry]:
        return self.billing.history_page(
            self.customer, after=after, limit=self.page, kind="topup", since=self.since,
            until=self.until, through=self.through, oldest_first=True,
        )  # fmt: skip


@dataclass(slots=True)
class Statement:
    customer: str
    period: Period
    timezone: str
    plan: str | None  # in force at the end of the period
    plans: list[PlanSpan] = field(default_factory=list)  # in force during it, oldest first
    models: list[ModelUsage] = field(default_factory=list)
    balance: Balance | None = None  # None: the customer has no prepaid balance
    # oldest first; iterated once per rendering (`TopUps` reads them afresh each time)
    topups: Iterable[CreditEntry] = field(default_factory=list)

    @property
    def total(self) -> ModelUsage:
        total = ModelUsage("*")
        for m in self.models:
            total.add(m)
        return total

    def to_json(self) -> dict[str, Any]:
        """The statement as one JSON object (every top-up in memory: `json_chunks`
        writes the same a page at a time)."""
        return {**self._json_head(), "topups": [self._topup_json(e) for e in self.topups]}

    def _json_head(self) -> dict[str, Any]:
        total = self.total.as_dict()
        del total["model"]
        return {
            "object": "statement",
            "customer": self.customer,
            "period": self.period.label,
            "timezone": self.timezone,
            "start": self.period.start.isoformat(),
            "end": self.period.end.isoformat(),
            "plan": self.plan,
            "plans": [
                {
                    "plan": p.plan,
                    "from": _iso(p.start, self.period),
                    "until": _iso(p.end, self.period),
                }
                for p in self.plans
            ],
            "usage": {k: total.pop(k) for k in list(total) if not k.endswith("_usd")},
            "provider_cost_usd": total["provider_cost_usd"],
            "charged_usd": total["charged_usd"],
            "models": [m.as_dict() for m in self.models],
            "balance": None if self.balance is None else self.balance.as_dict(),
        }

    def _topup_json(self, e: CreditEntry) -> dict[str, Any]:
        return {"id": e.id, "ts": _iso(e.ts, self.period), "amount": _s(e.amount), "note": e.note}

    def json_chunks(self, *, indent: bool = False, per_chunk: int = 1000) -> Iterator[bytes]:
        """The bytes of ``orjson.dumps(self.to_json())`` (with ``indent``, of
        ``OPT_INDENT_2``), a piece at a time: the top-ups are read and written
        ``per_chunk`` at a time, so a statement of any size takes bounded memory.
        The first piece holds all that comes before the top-ups, and the first of them."""
        option = orjson.OPT_INDENT_2 if indent else 0
        head = orjson.dumps({**self._json_head(), "topups": []}, option=option)
        end = b"[]\n}" if indent else b"[]}"
        assert head.endswith(end)
        pending = [head[: -len(end)] + b"["]
        n = 0
        for e in self.topups:
            item = orjson.dumps(self._topup_json(e), option=option)
            if indent:
                item = b"\n".join(b"    " + line for line in item.split(b"\n"))
            sep = b"" if n == 0 else b","
            pending.append(sep + (b"\n" if indent else b"") + item)
            n += 1
            if len(pending) > per_chunk:
                yield b"".join(pending)
                pending = []
        pending.append((b"\n  ]\n}" if n else b"]\n}") if indent else b"]}")
        yield b"".join(pending)

    def to_csv(self) -> str:
        """The statement as CSV (`tokenomy.csvsafe`: a customer or model name a
        client chose is never a spreadsheet formula)."""
        return "".join(self.csv_chunks())

    def csv_chunks(self, *, per_chunk: int = 1000) -> Iterator[str]:
        """`to_csv` a piece at a time: the top-ups ``per_chunk`` rows at a time."""
        rows: list[list[Any]] = [list(CSV_COLUMNS)]
        head = [self.customer, self.period.label]
        for m in [*self.models, self.total]:
            line = "usage" if m.model != "*" else "usage_total"
            rows.append([*head, line, "" if m.model == "*" else m.model, "", m.requests,
                         m.input_tokens, m.cached_input_tokens, m.output_tokens,
                         m.provider_cost_text(), _s(m.charged_usd), "", "", "",
                         m.unpriced_requests])  # fmt: skip
        b = self.balance
        if b is None:
            yield write_csv(rows)
            return

        def amount(line: str, value: Decimal, ts: str = "", note: str = "") -> list[Any]:
            # a Decimal, not text: a negative amount is a number, never a formula
            exact = value.normalize() if value else Decimal(0)
            return [*head, line, "", ts, "", "", "", "", "", "", exact, b.unit, note, ""]

        rows.append(amount("opening_balance", b.opening))
        for e in self.topups:
            rows.append(amount("topup", e.amount, _iso(e.ts, self.period), e.note or ""))
            if len(rows) >= per_chunk:
                yield write_csv(rows)
                rows = []
        rows.append(amount("topups_total", b.topups))
        rows.append(amount("debits_total", b.debits))
        rows.append(amount("adjustments_total", b.adjustments))
        rows.append(amount("refunds_total", b.refunds))
        rows.append(amount("closing_balance", b.closing))
        yield write_csv(rows)


CSV_COLUMNS = (
    "customer", "period", "line", "model", "ts", "requests", "input_tokens",
    "cached_input_tokens", "output_tokens", "provider_cost_usd", "charged_usd",
    "amount", "unit", "note", "unpriced_requests",
)  # fmt: skip


_s = money_text


def _iso(ts: float, period: Period) -> str:
    return datetime.fromtimestamp(ts, period.start.tzinfo).isoformat()


def _terms_expr(postgres: bool) -> str:
    return "decisions->'billing'" if postgres else "json_extract(decisions, '$.billing')"


def _usage_of(row: Sequence[Any]) -> tuple[str, UsageRecord]:
    model, inp, cached, cw, cw1h, reasoning, out, cost, terms = row
    if isinstance(terms, str | bytes):
        terms = orjson.loads(terms)
    rec = UsageRecord(
        request_id="",
        usage=Usage(inp, out, cached, cw, cw1h, reasoning),
        cost_usd=money_or_none(cost),
        decisions={"billing": terms} if isinstance(terms, dict) else {},
    )
    return model, rec


def _rows(db: DB, select: str, where: str, params: Sequence[Any]) -> Iterator[Sequence[Any]]:
    """The rows of ``select`` (its last two columns ``ts, id``) narrowed by ``where``,
    in ``(ts, id)`` order, read a page at a time: one page in memory on either engine
    (a PostgreSQL cursor would hold the whole result)."""

    def fetch(after: SortKey | None) -> Page[Sequence[Any]]:
        return read_page(db.read, select, ("ts", "id"), after, PAGE, item=lambda r: r,
                         key=lambda r: (r[-2], r[-1]), param=db.dialect.param,
                         where=[db.sql(where)], params=params)  # fmt: skip

    return walk(fetch)


def build_statement(
    billing: BillingStore, customer: str, period: Period, *, timezone: str = "UTC"
) -> Statement:
    """The statement of ``customer`` for ``period``; empty if nothing happened.

    Each request's charge is recomputed from its record with the plan terms
    it was admitted under (`plans.record_charge`): the very amount its debit
    took, rounded per request. Only the rows charged to a request count
    (`tokenomy.ledger.charges`): a side row that is (a cascade's escalated draft)
    is charged with its request, as its debit was: each such row's line gets
    its share under the request's terms, the request's line the rest. The
    gateway's own calls (a judge's, a failed attempt's) are not the customer's:
    left out.

    Requests are read a page at a time and summed as they come, with their
    side rows (rows of the same start time). The balance counts the
    customer's credit entries up to the last one there when the statement was
    built, and its top-ups (`TopUps`) are those same entries, every one of them,
    read again a page at a time whenever the statement is written.
    """
    db = billing.db
    start, end = period.bounds
    parent = route_field(db.dialect, "parent")
    select = (
        "SELECT COALESCE(served_model, requested_model), input_tokens, cache_read_tokens, "
        "cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, output_tokens, "
        f"cost_usd, {_terms_expr(db.postgres)}, request_id, {parent}, ts, id FROM requests"
    )
    # the customer's requests and the side rows charged with them
    mine = "end_user = ? AND ts >= ? AND ts < ? AND charged"
    opening_sql = db.sql(
        "SELECT {sum}(amount) FROM credit_ledger WHERE customer = ? AND ts < ? AND id <= ?"
    )
    kinds_sql = db.sql(
        "SELECT kind, {sum}(amount) FROM credit_ledger "
        "WHERE customer = ? AND ts >= ? AND ts < ? AND id <= ? GROUP BY kind"
    )
    models: dict[str, ModelUsage] = {}

    def line(name: str, rec: UsageRecord, usd: Decimal | None) -> None:
        m = models.get(name)
        if m is None:
            m = models[name] = ModelUsage(name)
        m.requests += 1
        m.input_tokens += rec.usage.input_tokens
        m.cached_input_tokens += rec.usage.cache_read_tokens
        m.output_tokens += rec.usage.output_tokens
        if rec.cost_usd is None:
            m.unpriced_requests += 1
        else:
            m.provider_cost_usd += rec.cost_usd
        if usd is not None:
            m.charged_usd += usd

    def charge(row: Sequence[Any], own: list[tuple[str, UsageRecord]]) -> None:
        name, rec = _usage_of(row[:9])
        usd, _ = record_charge(with_sides(rec, [d for _, d in own]))
        for draft_name, d in own:  # each draft's share, under the request's terms
            share, _ = record_charge(replace(d, decisions=rec.decisions))
            if usd is not None and share is not None:
                usd -= share
            line(draft_name, d, None if usd is None else share)
        line(name, rec, usd)

    # A draft's row carries its request's start (`routing.side.side_call` copies the
    # record), so rows are taken one instant at a time: the drafts held are those of
    # one instant, plus any whose request has not been seen (a crash between the
    # two writes, or a request outside the period).
    unmatched: dict[str, list[tuple[str, UsageRecord]]] = {}
    instant: list[Sequence[Any]] = []

    def settle() -> None:
        drafts: dict[str, list[tuple[str, UsageRecord]]] = {}
        for row in instant:
            if row[10] is not None:
                drafts.setdefault(row[10], []).append(_usage_of(row[:9]))
        for row in instant:
            if row[10] is None:
                charge(row, unmatched.pop(row[9], []) + drafts.pop(row[9], []))
        for request_id, own in drafts.items():
            unmatched.setdefault(request_id, []).extend(own)
        instant.clear()

    for row in _rows(db, select, mine, (customer, start, end)):
        if instant and row[11] != instant[0][11]:
            settle()
        instant.append(row)
    settle()
    for orphans in unmatched.values():  # a draft whose request is not in the period
        for name, d in orphans:
            line(name, d, record_charge(d)[0])

    def ledger(cur: Cursor) -> tuple[int, Any, list[Any], list[PlanSpan]]:
        through = billing.last_entry_id(cur, customer)
        opening = cur.execute(opening_sql, (customer, start, through)).fetchone()[0]
        kinds = cur.execute(kinds_sql, (customer, start, end, through)).fetchall()
        return through, opening, kinds, plans_between(db, cur, customer, start, end)

    through, opening, kinds, plans = db.read(ledger)
    acct = billing.customer(customer)
    st = Statement(customer, period, timezone, plans[-1].plan, plans)
    st.models = [models[name] for name in sorted(models)]
    if acct is not None and acct.unit is not None:
        bal = Balance(acct.unit, opening=money_out(opening))
        for kind, amount in kinds:
            setattr(bal, _BALANCE_FIELDS[kind], money_out(amount))
        st.balance = bal
        st.topups = TopUps(billing, customer, start, end, through)
    return st


_BALANCE_FIELDS = {
    "topup": "topups",
    "debit": "debits",
    "adjustment": "adjustments",
    "refund": "refunds",
}
