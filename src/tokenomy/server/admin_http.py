"""What the admin handlers share: the request, the JSON object body, its known
and string fields, and refusing a method on a path."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from ..errors import InvalidRequest
from .http import Scope, parse_json, read_body


@dataclass(frozen=True, slots=True)
class AdminRequest:
    """One call of the admin API, as a handler sees it."""

    method: str
    parts: list[str]  # the path after /admin: ["keys", "<id>", "revoke"]
    query: dict[str, list[str]]  # the query string: each name's values, in order
    receive: Any  # the ASGI receive callable, for the body

    @classmethod
    def of(cls, scope: Scope, receive: Any) -> AdminRequest:
        path: str = scope["path"].rstrip("/")
        raw: bytes = scope.get("query_string", b"")
        # A blank value is kept ("?limit=" is a bad limit, not the default one).
        query = parse_qs(raw.decode("latin-1"), keep_blank_values=True)
        return cls(scope["method"], path.split("/")[2:], query, receive)

    async def json(self) -> dict[str, Any]:
        """The body: a JSON object, or a 400."""
        return await json_object(self.receive)


async def json_object(receive: Any) -> dict[str, Any]:
    body = parse_json(await read_body(receive))
    if not isinstance(body, dict):
        raise InvalidRequest("expected a JSON object")
    return body


def only_fields(body: dict[str, Any], known: Iterable[str]) -> dict[str, Any]:
    """``body``, or a 400 naming the first field it has that ``known`` does not:
    a misspelt field silently ignored would look like a change that was made."""
    unknown = sorted(set(body) - set(known))
    if unknown:
        names = ", ".join(repr(n) for n in unknown)
        raise InvalidRequest(f"unknown field(s) {names}", param=unknown[0])
    return body


def optional_str(body: dict[str, Any], name: str) -> str | None:
    v = body.get(name)
    if v is not None and not isinstance(v, str):
        raise InvalidRequest(f"'{name}' must be a string", param=name)
    return v


def not_allowed(method: str, parts: list[str]) -> InvalidRequest:
    """405 for `method` on /admin/<parts>."""
    return InvalidRequest(f"{method} not allowed on /admin/{'/'.join(parts)}", status=405)
