"""Logged traffic to replay: requests with their usage, from three sources.

- Tokenomy's own ledger (`from_ledger`), read a page at a time each time its
  requests are iterated: a simulation holds one page, whatever the ledger's size.
- An OpenAI-format JSONL log (`from_jsonl`): one object a line, either a chat
  completion response (``{"model", "usage", "created", ...}``), a Batch API output
  line (``{"custom_id", "response": {"body": <completion>}}``) or a pair
  (``{"request": <body>, "response": <completion>}``). Usage is read from
  ``usage``; when a line has none, its tokens are counted from the request's
  messages (each image its likely cost, `tokenomy.images`) and the answer's
  text, and marked estimated.
- The AlpacaEval outputs file (`from_alpaca_eval`): real instructions with the
  answers of several real models. One model's answers are the traffic; the
  other models' recorded answers are the `Evidence` a reroute is judged by.

Evidence is what is *known* about a request under another model: that model's
own token counts and, where a source has one, a quality score. With none, the
simulator keeps the tokens as logged and calls the quality effect unknown.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from ..images import image_tokens_estimate
from ..ledger.base import Store
from ..providers.openai import openai_usage as provider_usage
from ..routing.learned.features import prompt_text
from ..tokens import count_chat_messages, count_text
from ..usage import Usage

__all__ = [
    "ALPACA_EVAL_MODELS",
    "Evidence",
    "LedgerRequests",
    "Outcome",
    "Request",
    "Traffic",
    "from_alpaca_eval",
    "from_jsonl",
    "from_ledger",
    "openai_usage",
]


@dataclass(frozen=True, slots=True)
class Request:
    request_id: str
    model: str
    usage: Usage
    provider: str | None = None  # a genai-prices provider id, or a gateway provider name
    override_key: str | None = None  # the deployment whose price override applies
    ts: float | None = None  # unix seconds; None when the log has no times
    team: str | None = None
    route: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    logged_cost: Decimal | None = None  # what the ledger recorded, if it did
    prompt_id: str | None = None  # key into the traffic's Evidence
    prompt: str | None = None  # the user's text, where the log has it (for a router)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a source recorded for one prompt answered by one model."""

    input_tokens: int
    output_tokens: int
    score: float | None = None  # a quality judgement in [0, 1], where the source has one
    estimated: bool = False  # counted with a tokenizer that is not the model's own


class Evidence(Protocol):
    name: str

    def outcome(self, req: Request, model: str) -> Outcome | None: ...


@dataclass(slots=True)
class Traffic:
    # A list (a file read whole), or requests read as they are iterated (the ledger).
    requests: Iterable[Request]
    name: str  # where the traffic comes from: a simulation adds how many requests
    evidence: Evidence | None = None


# -- the ledger ------------------------------------------------------------------------

PAGE = 2000  # ledger records read at a time


@dataclass(frozen=True, slots=True)
class LedgerRequests:
    """The ledger's requests in ``[since, until)`` with tokens or a cost, oldest
    first: each iteration reads the ledger again, `PAGE` records at a time."""

    store: Store
    since: float | None = None
    until: float | None = None

    def __iter__(self) -> Iterator[Request]:
        for rec in self.store.iter_records(since=self.since, page=PAGE):
            if self.until is not None and rec.ts >= self.until:
                return
            if not rec.usage.total_tokens and rec.cost_usd is None:
                continue  # refused before it reached a model
            yield Request(
                request_id=rec.request_id,
                model=rec.served_model or rec.requested_model,
                usage=rec.usage,
                provider=rec.provider,
                override_key=rec.deployment,
                ts=rec.ts,
                team=rec.team,
                route=rec.tags.get("route") or rec.endpoint,
                tags=dict(rec.tags),
                logged_cost=rec.cost_usd,
            )


def from_ledger(store: Store, *, since: float | None = None, until: float | None = None) -> Traffic:
    """Every record with tokens or a cost, oldest first, read from ``store`` a page
    at a time as it is iterated (keep the store open until then)."""
    return Traffic(LedgerRequests(store, since, until), "ledger")


