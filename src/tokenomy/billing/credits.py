"""The credit ledger: every change of a prepaid balance, appended, never changed.

Tables (migration ``m003_credits``):

- ``credit_ledger``: one row per change. ``amount`` is signed (top-ups and
  refunds add, debits subtract) and exact; ``kind`` is ``topup``, ``debit``,
  ``adjustment`` or ``refund``; ``(request_id, kind)`` is unique, so a request
  is debited (or refunded) at most once however often its settlement is retried.
  A refund gives back some or all of what a request's debit took from the same
  customer, never more: being the request's one refund, it is also every refund
  the request will get. Triggers refuse every UPDATE and DELETE.
- ``billing_customers``: one row per customer with a plan or a balance. Its
  ``balance`` is the sum of the customer's ledger rows, kept in step in the same
  transaction as each append, and a CHECK keeps it at zero or above. ``credited``
  is the sum of everything but debits.
- ``billing_plans``: see `tokenomy.billing.plans`; when each customer's plan
  changed, ``billing_plan_changes``: see `tokenomy.billing.plan_changes`.

Every append runs in one transaction that holds the customer's row (SQLite:
the database write lock; PostgreSQL: ``SELECT ... FOR UPDATE``), so two
replicas settling the same customer's requests at once see each other's
debits. A debit larger than the balance takes what is left and records the
shortfall in its note: the gateway reserves the worst case before a request
runs, so this only happens when a balance was adjusted down under requests
already in flight.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from ..errors import InvalidRequest, NotFound
from ..ledger.base import REQUEST_COLUMNS, Store, row_to_record
from ..ledger.charges import as_charged
from ..ledger.migrations import Cursor
from ..ledger.pages import Page, SortKey, read_page, walk
from ..records import UsageRecord
from ._db import DB, money_or_none, money_out
from .plan_changes import last_change, record_change
from .plans import UNITS, Plan, money_text, record_charge

__all__ = ["KINDS", "BillingStore", "CreditEntry", "Customer", "Debit"]

KINDS = ("topup", "debit", "adjustment", "refund")
_ZERO = Decimal(0)
RECONCILE_PAGE = 1000  # requests `BillingStore.reconcile` reads at a time

_ENTRY_COLUMNS = "id, customer, ts, amount, unit, kind, request_id, note"
_CUSTOMER_COLUMNS = "customer, plan, unit, balance, credited, created_at"
_PLAN_COLUMNS = (
    "name, markup_pct, input_per_mtok, output_per_mtok, cached_input_per_mtok, created_at"
)


@dataclass(frozen=True, slots=True)
class CreditEntry:
    id: int
    customer: str
    ts: float
    amount: Decimal  # signed: debits are negative
    unit: str  # "usd" or "tokens"
    kind: str
    request_id: str | None
    note: str | None
    replayed: bool = False  # returned again for a retried idempotency key: nothing changed


@dataclass(frozen=True, slots=True)
class Customer:
    customer: str
    plan: str | None
    unit: str | None  # None: no balance account (billing does not limit them)
    balance: Decimal
    credited: Decimal  # everything but debits; balance = credited - debited
    created_at: float

    @property
    def debited(self) -> Decimal:
        return self.credited - self.balance


@dataclass(frozen=True, slots=True)
class Debit:
    entry: CreditEntry | None  # None: nothing to debit (zero charge, or no account)
    duplicate: bool = False  # the request had already been debited: nothing changed
    shortfall: Decimal = _ZERO  # the part of the charge the balance could not pay


def _entry(row: Sequence[Any]) -> CreditEntry:
    id_, customer, ts, amount, unit, kind, request_id, note = row
    return CreditEntry(
        int(id_), customer, float(ts), money_out(amount), unit, kind, request_id, note
    )


def _customer(row: Sequence[Any]) -> Customer:
    customer, plan, unit, balance, credited, created_at = row
    return Customer(
        customer, plan, unit, money_out(balance), money_out(credited), float(created_at)
    )


def _plan(row: Sequence[Any]) -> Plan:
    name, markup, inp, out, cached, created_at = row
    return Plan(
        name=name,
        markup_pct=money_or_none(markup),
        input_per_mtok=money_or_none(inp),
        output_per_mtok=money_or_none(out),
        cached_input_per_mtok=money_or_none(cached),
        created_at=float(created_at),
    )


IDEMPOTENCY_PREFIX = "idem:"  # an idempotency key's entries, in the request_id column


def _idempotent(key: str | None) -> str | None:
    if key is None:
        return None
    if not key or len(key) > 255:
        raise InvalidRequest("an Idempotency-Key is 1 to 255 characters", param="idempotency_key")
    return IDEMPOTENCY_PREFIX + key


def _check_unit(unit: str) -> None:
    if unit not in UNITS:
        raise InvalidRequest(f"'unit' must be one of {', '.join(UNITS)}", param="unit")


class BillingStore:
    """Customers, plans and the credit ledger, on the gateway's ledger database.

    Synchronous, like the stores it wraps: the gateway calls it through
    ``asyncio.to_thread``.
    """

    def __init__(self, store: Store) -> None:
        self.db = DB(store)

    # -- customers -------------------------------------------------------------------

    def customer(self, customer: str) -> Customer | None:
        sql = self.db.sql(f"SELECT {_CUSTOMER_COLUMNS} FROM billing_customers WHERE customer = ?")
        row = self.db.read(lambda cur: cur.execute(sql, (customer,)).fetchone())
        return None if row is None else _customer(row)

    def has_balances(self) -> bool:
        sql = "SELECT 1 FROM billing_customers WHERE unit IS NOT NULL LIMIT 1"
        return self.db.read(lambda cur: cur.execute(sql).fetchone()) is not None

    def customers(self) -> list[Customer]:
        sql = f"SELECT {_CUSTOMER_COLUMNS} FROM billing_customers ORDER BY customer"
        return [_customer(r) for r in self.db.read(lambda cur: cur.execute(sql).fetchall())]

    def customers_page(self, *, after: SortKey | None = None, limit: int = 100) -> Page[Customer]:
        """``limit`` customers past ``after``, by name: the sort key is ``(customer,)``."""
        return read_page(
            self.db.read, f"SELECT {_CUSTOMER_COLUMNS} FROM billing_customers", ("customer",),
            after, limit, item=_customer, key=lambda c: (c.customer,), param=self.db.dialect.param,
        )  # fmt: skip

    def least_left(self, limit: int) -> list[Customer]:
        """The ``limit`` customers with a balance who have the least of it left, as a
        share of what they were credited (none credited: nothing left), lowest first;
        ties by balance, then name. The share is unit-free, so dollar and token
        balances rank together."""
        if limit < 1:
            return []
        share = (
            "COALESCE(balance / NULLIF(credited, 0), 0)"
            if self.db.postgres
            else "COALESCE(CAST(balance AS REAL) / NULLIF(CAST(credited AS REAL), 0), 0)"
        )
        # SQLite orders by REAL, which can swap shares that differ past the 15th
        # digit: read a few more and order them exactly.
        sql = self.db.sql(
            f"SELECT {_CUSTOMER_COLUMNS} FROM billing_customers WHERE unit IS NOT NULL "
            f"ORDER BY {share}, {'balance' if self.db.postgres else 'CAST(balance AS REAL)'}, "
            "customer LIMIT ?"
        )
        rows = self.db.read(lambda cur: cur.execute(sql, (limit + 10,)).fetchall())
        found = [_customer(r) for r in rows]
        found.sort(key=lambda c: (c.balance / c.credited if c.credited else _ZERO, c.balance,
                                  c.customer))  # fmt: skip
        return found[:limit]

    def balance_totals(self) -> list[tuple[str, int, Decimal, Decimal]]:
        """Per unit: (unit, customers with a balance in it, the sum of their balances,
        the sum of what they were credited), exact."""
        sql = self.db.sql(
            "SELECT unit, COUNT(*), {sum}(balance), {sum}(credited) FROM billing_customers "
            "WHERE unit IS NOT NULL GROUP BY unit ORDER BY unit"
        )
        rows = self.db.read(lambda cur: cur.execute(sql).fetchall())
        return [(u, int(n), money_out(b), money_out(c)) for u, n, b, c in rows]

    def _locked(self, cur: Cursor, customer: str) -> Customer | None:
        sql = self.db.sql(
            f"SELECT {_CUSTOMER_COLUMNS} FROM billing_customers WHERE customer = ?{{for_update}}"
        )
        row = cur.execute(sql, (customer,)).fetchone()
        return None if row is None else _customer(row)

    def _create(self, cur: Cursor, customer: str, unit: str | None, plan: str | None) -> Customer:
        now = time.time()
        zero = self.db.money(_ZERO)
        cur.execute(
            self.db.sql(
                f"INSERT INTO billing_customers ({_CUSTOMER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (customer) DO NOTHING"
            ),
            (customer, plan, unit, zero, zero, now),
        )
        found = self._locked(cur, customer)
        assert found is not None
        return found

    def _append(
        self,
        cur: Cursor,
        acct: Customer,
        amount: Decimal,
        kind: str,
        *,
        ts: float | None = None,
        request_id: str | None = None,
        note: str | None = None,
    ) -> CreditEntry | None:
        """Append one entry and move the balance; None if (request_id, kind) exists."""
        assert acct.unit is not None
        balance = acct.balance + amount
        if balance < 0:
            raise InvalidRequest(
                f"{acct.customer!r} has {money_text(acct.balance)} {acct.unit}; "
                f"{kind} of {money_text(amount)} would make the balance negative",
                status=409,
                code="balance_negative",
            )
        row = cur.execute(
            self.db.sql(
                "INSERT INTO credit_ledger (customer, ts, amount, unit, kind, request_id, note) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (request_id, kind) DO NOTHING "
                f"RETURNING {_ENTRY_COLUMNS}"
            ),
            (
                acct.customer,
                time.time() if ts is None else ts,
                self.db.money(amount),
                acct.unit,
                kind,
                request_id,
                note,
            ),
        ).fetchone()
        if row is None:
            return None
        credited = acct.credited + (amount if kind != "debit" else _ZERO)
        cur.execute(
            self.db.sql(
                "UPDATE billing_customers SET balance = ?, credited = ? WHERE customer = ?"
            ),
            (self.db.money(balance), self.db.money(credited), acct.customer),
        )
        return _entry(row)

    # -- changes of a balance --------------------------------------------------------

    def topup(
        self,
        customer: str,
        amount: Decimal,
        *,
        unit: str = "usd",
        note: str | None = None,
        ts: float | None = None,
        idempotency_key: str | None = None,
    ) -> CreditEntry:
        """Add ``amount`` (> 0) to the balance, opening the account on first top-up.

        ``ts`` (default: now) dates the entry, for importing past top-ups. With an
        ``idempotency_key``, a retry of the same top-up returns its entry and adds
        nothing (`replayed` tells); the same key for another top-up is a 409.
        """
        _check_unit(unit)
        if amount <= 0:
            raise InvalidRequest("a top-up must be positive", param="amount")

        def run(cur: Cursor) -> CreditEntry:
            acct = self._locked(cur, customer) or self._create(cur, customer, unit, None)
            if acct.unit is None:
                cur.execute(
                    self.db.sql("UPDATE billing_customers SET unit = ? WHERE customer = ?"),
                    (unit, customer),
                )
                acct = Customer(customer, acct.plan, unit, _ZERO, _ZERO, acct.created_at)
            elif acct.unit != unit:
                raise InvalidRequest(
                    f"{customer!r} has a balance in {acct.unit}, not {unit}",
                    status=409,
                    code="unit_mismatch",
                    param="unit",
                )
            key = _idempotent(idempotency_key)
            if key is not None:
                done = self._replay(cur, key, "topup", customer, amount)
                if done is not None:
                    return done
            entry = self._append(cur, acct, amount, "topup", ts=ts, request_id=key, note=note)
            if entry is None:  # a retry committed meanwhile
                done = self._replay(cur, key or "", "topup", customer, amount)
                assert done is not None
                return done
            return entry

        return self.db.write(run)

    def _replay(
        self, cur: Cursor, key: str, kind: str, customer: str, amount: Decimal
    ) -> CreditEntry | None:
        """The entry an idempotency key already made, if any; a 409 if it was made for
        another customer or amount."""
        sql = self.db.sql(
            f"SELECT {_ENTRY_COLUMNS} FROM credit_ledger WHERE request_id = ? AND kind = ?"
        )
        row = cur.execute(sql, (key, kind)).fetchone()
        if row is None:
            return None
        entry = _entry(row)
        if entry.customer != customer or entry.amount != amount:
            raise InvalidRequest(
                "this Idempotency-Key was used for another "
                f"{kind} ({money_text(entry.amount)} for {entry.customer!r})",
                status=409,
                code="idempotency_key_reused",
            )
        return replace(entry, replayed=True)

    def adjust(
        self,
        customer: str,
        amount: Decimal,
        *,
        note: str | None = None,
        kind: str = "adjustment",
        request_id: str | None = None,
        ts: float | None = None,
        idempotency_key: str | None = None,
    ) -> CreditEntry:
        """Add a signed ``amount``; refused if the balance would go below zero.

        ``kind="refund"`` gives back ``amount`` (> 0) of what the debit of
        ``request_id`` took from this customer: some or all of it, never more
        (`NotFound` ``debit_not_found`` without such a debit, a 409
        ``refund_exceeds_debit`` above it). A request is refunded once: the same
        refund again (a retry) returns its entry with `replayed` set and changes
        nothing; any other refund of that request is a 409 ``refunded``.
        """
        if kind not in ("adjustment", "refund"):
            raise InvalidRequest("kind must be 'adjustment' or 'refund'", param="kind")
        if amount == 0 or (kind == "refund" and amount < 0):
            raise InvalidRequest("the amount must be non-zero (and positive for a refund)")
        if kind == "refund" and request_id is None:
            raise InvalidRequest(
                "a refund names the request it gives back ('request_id'); "
                "other credit is an adjustment",
                param="request_id",
            )
        if request_id is not None and request_id.startswith(IDEMPOTENCY_PREFIX):
            # the column holds idempotency keys under this prefix: such an id would
            # answer for (or be answered by) a later call's Idempotency-Key
            raise InvalidRequest(
                f"a request_id cannot start with {IDEMPOTENCY_PREFIX!r}", param="request_id"
            )

        def run(cur: Cursor) -> CreditEntry:
            acct = self._locked(cur, customer)
            if acct is None or acct.unit is None:
                raise NotFound(f"{customer!r} has no balance", code="no_balance")
            key = _idempotent(idempotency_key)
            if key is not None:  # an adjustment's own key (a refund's is its request id)
                if request_id is not None:
                    raise InvalidRequest("give a refund's request_id or an Idempotency-Key")
                done = self._replay(cur, key, kind, customer, amount)
                if done is not None:
                    return done
            if kind == "refund":
                assert request_id is not None
                done = self._refundable(cur, acct, request_id, amount)
                if done is not None:
                    return done
            rid = request_id if key is None else key
            entry = self._append(cur, acct, amount, kind, ts=ts, request_id=rid, note=note)
            if entry is not None:
                return entry
            # (request_id, kind) exists: a retry committed meanwhile, or a request's
            # adjustment made before
            if key is not None:
                done = self._replay(cur, key, kind, customer, amount)
            elif kind == "refund":
                done = self._refundable(cur, acct, rid or "", amount)
            else:
                done = None
            if done is None:
                raise InvalidRequest(
                    f"request {rid!r} already has an adjustment", status=409, code="adjusted"
                )
            return done

        return self.db.write(run)

    def _refundable(
        self, cur: Cursor, acct: Customer, request_id: str, amount: Decimal
    ) -> CreditEntry | None:
        """None if ``acct`` may be refunded ``amount`` for ``request_id``; the refund
        already made, if this is a retry of it; raises otherwise.

        Run under the customer's lock: a refund of the request that passed this
        check (only its debited customer's can) has committed, or waits behind us;
        the unique ``(request_id, kind)`` backs that up.
        """
        sql = self.db.sql(
            f"SELECT {_ENTRY_COLUMNS} FROM credit_ledger WHERE request_id = ? AND kind = 'refund'"
        )
        row = cur.execute(sql, (request_id,)).fetchone()
        if row is not None:
            done = _entry(row)
            if done.customer == acct.customer and done.amount == amount:
                return replace(done, replayed=True)
            raise InvalidRequest(
                f"request {request_id!r} was already refunded ({money_text(done.amount)} "
                f"{done.unit} to {done.customer!r}, entry {done.id}); a request is refunded "
                "once: give more credit as an adjustment",
                status=409,
                code="refunded",
                param="request_id",
            )
        debit = self._debit_of(cur, request_id)
        if debit is None or debit.customer != acct.customer:
            elsewhere = "" if debit is None else f" (it was debited to {debit.customer!r})"
            raise NotFound(
                f"{acct.customer!r} has no debit of request {request_id!r} to refund{elsewhere}",
                code="debit_not_found",
                param="request_id",
            )
        if amount > -debit.amount:
            raise InvalidRequest(
                f"request {request_id!r} was debited {money_text(-debit.amount)} {debit.unit}: "
                f"a refund of {money_text(amount)} is more than that",
                status=409,
                code="refund_exceeds_debit",
                param="amount",
            )
        return None

    def debit(
        self,
        customer: str,
        request_id: str,
        amount: Decimal,
        *,
        ts: float | None = None,
        note: str | None = None,
    ) -> Debit:
        """Take a request's charge (>= 0) from the balance, once per request."""
        if amount < 0:
            raise ValueError("a debit amount is positive; it is stored negated")

        def run(cur: Cursor) -> Debit:
            acct = self._locked(cur, customer)
            if acct is None or acct.unit is None or amount == 0:
                return Debit(None)
            take = min(amount, acct.balance)
            short = amount - take
            text = note
            if short:
                text = f"{note + '; ' if note else ''}shortfall {money_text(short)} {acct.unit}"
            entry = self._append(cur, acct, -take, "debit", ts=ts, request_id=request_id, note=text)
            if entry is None:
                return Debit(self._debit_of(cur, request_id), duplicate=True)
            return Debit(entry, shortfall=short)

        return self.db.write(run)

    def _debit_of(self, cur: Cursor, request_id: str) -> CreditEntry | None:
        sql = self.db.sql(
            f"SELECT {_ENTRY_COLUMNS} FROM credit_ledger WHERE request_id = ? AND kind = 'debit'"
        )
        row = cur.execute(sql, (request_id,)).fetchone()
        return None if row is None else _entry(row)

    def debit_of(self, request_id: str) -> CreditEntry | None:
        return self.db.read(lambda cur: self._debit_of(cur, request_id))

    def history(
        self,
        customer: str,
        *,
        limit: int = 100,
        since: float | None = None,
        until: float | None = None,
        kind: str | None = None,
    ) -> list[CreditEntry]:
        """The customer's newest ``limit`` entries (of one ``kind``, if given), newest
        first: at most ``limit`` of them. Every one, a page at a time: `history_page`."""
        where: list[str] = ["customer = ?"]
        params: list[Any] = [customer]
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if since is not None:
            where.append("ts >= ?")
            params.append(since)
        if until is not None:
            where.append("ts < ?")
            params.append(until)
        sql = self.db.sql(
            f"SELECT {_ENTRY_COLUMNS} FROM credit_ledger WHERE {' AND '.join(where)} "
            "ORDER BY ts DESC, id DESC LIMIT ?"
        )
        rows = self.db.read(lambda cur: cur.execute(sql, (*params, limit)).fetchall())
        return [_entry(r) for r in rows]

    def history_page(
        self,
        customer: str,
        *,
        after: SortKey | None = None,
        limit: int = 100,
        kind: str | None = None,
        since: float | None = None,
        until: float | None = None,
        through: int | None = None,
        oldest_first: bool = False,
    ) -> Page[CreditEntry]:
        """``limit`` of the customer's entries past ``after``, newest first (oldest
        first with ``oldest_first``): the sort key is ``(ts, id)``. An entry appended
        while a client pages is newer than the pages it has read (unless it was dated
        in the past, ``ts``).

        ``kind``, ``since`` and ``until`` (``ts`` in ``[since, until)``) narrow the
        entries; ``through`` keeps those with ``id <= through``: the customer's
        entries as they were when ``through`` was their last (`last_entry_id`),
        since one customer's entries are appended one at a time under its lock.
        """
        where = ["customer = ?"]
        params: list[Any] = [customer]
        for cond, value in (("kind = ?", kind), ("ts >= ?", since), ("ts < ?", until),
                            ("id <= ?", through)):  # fmt: skip
            if value is not None:
                where.append(cond)
                params.append(value)
        return read_page(
            self.db.read, f"SELECT {_ENTRY_COLUMNS} FROM credit_ledger", ("ts", "id"), after, limit,
            item=_entry, key=lambda e: (e.ts, e.id), param=self.db.dialect.param,
            where=[self.db.sql(w) for w in where], params=params, descending=not oldest_first,
        )  # fmt: skip

    def entry_count(self, customer: str) -> int:
        """How many entries the customer's ledger holds."""
        sql = self.db.sql("SELECT COUNT(*) FROM credit_ledger WHERE customer = ?")
        return int(self.db.read(lambda cur: cur.execute(sql, (customer,)).fetchone())[0])

    def last_entry_id(self, cur: Cursor, customer: str) -> int:
        """The id of the customer's last entry (0: none yet), read on ``cur``."""
        sql = self.db.sql("SELECT MAX(id) FROM credit_ledger WHERE customer = ?")
        row = cur.execute(sql, (customer,)).fetchone()
        return 0 if row is None or row[0] is None else int(row[0])

    def reconcile(self, since: float, until: float | None = None) -> int:
        """Append the debits of recorded requests that have none; return how many.

        A request's debit is appended after its record is committed; a process
        that died in between left the record (with the plan's terms, so the
        charge) and no debit. The charge is the request's as it was settled: its
        row with its charged side rows (`tokenomy.ledger.charges`). Safe to run at
        any time, on any replica: a request is debited at most once.

        The requests are read `RECONCILE_PAGE` at a time, oldest first, and each
        page is debited before the next is read: a window of millions of
        requests is never held whole.
        """
        unit = (
            "decisions->'billing'->>'unit'"
            if self.db.postgres
            else "json_extract(decisions, '$.billing.unit')"
        )
        where = [
            "r.ts >= ?",
            f"{unit} IS NOT NULL",
            "NOT EXISTS (SELECT 1 FROM credit_ledger c WHERE c.request_id = r.request_id "
            "AND c.kind = 'debit')",
        ]
        params: list[Any] = [since]
        if until is not None:
            where.insert(1, "r.ts < ?")
            params.insert(1, until)
        select = f"SELECT r.id, {', '.join('r.' + c for c in REQUEST_COLUMNS)} FROM requests r"
        dialect = self.db.dialect
        page = RECONCILE_PAGE

        def fetch(after: SortKey | None) -> Page[UsageRecord]:
            def run(cur: Cursor) -> Page[UsageRecord]:
                own = read_page(lambda fn: fn(cur), select, ("r.ts", "r.id"), after, page,
                                item=lambda r: (r[0], row_to_record(r[1:])),
                                key=lambda item: (item[1].ts, item[0]), param=dialect.param,
                                where=[self.db.sql(w) for w in where], params=params)  # fmt: skip
                return Page(as_charged(cur, dialect, [rec for _, rec in own.items]), own.next)

            return self.db.read(run)

        done = 0
        for rec in walk(fetch):
            _, amount = record_charge(rec)
            customer = rec.decisions["billing"].get("customer") or rec.user
            if not amount or not customer:
                continue
            d = self.debit(customer, rec.request_id, amount, ts=rec.ts, note="reconciled")
            done += d.entry is not None and not d.duplicate
        return done

    # -- plans -------------------------------------------------------------------------

    def create_plan(self, plan: Plan) -> Plan:
        """Raises `InvalidRequest` (409) if a plan of that name exists."""
        plan = replace(plan, created_at=plan.created_at or time.time())
        sql = self.db.sql(
            f"INSERT INTO billing_plans ({_PLAN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (name) DO NOTHING"
        )
        m = self.db.money
        row = (
            plan.name,
            *(None if v is None else m(v) for v in (
                plan.markup_pct, plan.input_per_mtok, plan.output_per_mtok,
                plan.cached_input_per_mtok,
            )),
            plan.created_at,
        )  # fmt: skip

        def run(cur: Cursor) -> int:
            cur.execute(sql, row)
            return cur.rowcount

        if self.db.write(run) != 1:
            raise InvalidRequest(
                f"a plan named {plan.name!r} exists", status=409, code="plan_exists"
            )
        return plan

    def plan(self, name: str) -> Plan | None:
        sql = self.db.sql(f"SELECT {_PLAN_COLUMNS} FROM billing_plans WHERE name = ?")
        row = self.db.read(lambda cur: cur.execute(sql, (name,)).fetchone())
        return None if row is None else _plan(row)

    def plans(self) -> list[Plan]:
        sql = f"SELECT {_PLAN_COLUMNS} FROM billing_plans ORDER BY name"
        return [_plan(r) for r in self.db.read(lambda cur: cur.execute(sql).fetchall())]

    def plans_page(self, *, after: SortKey | None = None, limit: int = 100) -> Page[Plan]:
        """``limit`` plans past ``after``, by name: the sort key is ``(name,)``."""
        return read_page(
            self.db.read, f"SELECT {_PLAN_COLUMNS} FROM billing_plans", ("name",), after, limit,
            item=_plan, key=lambda p: (p.name,), param=self.db.dialect.param,
        )  # fmt: skip

    def assign_plan(self, customer: str, plan: str | None, *, ts: float | None = None) -> Customer:
        """Put ``customer`` on ``plan`` (None: provider cost), creating the customer.

        The change is recorded as of ``ts`` (default: now; `plan_changes`), which
        statements read; an earlier ``ts`` imports a past change, and cannot be in
        the future or before the customer's last recorded change.
        """
        if ts is not None and ts > time.time():
            raise InvalidRequest("a plan change cannot be dated in the future", param="ts")

        def run(cur: Cursor) -> Customer:
            if plan is not None:
                found = cur.execute(
                    self.db.sql("SELECT name FROM billing_plans WHERE name = ?"), (plan,)
                ).fetchone()
                if found is None:
                    raise NotFound(f"no plan {plan!r}", code="plan_not_found")
            acct = self._locked(cur, customer) or self._create(cur, customer, None, None)
            if plan != acct.plan:
                last = last_change(self.db, cur, customer)
                since = float("-inf") if last is None else float(last[0])
                if ts is not None and ts < since:
                    raise InvalidRequest(
                        f"{customer!r}'s plan last changed after that", status=409, param="ts"
                    )
                # never before the last change, whatever another replica's clock said
                when = max(time.time() if ts is None else ts, since)
                cur.execute(
                    self.db.sql("UPDATE billing_customers SET plan = ? WHERE customer = ?"),
                    (plan, customer),
                )
                record_change(self.db, cur, customer, plan, when)
            return Customer(customer, plan, acct.unit, acct.balance, acct.credited, acct.created_at)

        return self.db.write(run)
