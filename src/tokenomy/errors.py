"""Tokenomy's one error hierarchy.

    TokenomyError                  base; carries an HTTP status and an error type
    ├── InvalidRequest        400  malformed JSON, wrong field types, bad params
    ├── AuthenticationFailed  401  missing, unknown, revoked or expired key
    ├── PermissionDenied      403  key not allowed the model; a master-key route, no master key set
    ├── NotFound              404  unknown model or route
    ├── RateLimited           429  a limit or a budget refused the request
    ├── UpstreamError         502  the provider answered with an error or bad data
    │   ├── UpstreamStatusError    the provider's own 4xx/5xx: status, message, code, param,
    │   │                          upstream_code (OpenAI's code, Anthropic's type)
    │   ├── UpstreamAuthError      the provider refused the gateway's own key (its 401/403)
    │   ├── UpstreamConnectError   connection refused or reset
    │   └── UpstreamProtocolError  malformed JSON or SSE from the provider
    ├── UpstreamTimeout       504  the provider did not answer in time
    ├── Overloaded            503  the gateway is draining or out of capacity
    └── ConfigError                bad configuration (raised at start-up, not served)

Errors are raised as these types at the provider boundary (``raise X from exc``)
and rendered in the called API's format in one place: ``tokenomy.server.errors``.
In process (`tokenomy.Pipeline`) they are raised to the caller as they are, each
with the ``request_id`` of the request it ended (its ledger row, when it has one).
"""

from __future__ import annotations

from .usage import Usage

# The longest message an error says: enough for any real one. An upstream's is cut
# to it as relayed (a huge error body is not echoed whole); a longer one of the
# gateway's own (echoing a value the client sent) is cut with an ellipsis.
RELAYED_CHARS = 2000

# Anthropic's documented error types by status: the type of an error in Anthropic's
# format when it has no better one (both for a JSON reply and inside a stream).
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    431: "invalid_request_error",  # headers too large (the gateway's own refusal)
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class TokenomyError(Exception):
    status: int = 500
    type: str = "api_error"
    code: str | None = None
    request_id: str | None = None  # set by `tokenomy.Pipeline` on what it raises

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if len(message) > RELAYED_CHARS:  # one that echoes a client's 100k-character id
            message = message[: RELAYED_CHARS - 1] + "\u2026"
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.param = param
        self.headers = headers or {}


class InvalidRequest(TokenomyError):
    status = 400
    type = "invalid_request_error"


class AuthenticationFailed(TokenomyError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(TokenomyError):
    status = 403
    type = "permission_error"


class NotFound(TokenomyError):
    status = 404
    type = "not_found_error"
    code = "model_not_found"


class RateLimited(TokenomyError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamError(TokenomyError):
    status = 502
    type = "upstream_error"
    # Set where known: the provider's id for the reply that failed (what its support
    # asks for), and what it reported using before it failed (billed all the same).
    upstream_request_id: str | None = None
    usage: Usage | None = None


class UpstreamStatusError(UpstreamError):
    """The provider answered with an error status; ``status`` is the provider's.

    ``message``, ``code`` and ``param`` are the provider's own (OpenAI's
    ``error.code`` and ``error.param``; Anthropic's errors have neither), relayed to
    a client of the provider's API as they came, the message cut at
    `RELAYED_CHARS`. ``str()`` also names the provider and the status, for logs and
    tracebacks. ``upstream_type`` is the error type the provider gave, in the wire
    format it speaks (``upstream_api``: "openai" or "anthropic"). ``upstream_code``
    is what names the error in that format, kept in the ledger: OpenAI's ``code``,
    Anthropic's ``type`` (``overloaded_error``...)."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        upstream_type: str | None = None,
        upstream_api: str | None = None,
        provider: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        upstream_code: str | None = None,
    ) -> None:
        message = message[:RELAYED_CHARS]
        super().__init__(message, status=status, code=code, param=param, headers=headers)
        self.upstream_type = upstream_type
        self.upstream_api = upstream_api
        self.provider = provider
        self.upstream_code = upstream_code

    def __str__(self) -> str:
        if self.provider is None:
            return self.message
        return f"upstream {self.provider} returned {self.status}: {self.message}"


def upstream_code(exc: BaseException) -> str | None:
    """The upstream's own code for the refusal ``exc`` (what the ledger keeps as
    ``upstream_error_code``: OpenAI's ``code``, Anthropic's ``type``); None for
    every other error, the gateway's own codes (``upstream_auth_error``,
    ``rate_limit_exceeded``...) included."""
    return exc.upstream_code if isinstance(exc, UpstreamStatusError) else None


class UpstreamAuthError(UpstreamError):
    """The provider refused the gateway's credentials for it (401 or 403): the
    operator's to mend, not the client's, so a 502 that names neither the key nor
    the provider's message (which quotes part of the key)."""

    type = "upstream_auth_error"
    code = "upstream_auth_error"


class UpstreamConnectError(UpstreamError):
    type = "upstream_connect_error"


class UpstreamProtocolError(UpstreamError):
    type = "upstream_protocol_error"


class UpstreamTimeout(TokenomyError):
    status = 504
    type = "timeout_error"


class Overloaded(TokenomyError):
    status = 503
    type = "overloaded_error"


class ConfigError(TokenomyError):
    type = "config_error"