# -- OpenAI-format JSONL -----------------------------------------------------------------


_MOST_TOKENS = 10**12  # per request: more is a broken log line, and overflows the prices


def openai_usage(u: Mapping[str, Any], service_tier: object = None) -> Usage:
    """An OpenAI ``usage`` object (chat completions or responses API) → `Usage`, as
    the gateway meters it (`tokenomy.providers.openai.openai_usage`: cache reads and
    writes, audio, and the response's ``service_tier`` as its price context);
    `ValueError` for counts that are negative or absurd."""
    usage = provider_usage(u, service_tier) or Usage()
    for name in _COUNTS:
        count = getattr(usage, name)
        if not 0 <= count <= _MOST_TOKENS:
            raise ValueError(f"usage: {name} {count} is not a token count")
    return usage


_COUNTS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "audio_input_tokens",
    "audio_output_tokens",
)


def _answer_text(response: Mapping[str, Any]) -> str:
    parts = []
    for choice in response.get("choices") or ():
        message = choice.get("message") or {}
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
    return "".join(parts)


def _jsonl_request(line: Mapping[str, Any], n: int) -> Request:
    if isinstance(line.get("response"), Mapping) and isinstance(
        line["response"].get("body"), Mapping
    ):  # Batch API output
        response: Mapping[str, Any] = line["response"]["body"]
        body: Mapping[str, Any] = line.get("body") or {}
    elif isinstance(line.get("response"), Mapping):
        response, body = line["response"], line.get("request") or {}
    else:
        response, body = line, {}
    model = str(response.get("model") or body.get("model") or "")
    if not model:
        raise ValueError("no model")
    usage_raw = response.get("usage")
    if isinstance(usage_raw, Mapping):
        usage = openai_usage(usage_raw, response.get("service_tier"))
    elif isinstance(body.get("messages"), list):
        prompt = count_chat_messages(body["messages"], model).tokens
        prompt += image_tokens_estimate(body, model)  # as the gateway's meter estimates
        answer = count_text(_answer_text(response), model)
        usage = Usage(input_tokens=prompt, output_tokens=answer.tokens, estimated=True)
    else:
        raise ValueError("no usage and no messages to count")
    meta = {**(body.get("metadata") or {}), **(line.get("metadata") or {})}
    tags = {str(k): str(v) for k, v in meta.items()}
    created = response.get("created") or line.get("timestamp")
    provider = line.get("provider")
    return Request(
        request_id=str(line.get("custom_id") or response.get("id") or f"line-{n}"),
        model=model,
        usage=usage,
        provider=str(provider) if provider else None,
        ts=float(created) if isinstance(created, int | float) else None,
        team=tags.get("team"),
        route=tags.get("route") or line.get("url") or line.get("endpoint"),
        tags=tags,
        prompt=_user_text(body.get("messages")),
    )


def _user_text(messages: Any) -> str | None:
    """The user turns as the router reads them (`prompt_text`); None without any."""
    if not isinstance(messages, list):
        return None
    return prompt_text(messages) or None


def from_jsonl(path: str | Path) -> Traffic:
    """An OpenAI-format JSONL log; raises `ValueError` naming the first bad line."""
    out = []
    with Path(path).open("rb") as fh:
        for n, data in enumerate(fh, 1):
            try:
                raw = data.decode("utf-8")
                if not raw.strip():
                    continue
                line = json.loads(raw)
                if not isinstance(line, dict):
                    raise ValueError("not a JSON object")
                out.append(_jsonl_request(line, n))
            except (ValueError, TypeError) as exc:  # UnicodeDecodeError is a ValueError
                raise ValueError(f"{path}:{n}: {exc}") from exc
    return Traffic(out, Path(path).name)


# -- the AlpacaEval outputs file -----------------------------------------------------------

