"""The dashboard at /ui: in headless Chromium over a real gateway and its ledger.

The browser tests need Debian's ``chromium`` and Playwright's Python client
(never ``playwright install``: the browser comes from the system). Without
them they are skipped locally and fail under ``CI=true``. The tests after them
fetch the pages over HTTP only, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from gateway_fixtures import GW, MASTER_KEY
from tokenomy.billing import BillingStore
from tokenomy.caps.model import budget_from
from tokenomy.caps.store import CapsStore
from tokenomy.config import Settings
from tokenomy.dashboard import auth, data, state
from tokenomy.dashboard.page import usd
from tokenomy.ledger import SQLStore, Store
from tokenomy.records import UsageRecord
from tokenomy.server.app import create_app
from tokenomy.testing import serve_in_thread
from tokenomy.usage import Usage

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
MSG = [{"role": "user", "content": "hello there"}]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason + " (CI=true: the dashboard must be tested in a browser)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"playwright is not installed: {exc}")
        raise
    if not os.path.exists(CHROMIUM):
        _unavailable(f"chromium not found at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def seed(gw: GW) -> None:
    """Real traffic through the gateway, plus other teams' rows over the past days."""
    client = gw.openai()
    for model in ("gpt-4o", "gpt-4o", "gpt-4o-mini", "mystery-model-x"):
        client.chat.completions.create(model=model, messages=MSG)
    gw.anthropic().messages.create(model="claude-haiku-4-5", max_tokens=50, messages=MSG)
    now = time.time()
    extra = []
    for i in range(12):
        extra.append(
            UsageRecord(
                request_id=f"seed-{i}",
                ts=now - (i % 6) * 86400 - 60,
                endpoint="/v1/chat/completions",
                key_id="tk-ads00001",
                org="acme",
                team="ads" if i % 3 else "research",
                user=f"u{i % 2}",
                tags={"env": "prod" if i % 2 else "dev"},
                requested_model="gpt-4o",
                served_model="gpt-4o",
                provider="openai",
                usage=Usage(1000 + i, 100 + i, cache_read_tokens=200),
                cost_usd=Decimal("0.0123456789") * (i + 1),
                decisions={"cache": {"saved_usd": "0.00" + str(i + 1)}} if i % 4 == 0 else {},
            )
        )
    gw.store.insert_records(extra)


def in_view(records: list[UsageRecord], days: int = 30) -> list[UsageRecord]:
    today = datetime.now(UTC).date()
    lo = datetime.combine(today - timedelta(days=days - 1), datetime.min.time(), UTC).timestamp()
    hi = datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC).timestamp()
    return [r for r in records if lo <= r.ts < hi]


def spend(records: list[UsageRecord]) -> Decimal:
    return sum((r.cost_usd for r in records if r.cost_usd is not None), Decimal(0))


def check_page(page: Any, records: list[UsageRecord]) -> None:
    """Every number the page shows, against the ledger rows it should sum."""
    assert Decimal(page.get_attribute("#kpi-spend .value", "data-value")) == spend(records)
    assert page.inner_text("#kpi-spend .value") == usd(spend(records))
    assert page.get_attribute("#kpi-requests .value", "data-value") == str(len(records))
    unpriced = [r for r in records if r.price_unknown]
    assert page.get_attribute("#kpi-unpriced .value", "data-value") == str(len(unpriced))
    teams = {r.team for r in records}
    rows = page.query_selector_all("#spenders tbody tr")
    assert {row.get_attribute("data-key") or None for row in rows} == teams
    for row in rows:
        team = row.get_attribute("data-key") or None
        cost = row.query_selector("td[data-usd]").get_attribute("data-usd")
        assert Decimal(cost) == spend([r for r in records if r.team == team]), team
    models = {r.served_model for r in unpriced}
    assert {
        m.get_attribute("data-model") for m in page.query_selector_all("#unpriced tbody tr")
    } == models
    saved = sum((Decimal(r.decisions["cache"]["saved_usd"]) for r in records
                 if "cache" in r.decisions), Decimal(0))  # fmt: skip
    if saved:
        cell = page.get_attribute("#savings tr[data-lever=cache] td[data-usd]", "data-usd")
        assert Decimal(cell) == saved
    # The chart: one bar per (day, series) with spend, adding up to the total.
    bars = page.query_selector_all("#spend-chart rect.tk-bar")
    assert bars
    drawn = sum(float(b.get_attribute("data-value")) for b in bars)
    assert drawn == pytest.approx(float(spend(records)), rel=1e-9)
    top = page.query_selector_all("#top tbody tr")
    priced = sorted((r for r in records if r.cost_usd is not None),
                    key=lambda r: (-(r.cost_usd or 0), r.ts, r.request_id))  # fmt: skip
    assert [t.get_attribute("data-request") for t in top] == [r.request_id for r in priced[:10]]


