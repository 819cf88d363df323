"""Admin and dashboard fuzzing: bad input never gets a 500 or a traceback.

The same mutations as `test_request_fuzz` (`fuzz_helpers`), on what the master
key serves: a valid body of every admin call that takes one (keys, budgets,
limits, plans, customers, top-ups with idempotency keys, adjustments and
refunds) has each field at every depth replaced, removed, or joined by an
unknown one; raw bodies that are no JSON object; odd query strings on every
paged list, the statements and the dashboard (garbage cursors and limits,
repeated and unknown parameters, impossible dates); odd path parameters (very
long, a percent-encoded NUL, invalid UTF-8, unicode) on every route that takes
one; odd sign-in forms and cookies. Requests go over a raw socket, so a path or
query string can hold any byte.

Every answer is below 500 with no traceback and nothing logged as an error; an
admin API error is an OpenAI-style JSON error body (its documented format), a
dashboard page is HTML. A refused call (4xx) changes no row of the admin state
(keys, caps, plans, customers, the credit ledger): a refused top-up moves no
balance. The mutations are seeded: a run is the same every time.
"""

from __future__ import annotations

import base64
import json
import random
import socket
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from fuzz_helpers import (
    UNKNOWN_FIELD,
    Errors,
    encode,
    error_problems,
    name,
    replaced,
    variants,
    walk,
)
from gateway_fixtures import GW, MASTER_KEY, Fake, gateway_settings, start_gateway
from tokenomy.billing import BillingStore
from tokenomy.server.app import TokenomyApp, create_app

SEED = 20_261_207
NESTED_SAMPLE = 5  # replacement values tried per field below the top level
ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
STATE_TABLES = (
    "api_keys", "cap_budgets", "cap_limits", "cap_alerts", "billing_plans",
    "billing_customers", "credit_ledger", "billing_plan_changes",
)  # fmt: skip


@dataclass(slots=True)
class Case:
    label: str
    method: str
    target: bytes  # the request target as sent: any byte
    body: bytes | None = None
    headers: dict[str, bytes] = field(default_factory=dict)
    html: bool = False  # a dashboard page, not the admin API
    served: bool = False  # a valid call: a 2xx, else the seed tests nothing past it


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


# -- the wire -----------------------------------------------------------------------------------


def _dechunk(body: bytes) -> bytes:
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


def send(gw: GW, case: Case) -> Answer:
    """``case`` over a socket of its own, as it is (no client library rewrites it)."""
    url = urlsplit(gw.url)
    head = [case.method.encode() + b" " + case.target + b" HTTP/1.1", b"host: gw",
            b"connection: close"]  # fmt: skip
    hdrs = {**ADMIN, "content-type": "application/json"} | case.headers
    head += [k.encode() + b": " + (v if isinstance(v, bytes) else v.encode())
             for k, v in hdrs.items() if v != ""]  # fmt: skip
    body = case.body or b""
    if case.body is not None:
        head.append(b"content-length: " + str(len(body)).encode())
    with socket.create_connection((url.hostname, url.port), timeout=30) as s:
        s.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    top, _, content = raw.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding") == "chunked":
        content = _dechunk(content)
    return Answer(status, headers, content)


def state(gw: GW) -> list[Any]:
    """Every row of the admin state, in a fixed order."""
    with sqlite3.connect(gw.db) as db:
        return [sorted(map(repr, db.execute(f"SELECT * FROM {t}"))) for t in STATE_TABLES]


def problems(case: Case, r: Answer) -> list[str]:
    out: list[str] = []
    if r.status >= 500:
        out.append(f"status {r.status}")
    if b"Traceback" in r.body:
        out.append("a traceback in the body")
    if (
        case.html
        or case.method == "HEAD"
        or (r.status < 400 and "json" not in r.headers.get("content-type", "json"))
    ):
        return out
    try:
        data = json.loads(r.body)
    except ValueError:
        return [*out, f"body not JSON: {r.body[:200]!r}"]
    if r.status >= 400:
        out += error_problems("openai", data)
    return out


