"""Provider registry. Built-ins register through the same call as plugins, which
are found under the ``tokenomy.providers`` entry-point group."""

from __future__ import annotations

from importlib.metadata import entry_points

from ..config import Deployment
from ..errors import ConfigError
from .anthropic import AnthropicProvider
from .base import Provider, UpstreamResponse, UpstreamStream
from .openai import COMPATIBLE, AzureOpenAIProvider, OpenAIProvider, compatible

_REGISTRY: dict[str, type[Provider]] = {}


def register_provider(name: str, cls: type[Provider]) -> None:
    _REGISTRY[name] = cls


def _register_builtins() -> None:
    register_provider("openai", OpenAIProvider)
    register_provider("azure", AzureOpenAIProvider)
    register_provider("anthropic", AnthropicProvider)
    for name, (base, price_id, stream_usage) in COMPATIBLE.items():
        register_provider(name, compatible(name, base, price_id, stream_usage=stream_usage))
    for ep in entry_points(group="tokenomy.providers"):
        register_provider(ep.name, ep.load())


_register_builtins()


def provider_names() -> list[str]:
    return sorted(_REGISTRY)


def create_provider(deployment: Deployment) -> Provider:
    try:
        cls = _REGISTRY[deployment.provider]
    except KeyError:
        raise ConfigError(
            f"deployment {deployment.name!r}: unknown provider {deployment.provider!r} "
            f"(known: {', '.join(provider_names())})"
        ) from None
    return cls(deployment)


__all__ = [
    "Provider",
    "UpstreamResponse",
    "UpstreamStream",
    "create_provider",
    "provider_names",
    "register_provider",
]
