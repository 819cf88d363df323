"""The ledger: the same tests on SQLite and PostgreSQL (fixture ``store``), then
the few that are about one engine."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tokenomy.errors import ConfigError, InvalidRequest, Overloaded
from tokenomy.ledger import (
    Deferred,
    GroupCommitWriter,
    KeyRecord,
    SQLiteStore,
    SQLStore,
    Store,
    load_fallback,
    migrations,
    open_store,
    sqlite_path,
)
from tokenomy.ledger.base import REQUEST_COLUMNS, Owner, record_to_row
from tokenomy.ledger.migrations import MIGRATIONS, Dialect, Migration
from tokenomy.records import UsageRecord
from tokenomy.usage import Usage

TOO_BIG = 2**70  # fits no BIGINT column: a record that cannot be inserted


def rec(request_id: str, **kw: Any) -> UsageRecord:
    kw.setdefault("ts", 1_700_000_000.0)
    kw.setdefault("requested_model", "gpt-4o-mini")
    return UsageRecord(request_id=request_id, **kw)


def full_record(request_id: str = "req-full") -> UsageRecord:
    return UsageRecord(
        request_id=request_id,
        ts=1_712_345_678.123456,
        api="anthropic",
        endpoint="/v1/messages",
        key_id="tk-0123abcd",
        org="acme",
        team="search",
        user="ada@example.com",
        tags={"env": "prod", "feature": "résumé ✓"},
        requested_model="claude-sonnet",
        served_model="claude-sonnet-4-20250514",
        provider="anthropic",
        deployment="anthropic-main",
        stream=True,
        usage=Usage(
            input_tokens=12_345,
            output_tokens=678,
            cache_read_tokens=10_000,
            cache_write_tokens=1_000,
            cache_write_1h_tokens=200,
            reasoning_tokens=300,
            estimated=True,
            price_context=(("speed", "fast"),),
            audio_input_tokens=2_000,
            audio_output_tokens=150,
            web_search_requests=4,
        ),
        cost_usd=Decimal("0.0000123456789"),
        price_unknown=False,
        latency_ms=1234.5,
        ttft_ms=87.25,
        status=499,
        error_type="client_disconnected",
        decisions={"cache": {"hit": False}, "route": ["a", "b"], "n": 3, "none": None},
        upstream_request_id="req_011CUpstream",
        response_id="resp_68af0123abcd",
        upstream_error_code="overloaded",
    )


def before_m020(r: UsageRecord) -> UsageRecord:
    """``r`` as a row written before m020 reads back: no tier, no upstream code."""
    return replace(r, usage=replace(r.usage, price_context=()), upstream_error_code=None)


def migrate_over_old_rows(
    store: Store, migration: str, new_column: str, *old: UsageRecord
) -> list[str]:
    """Migrate a blank ``store`` to the schema just before ``migration``, write ``old``
    as rows of that schema (the ``requests`` columns before ``new_column``), then
    migrate to the latest; return the migrations that applied, ``migration`` first."""
    names = migrations.names()
    store.migrate(upto=names[names.index(migration) - 1])
    assert isinstance(store, SQLStore)
    cols = REQUEST_COLUMNS[: REQUEST_COLUMNS.index(new_column)]
    sql = store._sql(f"INSERT INTO requests ({', '.join(cols)}) VALUES ({store._values(cols)})")
    for r in old:
        row = record_to_row(r, store.dialect)[: len(cols)]
        store._write(lambda cur, row=row: cur.execute(sql, row))
    applied = store.migrate()
    assert applied[0] == migration
    return applied


def raw_cost(store: Store, request_id: str) -> Any:
    assert isinstance(store, SQLStore)
    sql = store._sql("SELECT cost_usd FROM requests WHERE request_id = ?")
    return store._read(lambda cur: cur.execute(sql, (request_id,)).fetchone())[0]


def gate(monkeypatch: pytest.MonkeyPatch, store: Store) -> tuple[threading.Event, threading.Event]:
    """Make the store's inserts wait for ``release``; ``entered`` is set on the first."""
    entered, release = threading.Event(), threading.Event()
    real = store.insert_records

    def gated(records: Any) -> int:
        entered.set()
        assert release.wait(30)
        return real(records)

    monkeypatch.setattr(store, "insert_records", gated)
    return entered, release


# -- records --------------------------------------------------------------------------------


def test_record_round_trips_every_field(store: Store) -> None:
    r = full_record()
    assert store.insert_records([r]) == 1
    got = store.get_record(r.request_id)
    assert got == r
    assert got is not None and str(got.cost_usd) == "0.0000123456789"