def run(gw: GW, cases: list[Case], errors: Errors, *, check_state: bool = True) -> None:
    """Send the cases whose target an HTTP server lets through (uvicorn refuses a
    byte past ASCII itself: `test_bytes_past_ascii_in_a_target_reach_the_app` sends
    those to the app directly)."""
    failures: list[str] = []
    for case in [c for c in cases if c.target.isascii()]:
        mutating = check_state and case.method not in ("GET", "HEAD")
        before = state(gw) if mutating else None
        r = send(gw, case)
        found = problems(case, r)
        if mutating and r.status >= 400 and state(gw) != before:
            found.append(f"refused ({r.status}) but the admin state changed")
        failures += [f"{case.label}: {p} [{r.status} {r.body[:150]!r}]" for p in found]
    assert not failures, f"{len(failures)} of {len(cases)} cases:\n" + "\n".join(failures[:60])
    assert not errors.seen, "\n".join(errors.seen[:20])


# -- the gateway --------------------------------------------------------------------------------


@pytest.fixture
def errors_logged() -> Iterator[Errors]:
    yield from Errors.watching()


@pytest.fixture(scope="module")
def agw(fake: Fake, fake_llamacpp: Fake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GW]:
    """A gateway with one of everything the admin API names: a budget ``b1`` (with
    an alert fired), a limit ``l1``, a plan ``pro``, and ``alice`` with a balance
    and a debit of ``req_fuzz`` to refund."""
    db = str(tmp_path_factory.mktemp("adminfuzz") / "ledger.db")
    for gw in start_gateway(gateway_settings(db, fake, fake_llamacpp), fake):
        for method, path, body in (
            ("POST", "/admin/budgets", {"name": "b1", "limit_usd": "5"}),
            ("POST", "/admin/limits", {"name": "l1", "rpm": 5}),
            ("POST", "/admin/plans", {"name": "pro", "markup_pct": "20"}),
            ("POST", "/admin/credits/alice/topup", {"amount": "100"}),
        ):
            r = send(gw, Case("setup", method, path.encode(), encode(body)))
            assert r.status == 201, r.body
        BillingStore(gw.store).debit("alice", "req_fuzz", Decimal("0.5"))
        yield gw


# -- bodies -------------------------------------------------------------------------------------


