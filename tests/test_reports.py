"""Report arithmetic against the ledger, on SQLite and PostgreSQL (fixture ``store``).

Every expectation is recomputed here from the records themselves, by a plain
loop with `Decimal`, and compared exactly with what the reports read back
through the daily rollups and the partial-day rows.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from tokenomy.ledger import SQLStore, Store, migrations, open_store
from tokenomy.ledger import rollups as rollup_mod
from tokenomy.ledger.base import REQUEST_COLUMNS, record_to_row
from tokenomy.records import UsageRecord
from tokenomy.reports import Filters, Totals, build_report, scan, to_csv, to_json, top_requests
from tokenomy.usage import Usage

DAY = 86400
T0 = 1_793_491_200  # 2026-11-01 00:00:00 UTC


def day_ts(day: int, hour: float = 0.0) -> float:
    return T0 + day * DAY + hour * 3600


def make_records() -> list[UsageRecord]:
    """Four days of traffic over every dimension, with awkward money."""
    teams = ["search", "ads", None]
    models = [("gpt-4o", "openai"), ("claude-sonnet-4", "anthropic"), ("llama-3-8b", "vllm")]
    out: list[UsageRecord] = []
    costs = [Decimal("0.0000123456789"), Decimal("1.5"), Decimal("0.33333333333333333333"),
             Decimal("123456.0000000000001"), Decimal("0.000000000001")]  # fmt: skip
    i = 0
    for day, hour in itertools.product(range(4), (0.0, 5.5, 11.25, 23.999)):
        for t_i, (model, provider) in itertools.product(range(3), models):
            i += 1
            team = teams[t_i]
            tags = {"env": "prod" if i % 2 else "dev"}
            if i % 3 == 0:
                tags["route"] = "summarise"
            if i % 5 == 0:
                tags = {}
            if i % 17 == 0:
                tags["route"] = ""  # an empty route tag: the endpoint is the route
            unpriced = model == "llama-3-8b" and i % 2 == 0
            refused = i % 11 == 0  # failed before any token was counted
            usage = Usage() if refused else Usage(
                input_tokens=1000 + i, output_tokens=50 + i, cache_read_tokens=(i * 37) % 900,
                cache_write_tokens=i % 7, cache_write_1h_tokens=i % 3, reasoning_tokens=i % 5)  # fmt: skip
            decisions: dict[str, Any] = {}
            if i % 4 == 0:
                decisions["cache"] = {"hit": True, "saved_usd": f"0.{i:04d}1"}
            if i % 6 == 0:
                decisions["route"] = {"from": "gpt-4o", "saved_usd": Decimal(f"{i}.25")}
            if i % 9 == 0:
                decisions["compress"] = {"ratio": 0.5, "saved_usd": "not a number"}
            out.append(
                UsageRecord(
                    request_id=f"r{i:04d}",
                    ts=day_ts(day, hour),
                    api="openai",
                    endpoint="/v1/chat/completions" if i % 4 else "/v1/messages",
                    key_id=f"tk-{t_i}{i % 2}",
                    org="acme" if t_i < 2 else None,
                    team=team,
                    user=f"user{i % 3}" if i % 7 else None,
                    tags=tags,
                    requested_model=model,
                    served_model=None if refused else model,
                    provider=provider,
                    usage=usage,
                    cost_usd=None if (unpriced or refused) else costs[i % len(costs)],
                    price_unknown=unpriced and not refused,
                    status=429 if refused else (500 if i % 13 == 0 else 200),
                    decisions=decisions,
                )
            )
    return out


RECORDS = make_records()


# -- the reference: a plain loop over the records ----------------------------------------------


def value(r: UsageRecord, dim: str) -> list[str | None]:
    if dim == "tag":
        return [f"{k}={v}" for k, v in sorted(r.tags.items())] or [None]
    if dim.startswith("tag:"):
        return [r.tags.get(dim[4:])]
    return [
        {
            "org": r.org,
            "team": r.team,
            "user": r.user,
            "key": r.key_id,
            "model": r.served_model or r.requested_model,
            "provider": r.provider,
            "endpoint": r.endpoint,
            "route": r.tags.get("route") or r.endpoint,
            "day": datetime.fromtimestamp(r.ts, UTC).strftime("%Y-%m-%d"),
        }[dim]
    ]


def unpriced(r: UsageRecord) -> bool:
    return r.cost_usd is None and (
        r.price_unknown or r.usage.input_tokens + r.usage.output_tokens > 0
    )


def expected(
    records: Iterable[UsageRecord],
    dims: tuple[str, ...],
    keep: Callable[[UsageRecord], bool] = lambda r: True,
) -> dict[tuple[str | None, ...], dict[str, Any]]:
    out: dict[tuple[str | None, ...], dict[str, Any]] = {}
    for r in records:
        if not keep(r):
            continue
        for key in itertools.product(*(value(r, d) for d in dims)):
            e = out.setdefault(key, {"requests": 0, "errors": 0, "input_tokens": 0,
                                     "output_tokens": 0, "cache_read_tokens": 0,
                                     "reasoning_tokens": 0, "unpriced_requests": 0,
                                     "unpriced_input_tokens": 0, "cost_usd": Decimal(0),
                                     "savings": {}})  # fmt: skip
            u = r.usage
            e["requests"] += 1
            e["errors"] += r.status >= 400
            e["input_tokens"] += u.input_tokens
            e["output_tokens"] += u.output_tokens
            e["cache_read_tokens"] += u.cache_read_tokens
            e["reasoning_tokens"] += u.reasoning_tokens
            if unpriced(r):
                e["unpriced_requests"] += 1
                e["unpriced_input_tokens"] += u.input_tokens
            if r.cost_usd is not None:
                e["cost_usd"] += r.cost_usd
            for lever, d in r.decisions.items():
                try:
                    saved = Decimal(str(d["saved_usd"]))
                except Exception:
                    continue
                e["savings"][lever] = e["savings"].get(lever, Decimal(0)) + saved
    return out


def got(t: Totals) -> dict[str, Any]:
    return {
        "requests": t.requests,
        "errors": t.errors,
        "input_tokens": t.input_tokens,
        "output_tokens": t.output_tokens,
        "cache_read_tokens": t.cache_read_tokens,
        "reasoning_tokens": t.reasoning_tokens,
        "unpriced_requests": t.unpriced_requests,
        "unpriced_input_tokens": t.unpriced_input_tokens,
        "cost_usd": t.cost_usd,
        "savings": t.savings,
    }


@pytest.fixture
def filled(store: Store) -> Store:
    assert store.insert_records(RECORDS) == len(RECORDS)
    return store


GROUPINGS = [
    ("team", "model"),
    ("org",),
    ("user",),
    ("key",),
    ("provider",),
    ("endpoint",),
    ("route",),
    ("day",),
    ("tag",),
    ("tag:env",),
    ("day", "team", "tag:env"),
    (),
]


@pytest.mark.parametrize("dims", GROUPINGS, ids=lambda d: ",".join(d) or "total")
def test_every_group_sums_exactly(filled: Store, dims: tuple[str, ...]) -> None:
    want = expected(RECORDS, dims)
    groups = scan(filled).group(dims)  # every dimension: the wide rollup
    assert {g.key: got(g.totals) for g in groups} == want
    narrow = scan(filled, dims=dims)  # only these: the coarse rollup when it has them
    assert {g.key: got(g.totals) for g in narrow.group(dims)} == want
    # Money is exact, down to the last digit of the largest and the smallest cost.
    if dims == ():
        assert groups[0].totals.cost_usd == sum(
            (r.cost_usd for r in RECORDS if r.cost_usd is not None), Decimal(0)
        )


def test_groups_sorted_by_cost(filled: Store) -> None:
    groups = scan(filled).group(("team", "model"))
    costs = [g.totals.cost_usd for g in groups]
    assert costs == sorted(costs, reverse=True)
    days = scan(filled).group(("day",), sort="key")
    assert [g.key[0] for g in days] == ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]


RANGES = [
    (None, None),
    (day_ts(1), day_ts(3)),  # whole days: rollups only
    (day_ts(0, 5.5), day_ts(2, 11.25)),  # partial days at both ends
    (day_ts(1, 5.5), day_ts(1, 23)),  # inside one day: rows only
    (day_ts(0, 11.25), None),
    (None, day_ts(2, 0.0001)),
    (day_ts(3, 23.999), day_ts(3, 23.9991)),
    (day_ts(2), day_ts(2)),  # empty
]


@pytest.mark.parametrize("since,until", RANGES)
def test_time_ranges_rollups_and_rows_agree(
    filled: Store, since: float | None, until: float | None
) -> None:
    def inside(r: UsageRecord) -> bool:
        return (since is None or r.ts >= since) and (until is None or r.ts < until)

    for dims in [("team", "model"), ("day", "tag"), ("route", "provider"), ()]:
        want = expected(RECORDS, dims, inside)
        for kw in (
            {},
            {"dims": dims},
            {"use_rollups": False},
            {"dims": dims, "use_rollups": False},
        ):
            groups = scan(filled, since=since, until=until, **kw).group(dims)  # type: ignore[arg-type]
            assert {g.key: got(g.totals) for g in groups} == want, kw


def test_filters(filled: Store) -> None:
    f = Filters(teams=("search", "ads"), models=("gpt-4o", "llama-3-8b"), tags=(("env", "prod"),))

    def keep(r: UsageRecord) -> bool:
        return (
            r.team in ("search", "ads")
            and (r.served_model or r.requested_model) in ("gpt-4o", "llama-3-8b")
            and r.tags.get("env") == "prod"
        )

    for since, until in [(None, None), (day_ts(0, 6), day_ts(3, 1))]:

        def inside(
            r: UsageRecord, since: float | None = since, until: float | None = until
        ) -> bool:
            return keep(r) and (since is None or r.ts >= since) and (until is None or r.ts < until)

        groups = scan(filled, since=since, until=until, filters=f).group(("user", "endpoint"))
        assert {g.key: got(g.totals) for g in groups} == expected(
            RECORDS, ("user", "endpoint"), inside
        )
    coarse = Filters(teams=("search",), models=("gpt-4o", "claude-sonnet-4"), providers=("openai",))
    for dims, since in itertools.product([("route", "day"), ()], [None, day_ts(0, 3)]):

        def matches(r: UsageRecord, since: float | None = since) -> bool:
            return (
                r.team == "search"
                and r.requested_model in ("gpt-4o", "claude-sonnet-4")
                and r.provider == "openai"
                and (since is None or r.ts >= since)
            )

        groups = scan(filled, filters=coarse, dims=dims, since=since).group(dims)
        assert {g.key: got(g.totals) for g in groups} == expected(RECORDS, dims, matches)
    other = Filters(orgs=("acme",), users=("user1",), keys=("tk-00",), providers=("openai",),
                    endpoints=("/v1/chat/completions",))  # fmt: skip
    total = scan(filled, filters=other).total()
    assert got(total) == expected(
        RECORDS,
        (),
        lambda r: r.org == "acme" and r.user == "user1" and r.key_id == "tk-00"
        and r.provider == "openai" and r.endpoint == "/v1/chat/completions",
    )[()]  # fmt: skip


def test_unknown_prices_are_counted_apart_never_as_zero(store: Store) -> None:
    store.insert_records(
        [
            UsageRecord("a", ts=T0, requested_model="m1", served_model="m1",
                        usage=Usage(100, 10), cost_usd=Decimal("0.5")),
            UsageRecord("b", ts=T0 + 1, requested_model="mystery", served_model="mystery",
                        provider="openai", usage=Usage(1000, 100), price_unknown=True),
            UsageRecord("c", ts=T0 + 2, requested_model="mystery", served_model="mystery",
                        provider="openai", usage=Usage(3000, 300), price_unknown=True),
            UsageRecord("d", ts=T0 + 3, requested_model="m1", status=401),  # refused: no tokens
        ]
    )  # fmt: skip
    rep = build_report(store, group_by=("model",))
    by = {g.key: g.totals for g in rep.groups}
    assert by[("mystery",)].cost_usd == 0 and by[("mystery",)].priced_requests == 0
    assert by[("mystery",)].unpriced_requests == 2
    assert by[("mystery",)].cost_per_1k_requests is None  # unknown, not $0 per 1k
    assert by[("m1",)].priced_requests == 2 and by[("m1",)].unpriced_requests == 0
    assert by[("m1",)].cost_per_1k_requests == Decimal("0.5") * 1000 / 2
    [u] = rep.unpriced
    assert u.key == ("mystery", "openai")
    t = u.totals
    assert (t.unpriced_requests, t.unpriced_input_tokens, t.unpriced_output_tokens) == (
        2,
        4000,
        400,
    )
    assert rep.total.cost_usd == Decimal("0.5") and rep.total.unpriced_requests == 2
    # In CSV and JSON the cost of a group with no known price is empty / null, never 0.
    row = next(r for r in to_json(rep)["groups"] if r["model"] == "mystery")
    assert row["cost_usd"] is None and row["unpriced_requests"] == 2
    line = next(ln for ln in to_csv(rep).splitlines() if ln.startswith("mystery,"))
    assert line.split(",")[7] == ""
    # A route whose requests all have unknown prices: its cost too (it was 0).
    rep = build_report(store, group_by=("model",), filters=Filters(models=("mystery",)))
    [route] = to_json(rep)["routes"]
    assert route["cost_usd"] is None and route["cost_per_1k_requests"] is None
    assert to_csv(rep, "routes").splitlines()[1].split(",")[1:5] == ["2", "0", "", ""]


def test_cache_share_and_cost_per_1k(filled: Store) -> None:
    rep = build_report(filled, group_by=("team",))
    inp = sum(r.usage.input_tokens for r in RECORDS)
    cached = sum(r.usage.cache_read_tokens for r in RECORDS)
    assert rep.total.cache_share == Decimal(cached) / Decimal(inp)
    for g in rep.routes:
        rs = [r for r in RECORDS if (r.tags.get("route") or r.endpoint) == g.key[0]]
        cost = sum((r.cost_usd for r in rs if r.cost_usd is not None), Decimal(0))
        priced = sum(1 for r in rs if not unpriced(r))
        assert g.totals.cost_per_1k_requests == cost * 1000 / Decimal(priced)
        share = Decimal(sum(r.usage.cache_read_tokens for r in rs)) / Decimal(
            sum(r.usage.input_tokens for r in rs)
        )
        assert g.totals.cache_share == share
    assert {g.key[0] for g in rep.routes} == {"summarise", "/v1/chat/completions", "/v1/messages"}


def test_savings_by_lever(filled: Store) -> None:
    rep = build_report(filled, group_by=("team",))
    want = expected(RECORDS, ())[()]["savings"]
    assert set(want) == {"cache", "route"}  # "not a number" is ignored, not an error
    assert dict(rep.levers) == want
    assert [lever for lever, _ in rep.levers] == sorted(want, key=lambda k: -want[k])
    assert rep.total.saved_usd == sum(want.values(), Decimal(0))


def test_most_expensive_requests(filled: Store) -> None:
    priced = [r for r in RECORDS if r.cost_usd is not None]
    want = sorted(priced, key=lambda r: (-(r.cost_usd or 0), r.ts, r.request_id))
    for matching in (None, 10, 10**6):
        top = top_requests(filled, limit=7, matching=matching)
        assert [r.request_id for r in top] == [r.request_id for r in want[:7]]
    f = Filters(teams=("ads",), tags=(("env", "dev"),))
    since, until = day_ts(1), day_ts(3, 6)
    top = top_requests(filled, since=since, until=until, filters=f, limit=5)
    want = [
        r for r in want
        if r.team == "ads" and r.tags.get("env") == "dev" and since <= r.ts < until
    ][:5]  # fmt: skip
    assert [r.request_id for r in top] == [r.request_id for r in want]
    assert top and all(r.cost_usd is not None for r in top)


def test_repeated_inserts_are_counted_once(store: Store) -> None:
    first, rest = RECORDS[:40], RECORDS[40:]
    assert store.insert_records(first) == 40
    # A retried batch (every id already there), and one with an id twice in it.
    assert store.insert_records(first) == 0
    assert store.insert_records([*rest[:5], rest[0], *first[:3], *rest[5:]]) == len(rest)
    dims = ("team", "model", "day")
    assert {g.key: got(g.totals) for g in scan(store).group(dims)} == expected(RECORDS, dims)
    assert store.count_records() == len(RECORDS)


def test_backfill_from_an_older_schema(new_db_url: Callable[[], str]) -> None:
    names = migrations.names()
    before = names[names.index("m010_rollups") - 1]
    with open_store(new_db_url()) as s:
        s.migrate(upto=before)
        assert isinstance(s, SQLStore)
        # Rows written before the rollups existed, as an older version wrote them
        # (without the columns later migrations added).
        cols = REQUEST_COLUMNS[: REQUEST_COLUMNS.index("audio_input_tokens")]
        rows = [record_to_row(r, s.dialect)[: len(cols)] for r in RECORDS]
        sql = f"INSERT INTO requests ({', '.join(cols)}) VALUES ({s._values(cols)})"
        s._write(lambda cur: cur.executemany(sql, rows))
        assert s.migrate() == names[names.index("m010_rollups") :]
        for dims in [("team", "model", "day"), ("tag",), ("route", "user"), ("route", "day")]:
            for sc in (scan(s), scan(s, dims=dims)):
                assert {g.key: got(g.totals) for g in sc.group(dims)} == expected(RECORDS, dims)
        # And new rows land on the backfilled rollups.
        extra = UsageRecord("late", ts=day_ts(2, 3), team="ads", requested_model="gpt-4o",
                            served_model="gpt-4o", usage=Usage(10, 1), cost_usd=Decimal("2"))  # fmt: skip
        s.insert_records([extra])
        dims = ("team", "day")
        assert {g.key: got(g.totals) for g in scan(s).group(dims)} == expected(
            [*RECORDS, extra], dims
        )


def test_rebuild_matches_maintained_rollups(filled: Store) -> None:
    assert isinstance(filled, SQLStore)
    wide, coarse = ("day", "team", "model", "tag", "key"), ("day", "org", "route", "provider")
    before = [scan(filled).group(wide), scan(filled, dims=coarse).group(coarse)]
    filled._write(lambda cur: rollup_mod.rebuild(cur, filled.dialect))
    assert [scan(filled).group(wide), scan(filled, dims=coarse).group(coarse)] == before


def test_unknown_dimension(filled: Store) -> None:
    with pytest.raises(ValueError, match="cannot group by 'colour'"):
        build_report(filled, group_by=("colour",))
    with pytest.raises(ValueError, match="did not read"):
        scan(filled, dims=("team",)).group(("user",))


def test_csv_never_holds_a_formula(store: Store) -> None:
    # Teams, users, keys, tags and model names are the clients' own text: a
    # spreadsheet must not run them. Commas, quotes and newlines stay one cell.
    hostile = ['=HYPERLINK("http://x.test","y")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)",
               "\t=1", "\r=1", 'a,b "c"\nd\re']  # fmt: skip
    store.insert_records(
        [
            UsageRecord(f"h{i}", ts=T0 + i, team=v, user=v, key_id=v, tags={"k": v, "route": v},
                        requested_model=v, served_model=v, provider="openai", usage=Usage(10, 1),
                        cost_usd=Decimal("0.25"), decisions={"route": {"saved_usd": "-0.5"}})
            for i, v in enumerate(hostile)
        ]
    )  # fmt: skip
    rep = build_report(store, group_by=("team", "user", "key", "tag:k", "model", "route"))
    groups = list(csv.reader(io.StringIO(to_csv(rep, "groups"))))
    assert groups[0][:7] == ["team", "user", "key", "tag:k", "model", "route", "requests"]
    want = {v if v == hostile[-1] else "'" + v for v in hostile}
    assert {row[0] for row in groups[1:]} == want
    assert all(set(row[:6]) == {row[0]} for row in groups[1:])
    assert {row[groups[0].index("saved_usd")] for row in groups[1:]} == {"-0.5"}  # a number
    top = list(csv.reader(io.StringIO(to_csv(rep, "top"))))
    assert {row[2] for row in top[1:]} == want and {row[6] for row in top[1:]} == want
    assert [row[1] for row in csv.reader(io.StringIO(to_csv(rep, "savings")))] == [
        "saved_usd", "-3.5"]  # fmt: skip
    for section in ("routes", "unpriced"):
        for row in csv.reader(io.StringIO(to_csv(rep, section))):
            assert not row[0].startswith(("=", "+", "-", "@", "\t", "\r"))
    # JSON is data, not a sheet: the values stay as they are.
    assert {g["team"] for g in to_json(rep)["groups"]} == set(hostile)


def test_tag_filters_on_any_key(store: Store) -> None:
    # Tag names come from clients (metadata): one with a quote, a backslash or a
    # control character matched nothing on SQLite, where PostgreSQL found it.
    names = ['a"b', "a\\b", "tab\there", "two\nlines", "é", "a.b", "x[0]"]
    recs = [
        UsageRecord(f"t{i}-{d}", ts=day_ts(d, 12), tags={name: f'v"{i}\\', "n": str(i)},
                    requested_model="m", usage=Usage(10, 1), cost_usd=Decimal("0.5"))
        for i, name in enumerate(names) for d in range(3)
    ]  # fmt: skip
    store.insert_records(recs)
    for i, name in enumerate(names):
        f = Filters(tags=((name, f'v"{i}\\'),))
        for since, kw in [(None, {}), (day_ts(0, 6), {}), (None, {"use_rollups": False})]:
            total = scan(store, since=since, filters=f, **kw).total()  # type: ignore[arg-type]
            assert total.requests == 3, (name, since, kw)  # rollup, rows and both
        top = top_requests(store, filters=f, limit=5)
        assert {r.request_id for r in top} == {f"t{i}-{d}" for d in range(3)}, name
        assert scan(store, filters=Filters(tags=((name, "other"),))).total().requests == 0


def test_savings_read_alike_from_rollups_and_rows(store: Store) -> None:
    # What counts as a lever's saving must not depend on whether its day is
    # whole (rollups) or partial (rows), nor on the engine: a boolean, "1_000",
    # other scripts' digits and infinities are not amounts anywhere.
    amounts: list[Any] = [True, "1_000", "\u0661\u0662", "Infinity", " 2.5 ", 0.25, "1e-3",
                          Decimal("1E+2"), "-0.5"]  # fmt: skip
    store.insert_records(
        [
            UsageRecord(f"s{i}", ts=day_ts(1, 12), requested_model="m", usage=Usage(1, 1),
                        cost_usd=Decimal("0.1"), decisions={"cache": {"saved_usd": amount}})
            for i, amount in enumerate(amounts)
        ]
    )  # fmt: skip
    want = {"cache": Decimal("102.251")}
    for since, until, kw in [(None, None, {}), (day_ts(1), day_ts(2), {}),
                             (day_ts(1, 6), day_ts(1, 18), {}),
                             (None, None, {"use_rollups": False})]:  # fmt: skip
        sc = scan(store, since=since, until=until, **kw)  # type: ignore[arg-type]
        assert sc.total().savings == want, (since, until, kw)
    assert isinstance(store, SQLStore)
    store._write(lambda cur: rollup_mod.rebuild(cur, store.dialect))  # the m010 backfill
    assert scan(store).total().savings == want


def test_saved_usd_adds_the_levers_exactly() -> None:
    t = Totals(savings={"route": Decimal("123456789012345678.25"), "cache": Decimal("1E-13")})
    assert t.saved_usd == Decimal("123456789012345678.2500000000001")


def test_an_empty_served_model_is_the_requested_one_everywhere(store: Store) -> None:
    # The rollups take `served_model or requested_model`; the row sums took
    # coalesce(), so a served model of "" was "m" on whole days and none on partial ones.
    recs = [UsageRecord(f"e{d}", ts=day_ts(d, 12), requested_model="m", served_model="",
                        usage=Usage(10, 1), cost_usd=Decimal("0.5")) for d in range(3)]  # fmt: skip
    store.insert_records(recs)
    want = {("m",): expected(recs, ())[()]}
    for since, kw in [(None, {}), (day_ts(0, 6), {}), (None, {"use_rollups": False})]:
        sc = scan(store, since=since, dims=("model",), **kw)  # type: ignore[arg-type]
        assert {g.key: got(g.totals) for g in sc.group(("model",))} == want, (since, kw)
        only = scan(store, since=since, filters=Filters(models=("m",)), **kw)  # type: ignore[arg-type]
        assert only.total().requests == 3, (since, kw)
    assert isinstance(store, SQLStore)
    store._write(lambda cur: rollup_mod.rebuild(cur, store.dialect))  # the m010 backfill
    assert {g.key: got(g.totals) for g in scan(store, dims=("model",)).group(("model",))} == want