@pytest.mark.parametrize(
    "cost",
    ["0.0000123456789", "0", "0.10", "123456789.0123456789012345", "1E-12", "3.5E+3"],
)
def test_cost_is_exact(store: Store, cost: str) -> None:
    store.insert_records([rec("r", cost_usd=Decimal(cost))])
    got = store.get_record("r")
    assert got is not None and isinstance(got.cost_usd, Decimal)
    assert got.cost_usd == Decimal(cost)
    raw = raw_cost(store, "r")
    if isinstance(raw, str):  # SQLite: the exact decimal string, never an exponent
        assert raw == format(Decimal(cost), "f")
    else:
        assert raw == Decimal(cost)


def test_unknown_price_is_null_not_zero(store: Store) -> None:
    store.insert_records([rec("r", cost_usd=None, price_unknown=True)])
    got = store.get_record("r")
    assert got is not None and got.cost_usd is None and got.price_unknown is True
    assert raw_cost(store, "r") is None


def test_json_fields(store: Store) -> None:
    decisions = {"levers": [{"name": "cache", "saved_usd": Decimal("0.25")}], "ok": True}
    store.insert_records([rec("r", tags={"a": "ü", "b": ""}, decisions=decisions)])
    got = store.get_record("r")
    assert got is not None
    assert got.tags == {"a": "ü", "b": ""}
    # Decimal inside a decision is kept exactly, as a string.
    assert got.decisions == {"levers": [{"name": "cache", "saved_usd": "0.25"}], "ok": True}


def test_duplicate_request_id_is_skipped(store: Store) -> None:
    assert store.insert_records([rec("a"), rec("b")]) == 2
    assert store.insert_records([rec("a", status=500), rec("c")]) == 1
    assert store.count_records() == 3
    got = store.get_record("a")
    assert got is not None and got.status == 200


def test_list_records_newest_first(store: Store) -> None:
    store.insert_records([rec(f"r{i}", ts=1000.0 + i) for i in range(10)])
    assert [r.request_id for r in store.list_records(limit=3)] == ["r9", "r8", "r7"]
    assert [r.request_id for r in store.list_records(since=1007.0)] == ["r9", "r8", "r7"]
    assert store.get_record("missing") is None
    assert store.count_records() == 10


