"""OpenTelemetry export: one GenAI span per request, and nothing at all when off."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway_fixtures import GW, Fake, closed_port, gateway_settings, start_gateway
from tokenomy.config import Settings
from tokenomy.insights.otel import SpanHook, otel_hook, otlp_endpoint

MSG = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def spans(gw: GW) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    gateway = gw.app.gateway
    assert gateway is not None and gateway.on_finish is None  # the suite sets no endpoint
    gateway.on_finish = SpanHook(provider.get_tracer("test"))
    try:
        yield exporter
    finally:
        gateway.on_finish = None
        provider.shutdown()


def only(exporter: InMemorySpanExporter) -> ReadableSpan:
    finished = exporter.get_finished_spans()
    assert len(finished) == 1, [s.name for s in finished]
    return finished[0]


def test_a_request_emits_one_genai_span_with_the_exact_cost(
    gw: GW, spans: InMemorySpanExporter
) -> None:
    raw = gw.openai().chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MSG, max_tokens=50, temperature=0.2
    )
    rec = gw.record(raw.headers["x-tokenomy-request-id"])
    span = only(spans)
    attrs = dict(span.attributes or {})
    assert span.name == "chat gpt-4o" and span.kind is SpanKind.CLIENT
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == attrs["gen_ai.system"] == "openai"
    assert attrs["gen_ai.request.model"] == "gpt-4o"
    assert attrs["gen_ai.response.model"] == "gpt-4o"
    assert attrs["gen_ai.usage.input_tokens"] == rec.usage.input_tokens
    assert attrs["gen_ai.usage.output_tokens"] == rec.usage.output_tokens
    assert attrs["gen_ai.request.max_tokens"] == 50
    assert attrs["gen_ai.request.temperature"] == 0.2
    assert rec.cost_usd is not None
    assert attrs["tokenomy.cost_usd"] == format(rec.cost_usd, "f")
    assert attrs["tokenomy.request_id"] == rec.request_id
    assert attrs["tokenomy.team"] == "search" and attrs["server.address"] == "127.0.0.1"
    assert span.start_time == int(rec.ts * 1e9)
    assert span.end_time is not None and span.end_time >= span.start_time


def test_a_stream_emits_one_span_when_it_ends(gw: GW, spans: InMemorySpanExporter) -> None:
    stream = gw.openai().chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text
    attrs = dict(only(spans).attributes or {})
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini" and attrs["tokenomy.stream"] is True
    assert int(str(attrs["gen_ai.usage.output_tokens"])) > 0


def test_a_legacy_completion_is_a_text_completion_span(gw: GW, spans: InMemorySpanExporter) -> None:
    gw.openai().completions.create(model="gpt-4o", prompt="hello there", max_tokens=3)
    span = only(spans)
    attrs = dict(span.attributes or {})
    assert span.name == "text_completion gpt-4o"
    assert attrs["gen_ai.operation.name"] == "text_completion"  # the GenAI conventions' name
    assert attrs["gen_ai.request.max_tokens"] == 3


def test_anthropic_and_unpriced_and_failed_requests(gw: GW, spans: InMemorySpanExporter) -> None:
    gw.anthropic().messages.create(model="claude-haiku-4-5", max_tokens=20, messages=MSG)
    attrs = dict(only(spans).attributes or {})
    assert attrs["gen_ai.provider.name"] == "anthropic"
    assert attrs["gen_ai.request.max_tokens"] == 20
    spans.clear()
    gw.openai().chat.completions.create(model="mystery-model-x", messages=MSG)
    attrs = dict(only(spans).attributes or {})
    assert "tokenomy.cost_usd" not in attrs and attrs["tokenomy.price_unknown"] is True
    spans.clear()
    with pytest.raises(Exception):  # noqa: B017 - any SDK error: the upstream is down
        gw.openai().chat.completions.create(model="dead-model", messages=MSG)
    span = only(spans)
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"]


def test_without_an_endpoint_nothing_is_imported_or_emitted(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from tokenomy.config import Settings\n"
        "from tokenomy.gateway import Gateway\n"
        "g = Gateway(Settings(db=sys.argv[1]))\n"
        "assert g.on_finish is None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TOKENOMY_"))}
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "l.db")],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == "[]"


def test_endpoint_resolution() -> None:
    assert otlp_endpoint(Settings(), {}) is None
    assert otlp_endpoint(Settings(), {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}) == (
        "http://c:4318/v1/traces"
    )
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
           "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:4318/custom"}  # fmt: skip
    assert otlp_endpoint(Settings(), env) == "http://t:4318/custom"
    assert otlp_endpoint(Settings(otlp_endpoint="http://s:4318"), env) == "http://s:4318/v1/traces"
    assert otel_hook(Settings(), env={}) is None


class _Collector(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.received.append((self.path, self.headers["content-type"], body))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_spans_reach_an_otlp_http_collector(gw: GW) -> None:
    received: list[tuple[str, str, bytes]] = []
    server = HTTPServer(("127.0.0.1", 0), type("C", (_Collector,), {"received": received}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    gateway = gw.app.gateway
    assert gateway is not None
    hook = otel_hook(Settings(otlp_endpoint=f"http://127.0.0.1:{server.server_port}"), env={})
    assert isinstance(hook, SpanHook)
    gateway.on_finish = hook
    try:
        gw.openai().chat.completions.create(model="gpt-4o", messages=MSG)
    finally:
        gateway.on_finish = None
        hook.close()  # flushes the batch
        server.shutdown()
        server.server_close()
    assert received, "the collector got nothing"
    path, ctype, body = received[0]
    assert path == "/v1/traces" and ctype == "application/x-protobuf"
    assert b"gen_ai.usage.input_tokens" in body and b"tokenomy.cost_usd" in body


def _collector() -> tuple[HTTPServer, list[tuple[str, str, bytes]]]:
    received: list[tuple[str, str, bytes]] = []
    server = HTTPServer(("127.0.0.1", 0), type("C", (_Collector,), {"received": received}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, received


def test_closing_the_gateway_flushes_the_last_spans(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Path
) -> None:
    server, received = _collector()
    url = f"http://127.0.0.1:{server.server_port}"
    settings = gateway_settings(str(tmp_path / "l.db"), fake, fake_llamacpp, otlp_endpoint=url)
    try:
        with contextmanager(start_gateway)(settings, fake) as gw:
            assert isinstance(gw.app.gateway and gw.app.gateway.on_finish, SpanHook)
            gw.openai().chat.completions.create(model="gpt-4o", messages=MSG)
            assert not received  # still in the batch: the schedule delay is seconds
    finally:
        server.shutdown()
        server.server_close()
    assert received and b"gen_ai.usage.input_tokens" in received[0][2]


@pytest.fixture(params=["refuses", "never-answers"])
def dead_collector(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "refuses":
        yield f"http://127.0.0.1:{closed_port()}"
        return
    with socket.socket() as sock:  # accepts connections into its backlog, never replies
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_a_dead_collector_never_holds_up_requests_or_shutdown(
    fake: Fake,
    fake_llamacpp: Fake,
    tmp_path: Path,
    dead_collector: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "2")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2")
    settings = gateway_settings(
        str(tmp_path / "l.db"), fake, fake_llamacpp, otlp_endpoint=dead_collector,
        drain_timeout=0.5,
    )  # fmt: skip
    with contextmanager(start_gateway)(settings, fake) as gw:
        client = gw.openai()
        for _ in range(8):
            reply = client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
            assert reply.choices[0].message.content
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert len(gw.store.list_records(limit=100)) == 9
        hook = gw.app.gateway and gw.app.gateway.on_finish
        assert isinstance(hook, SpanHook) and hook.provider is not None
        # The exporter is stuck on its first batch; the SDK's queue stays at its bound
        # (it drops, with a log the SDK writes once per process), nothing piles up.
        processors = hook.provider._active_span_processor._span_processors
        assert [len(p._batch_processor._queue) for p in processors] == [2]  # type: ignore[attr-defined]
    assert gw.app.gateway is not None and gw.app.gateway.on_finish.provider is None  # closed


def test_a_failing_span_hook_never_fails_the_request(gw: GW) -> None:
    def broken(call: object) -> None:
        raise RuntimeError("exporter bug")

    gateway = gw.app.gateway
    assert gateway is not None
    gateway.on_finish = broken
    try:
        raw = gw.openai().chat.completions.with_raw_response.create(model="gpt-4o", messages=MSG)
        stream = gw.openai().chat.completions.create(model="gpt-4o", messages=MSG, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    finally:
        gateway.on_finish = None
    assert raw.parse().choices[0].message.content
    assert gw.record(raw.headers["x-tokenomy-request-id"]).status == 200


def test_an_int_past_64_bits_is_sent_as_a_string_without_a_traceback(
    gw: GW, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    huge = 2**63  # valid JSON and a valid int here, one past OTLP's signed 64-bit int
    raw = gw.openai().chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MSG, max_tokens=huge
    )
    span = only(spans)
    attrs = dict(span.attributes or {})
    assert attrs["gen_ai.request.max_tokens"] == str(huge)
    rec = gw.record(raw.headers["x-tokenomy-request-id"])
    assert attrs["gen_ai.usage.input_tokens"] == rec.usage.input_tokens  # in range: still an int
    with caplog.at_level(logging.DEBUG):
        encoded = encode_spans([span]).SerializeToString()
    assert not [r for r in caplog.records if r.exc_info], caplog.text
    assert str(huge).encode() in encoded
