"""Serve an ASGI app on a loopback port from a background thread, for tests.

Streaming and the synchronous SDK clients need a real socket; this gives one
without a subprocess::

    with serve_in_thread(create_app()) as base_url:
        client = openai.OpenAI(base_url=base_url + "/v1", api_key="x")
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


@contextmanager
def serve_in_thread(
    app: Any, host: str = "127.0.0.1", *, startup_timeout: float = 10.0, http: Any = "auto"
) -> Iterator[str]:
    """Run `app` under uvicorn on a free port of `host`; yield ``http://host:port``.

    `http` is uvicorn's HTTP protocol (a name or a class; the gateway's is
    `tokenomy.server.protocol.GatewayProtocol`). The server stops when the block
    exits; open streams get a second to finish.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
        http=http,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {host}:{port}")
            time.sleep(0.002)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()
