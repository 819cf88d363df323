"""What the admin handlers share: the JSON object body, its string fields, and
refusing a method on a path."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidRequest
from .http import parse_json, read_body


async def json_object(receive: Any) -> dict[str, Any]:
    body = parse_json(await read_body(receive))
    if not isinstance(body, dict):
        raise InvalidRequest("expected a JSON object")
    return body


def optional_str(body: dict[str, Any], name: str) -> str | None:
    v = body.get(name)
    if v is not None and not isinstance(v, str):
        raise InvalidRequest(f"'{name}' must be a string", param=name)
    return v


def not_allowed(method: str, parts: list[str]) -> InvalidRequest:
    """405 for `method` on /admin/<parts>."""
    return InvalidRequest(f"{method} not allowed on /admin/{'/'.join(parts)}", status=405)
