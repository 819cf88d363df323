"""Incremental server-sent-events parsing and framing (bytes in, events out).

The parser follows the WHATWG event-stream format: an optional leading BOM,
lines ended by CRLF, LF or a lone CR, comments, ``field: value`` lines, and a
blank line that dispatches an event unless it carried no ``data``. An event
that is still incomplete past `MAX_EVENT_BYTES` raises `EventTooLarge`: memory
stays bounded whatever the upstream sends.
"""

from __future__ import annotations

from dataclasses import dataclass

DONE_DATA = b"[DONE]"  # the data of an OpenAI stream's last event (not JSON)
BOM = b"\xef\xbb\xbf"
# No model streams an event near this; a larger pending one is a broken upstream.
MAX_EVENT_BYTES = 16 * 1024 * 1024


class EventTooLarge(ValueError):
    """An event (one line or many) grew past the parser's limit before it ended."""


@dataclass(slots=True)
class SSEEvent:
    event: str | None
    data: bytes
    raw: bytes  # the event as received, line ends as LF and terminator included, for pass-through


class SSEParser:
    """Feed raw bytes as they arrive; get whole events back.

    Events may be split across reads at any byte, including between a CR and its
    LF or inside the BOM. ``buffered`` tells whether a partial event is pending,
    which at end of stream means the upstream stopped mid-event (the spec drops
    such an event). Each byte is scanned once, so a long event arriving in
    small reads costs linear time.
    """

    __slots__ = ("_bom", "_buf", "_cr", "_scan", "max_event")

    def __init__(self, max_event: int | None = None) -> None:
        self._buf = bytearray()
        self._scan = 0  # where to resume looking for the blank line that ends an event
        self._cr = False  # the last read ended with a CR: an LF opening the next is its pair
        self._bom: bytes | None = b""  # the stream's first bytes until the BOM is ruled out
        self.max_event = MAX_EVENT_BYTES if max_event is None else max_event

    @property
    def buffered(self) -> bool:
        return any(line and line[0] != 58 for line in self._buf.split(b"\n"))

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._bom is not None:
            head = self._bom + chunk
            if len(head) < len(BOM) and BOM.startswith(head):
                self._bom = head  # too few bytes yet to tell
                return []
            self._bom = None
            chunk = head[len(BOM) :] if head.startswith(BOM) else head
        if self._cr and chunk[:1] == b"\n":
            chunk = chunk[1:]
            self._cr = False
        if chunk:
            self._cr = chunk[-1] == 13  # b"\r"
            if b"\r" in chunk:
                chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buf = self._buf
        data: bytes | bytearray
        if buf:  # a partial event is pending: the chunk goes on after it
            buf += chunk
            data, scan = buf, self._scan
        else:  # the usual case, whole events per read: no copy into the buffer
            data, scan = chunk, 0
        events: list[SSEEvent] = []
        start = 0
        while True:
            end = data.find(b"\n\n", scan)
            if end < 0:
                break
            block = data[start : end + 2]
            start = scan = end + 2
            ev = _parse_block(block if type(block) is bytes else bytes(block))
            if ev is not None:
                events.append(ev)
        if data is buf:
            if start:
                del buf[:start]
        elif start < len(data):
            buf += data[start:]
        self._scan = max(len(buf) - 1, 0)
        if len(buf) > self.max_event:
            raise EventTooLarge(f"an event grew past {self.max_event} bytes without ending")
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
    if not data:  # the spec dispatches no event without data (`event: ping` alone)
        return None
    return SSEEvent(event, b"\n".join(data), block)


def frame(data: bytes, event: str | None = None) -> bytes:
    """Frame one event for the wire."""
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