def test_dashboard_in_chromium(fresh_gw: GW, browser: Any, tmp_path: Path) -> None:
    seed(fresh_gw)
    records = in_view(fresh_gw.store.list_records(limit=100_000))
    assert {r.team for r in records} >= {"search", "ads", "research"}
    page = browser.new_page(viewport={"width": 1360, "height": 900})
    try:
        page.goto(fresh_gw.url + "/ui")
        assert page.url.endswith("/ui/login")
        page.fill("#key", MASTER_KEY)
        page.click("button[type=submit]")
        page.wait_for_selector("#spend-chart[data-drawn=true]")
        check_page(page, records)
        assert page.inner_text("#forecast h2").startswith("Forecast for")
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

        # Filter by team, then by tag: the numbers follow.
        page.select_option("#f-team", "search")
        page.click("#apply")
        page.wait_for_selector("#spend-chart[data-drawn=true]")
        assert "team=search" in page.url
        check_page(page, [r for r in records if r.team == "search"])
        page.select_option("#f-team", "")
        page.select_option("#f-tag", "env=dev")
        page.select_option("#f-by", "model")
        page.click("#apply")
        page.wait_for_selector("#spend-chart[data-drawn=true]")
        dev = [r for r in records if r.tags.get("env") == "dev"]
        assert Decimal(page.get_attribute("#kpi-spend .value", "data-value")) == spend(dev)
        by_model = {
            row.get_attribute("data-key"): Decimal(
                row.query_selector("td[data-usd]").get_attribute("data-usd")
            )
            for row in page.query_selector_all("#spenders tbody tr")
        }
        assert by_model == {
            m: spend([r for r in dev if r.served_model == m]) for m in {r.served_model for r in dev}
        }
        page.screenshot(path=str(tmp_path / "dashboard-filtered.png"), full_page=True)
        assert (tmp_path / "dashboard.png").stat().st_size > 20_000
    finally:
        page.close()


def test_sign_in_and_out(fresh_gw: GW, browser: Any) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(fresh_gw.url + "/ui")
        page.fill("#key", "not-the-key")
        page.click("button[type=submit]")
        assert "not the master key" in page.inner_text(".login")
        assert context.cookies() == []
        page.fill("#key", MASTER_KEY)
        page.click("button[type=submit]")
        page.wait_for_selector("#kpi-spend")
        [cookie] = context.cookies()
        assert (
            cookie["name"] == auth.COOKIE and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        )
        assert MASTER_KEY not in cookie["value"]
        page.click("header button")
        page.wait_for_selector("#key")
        page.goto(fresh_gw.url + "/ui")
        assert page.url.endswith("/ui/login")
    finally:
        context.close()


# -- over HTTP only ---------------------------------------------------------------------------