# The file's generator names → (model, provider) as genai-prices knows them.
ALPACA_EVAL_MODELS: dict[str, tuple[str, str]] = {
    "gpt4_1106_preview": ("gpt-4-1106-preview", "openai"),
    "gpt-3.5-turbo-1106": ("gpt-3.5-turbo-1106", "openai"),
    "gpt-4o-mini-2024-07-18": ("gpt-4o-mini-2024-07-18", "openai"),
    "claude-3-opus-20240229": ("claude-3-opus-20240229", "anthropic"),
    "claude-3-5-sonnet-20240620": ("claude-3-5-sonnet-20240620", "anthropic"),
    "claude-instant-1.2": ("claude-instant-1.2", "anthropic"),
    "llama-2-70b-chat-hf": ("meta-llama/Llama-2-70b-chat-hf", "together"),
    "Mixtral-8x7B-Instruct-v0.1": ("mistralai/Mixtral-8x7B-Instruct-v0.1", "together"),
    "Mistral-7B-Instruct-v0.2": ("mistralai/Mistral-7B-Instruct-v0.2", "together"),
}


def chat_usage(instruction: str, output: str, model: str) -> Usage:
    """One user message and its answer, counted with ``model``'s tokenizer."""
    prompt = count_chat_messages([{"role": "user", "content": instruction}], model)
    answer = count_text(output, model)
    return Usage(
        input_tokens=prompt.tokens,
        output_tokens=answer.tokens,
        estimated=not (prompt.exact and answer.exact),
    )


class RecordedAnswers:
    """Evidence from recorded answers: each model's own tokens for each prompt.

    The answers carry no quality judgement, so ``score`` is None.
    """

    def __init__(self, name: str, rows: Iterable[tuple[str, str, str, str]]) -> None:
        """``rows``: (prompt_id, model, instruction, output)."""
        self.name = name
        self.outcomes: dict[tuple[str, str], Outcome] = {}
        for prompt_id, model, instruction, output in rows:
            u = chat_usage(instruction, output, model)
            self.outcomes[prompt_id, model] = Outcome(
                u.input_tokens, u.output_tokens, estimated=u.estimated
            )

    def outcome(self, req: Request, model: str) -> Outcome | None:
        if req.prompt_id is None:
            return None
        return self.outcomes.get((req.prompt_id, model))


def from_alpaca_eval(
    path: str | Path, *, generator: str = "gpt4_1106_preview", limit: int | None = None
) -> Traffic:
    """The answers of ``generator`` as traffic (route = the AlpacaEval subset), with
    every model's recorded answers as evidence. Needs pyarrow (``tokenomy[insights]``).

    The file has no timestamps, so the requests have none.
    """
    import pyarrow.parquet as pq

    if generator not in ALPACA_EVAL_MODELS:
        raise ValueError(f"unknown generator {generator!r}: one of {sorted(ALPACA_EVAL_MODELS)}")
    table = pq.read_table(
        path, columns=["instruction_id", "instruction", "dataset", "generator", "output"]
    )
    rows = table.to_pylist()
    if limit is not None:
        keep = {r["instruction_id"] for r in rows if r["generator"] == generator}
        keep = set(sorted(keep)[:limit])
        rows = [r for r in rows if r["instruction_id"] in keep]
    known = [r for r in rows if r["generator"] in ALPACA_EVAL_MODELS]
    evidence = RecordedAnswers(
        "recorded answers (AlpacaEval, no quality labels)",
        (
            (str(r["instruction_id"]), ALPACA_EVAL_MODELS[r["generator"]][0], r["instruction"],
             r["output"])
            for r in known
        ),
    )  # fmt: skip
    model, provider = ALPACA_EVAL_MODELS[generator]
    out = []
    for r in sorted(known, key=lambda r: int(r["instruction_id"])):
        if r["generator"] != generator:
            continue
        pid = str(r["instruction_id"])
        got = evidence.outcomes[pid, model]
        out.append(
            Request(
                request_id=f"alpaca-{pid}",
                model=model,
                usage=Usage(got.input_tokens, got.output_tokens, estimated=got.estimated),
                provider=provider,
                route=r["dataset"],
                tags={"dataset": r["dataset"]},
                prompt_id=pid,
                prompt=r["instruction"],
            )
        )
    return Traffic(out, f"AlpacaEval answers of {generator}", evidence)
