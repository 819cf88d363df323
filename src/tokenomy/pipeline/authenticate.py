"""Stage 1: who is calling. Sets the key and the attribution (org, team, user, tags)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import AuthenticationFailed
from ..keys import KeyAuthenticator, bearer_token
from .context import ANTHROPIC, Call

TAGS_HEADER = "x-tokenomy-tags"


def parse_tags_header(value: str) -> dict[str, str]:
    """``team=search, env=prod, beta`` → {"team": "search", "env": "prod", "beta": ""}."""
    tags: dict[str, str] = {}
    for part in value.split(","):
        name, _, val = part.partition("=")
        name = name.strip()
        if name:
            tags[name] = val.strip()
    return tags


def _metadata_tags(meta: Any) -> dict[str, str]:
    if not isinstance(meta, Mapping):
        return {}
    return {str(k): str(v) for k, v in meta.items() if isinstance(v, str | int | float | bool)}


class Authenticate:
    name = "authenticate"

    def __init__(self, authenticator: KeyAuthenticator, *, require_key: bool) -> None:
        self.authenticator = authenticator
        self.require_key = require_key

    async def __call__(self, call: Call) -> None:
        token = bearer_token(call.headers)
        rec = call.record
        if token or self.require_key:
            key = await self.authenticator.authenticate(token)
            call.key = key
            rec.key_id = key.key_id
            rec.org, rec.team, rec.user = key.org, key.team, key.user
        # What the key names, a request cannot change: it fills in the user of a key
        # without one, and tags the key does not set (applied last, below).
        named_user = call.key is not None and bool(call.key.user)
        body = call.body
        meta = body.get("metadata")
        if call.api == ANTHROPIC:
            user = meta.get("user_id") if isinstance(meta, Mapping) else None
        else:
            rec.tags.update(_metadata_tags(meta))
            user = body.get("user")
        if isinstance(user, str) and user and not named_user:
            rec.user = user
        header = call.headers.get(TAGS_HEADER)
        if header:
            rec.tags.update(parse_tags_header(header))
        if call.key is not None:
            rec.tags.update(call.key.tags)


def require_model_access(call: Call, model: str) -> None:
    key = call.key
    if key is not None and key.models and model not in key.models:
        raise AuthenticationFailed(
            f"This key may not use model {model!r}.", status=403, code="model_not_allowed"
        )
