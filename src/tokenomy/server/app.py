"""The gateway as a plain ASGI application.

Routes are a dict lookup; each LLM route parses the body, checks field types and
hands a `Call` to `Gateway.handle`. Every error is rendered by
`tokenomy.server.errors` in the format of the API that was called.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Container
from typing import Any

from ..config import Settings
from ..dashboard import handle_ui
from ..dashboard.auth import LoginThrottle
from ..errors import AuthenticationFailed, NotFound, Overloaded, TokenomyError
from ..gateway import ANTHROPIC_ID_HEADER, ID_HEADER, Gateway
from ..keys import bearer_token
from ..pipeline.context import ANTHROPIC, OPENAI, Call, JSONReply, StreamReply, new_request_id
from ..validate import check_request
from .admin import handle_admin
from .errors import error_body
from .feedback import handle_feedback
from .http import Scope, encode_headers, header_dict, parse_json, read_body, send_bytes, send_json
from .stored_responses import PREFIXES as STORED_PREFIXES
from .stored_responses import handle_stored_response
from .unmetered import handle_count_tokens, handle_input_tokens, handle_moderations

log = logging.getLogger("tokenomy.server")

# path → (api, op, schema)
LLM_ROUTES: dict[str, tuple[str, str, str]] = {
    "/v1/chat/completions": (OPENAI, "chat", "openai.chat"),
    "/chat/completions": (OPENAI, "chat", "openai.chat"),
    "/v1/messages": (ANTHROPIC, "chat", "anthropic.chat"),
    "/v1/responses": (OPENAI, "responses", "openai.responses"),
    "/responses": (OPENAI, "responses", "openai.responses"),
    "/v1/embeddings": (OPENAI, "embeddings", "openai.embeddings"),
    "/embeddings": (OPENAI, "embeddings", "openai.embeddings"),
    "/v1/completions": (OPENAI, "completions", "openai.completions"),
    "/completions": (OPENAI, "completions", "openai.completions"),
}
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class TokenomyApp:
    def __init__(self, settings: Settings, gateway: Gateway | None = None) -> None:
        self.settings = settings
        self.gateway = gateway
        self.draining = False
        self.started_at = time.time()
        self.login_throttle = LoginThrottle()  # the dashboard's sign-in form

    # -- lifecycle ------------------------------------------------------------------

    async def startup(self) -> None:
        if self.gateway is None:
            self.gateway = Gateway(self.settings)
        await self.gateway.start()

    async def shutdown(self) -> None:
        self.draining = True
        if self.gateway is not None:
            await self.gateway.close()

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:  # reported to the server, which exits
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- requests -------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            return
        path: str = scope["path"]
        route = LLM_ROUTES.get(path)
        api = route[0] if route else api_off_route(path, scope)
        try:
            if self.gateway is None:
                raise Overloaded("The gateway is starting.")
            if route is not None and scope["method"] == "POST":
                await self._llm(scope, receive, send, *route)
            elif path in ("/healthz", "/health"):
                await send_json(send, 200, {"status": "draining" if self.draining else "ok"})
            elif path == "/metrics":
                if self.settings.metrics_auth:
                    self.gateway.keys.require_master(
                        bearer_token(header_dict(scope)), "GET /metrics"
                    )
                await send_bytes(
                    send,
                    200,
                    self.gateway.metrics.render(),
                    content_type=b"text/plain; version=0.0.4",
                )
            elif path == "/v1/feedback" and scope["method"] == "POST":
                await handle_feedback(self.gateway, scope, receive, send)
            elif path in ("/v1/models", "/models") and scope["method"] == "GET":
                await self._models(scope, send, api)
            elif path.startswith(("/v1/models/", "/models/")) and scope["method"] == "GET":
                await self._model(scope, send, api, path.partition("/models/")[2])
            elif path == "/v1/messages/count_tokens" and scope["method"] == "POST":
                model = await handle_count_tokens(self.gateway, scope, receive, send)
                self.gateway.metrics.observe_unmetered("count_tokens", model)
            elif path in ("/v1/moderations", "/moderations") and scope["method"] == "POST":
                model = await handle_moderations(self.gateway, scope, receive, send)
                self.gateway.metrics.observe_unmetered("moderations", model)
            elif path in ("/v1/responses/input_tokens", "/responses/input_tokens") and (
                scope["method"] == "POST"
            ):
                model = await handle_input_tokens(self.gateway, scope, receive, send)
                self.gateway.metrics.observe_unmetered("input_tokens", model)
            elif path.startswith(STORED_PREFIXES):
                name = await handle_stored_response(self.gateway, scope, send)
                self.gateway.metrics.observe_unmetered(name)
            elif path.startswith("/admin/"):
                await handle_admin(self.gateway, scope, receive, send, header_dict(scope))
            elif path == "/ui" or path.startswith("/ui/"):
                await handle_ui(self.gateway, scope, receive, send, self.login_throttle)
            else:
                raise NotFound(f"Unknown route: {scope['method']} {path}", code="unknown_route")
        except TokenomyError as exc:
            await self._error(send, api, exc, None)
        except Exception:  # the last line of defence: log it, answer in format, never a traceback
            log.exception("unhandled error on %s", path)
            await self._error(send, api, TokenomyError("Internal error in the gateway."), None)

    async def _error(self, send: Any, api: str, exc: TokenomyError, request_id: str | None) -> None:
        headers = dict(exc.headers)
        if request_id:
            headers[ID_HEADER] = request_id
            if api == ANTHROPIC:  # what Anthropic's SDK reads as the error's request_id
                headers[ANTHROPIC_ID_HEADER] = request_id
        if exc.status == 429 and "retry-after" not in headers:
            headers["retry-after"] = "1"
        status = exc.status if 400 <= exc.status < 600 else 500
        try:
            await send_bytes(send, status, error_body(api, exc, request_id), headers)
        except RuntimeError:  # the response had already started; nothing more can be said
            pass

    async def _allowed(self, scope: Scope) -> Container[str] | None:
        """The models the caller's key is limited to; None: any."""
        gw = self.gateway
        assert gw is not None
        if not self.settings.require_key:
            return None
        key = await gw.keys.authenticate(bearer_token(header_dict(scope)))
        return key.models or None

    def _model_list(self) -> list[dict[str, Any]]:
        """The models a client may name: the deployments and the aliases."""
        gw = self.gateway
        assert gw is not None
        now = int(self.started_at)
        data = [
            {"id": d.name, "object": "model", "created": now, "owned_by": d.provider}
            for d in self.settings.deployments
            if not any(ch in d.name for ch in "*?[")
        ]
        config = gw.resolve.config
        listed = {m["id"] for m in data}
        data += [  # a name balanced over deployments, as its first deployment's
            {"id": name, "object": "model", "created": now, "owned_by": dep.provider}
            for name in config.balance
            if name not in listed and (dep := gw.resolve.deployment_for(name)) is not None
        ]
        data += [  # aliases (tokenomy/auto, cheap-first, the operator's) are models too
            {"id": name, "object": "model", "created": now, "owned_by": "tokenomy"}
            for name in config.aliases
        ]
        return data

    async def _models(self, scope: Scope, send: Any, api: str) -> None:
        allowed = await self._allowed(scope)  # a key limited to some models sees those
        data = [m for m in self._model_list() if allowed is None or m["id"] in allowed]
        if api == ANTHROPIC:
            await send_json(send, 200, anthropic_models(data))
        else:
            await send_json(send, 200, {"object": "list", "data": data})

    async def _model(self, scope: Scope, send: Any, api: str, model_id: str) -> None:
        """``GET /v1/models/{id}``: one model, as the API shows one: a listed one, or
        one a wildcard deployment (``claude-*``) serves. A model the key may not use
        does not exist for it, as in the list."""
        allowed = await self._allowed(scope)
        found = next((m for m in self._model_list() if m["id"] == model_id), None)
        if found is None and (dep := self.settings.find_deployment(model_id)) is not None:
            found = {
                "id": model_id, "object": "model", "created": int(self.started_at),
                "owned_by": dep.provider,
            }  # fmt: skip
        if found is None or (allowed is not None and model_id not in allowed):
            if api == ANTHROPIC:
                raise NotFound(f"model: {model_id}")
            raise NotFound(
                f"The model '{model_id}' does not exist", param="model", code="model_not_found"
            )
        await send_json(send, 200, anthropic_model(found) if api == ANTHROPIC else found)

    async def _llm(
        self, scope: Scope, receive: Any, send: Any, api: str, op: str, schema: str
    ) -> None:
        gw = self.gateway
        assert gw is not None
        request_id = new_request_id()
        if self.draining:
            raise Overloaded("The gateway is shutting down.")
        gw.arriving()
        headers = header_dict(scope)
        try:
            body = check_request(schema, parse_json(await read_body(receive)))
            call = Call(api, op, scope["path"], body, headers, request_id=request_id)
            reply = await gw.handle(call)
        except TokenomyError as exc:
            if isinstance(exc, AuthenticationFailed):
                log.info("auth failed on %s: %s", scope["path"], exc.message)
            await self._error(send, api, exc, request_id)
            return
        if isinstance(reply, JSONReply):
            await send_bytes(send, reply.status, reply.body, reply.headers)
            return
        await self._stream(receive, send, reply)

    async def _stream(self, receive: Any, send: Any, reply: StreamReply) -> None:
        gone = asyncio.Event()
        chunks: Any = reply.chunks  # an async generator: closed below

        async def watch() -> None:
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    gone.set()
                    reply.hangup()
                    return

        watcher = asyncio.create_task(watch())
        started = False
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": SSE_HEADERS + encode_headers(reply.headers),
                }
            )
            started = True
            async for piece in chunks:
                if gone.is_set():
                    break
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            else:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            if not started:
                # Closing a generator never started skips its cleanup: the upstream
                # stream, already open, would stay so and the request go unrecorded.
                # Run it to its first write; the close below then records it (499).
                with contextlib.suppress(StopAsyncIteration):
                    await anext(chunks)
            await chunks.aclose()  # on disconnect this records what was generated
            watcher.cancel()


