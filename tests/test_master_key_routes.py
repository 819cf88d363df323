"""The routes only the master key may use (`/admin/*`, and `/metrics` with
`metrics_auth`) refuse alike: 401 with a `WWW-Authenticate: Bearer` challenge for a
missing or wrong key (a client's own key included), 403 when no master key is set."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import httpx2 as httpx
import pytest

from gateway_fixtures import MASTER_KEY
from tokenomy.config import Settings
from tokenomy.keys import mint_key
from tokenomy.server.app import create_app

Client = Callable[[str | None], AbstractAsyncContextManager[tuple[httpx.AsyncClient, str]]]
ROUTES = ["/metrics", "/admin/keys", "/admin/budgets"]


@pytest.fixture
def gateway(tmp_path: Path) -> Client:
    @asynccontextmanager
    async def start(master_key: str | None) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
        settings = Settings(db=str(tmp_path / "l.db"), master_key=master_key, metrics_auth=True)
        app = create_app(settings)
        await app.startup()
        assert app.gateway is not None
        secret, rec = mint_key(team="search")
        app.gateway.store.create_key(rec)
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                yield client, secret
        finally:
            await app.shutdown()

    return start


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.mark.parametrize("path", ROUTES)
async def test_a_missing_or_wrong_key_is_401_with_a_challenge(gateway: Client, path: str) -> None:
    async with gateway(MASTER_KEY) as (client, client_key):
        answers = [
            await client.get(path),
            await client.get(path, headers=bearer("sk-not-the-master-key")),
            await client.get(path, headers=bearer(client_key)),  # a real key, not the master
            await client.get(path, headers={"x-api-key": client_key}),
        ]
        ok = await client.get(path, headers=bearer(MASTER_KEY))
    for r in answers:
        assert r.status_code == 401, (path, r.text)
        assert r.headers["www-authenticate"] == 'Bearer realm="tokenomy"'
        error = r.json()["error"]
        assert error["code"] == "invalid_api_key"
        assert error["message"].endswith(
            "needs the master key: send it as 'Authorization: Bearer <key>'."
        )
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("path", ROUTES)
async def test_without_a_master_key_the_route_is_403(gateway: Client, path: str) -> None:
    async with gateway(None) as (client, client_key):
        answers = [await client.get(path), await client.get(path, headers=bearer(client_key))]
    for r in answers:
        assert r.status_code == 403, (path, r.text)
        assert "www-authenticate" not in r.headers
        error = r.json()["error"]
        assert error["type"] == "permission_error" and error["code"] == "master_key_unset"
        assert "set TOKENOMY_MASTER_KEY" in error["message"]


async def test_both_routes_refuse_with_the_same_body(gateway: Client) -> None:
    async with gateway(MASTER_KEY) as (client, client_key):
        metrics = (await client.get("/metrics", headers=bearer(client_key))).json()["error"]
        admin = (await client.get("/admin/keys", headers=bearer(client_key))).json()["error"]
    assert metrics["message"].startswith("GET /metrics needs")
    assert admin["message"].startswith("The admin API needs")
    assert {**metrics, "message": ""} == {**admin, "message": ""}
