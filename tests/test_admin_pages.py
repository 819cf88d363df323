"""The admin API's paged lists (``?limit=N&after=CURSOR``), on both engines: a walk
from page to page returns each row exactly once, ties and inserts between pages
included; a bad limit or cursor is a 400 naming it; the CLI lists every row."""

from __future__ import annotations

import base64
import importlib
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import httpx2 as httpx
import orjson
import pytest
from click.testing import CliRunner

from gateway_fixtures import MASTER_KEY
from tokenomy.billing import BillingStore, Plan
from tokenomy.caps.model import budget_from, limit_from
from tokenomy.caps.store import CapsStore
from tokenomy.cli import cli
from tokenomy.config import Settings
from tokenomy.keys import mint_key
from tokenomy.ledger import KeyRecord, SQLStore, Store
from tokenomy.server.app import create_app
from tokenomy.testing import serve_in_thread

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
TIED = 1_000_000.25  # a created_at (or ts) many rows share


@pytest.fixture
def admin(store: Store, db_url: str) -> Iterator[httpx.Client]:
    app = create_app(Settings(db=db_url, master_key=MASTER_KEY))
    with serve_in_thread(app) as url, httpx.Client(base_url=url, headers=ADMIN) as c:
        yield c


def sql(store: Store) -> SQLStore:
    assert isinstance(store, SQLStore)
    return store


