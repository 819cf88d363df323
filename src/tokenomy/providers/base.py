"""The provider interface, and the HTTP machinery every provider shares.

A provider speaks one wire format (``api``: "openai" or "anthropic") to one
upstream. The gateway never asks which provider it has: it asks for the
operation (``send``/``stream``), normalised usage (``usage``), and reads the
capabilities from attributes.

Errors leave this module only as `tokenomy.errors` types, with the provider's
id for the failed reply when it sent one. Retries with backoff apply only
before any byte of the response has been passed on: to connect errors, and to
the error replies the upstream allows (`tokenomy.providers.retry`).
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp
import orjson

from ..config import Deployment, flag
from ..errors import (
    ConfigError,
    TokenomyError,
    UpstreamAuthError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from ..sse import EventTooLarge, SSEEvent, SSEParser
from ..usage import Usage
from .prefixes import TTL_1H_S, TTL_S, SeenPrefixes
from .retry import backoff, retry_delay

log = logging.getLogger("tokenomy.providers")

# What an upstream refusal tells the client's SDK about retrying it.
FORWARDED_RESPONSE_HEADERS = ("retry-after", "retry-after-ms", "x-should-retry")
# A request id is kept and passed on only if it looks like one: no header
# injection, no megabyte "id" in every ledger row.
_REQUEST_ID = re.compile(r"[!-~]{1,200}")
# A whole reply is held in memory to be metered: past this, it is refused. The
# largest real ones (2,048 embeddings of 3,072 dimensions) are about 100 MiB.
MAX_BODY_BYTES = 256 * 1024 * 1024
ERROR_BODY_BYTES = 64 * 1024  # an error's message is all that is kept of its body
# A request body past this (aiohttp's own threshold: a prompt with images in base64)
# is sent from a buffer, a chunk at a time, the event loop free between chunks;
# aiohttp warns against sending one as plain bytes.
LARGE_BODY_BYTES = 1024 * 1024
# A media type as RFC 9110 writes one (type/subtype, each a token), of a sane length.
_MEDIA_TYPE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,60}/[!#$%&'*+.^_`|~0-9A-Za-z-]{1,60}")


@dataclass(frozen=True, slots=True)
class ErrorDetails:
    """What an upstream's error body says: its message, and its type, code and
    param where it gave them (Anthropic's errors have no code or param)."""

    message: str
    type: str | None = None
    code: str | None = None
    param: str | None = None


def error_name(value: Any) -> str | None:
    """An error body's type, code or param, if it is one: a short printable string
    (some compatible servers send a number for ``code``; a control character, NUL
    included, is no part of a name, and PostgreSQL's text cannot hold a NUL)."""
    if isinstance(value, str) and 0 < len(value) <= 200 and value.isprintable():
        return value
    return None


def media_type(content_type: str) -> str | None:
    """A Content-Type header's media type, without its parameters (``text/html``),
    if it is one: a header of any other shape is not repeated."""
    kind = content_type.split(";", 1)[0].strip()
    return kind if _MEDIA_TYPE.fullmatch(kind) else None


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    headers: Mapping[str, str]
    data: Any  # parsed JSON
    raw: bytes  # the body as received, for pass-through


@dataclass(slots=True)
class UpstreamStream:
    """A stream the upstream accepted: its response headers, and its SSE events,
    one list per network read (so the relay answers one read with one write)."""

    headers: Mapping[str, str]
    reads: AsyncGenerator[list[SSEEvent], None]


class Provider(ABC):
    """One upstream deployment. Subclasses set the class attributes below."""

    api: ClassVar[str]  # wire format spoken: "openai" or "anthropic"
    default_base_url: ClassVar[str] = ""
    price_provider: ClassVar[str | None] = None  # genai-prices provider id
    supports_embeddings: ClassVar[bool] = False
    # The output cap's name in a chat request translated for this upstream.
    max_tokens_field: ClassVar[str] = "max_tokens"
    # Whether the upstream honours OpenAI's stream_options.include_usage.
    stream_usage: bool = True
    # The response header naming the upstream's own id for a reply (what its
    # support asks for), if it sends one.
    request_id_header: ClassVar[str | None] = None
    # Whether the upstream serves OpenAI's Responses API (op "responses"): a
    # deployment says otherwise with ``extra.responses``; only an upstream that
    # speaks OpenAI's API can (the gateway does not translate that API).
    supports_responses: bool = False

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.base_url = (deployment.base_url or self.default_base_url).rstrip("/")
        if not self.base_url:
            raise TokenomyError(f"deployment {deployment.name!r} has no base_url")
        self.stream_usage = flag(
            deployment.extra.get("stream_usage", type(self).stream_usage),
            f"models[{deployment.name}].stream_usage",
        )
        self.supports_responses = self.api == "openai" and flag(
            deployment.extra.get("responses", type(self).supports_responses),
            f"models[{deployment.name}].responses",
        )
        if deployment.service_tier is not None and self.api != "openai":
            raise ConfigError(
                f"deployment {deployment.name!r}: service_tier is OpenAI's; "
                f"provider {deployment.provider!r} does not speak OpenAI's API"
            )
        if deployment.prompt_cache is not None and self.api != "anthropic":
            raise ConfigError(
                f"deployment {deployment.name!r}: prompt_cache adds Anthropic's cache "
                f"breakpoints; provider {deployment.provider!r} does not speak its API"
            )
        # The prompt-cache lever's memory, for ``prompt_cache: auto``: as long as the
        # upstream keeps what the lever writes.
        self.prefixes: SeenPrefixes | None = None
        if deployment.prompt_cache == "auto":
            self.prefixes = SeenPrefixes(ttl=TTL_1H_S if deployment.prompt_cache_ttl == "1h"
                                         else TTL_S)  # fmt: skip
        self._session: aiohttp.ClientSession | None = None

    @property
    def name(self) -> str:
        return self.deployment.provider

    @property
    def pricing_provider(self) -> str | None:
        return self.deployment.price_provider or self.price_provider

    # -- what each provider defines ---------------------------------------------------------

    @abstractmethod
    def url(self, op: str, model: str) -> str:
        """Absolute URL for an operation ("chat", "embeddings", "responses")."""

    @abstractmethod
    def headers(self, client_headers: Mapping[str, str]) -> dict[str, str]:
        """Auth and version headers for the upstream."""

    @abstractmethod
    def usage(self, data: Mapping[str, Any]) -> Usage | None:
        """Normalise the usage block of a response (or stream event) to `Usage`."""

    def error_details(self, data: Any) -> ErrorDetails:
        """Message, type, code and param from the provider's error body (OpenAI's
        format; a provider of another overrides it)."""
        if isinstance(data, dict):
            err = data.get("error")
            if isinstance(err, dict):
                return ErrorDetails(
                    str(err.get("message") or "upstream error"),
                    error_name(err.get("type")),
                    error_name(err.get("code")),
                    error_name(err.get("param")),
                )
            if isinstance(err, str):
                return ErrorDetails(err)
        return ErrorDetails("upstream error")

    def error_code(self, details: ErrorDetails) -> str | None:
        """What names the error ``details`` in the provider's format, kept in the
        ledger as the upstream's code: OpenAI's ``code`` (a provider of another
        format overrides it)."""
        return details.code

    def request_id(self, headers: Mapping[str, str]) -> str | None:
        """The upstream's id for the reply with these headers (not a secret)."""
        name = self.request_id_header
        value = headers.get(name, "").strip() if name else ""
        return value if _REQUEST_ID.fullmatch(value) else None

    def error(
        self, status: int, details: ErrorDetails, headers: Mapping[str, str]
    ) -> UpstreamError:
        """The error for the upstream's refusal ``status`` (a reply's, or a stream's
        error event's), with the headers the client's SDK reads about retrying it."""
        exc: UpstreamError
        if status in (401, 403):
            log.warning("upstream %s refused the gateway's credentials (%d): %s",
                        self.name, status, details.message[:200])  # fmt: skip
            exc = UpstreamAuthError(
                f"upstream {self.name} refused the gateway's credentials "
                f"({status}); the gateway's operator must fix its key"
            )
        else:
            fwd = {h: headers[h] for h in FORWARDED_RESPONSE_HEADERS if h in headers}
            exc = UpstreamStatusError(
                details.message,
                status=status,
                upstream_type=details.type,
                upstream_api=self.api,
                provider=self.name,
                code=details.code,
                param=details.param,
                headers=fwd,
                upstream_code=self.error_code(details),
            )
        exc.upstream_request_id = self.request_id(headers)
        return exc

    # -- shared HTTP machinery ------------------------------------------------------------

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(
                connector=connector,
                json_serialize=lambda o: orjson.dumps(o).decode(),
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _timeout(self, stream: bool) -> aiohttp.ClientTimeout:
        dep = self.deployment
        if stream:  # a long stream is fine as long as bytes keep coming
            return aiohttp.ClientTimeout(
                total=None, connect=dep.connect_timeout, sock_read=dep.timeout
            )
        return aiohttp.ClientTimeout(total=dep.timeout, connect=dep.connect_timeout)

    async def _open(
        self,
        op: str,
        model: str,
        body: Mapping[str, Any],
        client_headers: Mapping[str, str],
        *,
        stream: bool,
    ) -> aiohttp.ClientResponse:
        """POST with retries; returns a response with a 2xx status, or raises."""
        headers = self.headers(client_headers)
        headers["content-type"] = "application/json"
        return await self._request(
            "POST", self.url(op, model), headers, orjson.dumps(body), stream=stream
        )

    async def _request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        payload: bytes | None,
        *,
        stream: bool,
    ) -> aiohttp.ClientResponse:
        """One request with retries; returns a response with a 2xx status, or raises."""
        attempts = self.deployment.max_retries + 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            # a buffer is read as it is sent: each attempt has its own
            data = (
                io.BytesIO(payload)
                if payload is not None and len(payload) > LARGE_BODY_BYTES
                else payload
            )
            try:
                resp = await self.session().request(
                    method, url, data=data, headers=headers, timeout=self._timeout(stream)
                )
            except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
                raise UpstreamTimeout(
                    f"upstream {self.name} did not answer within {self.deployment.timeout:g}s"
                ) from exc
            except (aiohttp.ClientConnectionError, OSError) as exc:
                if last:
                    raise UpstreamConnectError(
                        f"cannot reach upstream {self.name}: {type(exc).__name__}"
                    ) from exc
                await asyncio.sleep(backoff(attempt, self.deployment.retry_backoff))
                continue
            if resp.status < 400:
                return resp
            raw = await self._read(resp, error=True)
            delay = retry_delay(resp.status, resp.headers, attempt, self.deployment.retry_backoff)
            if delay is not None and not last:
                await asyncio.sleep(delay)
                continue
            raise self.error(
                resp.status, self.refusal_details(resp.status, raw, resp.headers), resp.headers
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def refusal_details(self, status: int, raw: bytes, headers: Mapping[str, str]) -> ErrorDetails:
        """What the error reply ``raw`` says. A body that is not the API's error
        object (a load balancer's HTML page, an empty body) is described, never
        quoted: its status and its content type, to tell it from the API's refusal."""
        try:
            data = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("error"), dict | str):
            return self.error_details(data)
        kind = media_type(headers.get("content-type", "")) or "no content type"
        return ErrorDetails(
            f"upstream {self.name} returned HTTP {status} ({kind if raw else 'empty body'}, "
            "not an API error body)"
        )

    async def _read(self, resp: aiohttp.ClientResponse, *, error: bool = False) -> bytes:
        """The whole body, decompressed. A reply past `MAX_BODY_BYTES` is refused
        (`UpstreamProtocolError`) and an error body is cut at `ERROR_BODY_BYTES`,
        its connection dropped: what the upstream sends never grows memory unbounded."""
        limit = ERROR_BODY_BYTES if error else MAX_BODY_BYTES
        body = bytearray()
        whole = False
        try:
            if not error and (resp.content_length or 0) > limit:
                raise self._too_large(limit)
            async for chunk in resp.content.iter_any():
                body += chunk
                if len(body) > limit:
                    if error:
                        return bytes(body[:limit])
                    raise self._too_large(limit)
            whole = True
            return bytes(body)
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout(f"upstream {self.name} timed out mid-response") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamConnectError(
                f"upstream {self.name} dropped the connection: {type(exc).__name__}"
            ) from exc
        finally:
            if whole:
                resp.release()
            else:
                resp.close()

    def _too_large(self, limit: int) -> UpstreamProtocolError:
        return UpstreamProtocolError(
            f"upstream {self.name} sent a reply over the gateway's limit of {limit} bytes"
        )

    async def send(
        self, op: str, model: str, body: Mapping[str, Any], client_headers: Mapping[str, str]
    ) -> UpstreamResponse:
        return await self._json(await self._open(op, model, body, client_headers, stream=False))

    async def _json(self, resp: aiohttp.ClientResponse) -> UpstreamResponse:
        raw = await self._read(resp)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise UpstreamProtocolError(f"upstream {self.name} sent invalid JSON") from exc
        return UpstreamResponse(resp.status, resp.headers, data, raw)

    async def fetch(
        self, method: str, url: str, client_headers: Mapping[str, str]
    ) -> UpstreamResponse:
        """A request without a body (``GET``, ``DELETE``) whose reply is JSON, with
        the retries and the error mapping of `send`."""
        headers = self.headers(client_headers)
        return await self._json(await self._request(method, url, headers, None, stream=False))

    async def stream(
        self, op: str, model: str, body: Mapping[str, Any], client_headers: Mapping[str, str]
    ) -> UpstreamStream:
        """Open a stream: errors before its first byte are retried or mapped, as for
        `send`; the events are read as the stream's ``reads`` are iterated."""
        resp = await self._open(op, model, body, client_headers, stream=True)
        return UpstreamStream(resp.headers, self._reads(resp))

    async def _reads(self, resp: aiohttp.ClientResponse) -> AsyncGenerator[list[SSEEvent], None]:
        parser = SSEParser()
        try:
            async for chunk in resp.content.iter_any():
                events = parser.feed(chunk)
                if events:
                    yield events
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout(f"upstream {self.name} stalled mid-stream") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamConnectError(
                f"upstream {self.name} dropped the stream: {type(exc).__name__}"
            ) from exc
        except EventTooLarge as exc:
            raise UpstreamProtocolError(f"upstream {self.name} sent an oversized event") from exc
        finally:
            if resp.content.at_eof():
                resp.release()
            else:  # the consumer stopped early: drop the connection, don't reuse it
                resp.close()
        if parser.buffered:
            raise UpstreamProtocolError(f"upstream {self.name} ended the stream mid-event")