def test_auth_over_http(fresh_gw: GW) -> None:
    with httpx.Client(base_url=fresh_gw.url, timeout=30) as c:
        r = c.get("/ui", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/ui/login"
        assert c.get("/ui", headers={"authorization": "Bearer wrong"}).status_code in (200, 303)
        r = c.get("/ui", headers={"authorization": f"Bearer {MASTER_KEY}"})
        assert r.status_code == 200 and 'id="kpi-spend"' in r.text
        assert "script-src 'self'" in r.headers["content-security-policy"]
        r = c.get("/ui", headers={"cookie": f"{auth.COOKIE}=1.forged"}, follow_redirects=False)
        assert r.status_code == 303
        future = int(time.time()) + 60  # a forged signature of non-ASCII bytes: not a 500
        odd = f'{auth.COOKIE}="{future}.\xe9"'.encode("latin-1")
        r = c.get("/ui", headers={"cookie": odd}, follow_redirects=False)
        assert r.status_code == 303
        expired = auth.session_token(MASTER_KEY, now=time.time() - 2 * auth.SESSION_SECONDS)
        r = c.get("/ui", headers={"cookie": f"{auth.COOKIE}={expired}"}, follow_redirects=False)
        assert r.status_code == 303
        good = auth.session_token(MASTER_KEY)
        assert c.get("/ui", headers={"cookie": f"{auth.COOKIE}={good}"}).status_code == 200
        assert c.get("/ui/static/chart.js").headers["content-type"].startswith("text/javascript")
        assert c.get("/ui/static/app.py").status_code == 404  # only the two files
        assert c.post("/ui", headers={"authorization": f"Bearer {MASTER_KEY}"}).status_code == 404


def test_without_master_key_the_dashboard_is_off(tmp_path: Path) -> None:
    app = create_app(Settings(db=str(tmp_path / "l.db"), master_key=None))
    with serve_in_thread(app) as url, httpx.Client(base_url=url) as c:
        r = c.get("/ui", headers={"authorization": "Bearer anything"})
        assert r.status_code == 403 and "TOKENOMY_MASTER_KEY" in r.text


def kpi(html: str, name: str) -> str:
    m = re.search(rf'id="kpi-{name}">.*?data-value="([^"]*)"', html)
    assert m, name
    return m.group(1)


@pytest.fixture
def served(store: Store, db_url: str) -> Iterator[Callable[..., str]]:
    app = create_app(Settings(db=db_url, master_key=MASTER_KEY))
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as c:

        def get(**params: str) -> str:
            r = c.get("/ui", params=params, headers={"authorization": f"Bearer {MASTER_KEY}"})
            assert r.status_code == 200, r.text
            return r.text

        yield get


def test_numbers_on_both_engines(store: Store, served: Callable[..., str]) -> None:
    today = datetime.now(UTC).date()
    noon = datetime.combine(today, datetime.min.time(), UTC).timestamp() + 12 * 3600
    recs = [
        UsageRecord(f"r{i}", ts=noon - i * 86400, team=("a", "b")[i % 2], requested_model="m",
                    served_model="m", usage=Usage(100, 10), cost_usd=Decimal(f"0.{i + 1:03d}7"))
        for i in range(40)
    ] + [UsageRecord("u", ts=noon, team="a", requested_model="x", served_model="x",
                     usage=Usage(5, 5), price_unknown=True)]  # fmt: skip
    store.insert_records(recs)
    html = served()
    shown = [r for r in recs if r.ts >= noon - 29.5 * 86400]
    assert Decimal(kpi(html, "spend")) == spend(shown)
    assert kpi(html, "requests") == str(len(shown)) and kpi(html, "unpriced") == "1"
    since = (today - timedelta(days=3)).isoformat()
    html = served(since=since, until=today.isoformat(), team="b")
    want = [r for r in recs if r.team == "b" and r.ts >= noon - 3.5 * 86400]
    assert Decimal(kpi(html, "spend")) == spend(want)
    html = served(since="not-a-date", by="colour")
    assert "is not a date" in html and "cannot break down by" in html


def test_forecast_unavailable_is_said_plainly(
    served: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "_forecast", None)
    html = served()
    assert 'id="forecast-unavailable"' in html and "Forecast unavailable" in html


def test_view_parsing() -> None:
    today = datetime(2026, 11, 29, tzinfo=UTC).date()
    v = data.View.parse({}, today)
    assert (str(v.since), str(v.until), v.by) == ("2026-10-31", "2026-11-29", "team")
    v = data.View.parse({"since": "2026-11-20", "until": "2026-11-10", "tag": "env"}, today)
    assert v.since == v.until and v.tag is None and len(v.problems) == 2
    v = data.View.parse({"tag": "env=prod", "team": "a", "model": "m", "by": "tag:env"}, today)
    assert v.filters.tags == (("env", "prod"),) and v.filters.teams == ("a",) and v.by == "tag:env"


def test_sign_in_is_throttled_after_wrong_keys(fresh_gw: GW) -> None:
    with httpx.Client(base_url=fresh_gw.url, timeout=30) as c:
        for _ in range(5):
            assert c.post("/ui/login", data={"key": "guess"}).status_code == 401
        r = c.post("/ui/login", data={"key": MASTER_KEY}, follow_redirects=False)
        assert r.status_code == 429 and "try again in" in r.text  # even the right key waits


def test_login_throttle_window() -> None:
    now = [0.0]
    t = auth.LoginThrottle(attempts=3, window=60, max_clients=2, clock=lambda: now[0])
    for _ in range(3):
        assert t.retry_after("a") == 0
        t.failed("a")
    assert t.retry_after("a") == 60
    now[0] = 59.5
    assert t.retry_after("a") == pytest.approx(0.5)
    now[0] = 60
    assert t.retry_after("a") == 0  # the oldest failure left the window
    t.failed("b")
    t.succeeded("b")
    assert t.retry_after("b") == 0
    t.failed("b")
    t.failed("c")  # a third client: the least recent ("a") is forgotten
    assert t.retry_after("a") == 0 and set(t._failures) == {"b", "c"}


def test_dates_at_the_calendar_edges_are_problems_not_500s(served: Callable[..., str]) -> None:
    # until=9999-12-31 has no next midnight, since=0001-01-01 no 29 days before:
    # both were an OverflowError (a 500); a range of centuries a page of millions of bars.
    html = served(until="9999-12-31")
    assert "is not between 1970-01-01 and 9999-12-30" in html and 'id="kpi-spend"' in html
    html = served(since="0001-01-01", until="0001-01-05")
    assert html.count("is not between") == 2 and 'id="kpi-spend"' in html
    today = datetime.now(UTC).date()
    html = served(since="1970-01-01", until="1970-01-10")
    assert "is not between" not in html and 'value="1970-01-01"' in html
    html = served(since="1970-01-01")
    assert f"at most {data.MAX_DAYS} days" in html
    v = data.View.parse({"since": "1970-01-01"}, today)
    assert (v.until - v.since).days == data.MAX_DAYS - 1 and v.until == today


def test_spend_chart_series_named_like_the_rest(store: Store) -> None:
    # A team called "other" (or "(none)") was added to the rest of the teams
    # (or to the requests with none), and that series was drawn twice.
    now = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), UTC).timestamp() + 43200
    teams = ["other", "(none)", "a", "b", "c", "d", "e", "f", None]
    recs = [UsageRecord(f"r{i}", ts=now - 60, team=t, requested_model="m", usage=Usage(1, 1),
                        cost_usd=Decimal(10 - i)) for i, t in enumerate(teams)]  # fmt: skip
    store.insert_records(recs)
    assert isinstance(store, SQLStore)
    board = data.collect(store, data.View.parse({}, datetime.fromtimestamp(now, UTC).date()), now)
    today = [(name, values[-1]) for name, values in board.series]
    assert today == [("other", 10), ("(none)", 9), ("a", 8), ("b", 7), ("c", 6), ("d", 5),
                     ("other", 4 + 3 + 2)]  # fmt: skip
    assert sum(v for _, v in today) == board.total.cost_usd == sum(range(2, 11))


