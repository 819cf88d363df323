"""Stage 3: which deployment serves the request.

The routing stage (`tokenomy.routing`) turns the requested model or alias into
an ordered list of models; each is bound to a deployment (balanced when several
serve it), and `attempt` moves down the list on upstream failures.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from ..config import Deployment, Settings
from ..errors import ConfigError, InvalidRequest, NotFound, TokenomyError, UpstreamError
from ..pricing import PriceBook
from ..providers import Provider, create_provider
from ..routing.balance import Balancer
from ..routing.config import parse_routing
from ..routing.fallback import failure_kind
from ..routing.stage import Plan, RouterModel, RoutingStage
from .authenticate import require_model_access
from .context import OPENAI, Call

T = TypeVar("T")


class Resolve:
    name = "resolve"

    def __init__(self, settings: Settings, *, router: RouterModel | None = None) -> None:
        self.settings = settings
        self.config = parse_routing(settings.routing)
        self.routing = RoutingStage(self.config, router=router)
        self.balancer = Balancer()
        self._by_name = {d.name: d for d in settings.deployments}
        # latency and in-flight counts feed only the balancer, and only the strategies
        # that read them: the deployments they balance over are the ones measured
        self._tracked = frozenset(
            dep
            for spec in self.config.balance.values()
            if spec.strategy != "weight"
            for dep in spec.deployments
        )
        self._providers: dict[str, Provider] = {}
        self._check_targets()

    def _check_targets(self) -> None:
        cfg = self.config
        for rule in cfg.rules:  # a rule may point to an alias
            if rule.to not in cfg.aliases and self.deployment_for(rule.to) is None:
                raise ConfigError(
                    f"routing: {rule.to!r} is neither an alias nor a configured model"
                )
        # Tiers, an alias's models, fallbacks and the judge are served as they are:
        # an alias there would be a 404 on the request that reaches it.
        served = [("routing.tiers", m) for m in cfg.tiers]
        served += [(f"routing.aliases.{a.name}", m) for a in cfg.aliases.values() for m in a.models]
        served += [(f"routing.fallbacks.{k}", m) for k, fb in cfg.fallbacks.items() for m in fb]
        if cfg.judge is not None:
            served.append(("routing.judge.model", cfg.judge.model))
        for where, name in served:
            if self.deployment_for(name) is None:
                what = "an alias" if name in cfg.aliases else "not a configured model"
                raise ConfigError(
                    f"{where}: {name!r} is {what}; only a rule may point to an alias, "
                    "everything else names a configured model"
                )
        for alias in cfg.aliases.values():  # a draft that can never be scored: all escalate
            if alias.strategy != "cascade" or alias.scorer != "logprobs":
                continue
            for name in alias.models[:-1]:
                prov = self.provider_for(name)
                if prov is not None and prov.api != "openai":
                    raise ConfigError(
                        f"routing.aliases.{alias.name}: scorer logprobs reads the draft's log "
                        f"probabilities, which {name!r} ({prov.api} API) does not return; "
                        "draft with an OpenAI-format model or choose another scorer"
                    )
        router = any(a.strategy == "router" for a in cfg.aliases.values())
        if router and cfg.router_path and not Path(cfg.router_path).is_file():
            raise ConfigError(f"routing.router_path: no weights file {cfg.router_path!r}")
        for model, spec in cfg.balance.items():
            for dep in spec.deployments:
                if dep not in self._by_name:
                    raise ConfigError(f"routing.balance.{model}: no deployment named {dep!r}")

    def deployment_for(self, model: str) -> Deployment | None:
        spec = self.config.balance.get(model)
        if spec is not None:
            name = next(iter(spec.deployments))
            return self._by_name.get(name)
        return self.settings.find_deployment(model)

    def _provider(self, dep: Deployment) -> Provider:
        prov = self._providers.get(dep.name)
        if prov is None:
            prov = self._providers[dep.name] = create_provider(dep)
        return prov

    def target(self, name: str) -> tuple[str, str | None, str | None, str] | None:
        """A public model name's (upstream model, pricing provider, override key,
        upstream API), to price the models a request may be served by."""
        dep = self.deployment_for(name)
        if dep is None:
            return None
        prov = self._provider(dep)
        return dep.upstream_model(name), prov.pricing_provider, dep.name, prov.api

    def served_by(self, name: str) -> tuple[Deployment, Provider] | None:
        """The deployment serving a public model name (a balanced one: its first),
        and its provider; None when none is configured."""
        dep = self.deployment_for(name)
        return None if dep is None else (dep, self._provider(dep))

    def provider_for(self, name: str) -> Provider | None:
        found = self.served_by(name)
        return None if found is None else found[1]

    async def __call__(self, call: Call) -> None:
        model = call.body.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidRequest("'model' is required and must be a string.", param="model")
        call.record.requested_model = model
        require_model_access(call, model)
        if call.op == "completions" and model in self.config.aliases:
            raise completions_alias(model)
        call.route = plan = await self.routing.plan(call, model)
        if call.op == "embeddings":
            # Aliases serve chat only: one named here is no model to embed with.
            if model in self.config.aliases:
                raise InvalidRequest(
                    f"'{model}' is an alias, and aliases serve chat requests only: "
                    "name an embeddings model.",
                    param="model",
                )
            # A fallback that cannot embed is skipped: the first failure would
            # otherwise turn into a 400 naming it, and end the fallbacks there.
            plan.targets[1:] = [t for t in plan.targets[1:] if self._embeds(t)]
        elif call.op == "responses":
            self._responses_plan(model, plan)
        elif call.op == "completions":  # only an upstream speaking OpenAI's API has it
            if plan.alias is not None:  # a rule routed it to one
                raise completions_alias(plan.alias.name)
            plan.targets[1:] = [t for t in plan.targets[1:] if self._completes(t)]
        self.bind(call, plan.targets[0])

    def _embeds(self, name: str) -> bool:
        prov = self.provider_for(name)
        return prov is not None and prov.supports_embeddings

    def _completes(self, name: str) -> bool:
        prov = self.provider_for(name)
        return prov is not None and prov.api == OPENAI

    def _responds(self, name: str) -> bool:
        prov = self.provider_for(name)
        return prov is not None and prov.supports_responses

    def _responses_plan(self, model: str, plan: Plan) -> None:
        """A Responses request goes only to upstreams serving the API: an alias
        only if all its models do (else which one serves would be chance), the
        model it names only if it does (a 400 otherwise, as for a request the
        other API cannot take), and the fallbacks that do."""
        alias = plan.alias
        if alias is not None:
            cannot = [m for m in alias.models if not self._responds(m)]
            if cannot:
                raise InvalidRequest(
                    f"'{model}' routes to {', '.join(repr(m) for m in cannot)}, whose "
                    "upstream does not serve OpenAI's Responses API; call it through "
                    "/v1/chat/completions, or name a model served by an OpenAI upstream.",
                    param="model",
                )
        first = plan.targets[0]
        prov = self.provider_for(first)  # None: not configured, bind's 404
        if prov is not None and not prov.supports_responses:
            raise InvalidRequest(not_responses(first, prov), param="model")
        plan.targets[1:] = [t for t in plan.targets[1:] if self._responds(t)]

    def bind(self, call: Call, model: str) -> None:
        """Point the call at a deployment serving ``model``."""
        spec = self.config.balance.get(model)
        dep: Deployment | None
        if spec is not None:
            name = self.balancer.pick(spec)
            dep = self._by_name[name]
            call.route.balanced = True
        else:
            dep = self.settings.find_deployment(model)
        if dep is None:
            raise unknown_model(model)
        provider = self._provider(dep)
        if call.op == "embeddings" and not provider.supports_embeddings:
            raise InvalidRequest(f"Model '{model}' does not serve embeddings.", param="model")
        if call.op == "responses" and not provider.supports_responses:
            raise InvalidRequest(not_responses(model, provider), param="model")
        if call.op == "completions" and provider.api != OPENAI:
            raise InvalidRequest(
                f"Model '{model}' is served by an upstream ({provider.name}) without "
                "OpenAI's legacy Completions API: call /v1/chat/completions.",
                param="model",
            )
        call.deployment = dep
        call.provider = provider
        rec = call.record
        rec.deployment = dep.name
        rec.provider = provider.name
        rec.served_model = dep.upstream_model(model)

    async def attempt(
        self,
        call: Call,
        fn: Callable[[Call], Awaitable[T]],
        *,
        failed: Callable[[Call, TokenomyError], Awaitable[None]] | None = None,
    ) -> T:
        """``fn(call)`` on each target in turn until one answers or a failure is final.
        ``failed(call, error)`` sees each failure the request moves on from, while the
        call is still bound to the deployment that failed."""
        plan = call.route
        index = 0
        while True:
            dep = call.record.deployment or ""
            track = dep in self._tracked
            if track:
                self.balancer.start(dep)
            started = time.perf_counter()
            try:
                result = await fn(call)
            except TokenomyError as exc:
                kind = failure_kind(exc)
                if track:  # a failure is no latency: a dead deployment answers fastest
                    self.balancer.done(dep, None, failed=kind is not None)
                entry = {
                    "model": call.record.served_model,
                    "deployment": dep,
                    "error": kind or exc.type,
                    "status": exc.status,
                }
                if isinstance(exc, UpstreamError) and exc.upstream_request_id:
                    entry["upstream_request_id"] = exc.upstream_request_id
                plan.attempts.append(entry)
                index += 1
                if kind not in self.config.fallback_on or index >= len(plan.targets):
                    raise
                if failed is not None:
                    await failed(call, exc)
                plan.fell_back = True
                self.bind(call, plan.targets[index])
                continue
            except BaseException:  # cancelled, or a bug: the attempt is no longer in flight
                if track:
                    self.balancer.done(dep, None)
                raise
            if track:
                self.balancer.done(dep, (time.perf_counter() - started) * 1000.0)
            return result

    def decision(self, call: Call, prices: PriceBook) -> dict[str, Any] | None:
        """``decisions["route"]``, or None when nothing was routed."""
        if call.route is None or not call.route.routed:
            return None

        def price_of(model: str) -> tuple[str, str | None, str | None] | None:
            dep = self.deployment_for(model)
            if dep is None:
                return None
            return dep.upstream_model(model), self._provider(dep).pricing_provider, dep.name

        return self.routing.decision(call, prices, price_of)

    async def close(self) -> None:
        for prov in self._providers.values():
            await prov.close()
        self._providers.clear()


def unknown_model(model: str, param: str | None = None) -> NotFound:
    """What a request naming a model no deployment serves gets (a 404)."""
    return NotFound(f"The model '{model}' does not exist or is not configured.", param=param)


def completions_alias(name: str) -> InvalidRequest:
    """An alias's routing, cascades and caching read chat messages: it serves no
    legacy completion."""
    return InvalidRequest(
        f"'{name}' is an alias, and aliases serve chat requests only: name a model to "
        "call the legacy Completions API with.",
        param="model",
    )


def not_responses(model: str, provider: Provider) -> str:
    """Why ``model`` is refused a Responses request."""
    if provider.api == "openai":
        return (
            f"The Responses API is not enabled for model '{model}': its upstream "
            f"({provider.name}) is not known to serve /v1/responses (its deployment "
            "enables it with extra.responses: true). Call it through /v1/chat/completions."
        )
    return (
        f"The Responses API is not translated for model '{model}': its upstream does not "
        "speak OpenAI's API. Call it through /v1/chat/completions or /v1/messages."
    )
