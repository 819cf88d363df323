"""Render any error in the format of the API that was called — the one place that does."""

from __future__ import annotations

import orjson

from ..errors import ANTHROPIC_TYPES, TokenomyError, UpstreamStatusError

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}


# The OpenAI code of an Anthropic error type, where one plainly means the same.
_OPENAI_CODES = {"rate_limit_error": "rate_limit_exceeded"}


def _upstream_type(api: str, exc: TokenomyError) -> str | None:
    """The provider's own error type, when the provider speaks the caller's API. The
    other API's types (OpenAI's ``server_error``, Anthropic's ``overloaded_error``) mean
    nothing to the caller's SDK: those errors get the type of their status instead."""
    if isinstance(exc, UpstreamStatusError) and exc.upstream_api == api:
        return exc.upstream_type
    return None


def _openai_code(exc: TokenomyError) -> str | None:
    """The error's OpenAI ``code``: an OpenAI upstream's own, as it came; for an
    Anthropic upstream's error (which has none), the code of its type if one matches."""
    if isinstance(exc, UpstreamStatusError) and exc.upstream_api == "anthropic":
        return _OPENAI_CODES.get(exc.upstream_type or "")
    return exc.code


def error_body(api: str, exc: TokenomyError, request_id: str | None = None) -> bytes:
    """The error's body. Anthropic's carries the request's id (``request_id``) when
    it has one, as Anthropic's own error bodies do."""
    status = exc.status
    passed = _upstream_type(api, exc)
    if api == "anthropic":
        etype = passed or ANTHROPIC_TYPES.get(status, "api_error")
        body: dict[str, object] = {
            "type": "error",
            "error": {"type": etype, "message": exc.message},
        }
        if request_id:
            body["request_id"] = request_id
        return orjson.dumps(body)
    otype = passed or _OPENAI_TYPES.get(status, exc.type if status < 500 else "server_error")
    return orjson.dumps(
        {
            "error": {
                "message": exc.message,
                "type": otype,
                "param": exc.param,
                "code": _openai_code(exc),
            }
        }
    )
