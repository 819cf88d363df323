"""What the request fuzzers share: the values a field is replaced by, the walk
over a body's fields, JSON text that ``json.dumps`` cannot write, the check of an
error body, and the collector of the gateway's error logs."""

from __future__ import annotations

import copy
import json
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

UNKNOWN_FIELD = "tk_fuzz_unknown"


@dataclass(frozen=True, slots=True)
class Raw:
    """JSON text placed in a body as it is (what ``json.dumps`` cannot write)."""

    text: str


VALUES: tuple[tuple[str, Any], ...] = (
    ("null", None),
    ("true", True),
    ("zero", 0),
    ("minus-one", -1),
    ("1e308", 1e308),
    ("10**400", Raw("1" + "0" * 400)),
    ("2**64", 2**64),
    ("empty-string", ""),
    ("100k-string", "x" * 100_000),
    ("nul", "a\u0000b"),
    ("lone-surrogate", Raw('"a\\ud800b"')),
    ("empty-list", []),
    ("empty-object", {}),
    ("nested-5000", Raw("[" * 5000 + "]" * 5000)),
)


Path = tuple[str | int, ...]


def walk(node: Any, prefix: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every (path, value) under ``node``, parents before their children."""
    items: Any = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, value in items:
        yield (*prefix, key), value
        yield from walk(value, (*prefix, key))


def at(body: dict[str, Any], path: Path) -> Any:
    node: Any = body
    for key in path:
        node = node[key]
    return node


def replaced(body: dict[str, Any], path: Path, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    at(out, path[:-1])[path[-1]] = value
    return out


def removed(body: dict[str, Any], path: Path) -> dict[str, Any]:
    out = copy.deepcopy(body)
    del at(out, path[:-1])[path[-1]]
    return out


def encode(body: Any) -> bytes:
    """``body`` as JSON text, each `Raw` value written as its own text."""
    raws: list[str] = []

    def swap(node: Any) -> Any:
        if isinstance(node, Raw):
            raws.append(node.text)
            return f"\x01raw{len(raws) - 1}\x01"
        if isinstance(node, dict):
            return {k: swap(v) for k, v in node.items()}
        if isinstance(node, list):
            return [swap(v) for v in node]
        return node

    text = json.dumps(swap(body))
    for i, raw in enumerate(raws):
        text = text.replace(json.dumps(f"\x01raw{i}\x01"), raw)
    return text.encode()


def name(path: Path) -> str:
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path)


def error_problems(api: str, data: Any) -> list[str]:
    """What is wrong with ``data`` as an error body of ``api``."""
    if api == "anthropic":
        ok = (
            isinstance(data, dict)
            and data.get("type") == "error"
            and isinstance(data.get("error"), dict)
            and isinstance(data["error"].get("type"), str)
            and isinstance(data["error"].get("message"), str)
        )
    else:
        err = data.get("error") if isinstance(data, dict) else None
        ok = (
            isinstance(err, dict)
            and {"message", "type", "param", "code"} <= set(err)
            and isinstance(err["message"], str)
            and isinstance(err["type"], str)
        )
    return [] if ok else [f"not an {api} error body: {str(data)[:200]}"]


class Errors(logging.Handler):
    """Collects the gateway's (and uvicorn's) error logs: a failure swallowed on a
    path where the client saw nothing wrong still shows there."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(f"{record.name}: {record.getMessage()} {record.exc_text or ''}")

    @classmethod
    def watching(cls) -> Iterator[Errors]:
        handler = cls()
        # the gateway's loggers, and uvicorn's (which do not propagate): not the root,
        # where other tests' background threads may still be logging
        loggers = [logging.getLogger(n) for n in ("tokenomy", "uvicorn")]
        for lg in loggers:
            lg.addHandler(handler)
        try:
            yield handler
        finally:
            for lg in loggers:
                lg.removeHandler(handler)


def variants(
    body: dict[str, Any],
    rng: random.Random,
    nested: int,
    words: tuple[str, ...] = (),
    word_sample: int = 0,
) -> Iterator[tuple[str, bytes]]:
    """Every field of ``body`` replaced (by every value at the top level, by a seeded
    sample of `VALUES` deeper down; a string also by a sample of ``words``) and
    removed; an unknown field added to every object. Each as (label, JSON text):
    the label names the field and the change (``.messages[0].role = null``)."""
    for path, value in walk(body):
        where = name(path)
        values = VALUES if len(path) == 1 else rng.sample(VALUES, nested)
        if isinstance(value, str) and word_sample:
            values = [*values, *((repr(w), w) for w in rng.sample(words, word_sample))]
        for label, new in values:
            yield f"{where} = {label}", encode(replaced(body, path, new))
        yield f"{where} removed", encode(removed(body, path))
        if isinstance(value, dict):
            extra = {**value, UNKNOWN_FIELD: [1, {"x": None}]}
            yield f"{where} +{UNKNOWN_FIELD}", encode(replaced(body, path, extra))