def test_iter_records_reads_everything_since_oldest_first_a_page_at_a_time(store: Store) -> None:
    # ties in ts across page boundaries: the (ts, id) keyset neither skips nor repeats
    recs = [rec(f"r{i:02}", ts=1000.0 + i // 3) for i in range(20)]
    store.insert_records(recs)
    reads: list[int] = []
    fetch = store._fetch  # type: ignore[attr-defined]

    def counted(sql: str, params: Any) -> list[Any]:
        rows: list[Any] = fetch(sql, params)
        reads.append(len(rows))
        return rows

    store._fetch = counted  # type: ignore[attr-defined]
    got = [r.request_id for r in store.iter_records(page=4)]
    assert got == [r.request_id for r in recs]
    assert reads == [4, 4, 4, 4, 4, 0]
    assert [r.request_id for r in store.iter_records(since=1005.0, page=2)] == [
        "r15", "r16", "r17", "r18", "r19"
    ]  # fmt: skip
    assert list(store.iter_records(since=2000.0)) == []


# -- migrations -----------------------------------------------------------------------------


def test_migration_names_are_ordered_and_unique() -> None:
    names = migrations.names()
    assert names == sorted(names) and len(set(names)) == len(names)
    assert all(re.fullmatch(r"m\d{3}_[a-z0-9_]+", n) for n in names)
    assert names[0] == "m001_initial"


def test_migrate_from_blank(db_url: str) -> None:
    with open_store(db_url) as s:
        assert s.migrate() == migrations.names()
        assert s.migrate() == []
        assert s.count_records() == 0 and s.list_keys() == []


def test_migrate_from_each_older_schema(new_db_url: Callable[[], str]) -> None:
    names = migrations.names()
    for i, name in enumerate(names):
        with open_store(new_db_url()) as s:
            assert s.migrate(upto=name) == names[: i + 1]
            assert s.migrate() == names[i + 1 :]
            assert s.migrate() == []
    with open_store(new_db_url()) as s, pytest.raises(ValueError):
        s.migrate(upto="m999_nope")


def test_audio_and_search_counts_from_the_previous_schema(
    new_db_url: Callable[[], str],
) -> None:
    """m013 adds the audio and web-search counts: rows written before it read back
    as text-only (0), and new rows keep them."""
    with open_store(new_db_url()) as s:
        migrate_over_old_rows(s, "m013_usage_extras", "audio_input_tokens", full_record("old"))
        got = s.get_record("old")
        assert got is not None
        assert (got.usage.audio_input_tokens, got.usage.audio_output_tokens,
                got.usage.web_search_requests) == (0, 0, 0)  # fmt: skip
        assert got.usage.input_tokens == full_record().usage.input_tokens
        s.insert_records([full_record()])
        assert s.get_record("req-full") == full_record()


def test_the_upstream_request_id_from_the_previous_schema(
    new_db_url: Callable[[], str],
) -> None:
    """m016 adds the upstream's id for its reply: rows written before it have none."""
    with open_store(new_db_url()) as s:
        migrate_over_old_rows(
            s, "m016_upstream_request_id", "upstream_request_id", full_record("old")
        )
        got = s.get_record("old")
        assert got == before_m020(
            replace(full_record("old"), upstream_request_id=None, response_id=None)
        )
        s.insert_records([full_record()])
        assert s.get_record("req-full") == full_record()


def test_which_rows_were_charged_from_the_previous_schema(
    new_db_url: Callable[[], str],
) -> None:
    """m017 marks each row charged to its request or not: of the rows written
    before it, a side row other than a cascade's draft (a judge's call, a failed
    attempt) was the gateway's own cost; every other row was charged."""

    def row(rid: str, route: dict[str, Any] | None) -> UsageRecord:
        return replace(full_record(rid), decisions={} if route is None else {"route": route})

    rows = {
        "req-a": row("req-a", None),
        "req-a.draft": row("req-a.draft", {"reason": "cascade", "parent": "req-a"}),
        "req-a.judge": row("req-a.judge", {"reason": "judge", "parent": "req-a"}),
        "req-a.attempt1": row("req-a.attempt1", {"reason": "fallback", "parent": "req-a"}),
        "req-b": row("req-b", {"reason": "fallback", "attempts": []}),
    }
    with open_store(new_db_url()) as s:
        migrate_over_old_rows(s, "m017_charged", "charged", *rows.values())
        got = {rid: s.get_record(rid) for rid in rows}
        assert {rid: rec.charged for rid, rec in got.items() if rec is not None} == {
            "req-a": True, "req-a.draft": True, "req-a.judge": False,
            "req-a.attempt1": False, "req-b": True,
        }  # fmt: skip
        s.insert_records([replace(full_record(), charged=False)])
        assert s.get_record("req-full") == replace(full_record(), charged=False)


def test_response_ids_and_their_owners_from_the_previous_schema(
    new_db_url: Callable[[], str],
) -> None:
    """m019 adds the id of the response a Responses request made, and reads who made
    one back by it: rows written before have none, so their responses have no owner."""
    with open_store(new_db_url()) as s:
        migrate_over_old_rows(s, "m019_response_ids", "response_id", full_record("old"))
        assert s.get_record("old") == before_m020(replace(full_record("old"), response_id=None))
        assert s.response_owners("resp_68af0123abcd") == []
        s.insert_records(
            [
                full_record(),
                replace(full_record("other"), key_id=None, org=None, team=None, response_id="x"),
            ]
        )
        assert s.get_record("req-full") == full_record()
        assert s.response_owners("resp_68af0123abcd") == [Owner("tk-0123abcd", "acme", "search")]
        assert s.response_owners("x") == [(None, None, None)]
        assert s.response_owners("resp_68af0123abc") == []  # no prefix match


def test_a_response_id_with_a_nul_has_no_owner(store: Store) -> None:
    """A client's ``previous_response_id`` may hold a NUL (JSON's ``\\u0000``), which
    PostgreSQL's text cannot: no row names such an id, and asking is no error."""
    store.insert_records([full_record()])
    assert store.response_owners("resp_68af0123abcd\x00") == []
    assert store.response_owners("resp_68af0123abcd") == [Owner("tk-0123abcd", "acme", "search")]


def test_a_response_is_kept_by_the_deployment_that_last_served_it(store: Store) -> None:
    """`Store.response_deployment`: where a stored response is read back (its latest
    row's deployment); None for an id no row names."""
    first = full_record()
    later = replace(full_record("req-later"), ts=first.ts + 1, deployment="openai-eu")
    store.insert_records([later, first])
    assert store.response_deployment("resp_68af0123abcd") == "openai-eu"
    assert store.response_deployment("resp_68af0123abc") is None
    assert store.response_deployment("resp_68af0123abcd\x00") is None


@pytest.mark.postgres
def test_a_nul_in_a_string_is_kept_as_a_replacement_character_in_postgres(
    pg_store: Store,
) -> None:
    """PostgreSQL's text and jsonb cannot hold a NUL: a record holding one (a client's
    tag, model name or user) is kept with U+FFFD in its place, never failed. A JSON
    escaped backslash before ``u0000`` is text, kept as it is."""
    rec = replace(full_record(), user="ada\x00", requested_model="m\x00",
                  tags={"k\x00": "a\x00b", "literal": "\\u0000"})  # fmt: skip
    assert pg_store.insert_records([rec]) == 1
    got = pg_store.get_record(rec.request_id)
    assert got is not None and got.user == "ada\ufffd" and got.requested_model == "m\ufffd"
    assert got.tags == {"k\ufffd": "a\ufffdb", "literal": "\\u0000"}
    assert pg_store.get_record("req-full\x00") is None


def test_tiers_and_upstream_error_codes_from_the_previous_schema(
    new_db_url: Callable[[], str],
) -> None:
    """m020 adds the tier a request was priced at and the upstream's code for its
    refusal: rows written before have neither (the standard tier), new rows keep
    both, and the tier is stored as a JSON object a query can read."""
    with open_store(new_db_url()) as s:
        applied = migrate_over_old_rows(
            s, "m020_tiers_and_error_codes", "price_context", full_record("old")
        )
        assert applied == ["m020_tiers_and_error_codes", "m021_response_items"]
        assert isinstance(s, SQLStore)
        assert s.get_record("old") == before_m020(full_record("old"))
        flex = replace(
            full_record("flex"),
            usage=replace(full_record().usage, price_context=(("service_tier", "flex"),)),
            upstream_error_code=None,
        )
        s.insert_records([full_record(), flex, before_m020(full_record("standard"))])
        assert s.get_record("req-full") == full_record()
        assert s.get_record("flex") == flex
        assert s.get_record("standard") == before_m020(full_record("standard"))
        tier = (
            "price_context->>'service_tier'"
            if s.dialect.name == "postgres"
            else "json_extract(price_context, '$.service_tier')"
        )
        query = f"SELECT request_id, {tier}, upstream_error_code FROM requests ORDER BY id"
        rows = s._read(lambda cur: cur.execute(query).fetchall())
        assert [tuple(r) for r in rows] == [
            ("old", None, None),
            ("req-full", None, "overloaded"),  # fast mode: {"speed": "fast"}
            ("flex", "flex", None),
            ("standard", None, None),
        ]


def test_response_items_and_their_owners_from_the_previous_schema(
    new_db_url: Callable[[], str],
) -> None:
    """m021 keeps the ids of the output items of each response, with the row that
    relayed it, and reads who made an item back by its id: responses relayed
    before have no items, so theirs have no owner."""
    names = migrations.names()
    before = names[names.index("m021_response_items") - 1]
    with open_store(new_db_url()) as s:
        s.migrate(upto=before)
        s.insert_records([full_record("old")])  # no item ids: the old schema takes it
        assert s.migrate() == ["m021_response_items"]
        assert s.item_owners(["msg_old"]) == {}
        mine = replace(full_record(), item_ids=("rs_1", "msg_1", "msg_1"))
        theirs = replace(
            full_record("other"), key_id="tk-other", team="ads", response_id="resp_2",
            item_ids=("fc_2",),
        )  # fmt: skip
        assert s.insert_records([mine, theirs]) == 2
        assert s.insert_records([mine, theirs]) == 0  # a retried batch adds nothing twice
        asked = ["msg_1", "fc_2", "rs_1", "msg_", "msg_1\x00", "msg_old"]
        assert s.item_owners(asked) == {
            "msg_1": [Owner("tk-0123abcd", "acme", "search")],
            "rs_1": [Owner("tk-0123abcd", "acme", "search")],
            "fc_2": [Owner("tk-other", "acme", "ads")],
        }
        assert s.get_record("req-full") == full_record()  # the items are not read back
        assert s.response_owners("resp_2") == [Owner("tk-other", "acme", "ads")]


def test_item_owners_of_more_ids_than_one_query_takes(store: Store) -> None:
    ids = tuple(f"msg_{n:04d}" for n in range(1200))
    store.insert_records([replace(full_record(), item_ids=ids)])
    got = store.item_owners([*reversed(ids), "msg_unknown"])
    assert set(got) == set(ids)
    assert all(owners == [Owner("tk-0123abcd", "acme", "search")] for owners in got.values())
    assert store.item_owners([]) == {}


def test_an_item_id_two_rows_name_has_both_owners(store: Store) -> None:
    """An upstream that reused an item id: both rows say whose it is (the gateway
    then lets neither tenant alone name it)."""
    store.insert_records(
        [
            replace(full_record("a"), item_ids=("msg_x",)),
            replace(full_record("b"), key_id=None, org=None, team=None, item_ids=("msg_x",)),
        ]
    )
    owners = store.item_owners(["msg_x"])["msg_x"]
    assert sorted(owners, key=str) == sorted(
        [Owner("tk-0123abcd", "acme", "search"), Owner(None, None, None)], key=str
    )


def test_the_item_lookup_uses_indexes(sqlite_url: str) -> None:
    """Whose an item is: a search of ``response_items`` by its key, then of the row
    by its request id; no table is scanned, however big the ledger grows."""
    with open_store(sqlite_url) as s:
        s.migrate()
        assert isinstance(s, SQLStore)
        sql = (
            "EXPLAIN QUERY PLAN SELECT DISTINCT i.item_id, r.key_id, r.org, r.team "
            "FROM response_items i JOIN requests r ON r.request_id = i.request_id "
            "WHERE i.item_id IN (?, ?)"
        )
        plan = [row[-1] for row in s._read(lambda cur: cur.execute(sql, ("a", "b")).fetchall())]
        assert not any(step.startswith("SCAN") for step in plan), plan
        assert plan[0].startswith("SEARCH i USING COVERING INDEX") and "(item_id=?)" in plan[0]
        assert plan[1].startswith("SEARCH r USING INDEX") and "(request_id=?)" in plan[1]


def test_fallback_file_keeps_the_item_ids(store: Store, tmp_path: Path) -> None:
    fallback = tmp_path / "failed.jsonl"
    w = GroupCommitWriter(store, fallback_path=str(fallback), inline=False)
    assert w.close(5)
    made = replace(full_record(), item_ids=("rs_1", "msg_1"))
    with pytest.raises(Overloaded):
        w.submit(made)
    assert load_fallback(str(fallback)) == [made]
    assert store.insert_records(load_fallback(str(fallback))) == 1
    assert set(store.item_owners(["rs_1", "msg_1"])) == {"rs_1", "msg_1"}


def test_fallback_file_lines_from_before_the_tier_and_code_still_replay(
    store: Store, tmp_path: Path
) -> None:
    """A fallback line written before records had a tier and an upstream code
    replays as a standard-tier row with no code."""
    fallback = tmp_path / "failed.jsonl"
    w = GroupCommitWriter(store, fallback_path=str(fallback), inline=False)
    assert w.close(5)
    with pytest.raises(Overloaded):
        w.submit(full_record())
    line = json.loads(fallback.read_text())
    assert line["record"]["usage"].pop("price_context") == [["speed", "fast"]]
    assert line["record"].pop("upstream_error_code") == "overloaded"
    fallback.write_text(json.dumps(line) + "\n")
    old = load_fallback(str(fallback))
    assert old == [before_m020(full_record())]
    assert store.insert_records(old) == 1
    assert store.get_record("req-full") == before_m020(full_record())


def test_fallback_file_keeps_the_audio_and_search_counts(store: Store, tmp_path: Path) -> None:
    fallback = tmp_path / "failed.jsonl"
    w = GroupCommitWriter(store, fallback_path=str(fallback), inline=False)
    assert w.close(5)
    with pytest.raises(Overloaded):
        w.submit(full_record())
    assert load_fallback(str(fallback)) == [full_record()]


def test_remigrating_keeps_data(store: Store) -> None:
    store.insert_records([full_record()])
    store.create_key(KeyRecord("tk-1", "h1", created_at=1.0))
    assert store.migrate() == []
    assert store.get_record("req-full") == full_record()
    assert store.get_key("tk-1") is not None


def test_next_migration_applies_on_a_populated_ledger(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.insert_records([full_record()])

    def m900_add_note(d: Dialect) -> list[str]:
        return ["ALTER TABLE requests ADD COLUMN note TEXT"]

    monkeypatch.setattr(
        migrations, "MIGRATIONS", [*MIGRATIONS, Migration("m900_add_note", m900_add_note)]
    )
    assert store.migrate() == ["m900_add_note"]
    assert store.migrate() == []
    assert store.get_record("req-full") == full_record()
    store.insert_records([rec("after")])
    assert store.count_records() == 2


def test_failed_migration_leaves_nothing(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def m900_broken(d: Dialect) -> list[str]:
        return ["CREATE TABLE half_done (x INTEGER)", "THIS IS NOT SQL"]

    monkeypatch.setattr(
        migrations, "MIGRATIONS", [*MIGRATIONS, Migration("m900_broken", m900_broken)]
    )
    with pytest.raises(Exception, match=r"(?i)syntax"):
        store.migrate()
    monkeypatch.setattr(migrations, "MIGRATIONS", list(MIGRATIONS))
    assert store.migrate() == []
    assert isinstance(store, SQLStore)
    applied = store._read(
        lambda cur: cur.execute(
            "SELECT count(*) FROM migrations WHERE name = 'm900_broken'"
        ).fetchone()
    )
    assert applied[0] == 0
    # The table created before the error was rolled back with it.
    store._write(lambda cur: cur.execute("CREATE TABLE half_done (x INTEGER)"))


def test_concurrent_migrate(db_url: str) -> None:
    stores = [open_store(db_url) for _ in range(4)]
    try:
        barrier = threading.Barrier(len(stores))

        def run(s: Store) -> list[str]:
            barrier.wait()
            return s.migrate()

        with ThreadPoolExecutor(len(stores)) as pool:
            results = list(pool.map(run, stores))
        assert sorted(n for r in results for n in r) == migrations.names()
    finally:
        for s in stores:
            s.close()


# -- group commit ---------------------------------------------------------------------------


@pytest.mark.parametrize("inline", [False, True], ids=["thread", "inline"])
async def test_many_tasks_share_commits(store: Store, tmp_path: Path, inline: bool) -> None:
    w = GroupCommitWriter(store, fallback_path=str(tmp_path / "failed.jsonl"), inline=inline)

    async def client(n: int) -> None:
        for i in range(20):
            r = rec(f"c{n}-{i}")
            await w.write(r)
            if i == 19:  # write() returns only once the record is committed
                assert await asyncio.to_thread(store.get_record, r.request_id) is not None

    await asyncio.gather(*(client(n) for n in range(100)))
    assert await asyncio.to_thread(w.close, 30)
    stats = w.stats()
    assert stats.committed == 2000 and stats.failed == 0
    assert stats.batches < 2000
    assert store.count_records() == 2000
    assert not (tmp_path / "failed.jsonl").exists()


def test_two_flushes_of_the_pending_records_never_drop_one(sqlite_url: str, tmp_path: Path) -> None:
    """close() flushes from a worker thread while the loop may flush too. Here the
    thread's flush comes between the loop's taking a batch and removing it from the
    pending list: each batch must be taken whole, or the records behind it vanish."""
    flushed: list[str] = []
    inside, release = threading.Event(), threading.Event()

    class Pending(list):  # type: ignore[type-arg]
        hooked = False

        def __getitem__(self, i: Any) -> Any:
            got = super().__getitem__(i)
            if isinstance(i, slice) and not Pending.hooked:
                Pending.hooked = True  # the loop's first take: the thread flushes now
                threading.Thread(target=w._flush_pending).start()
                inside.wait(0.3)  # the thread is flushing (or waits for this take)
            return got

    def flush(batch: list[Any]) -> None:
        flushed.extend(r.request_id for r, _ in batch)
        if threading.current_thread() is not threading.main_thread():
            inside.set()
            release.wait(5)

    with open_store(sqlite_url) as s:
        w = GroupCommitWriter(s, max_batch=2, inline=True, fallback_path=str(tmp_path / "f"))
        w._pending = Pending((rec(f"p{i}"), None) for i in range(4))  # type: ignore[assignment]
        w._flush = flush  # type: ignore[method-assign]
        w._flush_pending()
        release.set()
        w._flush = lambda batch: None  # type: ignore[method-assign]
        w.close(5)
    assert sorted(flushed) == ["p0", "p1", "p2", "p3"]


def test_bad_record_does_not_lose_the_others(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fallback = tmp_path / "failed.jsonl"
    entered, release = gate(monkeypatch, store)
    w = GroupCommitWriter(store, fallback_path=str(fallback), inline=False)
    first = w.submit(rec("r0"))
    assert entered.wait(10)  # the writer is busy: what follows queues into one batch
    good = [w.submit(rec(f"r{i}")) for i in range(1, 50)]
    bad_tokens = w.submit(rec("bad-tokens", usage=Usage(input_tokens=TOO_BIG)))
    bad_json = w.submit(rec("bad-json", decisions={"obj": object()}))
    good += [w.submit(rec(f"r{i}")) for i in range(50, 100)]
    release.set()
    for f in [first, *good]:
        assert f.result(30) is None
    with pytest.raises(Deferred):  # kept in the fallback file; the driver's own error type
        bad_tokens.result(30)
    with pytest.raises(Deferred) as kept:
        bad_json.result(30)
    assert isinstance(kept.value.cause, TypeError)
    assert w.close(30)
    assert store.count_records() == 100
    assert store.get_record("bad-tokens") is None
    stats = w.stats()
    assert stats.failed == 2 and stats.retries == 1 and stats.committed == 100

    lines = [json.loads(line) for line in fallback.read_text().splitlines()]
    assert sorted(line["record"]["request_id"] for line in lines) == ["bad-json", "bad-tokens"]
    assert all(line["error"] for line in lines)
    by_id = {r.request_id: r for r in load_fallback(str(fallback))}
    assert by_id["bad-tokens"].usage.input_tokens == TOO_BIG
    assert by_id["bad-json"].decisions["obj"].startswith("<object object")


def test_close_drains_the_queue(store: Store, tmp_path: Path) -> None:
    fallback = tmp_path / "failed.jsonl"
    w = GroupCommitWriter(store, max_batch=7, fallback_path=str(fallback), inline=False)
    futures = [w.submit(rec(f"r{i}")) for i in range(500)]
    assert w.close(30)
    assert all(f.done() and f.exception() is None for f in futures)
    assert store.count_records() == 500
    assert w.stats().batches >= 500 // 7
    assert not fallback.exists()
    with pytest.raises(Overloaded):
        w.submit(rec("late"))
    assert [r.request_id for r in load_fallback(str(fallback))] == ["late"]
    assert w.close(1)  # idempotent


def test_close_timeout_keeps_everything_in_the_fallback_file(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fallback = tmp_path / "failed.jsonl"
    entered, release = gate(monkeypatch, store)
    w = GroupCommitWriter(store, fallback_path=str(fallback), inline=False)
    futures = [w.submit(rec("r0"))]
    assert entered.wait(10)
    futures += [w.submit(rec(f"r{i}")) for i in range(1, 10)]
    assert w.close(0.2) is False
    for f in futures:
        with pytest.raises(Deferred) as kept:
            f.result(5)
        assert isinstance(kept.value.cause, TimeoutError)
    saved = load_fallback(str(fallback))
    assert sorted(r.request_id for r in saved) == sorted(f"r{i}" for i in range(10))
    release.set()  # the stuck batch (r0) now commits after all
    w._thread.join(10)
    assert not w._thread.is_alive()
    monkeypatch.undo()
    # Replaying the fallback file skips what did reach the ledger.
    assert store.insert_records(saved) == 9
    assert store.count_records() == 10


async def test_cancelled_writer_still_commits(store: Store) -> None:
    w = GroupCommitWriter(store)
    task = asyncio.create_task(w.write(rec("cancelled")))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(w.close, 10)
    assert store.get_record("cancelled") is not None


def test_keys_are_safe_while_the_writer_inserts(store: Store) -> None:
    w = GroupCommitWriter(store)
    futures = [w.submit(rec(f"r{i}")) for i in range(3000)]

    def key_work(i: int) -> None:
        store.create_key(KeyRecord(f"tk-{i}", f"hash-{i}", created_at=float(i)))
        assert store.get_key_by_hash(f"hash-{i}") is not None
        assert store.update_key(f"tk-{i}", revoked_at=5.0)
        store.list_keys()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(key_work, range(40)))
    assert w.close(30)
    assert all(f.exception() is None for f in futures)
    assert store.count_records() == 3000 and len(store.list_keys()) == 40


# -- keys -----------------------------------------------------------------------------------


def test_keys_crud(store: Store) -> None:
    k = KeyRecord(
        key_id="tk-aaaa0001",
        key_hash="ab" * 32,
        name="ci",
        org="acme",
        team="search",
        user="ada",
        tags={"env": "prod"},
        models=["gpt-4o", "claude-*"],
        created_at=1_700_000_000.5,
        expires_at=1_800_000_000.0,
    )
    store.create_key(k)
    store.create_key(KeyRecord("tk-aaaa0000", "cd" * 32, created_at=1.0))
    assert store.get_key("tk-aaaa0001") == k
    assert store.get_key_by_hash("ab" * 32) == k
    assert store.get_key("nope") is None and store.get_key_by_hash("nope") is None
    assert [x.key_id for x in store.list_keys()] == ["tk-aaaa0000", "tk-aaaa0001"]

    assert store.update_key("tk-aaaa0001", revoked_at=1_750_000_000.0)
    got = store.get_key("tk-aaaa0001")
    assert got is not None and got.revoked_at == 1_750_000_000.0
    assert got.expires_at == 1_800_000_000.0  # left unchanged
    assert store.update_key("tk-aaaa0001", expires_at=1_760_000_000.0)
    got = store.get_key("tk-aaaa0001")
    assert got is not None and got.expires_at == 1_760_000_000.0
    assert got.revoked_at == 1_750_000_000.0
    assert store.update_key("tk-aaaa0001") is True
    assert store.update_key("nope", revoked_at=1.0) is False
    assert store.update_key("nope") is False

    with pytest.raises(InvalidRequest) as exc:
        store.create_key(KeyRecord("tk-other", "ab" * 32))
    assert exc.value.status == 409
    with pytest.raises(InvalidRequest):
        store.create_key(KeyRecord("tk-aaaa0001", "ef" * 32))


# -- opening --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "path"),
    [
        (None, "tokenomy.db"),
        ("ledger.db", "ledger.db"),
        ("/var/lib/t.db", "/var/lib/t.db"),
        ("sqlite:///rel/t.db", "rel/t.db"),
        ("sqlite:////abs/t.db", "/abs/t.db"),
        ("sqlite://", ":memory:"),
        ("sqlite:///:memory:", ":memory:"),
        ("postgresql://u@h/db", None),
        ("postgres://u@h/db", None),
    ],
)
def test_sqlite_path(url: str | None, path: str | None) -> None:
    assert sqlite_path(url) == path


def test_open_store_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="unsupported"):
        open_store("mysql://u@h/db")
    with pytest.raises(ConfigError, match="cannot open"):
        open_store(str(tmp_path / "missing-dir" / "t.db"))
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.delitem(sys.modules, "tokenomy.ledger.postgres", raising=False)
    with pytest.raises(ConfigError, match=re.escape("tokenomy[postgres]")):
        open_store("postgresql://postgres@127.0.0.1/test")


def test_open_store_memory() -> None:
    with open_store(":memory:") as s:
        assert s.migrate() == migrations.names()
        s.insert_records([full_record()])
        s.create_key(KeyRecord("tk-1", "h"))
        assert s.get_record("req-full") == full_record()
        assert s.get_key_by_hash("h") is not None


# -- SQLite ---------------------------------------------------------------------------------


def test_sqlite_pragmas_and_fallback_path(sqlite_url: str) -> None:
    with open_store(sqlite_url) as s:
        assert isinstance(s, SQLiteStore)
        assert s.fallback_path == sqlite_url + ".failed.jsonl"
        assert s._read(lambda cur: cur.execute("PRAGMA journal_mode").fetchone())[0] == "wal"
        assert s._write(lambda cur: cur.execute("PRAGMA synchronous").fetchone())[0] == 1


def test_sqlite_second_process_keys_while_gateway_writes(sqlite_url: str) -> None:
    """``tokenomy keys create`` opens the file while the gateway is writing to it."""
    with open_store(sqlite_url) as gateway_store:
        gateway_store.migrate()
        w = GroupCommitWriter(gateway_store)
        futures = [w.submit(rec(f"r{i}")) for i in range(2000)]
        with open_store(sqlite_url) as cli_store:
            assert cli_store.migrate() == []
            cli_store.create_key(KeyRecord("tk-cli", "cli-hash", created_at=time.time()))
        assert gateway_store.get_key_by_hash("cli-hash") is not None
        assert w.close(30)
        assert all(f.exception() is None for f in futures)
        assert gateway_store.count_records() == 2000


CHILD = """
import sys, time
from tokenomy.ledger import GroupCommitWriter, open_store
from tokenomy.records import UsageRecord
store = open_store(sys.argv[1]); store.migrate()
w = GroupCommitWriter(store)
futures = [w.submit(UsageRecord(request_id=f"k{i}")) for i in range(300)]
for f in futures: f.result(30)
print("committed", flush=True)
time.sleep(60)
"""


def test_sqlite_acknowledged_records_survive_sigkill(sqlite_url: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, sqlite_url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "committed"
    finally:
        child.kill()
        child.wait(10)
        if child.stdout is not None:
            child.stdout.close()
    with open_store(sqlite_url) as s:
        assert s.count_records() == 300


# -- PostgreSQL -----------------------------------------------------------------------------


@pytest.mark.postgres
def test_pg_reconnects_after_the_connection_drops(pg_store: Store, pg_url: str) -> None:
    import psycopg

    pg_store.insert_records([rec("before")])
    assert pg_store.get_record("before") is not None  # opens the read connection
    with psycopg.connect(pg_url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = ANY(%s)",
            (_backend_pids(pg_store),),
        ).fetchall()
    assert killed == [(True,), (True,)]
    assert pg_store.insert_records([rec("after")]) == 1
    assert pg_store.get_record("after") is not None
    assert pg_store.count_records() == 2


def _backend_pids(store: Store) -> list[int]:
    from tokenomy.ledger.postgres import PostgresStore

    assert isinstance(store, PostgresStore)
    return [c.info.backend_pid for c in (store._wconn, store._rconn) if c is not None]


@pytest.mark.postgres
def test_pg_column_types(pg_store: Store) -> None:
    assert isinstance(pg_store, SQLStore)
    types = dict(
        pg_store._read(
            lambda cur: cur.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = 'requests'"
            ).fetchall()
        )
    )
    assert types["cost_usd"] == "numeric"
    assert types["tags"] == types["decisions"] == "jsonb"
    assert types["input_tokens"] == "bigint"
    assert types["stream"] == types["estimated"] == types["price_unknown"] == "boolean"


def test_pg_unreachable_is_a_config_error() -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(ConfigError, match="cannot connect"):
        open_store("postgresql://postgres@127.0.0.1:1/test?connect_timeout=2")


async def test_inline_writer_keeps_a_bad_record_apart(store: Store, tmp_path: Path) -> None:
    fallback = tmp_path / "failed.jsonl"
    w = GroupCommitWriter(store, fallback_path=str(fallback), inline=True)
    results = await asyncio.gather(
        *(w.write(rec(f"r{i}")) for i in range(30)),
        w.write(rec("bad-json", decisions={"obj": object()})),
        return_exceptions=True,
    )
    assert results[:30] == [None] * 30 and isinstance(results[30], Deferred)
    assert isinstance(results[30].cause, TypeError)
    assert await asyncio.to_thread(w.close, 10)
    assert store.count_records() == 30
    assert [json.loads(x)["record"]["request_id"] for x in fallback.read_text().splitlines()] == [
        "bad-json"
    ]
    with pytest.raises(Overloaded):  # closed: refused, and kept in the fallback file
        await w.write(rec("late"))
    assert "late" in fallback.read_text()


async def test_the_checkpoint_thread_sleeps_while_nothing_is_committed(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "ledger.db"))
    store.migrate()
    checkpoints = []
    real = store.checkpoint

    def counted() -> None:
        checkpoints.append(time.monotonic())
        real()

    store.checkpoint = counted  # type: ignore[method-assign]
    writer = GroupCommitWriter(store, checkpoint_every=0.02)
    try:
        await writer.write(rec("ck_1"))
        await asyncio.sleep(0.3)
        assert len(checkpoints) == 1  # one for the commit, none while idle
        await writer.write(rec("ck_2"))
        for _ in range(100):
            if len(checkpoints) == 2:
                break
            await asyncio.sleep(0.01)
        assert len(checkpoints) == 2
    finally:
        assert writer.close(5)
    store.close()