def test_unknown_prices_are_never_shown_as_zero(store: Store, served: Callable[..., str]) -> None:
    # A team whose requests all have unknown prices showed "$0.000000" in the top
    # spenders and the routes: its cost is unknown, and a team with some is a lower bound.
    now = time.time() - 60
    store.insert_records(
        [
            UsageRecord("p", ts=now, team="a", endpoint="/v1/chat/completions",
                        requested_model="m", usage=Usage(10, 1), cost_usd=Decimal("0.5")),
            UsageRecord("u1", ts=now, team="a", endpoint="/v1/chat/completions",
                        requested_model="x", usage=Usage(10, 1), price_unknown=True),
            UsageRecord("u2", ts=now, team="b", endpoint="/v1/messages",
                        requested_model="x", usage=Usage(10, 1), price_unknown=True),
        ]
    )  # fmt: skip
    html = served()
    spenders = html[html.index('id="spenders"') : html.index('id="forecast"')]
    assert re.search(r'data-key="a">.*?data-usd="0.5">\$0.500000 \+ unknown</td>', spenders)
    assert re.search(r'data-key="b">.*?data-usd="">unknown</td>', spenders)
    routes = html[html.index('id="routes"') : html.index('id="top"')]
    assert re.search(r'data-route="/v1/messages">.*?data-usd="">unknown</td>', routes)
    assert "$0.000000" not in spenders + routes


# -- bounded panels: they say what they leave out, and totals count it -----------------------


def panel_html(html: str, ident: str) -> str:
    start = html.index(f'id="{ident}"><h2>')
    return html[start : html.index("</section>", start)]