def api_of(path: str, scope: Scope) -> str:
    """The API called on `path`: the LLM route's, else `api_off_route`'s."""
    route = LLM_ROUTES.get(path)
    return route[0] if route else api_off_route(path, scope)


def api_off_route(path: str, scope: Scope) -> str:
    """The API called, off the LLM routes: OpenAI's (the admin API, feedback, unknown
    paths) except for what Anthropic's SDK calls: /v1/messages/... (count_tokens,
    batches) and the model list, which it asks for with ``anthropic-version``."""
    if path.startswith("/v1/messages/"):
        return ANTHROPIC
    if path.startswith(("/v1/models", "/models")):  # the headers only where they matter
        return ANTHROPIC if "anthropic-version" in header_dict(scope) else OPENAI
    return OPENAI


def anthropic_model(m: dict[str, Any]) -> dict[str, Any]:
    """One model in Anthropic's format, from its OpenAI form."""
    return {
        "type": "model",
        "id": m["id"],
        "display_name": m["id"],
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(m["created"])),
    }


def anthropic_models(data: list[dict[str, Any]]) -> dict[str, Any]:
    """The model list in Anthropic's format (``GET /v1/models``, one page)."""
    models = [anthropic_model(m) for m in data]
    return {
        "data": models,
        "has_more": False,
        "first_id": models[0]["id"] if models else None,
        "last_id": models[-1]["id"] if models else None,
    }


def create_app(settings: Settings, gateway: Gateway | None = None) -> TokenomyApp:
    return TokenomyApp(settings, gateway)
