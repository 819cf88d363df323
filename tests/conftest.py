"""Shared fixtures.

Databases are real: SQLite in ``tmp_path`` always, and the local PostgreSQL
server where a test asks for it. Each PostgreSQL test gets its own schema
(``tk_test_<hex>``, dropped afterwards), selected through the connection URL's
``options=-csearch_path=...``, so runs sharing the ``test`` database never meet.
PostgreSQL tests are skipped when the server is down, except under ``CI=true``,
where a skip would hide a broken setup and so fails instead.

Fixtures:
    pg_url         session: base URL of the server (env TOKENOMY_TEST_PG_URL overrides)
    pg_schema_url  a URL into a fresh, empty schema of its own
    pg_store       a migrated PostgreSQL store in its own schema
    sqlite_url     a fresh SQLite file path in tmp_path
    db_kind        parametrized: "sqlite", "postgres" (marked ``postgres``)
    new_db_url     factory: each call returns a fresh blank database of ``db_kind``
    db_url         one fresh blank database of ``db_kind``
    store          a migrated store on ``db_url``: tests using it run on both engines
    redis_url      session: the local Redis server (env TOKENOMY_TEST_REDIS_URL overrides);
                   skipped when it is down, failed under CI=true, like PostgreSQL
    redis_prefix   a fresh key prefix (``tk_test_<hex>:``); its keys are deleted afterwards
    redis_server   a private redis-server to stop, pause and restart (`redis_server.py`)

The embedding model built at first use (`tokenomy.embed`) is kept in a directory of
the session's, not in the user's cache, unless TOKENOMY_EMBED_CACHE says where.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway_fixtures import (  # noqa: F401
    GW,
    fake,
    fake_llamacpp,
    fresh_gw,
    gateway_proc,
    gw,
    other_team,
    replicas,
)
from redis_server import redis_server  # noqa: F401
from tokenomy.ledger import Store, open_store

PG_DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session", autouse=True)
def _embed_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # set for the whole session, so that gateways started as processes share it too
    if os.environ.get("TOKENOMY_EMBED_CACHE"):
        yield
        return
    os.environ["TOKENOMY_EMBED_CACHE"] = str(tmp_path_factory.mktemp("embed-cache"))
    yield
    os.environ.pop("TOKENOMY_EMBED_CACHE", None)


def _pg_unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason + " (CI=true: PostgreSQL tests must run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_url() -> str:
    url = os.environ.get("TOKENOMY_TEST_PG_URL") or PG_DEFAULT_URL
    try:
        import psycopg
    except ImportError as exc:
        _pg_unavailable(f"psycopg is not installed: {exc}")
        raise
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as exc:
        info = psycopg.conninfo.conninfo_to_dict(url)
        where = f"{info.get('host', 'localhost')}:{info.get('port', 5432)}"
        _pg_unavailable(f"PostgreSQL not reachable on {where}: {exc}")
    return url


def with_search_path(url: str, schema: str) -> str:
    """``url`` with its sessions' search_path set to ``schema``."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


@contextlib.contextmanager
def pg_schema(url: str) -> Iterator[str]:
    """Create a fresh schema; yield a URL into it; drop it (and all in it) after."""
    import psycopg

    schema = "tk_test_" + secrets.token_hex(6)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_search_path(url, schema)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '10s'")
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def pg_schema_url(pg_url: str) -> Iterator[str]:
    with pg_schema(pg_url) as url:
        yield url


@pytest.fixture
def pg_store(pg_schema_url: str) -> Iterator[Store]:
    with open_store(pg_schema_url) as store:
        store.migrate()
        yield store


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return str(tmp_path / "tokenomy.db")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def new_db_url(
    db_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[], str]]:
    # Resolved up front, so an unreachable server is a setup skip (or CI failure).
    server = request.getfixturevalue("pg_url") if db_kind == "postgres" else ""
    with contextlib.ExitStack() as stack:
        made = 0

        def new() -> str:
            nonlocal made
            made += 1
            if db_kind == "sqlite":
                return str(tmp_path / f"ledger-{made}.db")
            return stack.enter_context(pg_schema(server))

        yield new


@pytest.fixture
def db_url(new_db_url: Callable[[], str]) -> str:
    return new_db_url()


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with open_store(db_url) as s:
        s.migrate()
        yield s


REDIS_DEFAULT_URL = "redis://127.0.0.1:6379/0"


def _redis_unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason + " (CI=true: Redis tests must run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("TOKENOMY_TEST_REDIS_URL") or REDIS_DEFAULT_URL
    try:
        import redis
    except ImportError as exc:
        _redis_unavailable(f"redis-py is not installed: {exc}")
        raise
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        _redis_unavailable(f"Redis not reachable at {url}: {exc}")
    return url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    import redis

    prefix = f"tk_test_{secrets.token_hex(6)}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
    finally:
        client.close()