def get_page(c: httpx.Client, path: str, **params: str) -> dict[str, Any]:
    r = c.get(path, params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["object"] == "list" and set(body) == {"object", "data", "next"}
    return body


def pages(c: httpx.Client, path: str, limit: int) -> Iterator[list[dict[str, Any]]]:
    """Each page of ``path``, following ``next`` to the end."""
    after = None
    while True:
        params = {"limit": str(limit)} | ({} if after is None else {"after": after})
        body = get_page(c, path, **params)
        yield body["data"]
        after = body["next"]
        if after is None:
            assert len(body["data"]) <= limit
            return
        assert len(body["data"]) == limit  # only the last page is short


def walk(c: httpx.Client, path: str, limit: int) -> list[dict[str, Any]]:
    return [row for page in pages(c, path, limit) for row in page]


def add_key(store: Store, created_at: float | None = None) -> KeyRecord:
    _, rec = mint_key(team="t")
    if created_at is not None:
        rec = replace(rec, created_at=created_at)
    store.create_key(rec)
    return rec


def add_entries(store: Store, customer: str, stamps: list[float]) -> None:
    """Credit entries written straight to the ledger table (one transaction, however
    many): the history reads them as it reads top-ups."""
    s = sql(store)
    p = s.dialect.param
    one = "1" if s.dialect.money_as_text else Decimal(1)
    insert = (
        "INSERT INTO credit_ledger (customer, ts, amount, unit, kind) "
        f"VALUES ({p}, {p}, {p}, 'usd', 'topup')"
    )
    s._write(lambda cur: cur.executemany(insert, [(customer, ts, one) for ts in stamps]))


def add_alerts(store: Store, budget_id: str, fired: list[tuple[float, str]]) -> None:
    s = sql(store)
    p = ", ".join([s.dialect.param] * 7)
    insert = (
        "INSERT INTO cap_alerts (budget_id, entity, period, threshold, fired_at, total, lim) "
        f"VALUES ({p})"
    )
    rows = [(budget_id, entity, "2026-01", "80", ts, "4", "5") for ts, entity in fired]
    s._write(lambda cur: cur.executemany(insert, rows))


def alert_order(store: Store, budget_id: str) -> list[tuple[str, str, str]]:
    """A budget's alerts as the database orders them (its collation decides ties)."""
    s = sql(store)
    query = s._sql(
        "SELECT entity, period, threshold FROM cap_alerts WHERE budget_id = ? "
        "ORDER BY fired_at, entity, period, threshold"
    )
    return [tuple(r) for r in s._read(lambda cur: cur.execute(query, (budget_id,)).fetchall())]


def history_ids(store: Store, customer: str) -> list[int]:
    return [e.id for e in BillingStore(store).history(customer, limit=1_000_000)]


# -- every list, walked ---------------------------------------------------------------------


def test_every_list_walks_each_row_once_ties_included(store: Store, admin: httpx.Client) -> None:
    keys = [add_key(store, TIED) for _ in range(4)] + [add_key(store) for _ in range(3)]
    assert len({k.created_at for k in keys}) == 4  # four keys share one created_at
    caps = CapsStore(store)
    for i in range(7):
        b = budget_from({"name": f"b{i}", "limit_usd": "5"})
        caps.save_budget(replace(b, created_at=TIED) if i < 4 else b, new=True)
        lim = limit_from({"name": f"l{i}", "rpm": 5})
        caps.save_limit(replace(lim, created_at=TIED) if i < 4 else lim, new=True)
    billing = BillingStore(store)
    for i in range(7):
        billing.topup(f"cust{i}", Decimal(i + 1), ts=TIED)
        billing.create_plan(Plan(name=f"plan{i}", markup_pct=Decimal(i)))
    add_entries(store, "cust0", [TIED] * 5 + [TIED + 1, TIED - 1])
    budget = caps.load()[1][0]
    add_alerts(store, budget.id, [(TIED, f"e{i}") for i in range(5)] + [(TIED + 1, "a")])

    for limit in (1, 3, 1000):
        got = [k["key_id"] for k in walk(admin, "/admin/keys", limit)]
        assert got == [k.key_id for k in store.list_keys()] and len(got) == 7
        _, budgets, limits = caps.load()
        assert [b["id"] for b in walk(admin, "/admin/budgets", limit)] == [b.id for b in budgets]
        assert [x["id"] for x in walk(admin, "/admin/limits", limit)] == [x.id for x in limits]
        assert [c["customer"] for c in walk(admin, "/admin/customers", limit)] == [
            c.customer for c in billing.customers()
        ]
        assert [p["name"] for p in walk(admin, "/admin/plans", limit)] == [
            p.name for p in billing.plans()
        ]
        history = walk(admin, "/admin/credits/cust0/history", limit)
        assert [e["id"] for e in history] == history_ids(store, "cust0")
        assert len(history) == 8  # the top-up and the seven written here
        alerts = walk(admin, f"/admin/budgets/{budget.name}/alerts", limit)
        assert [(a["entity"], a["period"], a["threshold"]) for a in alerts] == alert_order(
            store, budget.id
        )
    # What a row shows did not change: budgets still carry their usage.
    first = get_page(admin, "/admin/budgets", limit="1")["data"][0]
    assert first["usage"] == {"used_usd": "0"}


def test_a_page_is_100_rows_unless_asked_and_next_is_null_at_the_end(
    store: Store, admin: httpx.Client
) -> None:
    assert get_page(admin, "/admin/keys") == {"object": "list", "data": [], "next": None}
    for _ in range(101):
        add_key(store, TIED)
    body = get_page(admin, "/admin/keys")
    assert len(body["data"]) == 100 and body["next"] is not None
    rest = get_page(admin, "/admin/keys", after=body["next"])
    assert len(rest["data"]) == 1 and rest["next"] is None
    exact = get_page(admin, "/admin/keys", limit="101")  # no empty page past the last row
    assert len(exact["data"]) == 101 and exact["next"] is None


def test_the_credit_history_goes_past_1000_entries(store: Store, admin: httpx.Client) -> None:
    # 1,250 entries, most of them sharing their second with others.
    add_entries(store, "acme", [TIED + i // 10 for i in range(1250)])
    add_entries(store, "other", [TIED] * 5)  # another customer's entries stay out
    seen = list(pages(admin, "/admin/credits/acme/history", 1000))
    assert [len(p) for p in seen] == [1000, 250]
    ids = [e["id"] for p in seen for e in p]
    assert ids == history_ids(store, "acme") and len(set(ids)) == 1250
    assert all(e["customer"] == "acme" and e["amount"] == "1" for p in seen for e in p)
    first = get_page(admin, "/admin/credits/acme/history")
    assert len(first["data"]) == 100 and first["data"][0]["ts"] == TIED + 124


# -- inserts between pages ------------------------------------------------------------------


def test_rows_inserted_between_pages_never_repeat_or_hide_others(
    store: Store, admin: httpx.Client
) -> None:
    older = [add_key(store, TIED) for _ in range(4)]
    body = get_page(admin, "/admin/keys", limit="2")
    seen = [k["key_id"] for k in body["data"]]
    before = add_key(store, TIED - 1)  # sorts before the cursor: a later page skips it
    made = admin.post("/admin/keys", json={"team": "new"})  # made now: sorts last
    assert made.status_code == 201
    after = body["next"]
    while after is not None:
        body = get_page(admin, "/admin/keys", limit="2", after=after)
        seen += [k["key_id"] for k in body["data"]]
        after = body["next"]
    assert len(seen) == len(set(seen)) == 5
    assert set(seen) == {k.key_id for k in older} | {made.json()["key_id"]}
    assert before.key_id not in seen

    billing = BillingStore(store)
    for name in ("b", "d", "f", "h"):
        billing.topup(name, Decimal(1))
    body = get_page(admin, "/admin/customers", limit="2")  # b, d
    for name in ("a", "e", "z"):  # before the cursor, then two after it
        billing.topup(name, Decimal(1))
    names = [c["customer"] for c in body["data"]]
    names += [c["customer"] for c in walk_from(admin, "/admin/customers", body["next"])]
    assert names == ["b", "d", "e", "f", "h", "z"]

    add_entries(store, "b", [TIED + i for i in range(5)])
    body = get_page(admin, "/admin/credits/b/history", limit="2")
    billing.topup("b", Decimal(2))  # newest: ahead of the pages read, so not among them
    ids = [e["id"] for e in body["data"]]
    ids += [e["id"] for e in walk_from(admin, "/admin/credits/b/history", body["next"])]
    assert ids == history_ids(store, "b")[1:]  # all but the new top-up, each once


def walk_from(c: httpx.Client, path: str, after: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor: str | None = after
    while cursor is not None:
        body = get_page(c, path, limit="2", after=cursor)
        out += body["data"]
        cursor = body["next"]
    return out


# -- refusals -------------------------------------------------------------------------------

LISTS = [
    "/admin/keys",
    "/admin/budgets",
    "/admin/limits",
    "/admin/customers",
    "/admin/plans",
    "/admin/credits/acme/history",
    "/admin/budgets/b1/alerts",
]


def cursor(*values: Any) -> str:
    return raw(orjson.dumps(list(values))).rstrip("=")


def raw(text: bytes) -> str:
    return base64.urlsafe_b64encode(text).decode()


def error(r: httpx.Response, param: str) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    err: dict[str, Any] = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param
    return err


def test_a_bad_limit_is_a_400_naming_it(store: Store, admin: httpx.Client) -> None:
    assert admin.post("/admin/budgets", json={"name": "b1", "limit_usd": "5"}).status_code == 201
    for path in LISTS:
        for bad in ("0", "1001", "-1", "abc", "", "1.5", "+5", " 5", "1_0", "10" * 20, "٣"):
            err = error(admin.get(path, params={"limit": bad}), "limit")
            assert err["message"] == "'limit' must be a whole number from 1 to 1000"
        error(admin.get(f"{path}?limit=2&limit=3"), "limit")
        assert admin.get(path, params={"limit": "1000"}).status_code == 200


def test_a_malformed_or_foreign_cursor_is_a_400_naming_after(
    store: Store, admin: httpx.Client
) -> None:
    assert admin.post("/admin/budgets", json={"name": "b1", "limit_usd": "5"}).status_code == 201
    key = cursor("keys", TIED, "tk-1")
    malformed = [
        "", "!!!", "not base64 at all", "bm90IGpzb24", cursor({"keys": 1}), cursor("keys"),
        cursor("nope", TIED, "x"), cursor("keys", "x", "y"), cursor("keys", True, "x"),
        cursor("keys", TIED, None), cursor("keys", TIED, "x", "extra"),
        cursor("keys", TIED, "nul\x00byte"), cursor("customers", "a\x00"),
        cursor("credits", TIED, 2**63), cursor("credits", TIED, 1.5), cursor("alerts", TIED, "e", "p"),
        raw(b'["keys", 1e999, "x"]'), raw(b'["credits", 1' + b"0" * 400 + b", 1]"),
    ]  # fmt: skip
    for path in LISTS:
        own = get_page(admin, path)  # the list answers without a cursor
        assert own["next"] is None
        for bad in malformed + ([] if path == "/admin/keys" else [key]):
            err = error(admin.get(path, params={"after": bad}), "after")
            assert err["code"] == "invalid_cursor", (path, bad)
    # A cursor is taken padded or not, and one past every row is an end.
    assert get_page(admin, "/admin/keys", after=raw(orjson.dumps(["keys", 1.0, "x"])))["data"] == []
    far = cursor("credits", -1.0, -(2**63))
    assert get_page(admin, "/admin/credits/acme/history", after=far)["next"] is None


def test_an_unknown_query_parameter_on_a_list_is_a_400(store: Store, admin: httpx.Client) -> None:
    # A misspelt cursor silently ignored would answer the first page for ever.
    err = error(admin.get("/admin/keys", params={"cursor": "x", "limit": "5"}), "cursor")
    assert err["message"] == "unknown query parameter(s) 'cursor'"
    error(admin.get("/admin/plans", params={"offset": "5"}), "offset")
    # One thing, not a list: its query string is not read (as before).
    assert admin.get("/admin/plans/none?x=1").status_code == 404


# -- the CLI --------------------------------------------------------------------------------


def test_cli_lists_print_every_row_page_after_page(
    store: Store, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in ("tokenomy.cli.keys", "tokenomy.cli.billing"):  # (names their groups shadow)
        monkeypatch.setattr(importlib.import_module(module), "PAGE", 2)
    keys = [add_key(store, TIED) for _ in range(5)]
    billing = BillingStore(store)
    for i in range(5):
        billing.topup(f"cust{i}", Decimal(1))
        billing.create_plan(Plan(name=f"plan{i}", markup_pct=Decimal(i)))

    def firsts(*args: str) -> list[str]:
        """The first word of each line the command prints."""
        res = CliRunner().invoke(cli, [*args, "--db", db_url])
        assert res.exit_code == 0, res.output
        return [line.split()[0] for line in res.stdout.splitlines()]

    assert firsts("keys", "list") == ["key_id", *(k.key_id for k in store.list_keys())]
    assert len(keys) == 5
    assert firsts("credits", "balance") == ["customer", *(f"cust{i}" for i in range(5))]
    assert firsts("plans", "list") == [f"plan{i}" for i in range(5)]


def test_cli_credit_history_says_when_it_shows_the_newest_only(
    store: Store, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `credits history` printed the 50 newest entries and stopped, silently.
    monkeypatch.setattr(importlib.import_module("tokenomy.cli.billing"), "PAGE", 2)
    BillingStore(store).topup("cust0", Decimal(1))
    add_entries(store, "cust0", [TIED] * 4 + [TIED + 1, TIED - 1])  # seven in all

    def history(*args: str) -> tuple[list[int], str]:
        res = CliRunner().invoke(cli, ["credits", "history", "cust0", *args, "--db", db_url])
        assert res.exit_code == 0, res.output
        return [int(line.split()[0]) for line in res.stdout.splitlines()[1:]], res.stderr

    every = history_ids(store, "cust0")
    assert history("--limit", "5") == (every[:5], "showing the 5 newest of 7 entries: "
                                       "--limit N or --all for more\n")  # fmt: skip
    assert history("--limit", "7") == (every, "")
    assert history("--all") == (every, "")
