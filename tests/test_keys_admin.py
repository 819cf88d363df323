"""Virtual keys from the CLI and from the admin API."""

from __future__ import annotations

import time
from pathlib import Path

import httpx2 as httpx
import openai
import pytest
from click.testing import CliRunner

from gateway_fixtures import GW, MASTER_KEY
from tokenomy.cli import cli
from tokenomy.errors import AuthenticationFailed
from tokenomy.keys import KeyAuthenticator, hash_key, mint_key
from tokenomy.ledger import KeyRecord, open_store


def test_cli_create_prints_the_key_last_and_stores_only_its_hash(fresh_gw: GW) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["keys", "create", "--team", "search", "--user", "alice",
                              "--tag", "env=prod", "--db", fresh_gw.db])  # fmt: skip
    assert res.exit_code == 0, res.output
    secret = res.stdout.strip().splitlines()[-1]
    assert secret.startswith("tk-")
    rec = fresh_gw.store.get_key_by_hash(hash_key(secret))
    assert rec is not None and (rec.team, rec.user, rec.tags) == (
        "search",
        "alice",
        {"env": "prod"},
    )
    assert secret.encode() not in Path(fresh_gw.db).read_bytes()

    raw = fresh_gw.openai(key=secret).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    assert fresh_gw.record(raw.headers["x-tokenomy-request-id"]).key_id == rec.key_id

    listed = runner.invoke(cli, ["keys", "list", "--db", fresh_gw.db])
    assert rec.key_id in listed.stdout and "active" in listed.stdout and secret not in listed.stdout

    assert runner.invoke(cli, ["keys", "revoke", rec.key_id, "--db", fresh_gw.db]).exit_code == 0
    with pytest.raises(openai.AuthenticationError):
        fresh_gw.openai(key=secret).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
    assert "revoked" in runner.invoke(cli, ["keys", "list", "--db", fresh_gw.db]).stdout
    missing = runner.invoke(cli, ["keys", "revoke", "nope", "--db", fresh_gw.db])
    assert missing.exit_code != 0 and "no key" in missing.output


def test_cli_expire(fresh_gw: GW) -> None:
    runner = CliRunner()
    secret = (
        runner.invoke(cli, ["keys", "create", "--db", fresh_gw.db]).stdout.strip().splitlines()[-1]
    )
    key_id = secret.split("-")[1]
    assert (
        runner.invoke(cli, ["keys", "expire", key_id, "--in", "0", "--db", fresh_gw.db]).exit_code
        == 0
    )
    with pytest.raises(openai.AuthenticationError, match="expired"):
        fresh_gw.openai(key=secret).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
    bad = runner.invoke(cli, ["keys", "create", "--expires-in", "soon", "--db", fresh_gw.db])
    assert bad.exit_code == 2


def test_admin_api(fresh_gw: GW) -> None:
    admin = {"authorization": f"Bearer {MASTER_KEY}"}
    with httpx.Client(base_url=fresh_gw.url) as c:
        assert c.get("/admin/keys").status_code == 401
        assert (
            c.get("/admin/keys", headers={"authorization": f"Bearer {fresh_gw.key}"}).status_code
            == 401
        )
        r = c.post(
            "/admin/keys", headers=admin, json={"team": "ml", "user": "bob", "expires_in": 3600}
        )
        assert r.status_code == 201
        created = r.json()
        secret, key_id = created["key"], created["key_id"]
        assert "key_hash" not in created and created["active"]

        listed = c.get("/admin/keys", headers=admin).json()["data"]
        assert key_id in {k["key_id"] for k in listed}
        assert all("key_hash" not in k and "key" not in k for k in listed)

        client = fresh_gw.openai(key=secret)
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])

        assert (
            c.patch(f"/admin/keys/{key_id}", headers=admin, json={"expires_in": 7200}).status_code
            == 200
        )
        assert c.post(f"/admin/keys/{key_id}/revoke", headers=admin).json()["active"] is False
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
            )

        assert c.get("/admin/keys/nope", headers=admin).status_code == 404
        bad = c.post("/admin/keys", headers=admin, content=b"{")
        assert bad.status_code == 400 and "error" in bad.json()
        assert c.post("/admin/keys", headers=admin, json={"team": 5}).status_code == 400


def test_master_key_is_a_client_key(fresh_gw: GW) -> None:
    raw = fresh_gw.openai(key=MASTER_KEY).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    assert fresh_gw.record(raw.headers["x-tokenomy-request-id"]).key_id == "master"


async def test_a_lookup_that_spans_a_revocation_is_not_trusted_afterwards(tmp_path: Path) -> None:
    """A key read just before a revocation and returned just after it must not be
    cached: the next request reads the store again and sees the revocation."""
    secret, rec = mint_key(team="t")
    with open_store(str(tmp_path / "ledger.db")) as store:
        store.migrate()
        store.create_key(rec)
        auth = KeyAuthenticator(store, master_key=None, ttl=60.0)
        real = store.get_key_by_hash

        def revoked_meanwhile(digest: str) -> KeyRecord | None:
            found = real(digest)  # read before the revocation
            store.update_key(rec.key_id, revoked_at=time.time())
            auth.forget()  # what the admin API does after revoking
            return found

        store.get_key_by_hash = revoked_meanwhile  # type: ignore[method-assign]
        assert (await auth.authenticate(secret)).key_id == rec.key_id  # in flight: served
        store.get_key_by_hash = real  # type: ignore[method-assign]
        with pytest.raises(AuthenticationFailed, match="revoked"):
            await auth.authenticate(secret)
