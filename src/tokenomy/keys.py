"""Virtual keys: minted once, stored only as a SHA-256 hash, verified with a short cache.

A key looks like ``tk-<key_id>-<secret>``. The ``key_id`` part is public and is
what logs, the ledger and the admin API show; the whole string is the secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import AuthenticationFailed, PermissionDenied
from .ledger.base import KeyRecord, Store

PREFIX = "tk-"
MASTER_KEY_ID = "master"
# RFC 7235 wants a challenge on every 401: the master-key routes take a Bearer token.
MASTER_CHALLENGE = {"www-authenticate": 'Bearer realm="tokenomy"'}


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def mint_key(
    *,
    name: str | None = None,
    org: str | None = None,
    team: str | None = None,
    user: str | None = None,
    tags: Mapping[str, str] | None = None,
    models: list[str] | None = None,
    expires_at: float | None = None,
) -> tuple[str, KeyRecord]:
    """Return (secret, record). The secret is shown once and never stored."""
    key_id = secrets.token_hex(6)
    secret = f"{PREFIX}{key_id}-{secrets.token_urlsafe(24)}"
    record = KeyRecord(
        key_id=key_id,
        key_hash=hash_key(secret),
        name=name,
        org=org,
        team=team,
        user=user,
        tags=dict(tags or {}),
        models=list(models or []),
        created_at=time.time(),
        expires_at=expires_at,
    )
    return secret, record


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The client's key, from ``Authorization: Bearer`` (OpenAI SDK) or ``x-api-key`` (Anthropic SDK)."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    key = headers.get("x-api-key")
    return key.strip() if key else None


@dataclass(slots=True)
class _Cached:
    record: KeyRecord | None
    until: float


class KeyAuthenticator:
    """Verifies keys against the store. A verified (or unknown) hash is trusted for
    ``ttl`` seconds, so a revocation takes effect on every replica within ``ttl``."""

    def __init__(self, store: Store, *, master_key: str | None, ttl: float = 2.0) -> None:
        self._store = store
        self._master = master_key
        self._ttl = ttl
        self._cache: dict[str, _Cached] = {}
        self._forgotten = 0  # forget() calls: a lookup that spans one is not cached

    def is_master(self, token: str | None) -> bool:
        # Bytes, not str: compare_digest refuses str with non-ASCII characters, and
        # a header may carry any latin-1 byte.
        return bool(
            self._master and token and hmac.compare_digest(token.encode(), self._master.encode())
        )

    def require_master(self, token: str | None, what: str) -> None:
        """Return if `token` is the master key; else refuse the route `what` names.

        403 ``master_key_unset`` when no master key is set (no credential could
        pass: the route is off), else 401 with a Bearer challenge, for a missing key
        and a wrong one alike, a client's own key included: these routes take no
        other credential, and telling a valid client key apart would cost a lookup
        and say which guesses are keys."""
        if not self._master:
            raise PermissionDenied(
                f"{what} needs the master key, and none is set: set TOKENOMY_MASTER_KEY.",
                code="master_key_unset",
            )
        if not self.is_master(token):
            raise AuthenticationFailed(
                f"{what} needs the master key: send it as 'Authorization: Bearer <key>'.",
                headers=dict(MASTER_CHALLENGE),
            )

    async def authenticate(self, token: str | None) -> KeyRecord:
        if not token:
            raise AuthenticationFailed(
                "Missing API key: send it as 'Authorization: Bearer <key>' or 'x-api-key'."
            )
        if self.is_master(token):
            return KeyRecord(key_id=MASTER_KEY_ID, key_hash="", name="master key")
        digest = hash_key(token)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is None or hit.until < now:
            forgotten = self._forgotten
            record = await asyncio.to_thread(self._store.get_key_by_hash, digest)
            if len(self._cache) > 100_000:
                self._cache.clear()
            hit = _Cached(record, now + self._ttl)
            if (
                forgotten == self._forgotten
            ):  # else a revocation came meanwhile: read again next time
                self._cache[digest] = hit
        rec = hit.record
        if rec is None:
            raise AuthenticationFailed("Incorrect API key provided.")
        wall = time.time()
        if rec.revoked_at is not None and rec.revoked_at <= wall:
            raise AuthenticationFailed("This API key has been revoked.", code="revoked_api_key")
        if rec.expires_at is not None and rec.expires_at <= wall:
            raise AuthenticationFailed("This API key has expired.", code="expired_api_key")
        return rec

    def forget(self) -> None:
        self._forgotten += 1
        self._cache.clear()
