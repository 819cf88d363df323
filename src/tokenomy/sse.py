"""Incremental server-sent-events parsing and framing (bytes in, events out)."""

from __future__ import annotations

from dataclasses import dataclass

DONE_DATA = b"[DONE]"  # the data of an OpenAI stream's last event (not JSON)


@dataclass(slots=True)
class SSEEvent:
    event: str | None
    data: bytes
    raw: bytes  # the event exactly as received, terminator included, for pass-through


class SSEParser:
    """Feed raw bytes as they arrive; get whole events back.

    Handles ``\\n`` and ``\\r\\n`` line ends, multi-line ``data``, comments and
    events split across reads. ``buffered`` tells whether a partial event is
    pending, which at end of stream means the upstream stopped mid-event.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    @property
    def buffered(self) -> bool:
        return bool(self._buf.strip())

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        events: list[SSEEvent] = []
        start = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            block = buf[start : end + 2]
            start = end + 2
            ev = _parse_block(block)
            if ev is not None:
                events.append(ev)
        self._buf = buf[start:]
        return events


def _parse_block(block: bytes) -> SSEEvent | None:
    event: str | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line[0] == 58:  # b":" comment
            continue
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
    if event is None and not data:
        return None
    return SSEEvent(event, b"\n".join(data), block)


def frame(data: bytes, event: str | None = None) -> bytes:
    """Frame one event for the wire."""
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