def test_balances_list_the_least_left_and_total_every_customer(
    store: Store, served: Callable[..., str]
) -> None:
    # Every customer was listed: 100,000 customers made a page of 100,000 rows.
    b = BillingStore(store)
    n = state.BALANCES_SHOWN + 7
    for i in range(n):  # c<i> has i% of its credit left
        b.topup(f"c{i:02d}", Decimal(100))
        b.debit(f"c{i:02d}", f"r{i}", Decimal(100 - i))
    b.topup("tok", Decimal(5000), unit="tokens")
    b.debit("tok", "rt", Decimal(4999))  # 0.02% left, in tokens: after c00, before c01
    html = panel_html(served(), "balances")
    rows = re.findall(r"<tr><td>([^<]*)</td>", html)
    assert rows == ["c00", "tok"] + [f"c{i:02d}" for i in range(1, state.BALANCES_SHOWN - 1)]
    assert "4,999 tokens" in html and "$5,000" not in html  # tokens are never dollars
    totals = re.findall(r'<tr class="total"><td>([^<]*)</td>.*?</tr>', html)
    assert totals == ["all 1 in tokens", f"all {n} in usd"]
    held = sum(range(n))  # what the usd customers have left, to the cent
    assert f'data-usd="{held}"' in html.split('<tr class="total">')[2]
    left_out = n + 1 - state.BALANCES_SHOWN
    assert f"Showing the {state.BALANCES_SHOWN} of {n + 1} customers" in html
    assert f"{left_out} more are not listed" in html and "GET /admin/customers" in html


def test_balances_of_few_customers_are_all_listed(store: Store, served: Callable[..., str]) -> None:
    b = BillingStore(store)
    b.topup("a", Decimal(3))
    b.topup("b", Decimal(4))
    html = panel_html(served(), "balances")
    assert re.findall(r"<tr><td>([^<]*)</td>", html) == ["a", "b"]
    assert "not listed" not in html and "all 2" in html


def test_top_spenders_and_requests_say_how_many_they_leave_out(
    store: Store, served: Callable[..., str]
) -> None:
    now = time.time() - 60
    store.insert_records(
        [UsageRecord(f"r{i}", ts=now, team=f"t{i:02d}", requested_model="m",
                     usage=Usage(1, 1), cost_usd=Decimal(i + 1)) for i in range(20)]
    )  # fmt: skip
    html = served()
    spenders = panel_html(html, "spenders")
    assert spenders.count('<tr data-key="') == data.SPENDERS
    assert f"The {data.SPENDERS} largest of 20 by team" in spenders
    top = panel_html(html, "top")
    assert top.count("<tr data-request=") == data.TOP
    assert f"The {data.TOP} most expensive of 20 priced requests" in top
    few = panel_html(served(team="t00"), "top")
    assert "most expensive of" not in few  # one request: all of it is shown
    # Ten with a cost and two refused (no cost, none to list): nothing left out.
    store.insert_records(
        [UsageRecord(f"x{i}", ts=now, team="x", requested_model="m", usage=Usage(1, 1),
                     cost_usd=Decimal(1) if i < data.TOP else None, status=200 if i < data.TOP
                     else 429) for i in range(data.TOP + 2)]
    )  # fmt: skip
    top = panel_html(served(team="x"), "top")
    assert top.count("<tr data-request=") == data.TOP and "most expensive of" not in top


def test_a_budget_on_each_user_says_how_many_it_leaves_out(
    store: Store, served: Callable[..., str]
) -> None:
    CapsStore(store).save_budget(
        budget_from({"name": "per-user", "scope": {"user": "each"}, "limit_usd": "100"}),
        new=True,
    )
    now = time.time() - 60
    store.insert_records(
        [UsageRecord(f"r{i}", ts=now, user=f"u{i}", requested_model="m", usage=Usage(1, 1),
                     cost_usd=Decimal(i + 1)) for i in range(state.EACH_SHOWN + 3)]
    )  # fmt: skip
    html = panel_html(served(), "budgets")
    assert html.count("per-user") == state.EACH_SHOWN + 1  # the rows and the note
    assert f"the {state.EACH_SHOWN} largest of {state.EACH_SHOWN + 3} (user) only" in html


def test_a_budget_table_this_version_does_not_know_says_it_is_cut(store: Store) -> None:
    assert isinstance(store, SQLStore)
    rows = state.DUMP_ROWS + 1
    store._write(lambda cur: cur.execute("CREATE TABLE old_budgets (name TEXT)"))
    p = store.dialect.param
    insert = f"INSERT INTO old_budgets (name) VALUES ({p})"
    store._write(lambda cur: cur.executemany(insert, [(f"b{i}",) for i in range(rows)]))
    panel = state.budgets(store, {"old_budgets"}, now=time.time())
    assert len(panel.rows) == state.DUMP_ROWS
    assert panel.notes == [f"old_budgets: the first {state.DUMP_ROWS} rows only."]
    store._write(lambda cur: cur.execute("DELETE FROM old_budgets WHERE name = 'b0'"))
    assert state.budgets(store, {"old_budgets"}, now=time.time()).notes == []
