"""Render any error in the format of the API that was called — the one place that does."""

from __future__ import annotations

import orjson

from ..errors import TokenomyError, UpstreamStatusError

# Anthropic's error types by status, for errors that have no better type.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}


def _upstream_type(api: str, exc: TokenomyError) -> str | None:
    """The provider's own error type, when the provider speaks the caller's API. The
    other API's types (OpenAI's ``server_error``, Anthropic's ``overloaded_error``) mean
    nothing to the caller's SDK: those errors get the type of their status instead."""
    if isinstance(exc, UpstreamStatusError) and exc.upstream_api == api:
        return exc.upstream_type
    return None


def error_body(api: str, exc: TokenomyError) -> bytes:
    status = exc.status
    passed = _upstream_type(api, exc)
    if api == "anthropic":
        etype = passed or _ANTHROPIC_TYPES.get(status, "api_error")
        return orjson.dumps({"type": "error", "error": {"type": etype, "message": exc.message}})
    otype = passed or _OPENAI_TYPES.get(status, exc.type if status < 500 else "server_error")
    return orjson.dumps(
        {
            "error": {
                "message": exc.message,
                "type": otype,
                "param": exc.param,
                "code": exc.code,
            }
        }
    )
