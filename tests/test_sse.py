"""The SSE parser against the WHATWG event-stream format, whatever the upstream's
line ends and however its bytes are split into reads."""

from __future__ import annotations

import pytest

from tokenomy.sse import EventTooLarge, SSEEvent, SSEParser

# One stream in every form the spec allows: a BOM, CR / LF / CRLF line ends, a
# comment, a field without a space after its colon or without a colon at all,
# id and retry fields, multi-line data, an event type with no data (not an
# event), and multi-byte UTF-8.
WIRE = (
    b"\xef\xbb\xbf: ping\r"
    b"event: message_start\r\n"
    b'data:{"a":\n'
    b'data: "h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"}\r'
    b"id: 7\r\n"
    b"retry: 1000\r\n"
    b"\r\n"
    b"event: ping\r\r"
    b"data\n\n"
    b"data: [DONE]\r\r"
)
EXPECTED = [
    ("message_start", '{"a":\n"hé € 😀"}'.encode()),
    (None, b""),
    (None, b"[DONE]"),
]


def parse(reads: list[bytes]) -> tuple[list[SSEEvent], SSEParser]:
    p = SSEParser()
    events: list[SSEEvent] = []
    for r in reads:
        events += p.feed(r)
    return events, p


def pairs(events: list[SSEEvent]) -> list[tuple[str | None, bytes]]:
    return [(e.event, e.data) for e in events]


def test_one_read() -> None:
    events, p = parse([WIRE])
    assert pairs(events) == EXPECTED and not p.buffered
    assert events[0].raw.startswith(b": ping\nevent: message_start\n")  # LF line ends


@pytest.mark.parametrize("cut", range(1, len(WIRE)))
def test_split_in_two_at_every_byte(cut: int) -> None:
    """Inside the BOM, between a CR and its LF, inside a UTF-8 character."""
    events, p = parse([WIRE[:cut], WIRE[cut:]])
    assert pairs(events) == EXPECTED and not p.buffered


def test_one_byte_at_a_time() -> None:
    events, p = parse([WIRE[i : i + 1] for i in range(len(WIRE))])
    assert pairs(events) == EXPECTED and not p.buffered


def test_lone_cr_then_lf_in_the_next_read_is_one_line_end() -> None:
    events, _ = parse([b"data: a\r", b"\n", b"\r", b"\n", b"data: b\r\r"])
    assert pairs(events) == [(None, b"a"), (None, b"b")]
    events, _ = parse([b"data: a\r", b"", b"\n\r", b"\ndata: b\n\n"])
    assert pairs(events) == [(None, b"a"), (None, b"b")]


def test_a_bom_only_at_the_start_is_dropped() -> None:
    events, _ = parse([b"\xef", b"\xbb", b"\xbfdata: x\n\n\xef\xbb\xbfdata: y\n\n"])
    assert pairs(events) == [(None, b"x")]  # a later BOM makes an unknown field name
    events, _ = parse([b"\xef", b"data: x\n\n"])  # not a BOM after all: kept
    assert pairs(events) == []


def test_a_stream_cut_mid_event_is_buffered_a_trailing_comment_is_not() -> None:
    _, p = parse([b"data: x\n\ndata: [DONE]\n"])
    assert p.buffered  # the spec drops an event without its blank line
    _, p = parse([b"data: x\n\n: keep-alive\n"])
    assert not p.buffered


def test_an_endless_event_is_refused_memory_stays_bounded() -> None:
    """An upstream that never ends its line must not grow the gateway's memory
    without bound; the parser refuses once the pending event passes its limit."""
    p = SSEParser(max_event=1 << 20)
    assert p.feed(b"data: ok\n\n")[0].data == b"ok"
    read = b"x" * 4096
    with pytest.raises(EventTooLarge):
        for _ in range((1 << 20) // len(read) + 2):
            p.feed(read)
    p = SSEParser(max_event=1 << 20)
    big = b"data: " + b"y" * ((1 << 20) - 100) + b"\n\n"
    events: list[SSEEvent] = []
    for i in range(0, len(big), 4096):  # under the limit: served, in small reads
        events += p.feed(big[i : i + 4096])
    assert [len(e.data) for e in events] == [(1 << 20) - 100]
