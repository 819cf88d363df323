"""The rollups keep the rows charged to requests apart from the gateway's own calls
(``charged`` in their keys, migration m018): the dashboard's budgets show what the
caps count, while a report's total cost is every row's, on both engines."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

import orjson

from tokenomy.caps.model import Scope, budget_from
from tokenomy.caps.store import CapsStore
from tokenomy.dashboard import state
from tokenomy.ledger import SQLStore, Store, migrations, open_store
from tokenomy.ledger import rollups as rollup_mod
from tokenomy.ledger.base import REQUEST_COLUMNS, record_to_row
from tokenomy.records import UsageRecord
from tokenomy.reports import Filters, build_report, scan
from tokenomy.usage import Usage

DAY = 86400
T0 = 1_793_491_200  # 2026-11-01 00:00 UTC
NOW = T0 + 9 * DAY + 12 * 3600  # 2026-11-10 12:00 UTC


def rec(rid: str, ts: float, cost: str, *, team: str = "search", model: str = "gpt-4o",
        route: dict[str, str] | None = None, charged: bool = True,
        saved: str | None = None) -> UsageRecord:  # fmt: skip
    decisions: dict[str, Any] = {"route": route} if route else {}
    if saved is not None:
        decisions["cache"] = {"saved_usd": saved}
    return UsageRecord(request_id=rid, ts=ts, team=team, key_id="tk-1", user="u1",
                       tags={"env": "prod"}, endpoint="/v1/chat/completions",
                       requested_model="gpt-4o", served_model=model, provider="openai",
                       usage=Usage(100, 10), cost_usd=Decimal(cost), decisions=decisions,
                       charged=charged)  # fmt: skip


def traffic() -> list[UsageRecord]:
    """Team search's requests on a whole day and today, each with a judge's call and
    a failed attempt (not charged); today's with a cascade's draft (charged); on
    another day a request alone; and another team's request."""
    out = []
    for rid, ts in (("a", T0 + 2 * DAY + 3600), ("b", NOW - 3600)):
        out += [
            rec(rid, ts, "1.25", saved="0.5"),
            rec(f"{rid}.judge", ts, "0.5", model="judge-model", charged=False,
                route={"parent": rid, "reason": "judge"}, saved="0.25"),
            rec(f"{rid}.attempt1", ts, "0.75", model="gpt-4o-mini", charged=False,
                route={"parent": rid, "reason": "fallback"}),
        ]  # fmt: skip
    out.append(rec("b.draft", NOW - 3600, "0.125", route={"parent": "b", "reason": "cascade"}))
    out.append(rec("c", T0 + 4 * DAY, "2", saved="1"))
    out.append(rec("d", NOW - 7200, "9", team="ads"))
    return out


def budget_spend(store: Store) -> dict[str, Any]:
    assert isinstance(store, SQLStore)
    panel = state.budgets(store, state.tables(store), now=NOW)
    return {row[0]: row[3] for row in panel.rows}


def test_the_gateways_own_calls_count_in_reports_not_in_budgets(store: Store) -> None:
    caps = CapsStore(store)
    caps.save_budget(budget_from({"name": "usd", "scope": {"team": "search"},
                                  "limit_usd": "100"}), new=True)  # fmt: skip
    caps.save_budget(budget_from({"name": "tokens", "scope": {"team": "search"},
                                  "limit_tokens": 10**6}), new=True)  # fmt: skip
    rows = traffic()
    own = [r for r in rows if r.team == "search" and r.charged]
    side = [r for r in rows if not r.charged]
    store.insert_records([r for r in rows if r.charged])
    before = budget_spend(store)
    assert before["usd"] == sum(r.cost_usd or 0 for r in own) == Decimal("4.625")
    assert before["tokens"] == f"{110 * len(own):,} tokens"
    store.insert_records(side)  # a judge's calls and failed attempts: the gateway's cost
    assert budget_spend(store) == before
    # as the caps count it, from the same ledger (in nano-dollars)
    [(_, _, units)] = caps.ledger_totals(Scope.of({"team": "search"}), "usd", T0, None, None)
    assert units == before["usd"] * 10**9
    # a report's total cost is every row's
    report = build_report(store, since=T0, filters=Filters(teams=("search",)))
    assert report.total.cost_usd == sum(r.cost_usd or 0 for r in [*own, *side]) == 7.125
    assert report.total.requests == 8
    assert report.total.savings == {"cache": Decimal("2.5")}


