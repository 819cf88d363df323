"""Fixtures for driving a real gateway with the official SDKs.

A fake upstream (``tokenomy.testing``) and the gateway both run under uvicorn on
loopback ports in background threads, so sync, async and streaming clients all
talk real HTTP. The ledger is a SQLite file in ``tmp_path`` unless a test asks
for PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx2 as httpx
import openai
import pytest
import yaml

from tokenomy.config import Deployment, PriceConfig, Settings
from tokenomy.keys import mint_key
from tokenomy.ledger import Store, open_store
from tokenomy.records import UsageRecord
from tokenomy.server.app import TokenomyApp, create_app
from tokenomy.server.protocol import GatewayProtocol
from tokenomy.testing import FakeOptions, FakeUpstream, serve_in_thread

MASTER_KEY = "sk-master-test-0123456789"
UPSTREAM_KEY = "sk-upstream-secret-abcdef"


@dataclass
class Fake:
    app: FakeUpstream
    url: str


@dataclass
class GW:
    url: str
    app: TokenomyApp
    db: str
    key: str  # a virtual key: team "search", user "alice"
    key_id: str
    fake: Fake
    _store: Store | None = field(default=None, repr=False)
    _clients: list[Any] = field(default_factory=list, repr=False)

    def _keep(self, client: Any) -> Any:
        self._clients.append(client)  # closed at teardown, never left to the GC
        return client

    def close(self) -> None:
        for c in self._clients:
            if hasattr(c, "close") and not isinstance(
                c, openai.AsyncOpenAI | anthropic.AsyncAnthropic
            ):
                c.close()
        self._clients.clear()
        if self._store is not None:
            self._store.close()

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.db)
        return self._store

    def record(self, request_id: str) -> UsageRecord:
        rec = self.store.get_record(request_id)
        assert rec is not None, f"no ledger row for {request_id}"
        return rec

    def left_stream(self, path: str, body: dict[str, Any], lines: int = 5) -> str:
        """Stream ``body`` from ``path``, read ``lines`` lines of it, then leave, as a
        client that goes away does: the request's id."""
        auth = {"authorization": f"Bearer {self.key}"}
        with self.http() as c, c.stream("POST", path, json=body, headers=auth) as r:
            read = 0
            for line in r.iter_lines():
                read += bool(line)
                if read >= lines:
                    break
            return str(r.headers["x-tokenomy-request-id"])

    def settled(self, request_id: str, timeout: float = 10.0) -> UsageRecord:
        """The row of a request that ends after its client left: it is committed
        once the gateway sees the disconnect, shortly after."""
        deadline = time.monotonic() + timeout
        rec = self.store.get_record(request_id)
        while rec is None and time.monotonic() < deadline:
            time.sleep(0.05)
            rec = self.store.get_record(request_id)
        assert rec is not None, f"no ledger row for {request_id}"
        return rec

    def openai(self, key: str | None = None, **kw: Any) -> openai.OpenAI:
        return self._keep(  # type: ignore[no-any-return]
            openai.OpenAI(base_url=self.url + "/v1", api_key=key or self.key, max_retries=0, **kw)
        )

    def async_openai(self, key: str | None = None) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=key or self.key, max_retries=0)

    def anthropic(self, key: str | None = None) -> anthropic.Anthropic:
        return self._keep(  # type: ignore[no-any-return]
            anthropic.Anthropic(base_url=self.url, api_key=key or self.key, max_retries=0)
        )

    def async_anthropic(self, key: str | None = None) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(base_url=self.url, api_key=key or self.key, max_retries=0)

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def dep(name: str, provider: str, base_url: str, **kw: Any) -> Deployment:
    kw.setdefault("api_key", UPSTREAM_KEY)
    kw.setdefault("retry_backoff", 0.01)
    return Deployment(name, provider, base_url=base_url, **kw)


def deployments(fake_url: str, llamacpp_url: str) -> tuple[Deployment, ...]:
    v1 = fake_url + "/v1"
    dead = f"http://127.0.0.1:{closed_port()}/v1"
    return (
        dep("gpt-4o", "openai", v1),
        dep("gpt-4o-mini", "openai", v1),
        dep("o3", "openai", v1),
        dep("text-embedding-3-small", "openai", v1),
        dep("claude-*", "anthropic", fake_url),
        dep("mystery-model-x", "openai", v1),
        dep("house-model", "vllm", v1, model="llama-3-8b-house",
            price=PriceConfig(Decimal("0.5"), Decimal("1.5"), cache_read=Decimal("0.05"))),
        dep("llama-local", "llamacpp", llamacpp_url + "/v1",
            price=PriceConfig(Decimal("0.1"), Decimal("0.2"))),
        dep("slow-model", "openai", v1, model="gpt-4o", timeout=0.3, max_retries=0),
        dep("flaky-model", "openai", v1, model="gpt-4o", max_retries=2),
        dep("dead-model", "openai", dead, model="gpt-4o", max_retries=1),
    )  # fmt: skip