def seeds(key_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, a valid body) of every admin call that takes a body."""
    budget = {"scope": {"team": "search", "tag:env": "test"}, "period": "daily",
              "limit_usd": "5", "limit_tokens": 1000, "on_exceed": "refuse",
              "fail_mode": "open", "alerts": [50, 80, 100],
              "webhook_url": "https://hooks.example/b"}  # fmt: skip
    limit = {"scope": {"key": "each"}, "rpm": 60, "tpm": 1000, "input_tpm": 800,
             "output_tpm": 200, "concurrent": 2, "window": "60s", "fail_mode": "open"}  # fmt: skip
    return [
        ("POST", "/admin/keys", {"name": "fz", "org": "acme", "team": "search", "user": "u",
                                 "tags": {"env": "test"}, "models": ["gpt-4o"],
                                 "expires_in": 3600}),
        ("PATCH", f"/admin/keys/{key_id}", {"expires_at": 4_102_444_800}),
        ("PATCH", f"/admin/keys/{key_id}", {"expires_in": 86_400}),
        ("POST", "/admin/budgets", {"name": "fz-b", **budget}),
        ("PATCH", "/admin/budgets/b1", budget),
        ("POST", "/admin/limits", {"name": "fz-l", **limit}),
        ("PATCH", "/admin/limits/l1", limit),
        ("POST", "/admin/plans", {"name": "fz-p", "markup_pct": "12.5"}),
        ("POST", "/admin/plans", {"name": "fz-f", "input_per_mtok": "1.5",
                                  "output_per_mtok": "3", "cached_input_per_mtok": "0.25"}),
        ("PATCH", "/admin/customers/alice", {"plan": "pro"}),
        ("POST", "/admin/credits/alice/topup", {"amount": "25.00", "unit": "usd",
                                                "note": "fz", "idempotency_key": "fz-top"}),
        ("POST", "/admin/credits/alice/adjust", {"amount": "-1.5", "note": "fz",
                                                 "kind": "adjustment",
                                                 "idempotency_key": "fz-adj"}),
        ("POST", "/admin/credits/alice/adjust", {"amount": "0.1", "kind": "refund",
                                                 "request_id": "req_fuzz", "note": "fz"}),
    ]  # fmt: skip


def body_cases(key_id: str, rng: random.Random) -> Iterator[Case]:
    for method, path, body in seeds(key_id):
        where = f"{method} {path}"
        yield Case(f"{where} as it is", method, path.encode(), encode(body), served=True)
        yield Case(f"{where} +{UNKNOWN_FIELD}", method, path.encode(),
                   encode({**body, UNKNOWN_FIELD: 1}))  # fmt: skip
        for label, content in variants(body, rng, NESTED_SAMPLE):
            yield Case(f"{where}{label}", method, path.encode(), content)


def test_every_mutation_of_every_admin_body_is_answered_in_format(
    agw: GW, errors_logged: Errors
) -> None:
    run(agw, list(body_cases(agw.key_id, random.Random(SEED))), errors_logged)


RAW_BODIES: tuple[tuple[str, bytes], ...] = (
    ("empty", b""),
    ("not JSON", b"hello there"),
    ("a list", b"[1, 2]"),
    ("a string", b'"{}"'),
    ("null", b"null"),
    ("truncated", b'{"amount": "5", "no'),
    ("invalid UTF-8", b'{"name": "h\xff\xfei", "note": "\xc3"}'),
    ("a BOM", b'\xef\xbb\xbf{"amount": "5"}'),
    ("a NUL byte", b'{"amount": "5"\x00}'),
    ("two objects", b'{"amount": "5"}{"amount": "5"}'),
    ("2 MB of garbage", b"{" + b"x" * (2 * 1024 * 1024)),
    ("2 MB of nesting", b"[" * (2 * 1024 * 1024)),
)


def test_raw_admin_bodies_that_are_no_json_object_are_answered_in_format(
    agw: GW, errors_logged: Errors
) -> None:
    cases = []
    for method, path, body in seeds(agw.key_id):
        for label, content in RAW_BODIES:
            cases.append(Case(f"{method} {path} {label}", method, path.encode(), content))
        for ctype in ("text/plain", "application/x-www-form-urlencoded", ""):
            cases.append(Case(f"{method} {path} content-type {ctype!r}", method, path.encode(),
                              encode(body), {"content-type": ctype.encode()}))  # fmt: skip
        cases.append(Case(f"{method} {path} no body", method, path.encode()))
    run(agw, cases, errors_logged)


# -- query strings ------------------------------------------------------------------------------

LISTS = ("/admin/keys", "/admin/budgets", "/admin/limits", "/admin/customers", "/admin/plans",
         "/admin/credits/alice/history", "/admin/budgets/b1/alerts")  # fmt: skip


def _cursor(value: Any) -> bytes:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=")


QUERIES: tuple[bytes, ...] = (
    b"limit=", b"limit=0", b"limit=-1", b"limit=1001", b"limit=abc", b"limit=NaN",
    b"limit=1e3", b"limit=1.5", b"limit=" + b"9" * 400, b"limit=%00", b"limit=%EF%BC%95",
    b"limit=1&limit=2", b"limit=%20%205", b"after=", b"after=garbage", b"after=%00",
    b"after=" + b"A" * 20_000, b"after=" + _cursor(["keys"]), b"after=" + _cursor([]),
    b"after=" + _cursor(["keys", 1e308, "x"]), b"after=" + _cursor(["keys", 10**30, "x"]),
    b"after=" + _cursor(["customers", "a\x00b"]), b"after=" + _cursor(["credits", 1, 2**70]),
    b"after=" + _cursor(["plans", None]), b"after=" + _cursor({"a": 1}),
    b"after=" + _cursor(["alerts", 1, "a", "b", "c"]), b"after=" + _cursor(["budgets", 1, "x"]),
    b"after=" + _cursor(["limits", -1, "x"]), b"after=" + _cursor(["customers", "\ud800"]),
    b"after=" + _cursor(["customers", "\u00e9" * 5000]), b"after=%FF%FE", b"after=a&after=b",
    b"since=9999-99-99", b"until=NaN", b"x=1", b"limit=5&x", b"&&&", b"=", b"%", b"%zz",
    b"\xff\xfe=1", b"limit=\xff", b"a=" + b"b" * 30_000, b"limit=5#frag",
)  # fmt: skip


def query_cases() -> list[Case]:
    return [Case(f"GET {p}?{q[:60]!r}", "GET", p.encode() + b"?" + q)
            for p in LISTS for q in QUERIES]  # fmt: skip


def test_odd_query_strings_on_every_list_are_answered_in_format(
    agw: GW, errors_logged: Errors
) -> None:
    run(agw, query_cases(), errors_logged)


PERIODS: tuple[bytes, ...] = (
    b"9999-99-99", b"9999-12", b"9999-12-31", b"0000-01", b"0001-01-01", b"NaN", b"2026-13",
    b"2026-02-30", b"-2026", b"2026-1", b"20261", b"2026-11.csv", b"2026-11.json.csv",
    b".csv", b"%00", b"2026%00", b"2026-11-05" * 500, b"%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%96",
    b"\xd9\xa2\xd9\xa0\xd9\xa2\xd9\xa6", b"2026-11?limit=5", b"2026-11?x=1&x=2",
)  # fmt: skip


def period_cases() -> list[Case]:
    return [Case(f"statement {p[:40]!r}", "GET", b"/admin/statements/alice/" + p)
            for p in PERIODS]  # fmt: skip


def test_odd_statement_periods_are_answered_in_format(agw: GW, errors_logged: Errors) -> None:
    run(agw, period_cases(), errors_logged)


# -- path parameters ----------------------------------------------------------------------------

SEGMENTS: tuple[bytes, ...] = (
    b"x" * 6000, b"%00", b"a%00b", b"%FF", b"\xff\xfe", b"%C3%A9%E2%9C%93", "é✓€".encode(),
    b"%F0%9F%98%80", b"%ED%A0%80", b"..", b"%2e%2e", b"a%2Fb", b"%20", b"%0d%0a", b"'",
    b"\"", b"%", b"%25", b"null", b"-1",
)  # fmt: skip


def path_cases(key_id: str) -> Iterator[Case]:
    """Each route that names something, with each odd name (and a valid body)."""
    keys = {"expires_in": 60}
    budget = {"limit_usd": "6"}
    routes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", "/admin/keys/{}", None), ("PATCH", "/admin/keys/{}", keys),
        ("DELETE", "/admin/keys/{}", None), ("POST", "/admin/keys/{}/revoke", None),
        ("GET", "/admin/budgets/{}", None), ("PATCH", "/admin/budgets/{}", budget),
        ("DELETE", "/admin/budgets/{}", None), ("GET", "/admin/budgets/{}/alerts", None),
        ("GET", "/admin/limits/{}", None), ("PATCH", "/admin/limits/{}", {"rpm": 7}),
        ("DELETE", "/admin/limits/{}", None), ("GET", "/admin/plans/{}", None),
        ("GET", "/admin/customers/{}", None), ("PATCH", "/admin/customers/{}", {"plan": "pro"}),
        ("GET", "/admin/credits/{}", None), ("GET", "/admin/credits/{}/history", None),
        ("POST", "/admin/credits/{}/topup", {"amount": "1"}),
        ("POST", "/admin/credits/{}/adjust", {"amount": "1"}),
        ("GET", "/admin/statements/{}/2026-11", None),
        ("GET", "/admin/statements/{}/2026-11.csv", None),
        ("GET", "/admin/statements/alice/{}", None),
        ("GET", "/admin/{}", None), ("POST", "/admin/keys/" + key_id + "/{}", None),
    ]  # fmt: skip
    for method, template, body in routes:
        before, after = (s.encode() for s in template.split("{}"))
        for seg in SEGMENTS:
            content = None if body is None else encode(body)
            yield Case(f"{method} {template} with {seg[:30]!r}", method, before + seg + after,
                       content)  # fmt: skip


def test_odd_path_parameters_are_answered_in_format(agw: GW, errors_logged: Errors) -> None:
    run(agw, list(path_cases(agw.key_id)), errors_logged)


def test_odd_admin_paths_and_keys_are_answered_in_format(agw: GW, errors_logged: Errors) -> None:
    odd: list[Case] = [
        Case(f"{m} {p!r}", m, p)
        for m in ("GET", "POST", "PUT", "OPTIONS", "TRACE")
        for p in (b"/admin", b"/admin/", b"/admin//keys", b"/admin/keys//x", b"/admin/%00",
                  b"/admin/keys/" + b"/" * 200, b"/admin/" + b"a/" * 500, b"/admin/KEYS")
    ]  # fmt: skip
    odd += [  # the other routes served off the LLM ones
        Case(f"{m} {p[:60]!r}", m, p)
        for m in ("GET", "HEAD", "POST")
        for p in (b"/v1/models?limit=%00&after=x", b"/models?" + b"a" * 20_000, b"/metrics?%zz",
                  b"/healthz?x=1&x=2", b"/health/%00", b"/v1/feedback?x=%FF")
    ]  # fmt: skip
    for label, value in (("no key", b""), ("a wrong key", b"Bearer nope"),
                         ("a non-ASCII key", "Bearer é✓".encode()), ("a NUL", b"Bearer a%00"),
                         ("a 16k key", b"Bearer " + b"k" * 16_000)):  # fmt: skip
        cases = [Case(f"{label} GET /admin/keys", "GET", b"/admin/keys", None,
                      {"authorization": value})]  # fmt: skip
        cases.append(Case(f"{label} topup", "POST", b"/admin/credits/alice/topup",
                          encode({"amount": "5"}), {"authorization": value}))  # fmt: skip
        odd += cases
    run(agw, odd, errors_logged)


# -- the dashboard ------------------------------------------------------------------------------

UI_QUERIES: tuple[bytes, ...] = (
    b"since=9999-99-99", b"until=NaN", b"since=0000-01-01", b"until=9999-12-31",
    b"since=9999-12-31&until=9999-12-31", b"since=1970-01-01&until=9999-12-30",
    b"since=2026-01-01&until=2025-01-01", b"since=%00", b"until=" + b"2" * 5000,
    b"by=garbage", b"by=%00", b"by=day", b"by=tag", b"by=", b"team=%00", b"team=" + b"t" * 8000,
    b"model=%F0%9F%98%80", b"tag=", b"tag=env", b"tag==", b"tag=env=test=x", b"tag=%00=%00",
    b"since=2026-01-01&since=2027-01-01", b"\xff\xfe=1", b"since=\xff", b"%", b"%zz=%zz",
    b"&&&", b"by=team&by=model&by=%ED%A0%80",
)  # fmt: skip


def ui_cases() -> list[Case]:
    cases = [Case(f"GET /ui?{q[:60]!r}", "GET", b"/ui?" + q, html=True) for q in UI_QUERIES]
    paths = (b"/ui/static/%00", b"/ui/static/../__init__.py", b"/ui/static/" + b"x" * 6000,
             b"/ui/%FF", b"/ui/\xff", b"/ui//", b"/ui/login?next=%00", b"/ui/logout")  # fmt: skip
    cases += [Case(f"{m} {p[:40]!r}", m, p, html=True) for p in paths for m in ("GET", "POST")]
    forms = (b"", b"key=", b"key=%00", b"key=\xff\xfe", b"key=" + b"k" * 100_000, b"%zz",
             b"key=a&key=b", b"{}", b"key=" + MASTER_KEY.encode() + b"%00")  # fmt: skip
    form = {"content-type": b"application/x-www-form-urlencoded", "authorization": b""}
    cases += [Case(f"login form {f[:40]!r}", "POST", b"/ui/login", f, form, html=True)
              for f in forms]  # fmt: skip
    cookies = (b"tokenomy_ui=", b"tokenomy_ui=1.x", b"tokenomy_ui=99999999999999999999999.x",
               b"tokenomy_ui=-1.%00", "tokenomy_ui=1.é".encode(), b"tokenomy_ui=\xff",
               b"tokenomy_ui=" + b"9" * 5000 + b".x", b";;;=;", b"a=\"")  # fmt: skip
    cases += [Case(f"cookie {c[:40]!r}", "GET", b"/ui", None,
                   {"cookie": c, "authorization": b""}, html=True) for c in cookies]  # fmt: skip
    return cases


def test_odd_dashboard_queries_are_answered_as_pages(agw: GW, errors_logged: Errors) -> None:
    run(agw, ui_cases(), errors_logged)


# -- bytes an HTTP server may let through ---------------------------------------------------------


async def call(app: TokenomyApp, case: Case) -> Answer:
    """``case`` straight to the ASGI app, as a server that passes any byte would: the
    path decoded (UTF-8, undecodable bytes as replacement characters), the query as sent."""
    raw_path, _, query = case.target.partition(b"?")
    headers = {**ADMIN, "content-type": "application/json"} | case.headers
    scope = {
        "type": "http", "method": case.method, "scheme": "http", "http_version": "1.1",
        "path": unquote(raw_path.decode("utf-8", "replace")), "raw_path": raw_path,
        "query_string": query, "root_path": "", "client": ("127.0.0.1", 1),
        "headers": [(k.encode(), v if isinstance(v, bytes) else v.encode())
                    for k, v in headers.items() if v != ""],
    }  # fmt: skip
    sent: list[dict[str, Any]] = []
    body = [{"type": "http.request", "body": case.body or b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        return body.pop() if body else {"type": "http.disconnect"}

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    await app(scope, receive, send)
    start = sent[0]
    hdrs = {k.decode().lower(): v.decode("latin-1") for k, v in start["headers"]}
    return Answer(start["status"], hdrs, b"".join(m.get("body", b"") for m in sent[1:]))


async def test_bytes_past_ascii_in_a_target_reach_the_app(
    tmp_path: Path, fake: Fake, fake_llamacpp: Fake, errors_logged: Errors
) -> None:
    cases = [*query_cases(), *period_cases(), *path_cases("k"), *ui_cases()]
    cases = [c for c in cases if not c.target.isascii()]
    app = create_app(gateway_settings(str(tmp_path / "l.db"), fake, fake_llamacpp))
    await app.startup()
    try:
        failures = []
        for case in cases:
            r = await call(app, case)
            failures += [f"{case.label}: {p} [{r.status} {r.body[:150]!r}]"
                         for p in problems(case, r)]  # fmt: skip
    finally:
        await app.shutdown()
    assert cases and not failures, "\n".join(failures[:60])
    assert not errors_logged.seen, "\n".join(errors_logged.seen[:20])


# -- the defects found, each on its own ---------------------------------------------------------


def test_a_statement_of_the_last_day_a_calendar_has_is_a_400(agw: GW) -> None:
    """9999-12-31 ends on a day no datetime holds: that was an OverflowError, a 500."""
    r = send(agw, Case("last day", "GET", b"/admin/statements/alice/9999-12-31"))
    assert r.status == 400, r.body
    assert json.loads(r.body)["error"]["param"] == "period"


async def test_a_dashboard_query_string_that_is_no_utf8_is_a_page(
    tmp_path: Path, fake: Fake, fake_llamacpp: Fake
) -> None:
    """A server may pass such bytes on (uvicorn does not): that was a UnicodeDecodeError."""
    app = create_app(gateway_settings(str(tmp_path / "l.db"), fake, fake_llamacpp))
    await app.startup()
    try:
        r = await call(app, Case("ui", "GET", b"/ui?since=\xff&team=\xc3", html=True))
    finally:
        await app.shutdown()
    assert r.status == 200 and r.headers["content-type"].startswith("text/html"), r.body[:300]
    assert b"is not a date" in r.body


@pytest.mark.postgres
def test_a_nul_in_any_admin_name_or_field_is_answered_on_postgres(
    pg_schema_url: str, fake: Fake, fake_llamacpp: Fake, errors_logged: Errors
) -> None:
    """PostgreSQL's text cannot hold a NUL: wherever an admin call puts one (a path
    parameter, a string field, a key of an object), it is refused or stored, never a 500."""
    settings = gateway_settings(pg_schema_url, fake, fake_llamacpp)
    for pgw in start_gateway(settings, fake):
        cases = [c for c in path_cases(pgw.key_id) if b"%00" in c.target]
        for method, path, body in seeds(pgw.key_id):
            for p, value in walk(body):
                if isinstance(value, str):
                    new = encode(replaced(body, p, value + "\x00"))
                    cases.append(
                        Case(f"{method} {path}{name(p)} + NUL", method, path.encode(), new)
                    )
            cases.append(Case(f"{method} {path} + a NUL key", method, path.encode(),
                              encode({**body, "k\x00": 1})))  # fmt: skip
        run(pgw, cases, errors_logged, check_state=False)
