"""OpenTelemetry spans for metered requests, following the GenAI semantic conventions.

One CLIENT span per request that reached the ledger, named ``"{operation} {model}"``,
from the request's start to the moment its record was written, with:

- ``gen_ai.operation.name`` (``chat``, ``embeddings``), ``gen_ai.provider.name``
  and its older name ``gen_ai.system``, ``gen_ai.request.model``,
  ``gen_ai.response.model``, ``gen_ai.usage.input_tokens`` and
  ``gen_ai.usage.output_tokens`` (and the cache read / creation counts when
  there are any), ``gen_ai.request.max_tokens``/``temperature``/``top_p`` when
  the request set them, ``error.type`` on failure;
- ``tokenomy.cost_usd``: the exact cost as a decimal string (absent when the
  price is unknown, with ``tokenomy.price_unknown`` true), and the request id,
  team, org and key id.

OTLP's integer attributes are signed 64-bit: an int outside that range (a
client's ``max_tokens`` of 2**63 parses fine) is sent as its decimal string, since
the exporter would otherwise drop it with a logged traceback.

Spans go to an OTLP/HTTP endpoint only when one is configured (the
``otlp_endpoint`` setting, else ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_ENDPOINT``); the SDK and exporter are the ``otel`` extra and
are imported only then. Without an endpoint `otel_hook` returns None and the
gateway's cost is one attribute check. Export happens on the SDK's batch thread.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer

    from ..config import Settings
    from ..pipeline.context import Call

__all__ = ["SpanHook", "otel_hook", "span_attributes"]

log = logging.getLogger("tokenomy.otel")

# A Responses request is the conventions' "chat" (they name no operation of its own).
_OPERATIONS = {
    "chat": "chat",
    "responses": "chat",
    "embeddings": "embeddings",
    "completions": "text_completion",
}
# Gateway provider names that the GenAI conventions spell otherwise.
_PROVIDER_NAMES = {
    "azure_openai": "azure.ai.openai",
    "bedrock": "aws.bedrock",
    "vertex": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "mistral": "mistral_ai",
    "xai": "x_ai",
}


def span_attributes(call: Call) -> dict[str, Any]:
    """The span's attributes, from the request's ledger record."""
    rec = call.record
    provider = call.provider.pricing_provider if call.provider else None
    provider = provider or rec.provider or "unknown"
    provider = _PROVIDER_NAMES.get(provider, provider)
    u = rec.usage
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": _OPERATIONS.get(call.op, call.op),
        "gen_ai.provider.name": provider,
        "gen_ai.system": provider,
        "gen_ai.request.model": rec.requested_model,
        "gen_ai.usage.input_tokens": u.input_tokens,
        "gen_ai.usage.output_tokens": u.output_tokens,
        "tokenomy.request_id": rec.request_id,
        "tokenomy.price_unknown": rec.price_unknown,
        "tokenomy.usage_estimated": u.estimated,
        "tokenomy.stream": rec.stream,
        "http.response.status_code": rec.status,
    }
    if rec.served_model:
        attrs["gen_ai.response.model"] = rec.served_model
    if u.cache_read_tokens:
        attrs["gen_ai.usage.cache_read.input_tokens"] = u.cache_read_tokens
    if u.cache_write_tokens or u.cache_write_1h_tokens:
        attrs["gen_ai.usage.cache_creation.input_tokens"] = (
            u.cache_write_tokens + u.cache_write_1h_tokens
        )
    if rec.cost_usd is not None:
        attrs["tokenomy.cost_usd"] = format(rec.cost_usd, "f")
    for name, value in (("team", rec.team), ("org", rec.org), ("key_id", rec.key_id)):
        if value:
            attrs[f"tokenomy.{name}"] = value
    body = call.body
    for key, attr in (
        ("max_tokens", "gen_ai.request.max_tokens"),
        ("max_completion_tokens", "gen_ai.request.max_tokens"),
        ("temperature", "gen_ai.request.temperature"),
        ("top_p", "gen_ai.request.top_p"),
    ):
        value = body.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attrs[attr] = value
    if call.deployment is not None and call.deployment.base_url:
        parts = urlsplit(call.deployment.base_url)
        if parts.hostname:
            attrs["server.address"] = parts.hostname
            if parts.port:
                attrs["server.port"] = parts.port
    if rec.error_type:
        attrs["error.type"] = rec.error_type
    return {name: _otlp_value(value) for name, value in attrs.items()}


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _otlp_value(value: Any) -> Any:
    """`value`, or its decimal string when it is an int OTLP cannot carry."""
    if isinstance(value, int) and not _INT64_MIN <= value <= _INT64_MAX:
        return str(value)
    return value


class SpanHook:
    """Called by the gateway once a request's record is written: emits its span."""

    def __init__(self, tracer: Tracer, provider: TracerProvider | None = None) -> None:
        self.tracer = tracer
        self.provider = provider  # owned: flushed and shut down by `close`

    def __call__(self, call: Call) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        rec = call.record
        attrs = span_attributes(call)
        start = int(rec.ts * 1e9)
        end = start + int((rec.latency_ms or 0.0) * 1e6)
        name = f"{attrs['gen_ai.operation.name']} {rec.requested_model}".strip()
        span = self.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attrs,
                                      start_time=start)  # fmt: skip
        if rec.status >= 400:
            span.set_status(Status(StatusCode.ERROR, rec.error_type))
        span.end(end_time=end)

    def close(self, timeout: float = 30.0) -> None:
        """Flush the pending spans and stop the exporter, waiting at most `timeout`
        seconds: a collector that never answers must not hold up a shutdown."""
        provider, self.provider = self.provider, None
        if provider is None:
            return
        # The SDK's own shutdown waits up to 30 s per processor, whatever the caller's
        # drain time: it runs on a daemon thread and is given up on after `timeout`.
        done = threading.Thread(target=provider.shutdown, name="tokenomy-otel-shutdown",
                                daemon=True)  # fmt: skip
        done.start()
        done.join(timeout)
        if done.is_alive():
            log.warning("the OTLP collector did not take the last spans within %ss", timeout)


def otlp_endpoint(settings: Settings | None, env: Mapping[str, str]) -> str | None:
    """The OTLP/HTTP traces URL, or None when tracing is off. In order: the
    ``otlp_endpoint`` setting (a base URL), ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
    (the full URL), ``OTEL_EXPORTER_OTLP_ENDPOINT`` (a base URL)."""
    setting = getattr(settings, "otlp_endpoint", None)
    if setting:
        return str(setting).rstrip("/") + "/v1/traces"
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return env["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"
    return None


def otel_hook(
    settings: Settings | None = None, *, env: Mapping[str, str] | None = None
) -> Callable[[Call], None] | None:
    """A `SpanHook` exporting to the configured OTLP endpoint, or None if none is."""
    url = otlp_endpoint(settings, os.environ if env is None else env)
    if url is None:
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        log.warning(
            "an OTLP endpoint is configured but the exporter is missing "
            "(pip install 'tokenomy[otel]'): no spans will be sent (%s)",
            exc,
        )
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": "tokenomy"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    return SpanHook(provider.get_tracer("tokenomy"), provider)