@pytest.fixture(scope="session")
def fake() -> Iterator[Fake]:
    app = FakeUpstream(FakeOptions(api_key=UPSTREAM_KEY))
    with serve_in_thread(app) as url:
        yield Fake(app, url)


@pytest.fixture(scope="session")
def fake_llamacpp() -> Iterator[Fake]:
    """An upstream that, like the llama.cpp server, never streams usage."""
    app = FakeUpstream(FakeOptions(stream_usage=False, api_key=UPSTREAM_KEY))
    with serve_in_thread(app) as url:
        yield Fake(app, url)


def gateway_settings(db: str, fake: Fake, llama: Fake, **kw: Any) -> Settings:
    base: dict[str, Any] = {
        "db": db,
        "master_key": MASTER_KEY,
        "deployments": deployments(fake.url, llama.url),
        "key_cache_ttl": 0.0,
        "drain_timeout": 5.0,
    }
    base.update(kw)
    return Settings(**base)


def start_gateway(settings: Settings, fake: Fake) -> Iterator[GW]:
    store = open_store(settings.db)
    store.migrate()
    secret, rec = mint_key(team="search", user="alice", org="acme", tags={"env": "test"})
    store.create_key(rec)
    store.close()
    app = create_app(settings)
    with serve_in_thread(app, http=GatewayProtocol) as url:
        gw = GW(url=url, app=app, db=settings.db, key=secret, key_id=rec.key_id, fake=fake)
        try:
            yield gw
        finally:
            gw.close()


@pytest.fixture(scope="module")
def gw(fake: Fake, fake_llamacpp: Fake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GW]:
    db = str(tmp_path_factory.mktemp("gw") / "ledger.db")
    yield from start_gateway(gateway_settings(db, fake, fake_llamacpp), fake)


@pytest.fixture(scope="module")
def other_team(gw: GW) -> str:
    """A key of another team of the same org as ``gw.key`` (team search, org acme)."""
    return add_key(gw.db, team="ads", org="acme")[0]


def add_key(db: str, **kw: Any) -> tuple[str, str]:
    """A key minted into the ledger at ``db``: (its secret, its id)."""
    secret, rec = mint_key(**kw)
    with open_store(db) as store:
        store.migrate()
        store.create_key(rec)
    return secret, rec.key_id


@pytest.fixture
def fresh_gw(fake: Fake, fake_llamacpp: Fake, tmp_path: Path) -> Iterator[GW]:
    yield from start_gateway(
        gateway_settings(str(tmp_path / "ledger.db"), fake, fake_llamacpp), fake
    )


@pytest.fixture
def replicas(fake: Fake, fake_llamacpp: Fake, db_url: str) -> Iterator[tuple[GW, GW]]:
    """Two gateways sharing one ledger (a SQLite file, or a PostgreSQL schema:
    ``db_url`` is conftest's)."""
    settings = gateway_settings(db_url, fake, fake_llamacpp)
    serve = contextlib.contextmanager(start_gateway)
    with serve(settings, fake) as one, serve(settings, fake) as two:
        yield one, two


def wait_healthy(url: str, proc: subprocess.Popen[bytes], deadline: float) -> None:
    """Wait for the gateway process ``proc`` to answer ``/healthz`` at ``url``; fail
    the test with its stderr if it exits or the ``deadline`` (monotonic) passes."""
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            _out, err = proc.communicate(timeout=5)
            pytest.fail(f"gateway at {url} did not start: {err.decode()[-2000:]}")
        time.sleep(0.05)


class Proc:
    """`tokenomy serve` in a process of its own, on the `fake` upstream."""

    def __init__(self, popen: subprocess.Popen[bytes], url: str, db: str) -> None:
        self.popen, self.url, self.db = popen, url, db


@pytest.fixture
def gateway_proc(fake: Fake, tmp_path: Path) -> Iterator[Proc]:
    cfg = tmp_path / "tokenomy.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "server": {"drain_timeout": 10},
                "models": [
                    {
                        "name": "gpt-4o",
                        "provider": "openai",
                        "base_url": fake.url + "/v1",
                        "api_key": UPSTREAM_KEY,
                    },
                ],
            }
        )
    )
    port, db = closed_port(), str(tmp_path / "ledger.db")
    env = {**os.environ, "TOKENOMY_MASTER_KEY": MASTER_KEY}
    popen = subprocess.Popen(
        [sys.executable, "-m", "tokenomy", "serve", "--config", str(cfg), "--db", db,
         "--port", str(port), "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, popen, time.monotonic() + 20)
    try:
        yield Proc(popen, url, db)
    finally:
        if popen.poll() is None:
            popen.kill()
        popen.communicate(timeout=10)
