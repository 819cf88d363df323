"""Sampled LLM-judge scores of routed answers (``routing.judge``).

For a random ``sample_rate`` share of routed, non-streamed chat requests that
succeeded, a background task asks the judge model to rate the served answer
from 1 to 10; the rating, mapped to [0, 1], is stored as feedback with source
``judge``. With ``compare: true`` the request is also sent to its reference model
(the requested model, or an alias's strongest tier) and that answer is rated
too, so the pair is an outcome a router can be trained on. Every call made for
a judgement is a ledger row: ``<id>.judge``, ``<id>.judge-ref``, ``<id>.judge2``
(their cost is real; their ``saved_usd`` is minus that cost). The client never waits for
it; on shutdown pending judgements get a few seconds, then are dropped. At most
`MAX_PENDING` judgements run at once (each holds its request): while the judge
model is slow, further samples are skipped and counted, not queued without bound.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..errors import TokenomyError
from ..ledger.base import Store
from ..pipeline.context import Call
from ..pipeline.exchange import output_text_of, upstream_body
from ..pipeline.meter import estimate_usage
from ..providers import Provider
from ..records import UsageRecord
from ..usage import Usage
from .config import Judge as JudgeConfig
from .feedback import Feedback, FeedbackStore
from .learned.features import prompt_text
from .rules import router_prompt
from .side import side_call, write_side

if TYPE_CHECKING:
    from ..pipeline.resolve import Resolve

log = logging.getLogger("tokenomy.routing")

SYSTEM = (
    "You grade answers. Read the question and the answer, then reply with one "
    "integer from 1 (useless or wrong) to 10 (correct and complete), and nothing else."
)
_RATING = re.compile(r"\b(10|[1-9])\b")
MAX_CHARS = 8000  # of the question and of the answer sent to the judge
MAX_PENDING = 100  # judgements running at once; more samples are skipped


def parse_rating(text: str) -> float | None:
    """The first rating 1..10 in ``text``, as a score in [0, 1]."""
    m = _RATING.search(text)
    return None if m is None else (int(m.group(1)) - 1) / 9


def _question(call: Call) -> str:
    """The user turns the router read, as text (the end of them, when long)."""
    return prompt_text(router_prompt(call))[-MAX_CHARS:]


class Judge:
    def __init__(
        self,
        config: JudgeConfig,
        store: Store,
        *,
        provider_for: Callable[[str], Provider | None],
        meter: Callable[[Call, Usage], None],
        write: Callable[[UsageRecord], Awaitable[None]],
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.feedback = FeedbackStore(store)
        self.provider_for = provider_for
        self.meter = meter
        self.write = write
        self.rng = rng or random.Random()
        self._tasks: set[asyncio.Task[None]] = set()
        self.skipped = 0  # samples not judged: MAX_PENDING judgements were running

    def maybe(self, call: Call, data: Any, api: str) -> None:
        """Start a judgement of this answer, for a sample of routed requests."""
        plan = call.route
        if plan is None or not plan.routed or call.op != "chat" or call.record.status != 200:
            return
        if self.rng.random() >= self.config.sample_rate:
            return
        if len(self._tasks) >= MAX_PENDING:
            self.skipped += 1
            if self.skipped == 1 or self.skipped % 1000 == 0:
                log.warning("the judge model is not keeping up: %d samples skipped", self.skipped)
            return
        answer = output_text_of(data, api)[:MAX_CHARS]
        task = asyncio.create_task(self._guarded(call, _question(call), answer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, call: Call, question: str, answer: str) -> None:
        try:
            await self._judge(call, question, answer)
        except Exception:  # a background judgement never takes the gateway down
            log.exception("judging %s failed", call.request_id)

    async def _judge(self, call: Call, question: str, answer: str) -> None:
        judge = self.provider_for(self.config.model)
        if judge is None:
            log.warning("judge model %r is not configured", self.config.model)
            return
        served = call.record.served_model
        await self._rate(call, judge, question, answer, served, ".judge")
        ref = self._reference(call)
        if ref is None:
            return
        provider, model = ref
        body = upstream_body(call, provider)
        body.update(model=model, stream=False)
        body.pop("stream_options", None)
        reply = await self._side_call(call, provider, model, body, ".judge-ref", "reference")
        if reply is not None:
            await self._rate(call, judge, question, reply[:MAX_CHARS], model, ".judge2")

    def _reference(self, call: Call) -> tuple[Provider, str] | None:
        """With ``compare``: the reference model's provider and upstream name, when it
        is not the model that served."""
        plan = call.route
        if not self.config.compare or plan is None or plan.reference is None:
            return None
        provider = self.provider_for(plan.reference)
        if provider is None:
            return None
        model = provider.deployment.upstream_model(plan.reference)
        return None if model == call.record.served_model else (provider, model)

    async def _rate(
        self,
        call: Call,
        judge: Provider,
        question: str,
        answer: str,
        answered_by: str | None,
        suffix: str,
    ) -> None:
        model = judge.deployment.upstream_model(self.config.model)
        user = f"Question:\n{question}\n\nAnswer:\n{answer}\n\nRating (1-10):"
        body: dict[str, Any] = {"model": model, "temperature": 0}
        if judge.api == "anthropic":
            body["max_tokens"] = 8
            body.update(system=SYSTEM, messages=[{"role": "user", "content": user}])
        else:
            body[judge.max_tokens_field] = 8  # OpenAI's reasoning models refuse max_tokens
            body["messages"] = [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": user},
            ]
        text = await self._side_call(call, judge, model, body, suffix, "judge")
        if text is None:
            return
        score = parse_rating(text)
        if score is None:
            log.info("judge gave no rating for %s: %r", call.request_id, text[:80])
            return
        fb = Feedback(
            call.request_id,
            score,
            source="judge",
            comment=f"judge {self.config.model}: {text.strip()[:200]}",
            key_id=call.record.key_id,
            org=call.record.org,
            model=answered_by,
            ts=time.time(),
        )
        await asyncio.to_thread(self.feedback.add, fb)

    async def _side_call(
        self,
        call: Call,
        provider: Provider,
        model: str,
        body: dict[str, Any],
        suffix: str,
        role: str,
    ) -> str | None:
        """One upstream call made for a judgement: sent, metered, written as the
        ledger row ``<request id><suffix>``; returns the answer text."""
        side = side_call(call, suffix, charged=False, body=body, headers={}, ts=time.time(),
                         requested_model=model, served_model=model, provider=provider.name,
                         deployment=provider.deployment.name, stream=False)  # fmt: skip
        side.provider, side.deployment = provider, provider.deployment
        try:
            up = await provider.send("chat", model, body, {})
        except TokenomyError as exc:
            log.warning("judge call (%s) for %s failed: %s", role, call.request_id, exc)
            return None
        side.record.upstream_request_id = provider.request_id(up.headers)
        text = output_text_of(up.data, provider.api)
        usage = provider.usage(up.data) if isinstance(up.data, dict) else None
        route: dict[str, Any] = {"reason": "judge", "judge": role, "parent": call.request_id}
        if role == "judge":
            route["score"] = parse_rating(text)
        await write_side(side, usage or estimate_usage(side, text), route,
                         meter=self.meter, write=self.write)  # fmt: skip
        return text

    async def close(self, grace: float = 5.0) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()


def judge_for(
    resolve: Resolve,
    store: Store,
    meter: Callable[[Call, Usage], None],
    write: Callable[[UsageRecord], Awaitable[None]],
) -> Judge | None:
    """The gateway's judge, when ``routing.judge`` is configured."""
    config = resolve.config.judge
    if config is None:
        return None
    return Judge(config, store, provider_for=resolve.provider_for, meter=meter, write=write)