def test_charged_rows_read_alike_from_rollups_and_rows(store: Store) -> None:
    rows = traffic()
    store.insert_records(rows)
    for since, until in ((T0, NOW), (T0 + 3600, NOW), (T0, None)):
        for charged in (True, False, None):
            want = [r for r in rows if r.ts >= since and (until is None or r.ts < until)
                    and charged in (None, r.charged)]  # fmt: skip
            for use_rollups in (True, False):
                sc = scan(store, since=since, until=until, filters=Filters(charged=charged),
                          use_rollups=use_rollups)  # fmt: skip
                t = sc.total()
                assert (t.requests, t.cost_usd) == (
                    len(want),
                    sum((r.cost_usd or Decimal(0) for r in want), Decimal(0)),
                ), (since, until, charged, use_rollups)


def contents(s: SQLStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every rollup's rows, comparable across engines and ways of writing them."""

    def norm(column: str, value: Any) -> Any:
        if column in ("cost_usd", "saved_usd"):
            return Decimal(str(value))
        if column == "charged":
            return bool(value)
        if column == "tags":
            parsed = orjson.loads(value) if isinstance(value, str) else value
            return orjson.dumps(parsed, option=orjson.OPT_SORT_KEYS).decode()
        return value

    out = {}
    for rollup in rollup_mod.ROLLUPS:
        for table in (rollup.usage, rollup.savings):

            def run(cur: Any, table: str = table) -> tuple[list[str], list[Any]]:
                cur.execute(f"SELECT * FROM {table}")
                return [c[0] for c in cur.description], cur.fetchall()

            cols, found = s._read(run)
            out[table] = sorted(
                tuple(norm(c, v) for c, v in zip(cols, row, strict=True)) for row in found
            )
    return out


def test_m018_splits_the_rollups_from_the_previous_schema(
    new_db_url: Callable[[], str],
) -> None:
    """Rows and rollups as the version before m018 wrote them: the days with a call
    of the gateway's own are summed again, the others copied as charged; either
    way the rollups come out as a rebuild from the rows makes them."""
    rows = traffic()
    with open_store(new_db_url()) as s:
        s.migrate(upto="m017_charged")
        assert isinstance(s, SQLStore)
        cols = REQUEST_COLUMNS[: REQUEST_COLUMNS.index("response_id")]  # m019's
        insert = f"INSERT INTO requests ({', '.join(cols)}) VALUES ({s._values(cols)})"

        def write_old(cur: Any) -> None:
            cur.executemany(insert, [record_to_row(r, s.dialect)[: len(cols)] for r in rows])
            for statement in rollup_mod.backfill_statements(s.dialect, rollup_mod.M010):
                cur.execute(statement)

        s._write(write_old)
        dims = ("day", "team", "model", "tag", "key")
        before = scan(s).group(dims)
        assert s.migrate()[0] == "m018_rollups_charged"
        assert scan(s).group(dims) == before
        migrated = contents(s)
        assert {c for row in migrated["usage_daily"] for c in row if isinstance(c, bool)} == {
            True,
            False,
        }
        s._write(lambda cur: rollup_mod.rebuild(cur, s.dialect))
        assert contents(s) == migrated
        charged = scan(s, filters=Filters(charged=True)).total()
        assert charged.cost_usd == sum(r.cost_usd or 0 for r in rows if r.charged)
        # and new rows land on the migrated rollups
        late = replace(rows[1], request_id="late.judge", ts=NOW - 60)
        s.insert_records([late])
        t = scan(s, filters=Filters(charged=False)).total()
        assert t.requests == 5 and t.cost_usd == 3


def test_m018_is_the_last_word_on_a_blank_ledger(new_db_url: Callable[[], str]) -> None:
    with open_store(new_db_url()) as s:
        assert s.migrate() == migrations.names()
        s.insert_records(traffic())
        assert isinstance(s, SQLStore)
        migrated = contents(s)
        s._write(lambda cur: rollup_mod.rebuild(cur, s.dialect))
        assert contents(s) == migrated
