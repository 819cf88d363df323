"""The routing stage: what the client asked for → an ordered list of models to try.

A rule may first rewrite the request's model; the result is either a model
(public name) or an alias. An alias is a list of models tried in order
(``fallback``), the learned router over tiers (``router``, e.g. ``tokenomy/auto``)
or a cascade over tiers (``cascade``, e.g. ``cheap-first``). Each model's
configured fallbacks follow it in the list. Every decision lands in the ledger
as ``decisions["route"]``, with the saving against the requested model's price
(for an alias: against its strongest tier; for a fallback alias: its first model).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Protocol

from ..errors import ConfigError, PermissionDenied
from ..pipeline.context import Call
from ..pricing import PriceBook
from ..records import UsageRecord
from ..usage import Usage
from .config import Alias, RoutingConfig
from .learned.features import prompt_chars
from .rules import first_match, router_prompt

log = logging.getLogger("tokenomy.routing")


class RouterModel(Protocol):
    """What the gateway needs from a learned router (`tokenomy.routing.learned`).

    ``decide`` reads a prompt (a string or chat ``messages``) and returns an
    object with ``model`` (one of ``tiers``) and ``predicted_quality`` (a float).
    """

    def decide(self, prompt: Any, tiers: Sequence[str], *, quality_target: float) -> Any: ...


def load_router(path: str | None) -> RouterModel:
    """The learned router, from ``path`` or the shipped weights."""
    module = importlib.import_module("tokenomy.routing.learned")
    router: RouterModel = module.Router.load(path) if path else module.Router.load()
    return router


@dataclass(slots=True)
class Plan:
    requested: str
    reason: str  # "direct", "rule:<name>", "alias:<name>", "router", "cascade"
    targets: list[str]  # public model names: the first, then its fallbacks
    reference: str | None  # the model whose price the saving is measured against
    rule: str | None = None
    alias: Alias | None = None
    predicted_quality: float | None = None
    quality_target: float | None = None
    router_ms: float | None = None
    cascade: Alias | None = None  # set when the first target is a cascade's draft tier
    tiers: tuple[str, ...] = ()  # the alias's tiers this request may be served (router, cascade)
    samples: int = 1  # answers the served call produced (a kept cascade draft)
    sample_calls: int = 1  # upstream calls that produced them (each paid the prompt)
    usage: Usage | None = None  # a kept draft: what all its calls used (the record's usage)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    balanced: bool = False
    fell_back: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    # The side rows written while it ran (escalated drafts, failed attempts): the
    # charged ones are settled with it (`tokenomy.routing.side.charged`).
    sides: list[UsageRecord] = field(default_factory=list)

    def per_answer(self, usage: Usage) -> Usage:
        """What one answer used: a kept cascade draft paid for several, the client
        (and a later cache hit) for one."""
        if self.samples <= 1:
            return usage
        k = self.sample_calls
        return replace(
            usage,
            input_tokens=usage.input_tokens // k,
            cache_read_tokens=usage.cache_read_tokens // k,
            cache_write_tokens=usage.cache_write_tokens // k,
            cache_write_1h_tokens=usage.cache_write_1h_tokens // k,
            output_tokens=usage.output_tokens // self.samples,
            reasoning_tokens=usage.reasoning_tokens // self.samples,
            audio_input_tokens=usage.audio_input_tokens // k,
            audio_output_tokens=usage.audio_output_tokens // self.samples,
            web_search_requests=usage.web_search_requests // k,
        )

    @property
    def routed(self) -> bool:
        """Whether the gateway chose anything beyond serving the requested name."""
        tried = bool(self.attempts) and len(self.targets) > 1  # had fallbacks to try
        return self.reason != "direct" or self.balanced or self.fell_back or tried


class RoutingStage:
    inline_ms = 1.0  # a router decision faster than this runs on the event loop
    inline_chars = 1_000  # ... and only for prompts this short: its cost grows with the text

    def __init__(self, config: RoutingConfig, *, router: RouterModel | None = None) -> None:
        self.config = config
        self.router = router
        self._router_failed = False
        self._loading = asyncio.Lock()
        self.decide_ms: float | None = None  # moving average of router.decide's run time

    # -- deciding ---------------------------------------------------------------------------

    async def plan(self, call: Call, model: str) -> Plan:
        cfg = self.config
        name, rule = model, None
        generates = call.op != "embeddings"  # chat and Responses requests are routed
        if generates and cfg.rules:
            rule = first_match(cfg.rules, call, model)
            if rule is not None:
                name = rule.to
        alias = cfg.aliases.get(name) if generates else None
        requested_alias = cfg.aliases.get(model)
        reference = self._reference(requested_alias) if requested_alias is not None else model
        if alias is None:
            plan = Plan(model, "direct", [name], reference)
        elif alias.strategy == "router":
            plan = await self._route(call, model, alias)
        elif alias.strategy == "cascade":
            plan = self._cascade(call, model, alias)
        else:
            plan = Plan(model, f"alias:{alias.name}", list(alias.models), reference, alias=alias)
        if rule is not None:
            plan.rule = rule.name
            plan.reason = f"rule:{rule.name}"
            if alias is not None and requested_alias is None:
                plan.reference = model
        plan.targets = self._allowed(call, self._with_fallbacks(plan.targets))
        return plan

    @staticmethod
    def _reference(alias: Alias) -> str:
        return alias.models[0] if alias.strategy == "fallback" else alias.models[-1]

    def _with_fallbacks(self, targets: Sequence[str]) -> list[str]:
        if not self.config.fallbacks:
            return list(targets)
        out: list[str] = []
        for t in targets:
            out.append(t)
            out.extend(self.config.fallbacks.get(t, ()))
        return list(dict.fromkeys(out))  # first occurrence wins

    @staticmethod
    def _allowed(call: Call, targets: list[str]) -> list[str]:
        """A key limited to some models is served only those (aliases included)."""
        key = call.key
        if key is None or not key.models:
            return targets
        allowed = [t for t in targets if t in key.models]
        if not allowed:
            raise PermissionDenied(
                f"This key may not use the models {targets[0]!r} is routed to.",
                code="model_not_allowed",
            )
        return allowed

    @staticmethod
    def _tiers(call: Call, alias: Alias) -> list[str]:
        """The alias's tiers the key may be served (all of them if none: then 403)."""
        key = call.key
        if key is None or not key.models:
            return list(alias.models)
        return [t for t in alias.models if t in key.models] or list(alias.models)

    def quality_target(self, call: Call, alias: Alias) -> float:
        cfg, rec = self.config, call.record
        if rec.key_id is not None and rec.key_id in cfg.key_targets:
            return cfg.key_targets[rec.key_id]
        if rec.team is not None and rec.team in cfg.team_targets:
            return cfg.team_targets[rec.team]
        return alias.quality_target if alias.quality_target is not None else cfg.quality_target

    async def _route(self, call: Call, requested: str, alias: Alias) -> Plan:
        tiers = self._tiers(call, alias)
        target = self.quality_target(call, alias)
        plan = Plan(requested, "router", [tiers[-1]], alias.models[-1], alias=alias)
        plan.tiers = tuple(tiers)
        plan.quality_target = target
        router = await self._router()
        if router is None or len(tiers) < 2:
            plan.extra["router"] = "unavailable" if router is None else "one tier"
            return plan
        started = time.perf_counter()
        try:
            decision = await self._decide(router, router_prompt(call), tiers, target)
        except Exception:  # a broken router must not fail the request: serve the strongest
            log.exception("the learned router failed; serving the strongest tier")
            plan.extra["router"] = "error"
            return plan
        plan.router_ms = round((time.perf_counter() - started) * 1000.0, 3)
        chosen = str(getattr(decision, "model", tiers[-1]))
        if chosen not in tiers:
            chosen = tiers[-1]
        quality = getattr(decision, "predicted_quality", None)
        plan.predicted_quality = None if quality is None else round(float(quality), 4)
        # Stronger tiers are the fallbacks of the chosen one.
        plan.targets = tiers[tiers.index(chosen) :]
        return plan

    def _cascade(self, call: Call, requested: str, alias: Alias) -> Plan:
        tiers = self._tiers(call, alias)
        plan = Plan(requested, "cascade", tiers, alias.models[-1], alias=alias)
        plan.tiers = tuple(tiers)
        n = call.body.get("n")
        streamed = call.stream and self.config.cascade_streams != "draft"
        if streamed or (isinstance(n, int) and n > 1) or call.op == "responses":
            # A draft cannot be scored before its bytes are sent (unless streams are
            # drafted whole, `cascade_streams`), a client asking for several answers
            # wants them, and the judge reads chat answers, not Responses: all go to
            # the strongest tier.
            plan.targets = [tiers[-1]]
            why = "streamed" if streamed else "n > 1" if call.op == "chat" else "responses"
            plan.extra["cascade"] = f"{why}: strongest tier"
        elif len(tiers) < 2:
            plan.extra["cascade"] = "one tier"
        else:
            plan.cascade = alias
        return plan

    async def _decide(
        self, router: RouterModel, prompt: Any, tiers: list[str], target: float
    ) -> Any:
        """``router.decide``, inline while it stays under `inline_ms` (a moving average
        of its own run time) and the prompt is short, else in a worker thread so the
        event loop never stalls on a long prompt or a router that embeds it."""

        def timed() -> Any:
            t = time.perf_counter()
            try:
                return router.decide(prompt, tiers, quality_target=target)
            finally:
                ms = (time.perf_counter() - t) * 1000.0
                last = self.decide_ms
                self.decide_ms = ms if last is None else last + 0.2 * (ms - last)

        quick = self.decide_ms is not None and self.decide_ms < self.inline_ms
        if quick and prompt_chars(prompt) <= self.inline_chars:
            return timed()
        return await asyncio.to_thread(timed)

    async def warm(self) -> None:
        """Load the learned router now if an alias uses it (not on the first request).

        A weights file the operator named (``routing.router_path``) that cannot be
        loaded is a `ConfigError`: the gateway does not start, rather than serve every
        ``tokenomy/auto`` request by the strongest tier with the error in a log."""
        if not any(a.strategy == "router" for a in self.config.aliases.values()):
            return
        path = self.config.router_path
        if self.router is None and path:
            try:
                self.router = await asyncio.to_thread(load_router, path)
            except Exception as exc:
                raise ConfigError(
                    f"routing.router_path: cannot load the router weights {path!r}: {exc}"
                ) from exc
        await self._router()

    async def _router(self) -> RouterModel | None:
        if self.router is not None or self._router_failed:
            return self.router
        async with self._loading:
            if self.router is None and not self._router_failed:
                try:
                    self.router = await asyncio.to_thread(load_router, self.config.router_path)
                except Exception:  # a missing extra or bad weights: serve the strongest tier
                    log.exception("cannot load the learned router; serving the strongest tier")
                    self._router_failed = True
        return self.router

    # -- recording --------------------------------------------------------------------------

    def decision(
        self,
        call: Call,
        prices: PriceBook,
        price_of: Callable[[str], tuple[str, str | None, str | None] | None],
    ) -> dict[str, Any]:
        """``decisions["route"]`` for the call's record, after metering.

        ``price_of(model)`` gives (upstream model, pricing provider, override key)
        for a public model name, to price the same usage at the reference model.
        """
        plan: Plan = call.route
        rec = call.record
        reason = "fallback" if plan.fell_back else plan.reason
        if reason == "direct" and plan.balanced:
            reason = "balance"
        out: dict[str, Any] = {
            "reason": reason,
            "requested": plan.requested,
            "served": rec.served_model,
            "deployment": rec.deployment,
        }
        if plan.rule is not None:
            out["rule"] = plan.rule
        if plan.alias is not None:
            out["alias"] = plan.alias.name
        for name in ("predicted_quality", "quality_target", "router_ms"):
            value = getattr(plan, name)
            if value is not None:
                out[name] = value
        if plan.attempts:
            out["attempts"] = plan.attempts
        out.update(plan.extra)
        saved = self._saved(call, prices, price_of)
        if saved is not None:
            out["saved_usd"] = format(saved, "f")
        return out

    def _saved(
        self,
        call: Call,
        prices: PriceBook,
        price_of: Callable[[str], tuple[str, str | None, str | None] | None],
    ) -> Decimal | None:
        plan: Plan = call.route
        rec = call.record
        if plan.reference is None or rec.cost_usd is None or rec.status != 200:
            return None
        ref = price_of(plan.reference)
        if ref is None:
            return None
        usage = plan.per_answer(rec.usage)  # the client would have paid for one answer
        model, provider, override = ref
        cost = prices.cost(usage, model=model, provider=provider, override_key=override)
        if cost.total is None:
            return None
        paid = rec.cost_usd
        hit = rec.decisions.get("cache")
        if isinstance(hit, dict) and hit.get("hit"):
            # A cache hit paid nothing, and the cache claims the served model's cost;
            # routing saved only the difference, so the two never count a dollar twice.
            if hit.get("saved_usd") is None:
                return None
            paid = Decimal(hit["saved_usd"])
        return cost.total - paid
