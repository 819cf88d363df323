"""Cascades: answer with a cheap tier, score the answer, escalate when it is weak.

The draft asks the cheap tier for ``samples`` answers at once (OpenAI's ``n``;
for other upstreams, that many calls in parallel, at a temperature of at least
``routing.cascade.temperature`` when there are several: identical samples would
always agree) and scores them with the alias's ``scorer``:

- ``agreement`` (`tokenomy.routing.learned.agreement`): the share of the samples
  asked for that give the majority's normalised final answer, so a sample that
  failed or that an upstream ignoring ``n`` never sent counts as a disagreeing
  one; the reply is the first sample giving the majority answer;
- ``checks`` (`tokenomy.routing.learned.checks`): ``1 / (1 + false arithmetic
  claims)`` of each sample; the reply is the best one (the first of equals);
- ``both``: the agreement times the checks score of the majority's best sample;
- ``logprobs`` (`tokenomy.routing.learned.confidence`): each sample's geometric mean
  token probability; the draft is asked for ``logprobs`` (and the kept reply
  carries them only when the client asked too); the reply is the most confident
  sample. A reply without log probabilities (a tool call, a refusal, a server
  that ignores the parameter) scores 0 and escalates; an Anthropic draft tier is
  refused when the config loads (`tokenomy.pipeline.resolve`).

At or above the threshold that reply is kept, and the record carries what every
sample used; below it the request moves to the next tier. A streamed request (with
``routing.cascade.streams: draft``) has its draft asked for whole, and a kept one
is replayed to the client as a stream. Each escalated draft is its own ledger row,
``<request id>.draft`` (``.draft2``... for later tiers), so tokens and prices
stay exact per model; its ``saved_usd`` is minus its cost. Chat and Messages
requests are cascaded (Responses requests, and streams unless drafted, go to
the strongest tier).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import TokenomyError
from ..pipeline.context import Call
from ..pipeline.exchange import Answer, answer, output_text_of, upstream_body
from ..pipeline.meter import estimate_usage
from ..providers.base import UpstreamResponse
from ..usage import Usage
from .config import RoutingConfig
from .learned.agreement import normalize_answer
from .learned.checks import check_score
from .learned.confidence import reply_confidence
from .side import Meter, Write, side_call, write_side
from .stage import Plan


def _answers(data: Any, api: str) -> list[tuple[Any, str]]:
    """Each answer of a reply, as (the reply holding only it, its text)."""
    if isinstance(data, dict) and isinstance(data.get("choices"), list):
        out = []
        for c in data["choices"]:
            one = {**data, "choices": [{**c, "index": 0} if isinstance(c, dict) else c]}
            out.append((one, output_text_of(one, api)))
        return out
    return [(data, output_text_of(data, api))]


def _sample_score(scorer: str, data: Any, text: str) -> float:
    """One sample's own score: its arithmetic, or its tokens' probabilities."""
    if scorer == "logprobs":
        return round(reply_confidence(data) or 0.0, 4)
    return check_score(text)


def _without_logprobs(data: Any) -> Any:
    """The reply as a client that did not ask for log probabilities gets it."""
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        return data
    choices = [{**c, "logprobs": None} if isinstance(c, dict) else c for c in data["choices"]]
    return {**data, "choices": choices}


# Answers longer than this (all samples together) are scored off the event loop.
INLINE_CHARS = 16_384


@dataclass(slots=True)
class Draft:
    """What the draft tier answered: every sample, and what they used together."""

    replies: list[tuple[UpstreamResponse, Any, str]]  # (response, one answer, its text)
    usage: Usage
    ups: list[UpstreamResponse]  # the upstream calls that answered (each paid the prompt)
    strip_logprobs: bool = False  # asked for the scorer, not by the client

    @property
    def calls(self) -> int:
        return len(self.ups)

    def pick(self, samples: int, scorer: str = "agreement") -> tuple[float, UpstreamResponse]:
        """The draft's score over the ``samples`` asked for, and the reply to keep. A
        draft whose replies hold no answer at all (``choices: []``) scores 0."""
        if not self.replies:
            return 0.0, self.ups[0]
        candidates = list(range(len(self.replies)))
        agreed = 1.0
        if scorer in ("agreement", "both"):
            normal = [normalize_answer(text) for _, _, text in self.replies]
            answer, n = Counter(normal).most_common(1)[0]  # ties: the first seen
            candidates = [i for i, a in enumerate(normal) if a == answer]
            agreed = n / samples
        checked = 1.0
        best = candidates[0]
        if scorer != "agreement":
            scores = {i: _sample_score(scorer, *self.replies[i][1:]) for i in candidates}
            best = max(candidates, key=lambda i: scores[i])  # ties: the first
            checked = scores[best]
        up, data, _ = self.replies[best]
        if self.strip_logprobs:
            data = _without_logprobs(data)
        if data is not up.data:
            up = UpstreamResponse(up.status, up.headers, data, orjson.dumps(data))
        return round(agreed * checked, 4), up

    async def judge(self, samples: int, scorer: str) -> tuple[float, UpstreamResponse]:
        """`pick`, on a worker thread when the answers are long: reading them is linear
        but not free (about a microsecond a character), and the event loop serves
        every other request meanwhile."""
        if sum(len(text) for _, _, text in self.replies) > INLINE_CHARS:
            return await asyncio.to_thread(self.pick, samples, scorer)
        return self.pick(samples, scorer)


Bind = Callable[[Call, str], None]
Send = Callable[[Call], Awaitable[Answer]]
Attempt = Callable[[Call, Send], Awaitable[Answer]]


class Cascade:
    def __init__(
        self, config: RoutingConfig, *, bind: Bind, attempt: Attempt, meter: Meter, write: Write
    ) -> None:
        self.config = config
        self.bind = bind
        self.attempt = attempt
        self.meter = meter
        self.write = write

    async def run(self, call: Call, send: Send) -> Answer:
        kept = await self.keep(call)
        return kept if kept is not None else await self.attempt(call, send)

    async def keep(self, call: Call) -> Answer | None:
        """The kept draft's answer; None when every draft tier escalated, with the
        request bound to the strongest tier and its fallbacks, to be sent there."""
        plan: Plan = call.route
        alias = plan.cascade
        assert alias is not None
        threshold = (
            alias.threshold if alias.threshold is not None else self.config.cascade_threshold
        )
        samples = alias.samples or self.config.cascade_samples
        scorer = alias.scorer or self.config.cascade_scorer
        tiers = plan.tiers  # set with the cascade, two or more
        scores: list[float] = []
        for i, tier in enumerate(tiers[:-1]):
            if i:
                self.bind(call, tier)
            started = time.perf_counter()
            try:
                draft = await self._draft(call, samples, scorer)
            except TokenomyError as exc:  # a failing draft tier escalates
                plan.attempts.append(
                    {"model": call.record.served_model, "error": exc.type, "status": exc.status}
                )
                continue
            score, reply = await draft.judge(samples, scorer)
            scores.append(score)
            if score >= threshold:
                plan.samples, plan.sample_calls = len(draft.replies), draft.calls
                plan.usage = draft.usage
                plan.extra.update(cascade="kept", escalated=bool(i), score=score, scores=scores,
                                  scorer=scorer)  # fmt: skip
                assert call.provider is not None
                return answer(call, call.provider, reply, plan.usage)
            suffix = ".draft" + (str(i + 1) if i else "")
            assert call.provider is not None
            upstream_id = call.provider.request_id(reply.headers)
            await self._record_draft(call, suffix, draft.usage, score, scorer, started,
                                     upstream_id)  # fmt: skip
        plan.extra.update(cascade="escalated", escalated=True, scores=scores, scorer=scorer)
        if scores:
            plan.extra["score"] = scores[-1]
        last = tiers[-1]
        plan.targets = plan.targets[plan.targets.index(last) :] if last in plan.targets else [last]
        self.bind(call, plan.targets[0])
        return None

    async def _draft(self, call: Call, samples: int, scorer: str) -> Draft:
        provider = call.provider
        assert provider is not None
        body = upstream_body(call, provider)
        body.pop("stream", None)  # a streamed request's draft is read whole, then replayed
        body.pop("stream_options", None)
        strip = False
        if scorer == "logprobs" and provider.api == "openai":
            strip = body.get("logprobs") is not True
            body["logprobs"] = True
            # OpenAI's default; some servers (llama-cpp-python's) send none without it
            body.setdefault("top_logprobs", 0)
        temperature = body.get("temperature")
        floor = self.config.cascade_temperature
        if provider.api == "anthropic":
            floor = min(floor, 1.0)  # Anthropic's range ends at 1
        if samples > 1 and isinstance(temperature, int | float) and temperature < floor:
            body["temperature"] = floor
        if provider.api == "openai":
            body["n"] = samples
            ups = [await provider.send(call.op, body["model"], body, call.headers)]
        else:  # one call per sample; the answers of those that failed are missing
            got = await asyncio.gather(
                *(
                    provider.send(call.op, body["model"], body, call.headers)
                    for _ in range(samples)
                ),
                return_exceptions=True,
            )
            for g in got:
                if isinstance(g, BaseException) and not isinstance(g, TokenomyError):
                    raise g  # not an upstream's answer: a bug or a cancellation
            ups = [g for g in got if isinstance(g, UpstreamResponse)]
            if not ups:
                failed = got[0]
                assert isinstance(failed, TokenomyError)
                raise failed
        usage = Usage()
        replies: list[tuple[UpstreamResponse, Any, str]] = []
        for up in ups:
            u = provider.usage(up.data) if isinstance(up.data, dict) else None
            answers = _answers(up.data, provider.api)
            replies += [(up, data, text) for data, text in answers]
            usage = usage + (u or estimate_usage(call, "".join(t for _, t in answers)))
        return Draft(replies, usage, ups, strip)

    async def _record_draft(
        self,
        call: Call,
        suffix: str,
        usage: Usage,
        score: float,
        scorer: str,
        started: float,
        upstream_request_id: str | None,
    ) -> None:
        """The escalated draft's row; its upstream request id is the reply it was
        scored by (of several parallel calls, the one giving the majority answer)."""
        draft = side_call(call, suffix, charged=True, status=200, error_type=None,
                          upstream_request_id=upstream_request_id)  # fmt: skip
        draft.started = started
        route: dict[str, Any] = {
            "reason": "cascade",
            "cascade": "draft",
            "parent": call.request_id,
            "escalated": True,
            "score": score,
            "scorer": scorer,
            "requested": call.route.requested,
            "served": draft.record.served_model,
        }
        await write_side(draft, usage, route, meter=self.meter, write=self.write,
                         keep=call.route.sides)  # fmt: skip
