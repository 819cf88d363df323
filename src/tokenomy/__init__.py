"""Tokenomy: make the LLM token bill visible, capped and smaller.

The public API is the names in ``__all__`` (see docs/library.md); every other
module is internal and may change. The names load on first use, so that
``import tokenomy`` (and each command of the CLI) does not pay for the pipeline.
"""

import importlib
import typing

if typing.TYPE_CHECKING:
    from ._library import Pipeline
    from ._results import Result, Stream
    from .config import Deployment, Settings, load_settings
    from .errors import (
        AuthenticationFailed,
        ConfigError,
        InvalidRequest,
        NotFound,
        Overloaded,
        PermissionDenied,
        RateLimited,
        TokenomyError,
        UpstreamAuthError,
        UpstreamConnectError,
        UpstreamError,
        UpstreamProtocolError,
        UpstreamStatusError,
        UpstreamTimeout,
    )
    from .pricing import Cost, PriceBook, PriceOverride
    from .records import UsageRecord
    from .tokens import TokenCount, count_anthropic_request, count_chat_messages, count_text
    from .usage import Usage

# public name → the module that defines it
_EXPORTS = {
    "Pipeline": "._library",
    "Result": "._results",
    "Stream": "._results",
    "Deployment": ".config",
    "Settings": ".config",
    "load_settings": ".config",
    "AuthenticationFailed": ".errors",
    "ConfigError": ".errors",
    "InvalidRequest": ".errors",
    "NotFound": ".errors",
    "Overloaded": ".errors",
    "PermissionDenied": ".errors",
    "RateLimited": ".errors",
    "TokenomyError": ".errors",
    "UpstreamAuthError": ".errors",
    "UpstreamConnectError": ".errors",
    "UpstreamError": ".errors",
    "UpstreamProtocolError": ".errors",
    "UpstreamStatusError": ".errors",
    "UpstreamTimeout": ".errors",
    "Cost": ".pricing",
    "PriceBook": ".pricing",
    "PriceOverride": ".pricing",
    "UsageRecord": ".records",
    "TokenCount": ".tokens",
    "count_anthropic_request": ".tokens",
    "count_chat_messages": ".tokens",
    "count_text": ".tokens",
    "Usage": ".usage",
}

__all__ = [
    "AuthenticationFailed",
    "ConfigError",
    "Cost",
    "Deployment",
    "InvalidRequest",
    "NotFound",
    "Overloaded",
    "PermissionDenied",
    "Pipeline",
    "PriceBook",
    "PriceOverride",
    "RateLimited",
    "Result",
    "Settings",
    "Stream",
    "TokenCount",
    "TokenomyError",
    "UpstreamAuthError",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamStatusError",
    "UpstreamTimeout",
    "Usage",
    "UsageRecord",
    "count_anthropic_request",
    "count_chat_messages",
    "count_text",
    "load_settings",
]


def __getattr__(name: str) -> typing.Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tokenomy' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # found once; later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
