"""What-if: replay logged traffic under another policy and price both sides.

Every request is priced twice with the same `PriceBook` (today's prices): as it
was logged (the baseline) and as a policy would change it. Savings compare only
requests priced on both sides; a request whose price is unknown on either side is
counted apart, never as $0.

The policies, each applied to the requests its `Selector` matches, and the
model each one states:

- `Reroute`: send them to another model. The target's tokens come from the
  traffic's evidence (that model's own recorded answer to the same prompt) where
  it exists; otherwise the logged token counts are kept, and that is said. The
  rest of the request goes with it as logged: its cache reads and writes, its
  reasoning and audio tokens (each within the target's counts), its web searches
  and its service tier (`Usage.price_context`), priced at the target's own rates;
  a tier the target is not sold at is priced at its standard rate, as the
  gateway prices a tier without a rate of its own.
- `PriceChange`: multiply the provider's input and output prices.
- `ResponseCache`: a response cache with hit rate ``h``: a hit costs nothing, so
  each request's expected cost is ``(1 - h)`` times its cost.
- `Compress`: the uncached input tokens shrink by ``ratio`` (2 sends half;
  rounded half-even to whole tokens); cached tokens and the output are kept.
- `OutputCap`: at most ``max_tokens`` output tokens (reasoning included).

Quality effects are reported from evidence only (scores from the traffic's
source, or the count of answers an output cap would cut); otherwise "unknown".

`simulate` reads the traffic once, a request at a time, and keeps sums: the
ledger's traffic streams a page at a time (`tokenomy.insights.traffic`), so a
simulation of millions of requests holds one of them, its results and the
per-day spend of its plots (`tokenomy.insights.curves`). A policy says what it
found about quality through a `Judge`, told each (before, after) pair in turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Protocol

from ..pricing import PriceBook
from ..usage import Usage, price_context
from .curves import Curves
from .traffic import Evidence, Outcome, Request, Traffic

__all__ = [
    "Compress",
    "Fixed",
    "Flex",
    "Judge",
    "OutputCap",
    "Policy",
    "PolicyResult",
    "PriceChange",
    "Reroute",
    "ResponseCache",
    "Selector",
    "Sim",
    "Simulation",
    "cost_of",
    "render_table",
    "simulate",
]

_ZERO = Decimal(0)
FLEX = price_context("service_tier", "flex")
_ONE = Decimal(1)


@dataclass(frozen=True, slots=True)
class Selector:
    """Which requests a policy touches: ``*``, ``team=X``, ``route=X``, ``model=X``,
    ``provider=X`` or ``tag:NAME=X``."""

    kind: str = "*"
    value: str = ""
    tag: str = ""

    @classmethod
    def parse(cls, text: str) -> Selector:
        text = text.strip()
        if text in ("*", "all", ""):
            return cls()
        key, sep, value = text.partition("=")
        if not sep:
            raise ValueError(f"selector {text!r}: write KIND=VALUE, e.g. team=search, or *")
        if key.startswith(("tag:", "tag.")):
            return cls("tag", value, key[4:])
        if key not in ("team", "route", "model", "provider"):
            raise ValueError(f"selector {text!r}: KIND is team, route, model, provider or tag:NAME")
        return cls(key, value)

    def matches(self, req: Request) -> bool:
        if self.kind == "*":
            return True
        if self.kind == "tag":
            return req.tags.get(self.tag) == self.value
        got = {"team": req.team, "route": req.route, "model": req.model,
               "provider": req.provider}[self.kind]  # fmt: skip
        return got == self.value

    def __str__(self) -> str:
        if self.kind == "*":
            return "all requests"
        key = f"tag:{self.tag}" if self.kind == "tag" else self.kind
        return f"{key}={self.value}"


@dataclass(frozen=True, slots=True)
class Sim:
    """A request as a policy leaves it, with the multipliers on its price."""

    req: Request
    share: Decimal = _ONE  # the share that reaches a provider (a cache serves the rest)
    input_factor: Decimal = _ONE
    output_factor: Decimal = _ONE
    evidence: Outcome | None = None  # the target's recorded outcome, after a reroute
    rerouted_from: str | None = None
    truncated: bool = False


def cost_of(sim: Sim, prices: PriceBook) -> Decimal | None:
    """The exact expected cost of a simulated request; None if its price is unknown."""
    r = sim.req
    c = prices.cost(r.usage, model=r.model, provider=r.provider, override_key=r.override_key)
    if c.total is None or c.input is None or c.output is None:
        return None
    fee = c.total - c.input - c.output  # a per-request price, where a model has one
    return sim.share * (c.input * sim.input_factor + c.output * sim.output_factor + fee)


class Judge(Protocol):
    """What a policy found about quality: told each request before and after the
    policy, in the traffic's order, then asked for its note."""

    def add(self, before: Sim, after: Sim) -> None: ...

    def note(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Fixed:
    """A note that does not depend on the traffic."""

    text: str

    def add(self, before: Sim, after: Sim) -> None:
        return None

    def note(self) -> str:
        return self.text


class Policy(Protocol):
    select: Selector

    @property
    def name(self) -> str: ...

    def apply(self, sim: Sim, evidence: Evidence | None) -> Sim: ...

    def judge(self, evidence: Evidence | None) -> Judge: ...


@dataclass(frozen=True, slots=True)
class Reroute:
    select: Selector
    model: str
    provider: str | None = None

    @property
    def name(self) -> str:
        return f"{self.select} -> {self.model}"

    def apply(self, sim: Sim, evidence: Evidence | None) -> Sim:
        req = sim.req
        if req.model == self.model or not self.select.matches(req):
            return sim
        got = evidence.outcome(req, self.model) if evidence is not None else None
        u = req.usage
        if got is not None:
            inp, out, est = got.input_tokens, got.output_tokens, got.estimated
        else:
            inp, out, est = u.input_tokens, u.output_tokens, u.estimated
        cached = min(u.cache_read_tokens, inp)
        w5 = min(u.cache_write_tokens, inp - cached)
        w1 = min(u.cache_write_1h_tokens, inp - cached - w5)
        reasoning = min(u.reasoning_tokens, out)
        # The rest of the logged usage goes with the request: the same audio (within
        # the target's counts), the same web searches, the same service tier asked
        # for (priced at the standard rate where the target is not sold at it).
        usage = replace(u, input_tokens=inp, output_tokens=out, cache_read_tokens=cached,
                        cache_write_tokens=w5, cache_write_1h_tokens=w1,
                        reasoning_tokens=reasoning, estimated=est,
                        audio_input_tokens=min(u.audio_input_tokens, inp - cached - w5 - w1),
                        audio_output_tokens=min(u.audio_output_tokens, out - reasoning))  # fmt: skip
        moved = replace(req, model=self.model, provider=self.provider, override_key=None,
                        usage=usage)  # fmt: skip
        return replace(sim, req=moved, evidence=got, rerouted_from=req.model)

    def judge(self, evidence: Evidence | None) -> Judge:
        return RerouteJudge(evidence)


@dataclass(slots=True)
class RerouteJudge:
    """Of the requests moved: how many the target's own recorded answers set, and
    the mean scores before and after where the traffic scores both answers."""

    evidence: Evidence | None
    moved: int = 0
    known: int = 0
    scored: int = 0
    before: float = 0
    after: float = 0

    def add(self, before: Sim, after: Sim) -> None:
        if after.rerouted_from is None:
            return
        self.moved += 1
        if after.evidence is None:
            return
        self.known += 1
        ev = self.evidence
        own = ev.outcome(before.req, before.req.model) if ev is not None else None
        theirs = after.evidence.score
        if own is not None and own.score is not None and theirs is not None:
            self.scored += 1
            self.before += own.score
            self.after += theirs

    def note(self) -> str:
        if not self.moved:
            return "no change (no request matched)"
        if self.scored and self.evidence is not None:
            before, after = self.before / self.scored, self.after / self.scored
            return (
                f"score {before:.3f} -> {after:.3f} on {self.scored} requests "
                f"({self.evidence.name})"
            )
        if self.known:
            return (
                f"unknown: no quality labels; the target's own recorded answers "
                f"({self.known}/{self.moved}) set its tokens"
            )
        return "unknown: no evidence for the target model; logged tokens kept"


@dataclass(frozen=True, slots=True)
class PriceChange:
    select: Selector
    input_factor: Decimal
    output_factor: Decimal

    @property
    def name(self) -> str:
        if self.input_factor == self.output_factor:
            return f"{self.select} prices x{self.input_factor}"
        return f"{self.select} prices x{self.input_factor} in, x{self.output_factor} out"

    def apply(self, sim: Sim, evidence: Evidence | None) -> Sim:
        if not self.select.matches(sim.req):
            return sim
        return replace(sim, input_factor=sim.input_factor * self.input_factor,
                       output_factor=sim.output_factor * self.output_factor)  # fmt: skip

    def judge(self, evidence: Evidence | None) -> Judge:
        return Fixed("unchanged (same model, same answers)")


@dataclass(frozen=True, slots=True)
class ResponseCache:
    hit_rate: Decimal
    select: Selector = field(default_factory=Selector)

    def __post_init__(self) -> None:
        if not 0 <= self.hit_rate <= 1:
            raise ValueError("a cache hit rate is between 0 and 1")

    @property
    def name(self) -> str:
        return f"response cache, hit rate {self.hit_rate}"

    def apply(self, sim: Sim, evidence: Evidence | None) -> Sim:
        if not self.select.matches(sim.req):
            return sim
        return replace(sim, share=sim.share * (_ONE - self.hit_rate))

    def judge(self, evidence: Evidence | None) -> Judge:
        return Fixed("unknown: depends on how often a hit's answer does not fit the request")


@dataclass(frozen=True, slots=True)
class Compress:
    ratio: Decimal
    select: Selector = field(default_factory=Selector)

    def __post_init__(self) -> None:
        if self.ratio < 1:
            raise ValueError("a compression ratio is at least 1 (2 sends half the tokens)")

    @property
    def name(self) -> str:
        return f"compress input {self.ratio}x"

    def apply(self, sim: Sim, evidence: Evidence | None) -> Sim:
        if not self.select.matches(sim.req):
            return sim
        u = sim.req.usage
        uncached = u.uncached_input_tokens
        kept = int((Decimal(uncached) / self.ratio).to_integral_value(ROUND_HALF_EVEN))
        usage = replace(u, input_tokens=u.input_tokens - uncached + kept)
        return replace(sim, req=replace(sim.req, usage=usage))

    def judge(self, evidence: Evidence | None) -> Judge:
        return Fixed("unknown: no answers under compression in this traffic")


@dataclass(frozen=True, slots=True)
class Flex:
    """Matching requests served at OpenAI's flex tier (a deployment with
    ``service_tier: flex``): priced at its rates where the model has them, at the
    standard ones where it does not."""

    select: Selector

    @property
    def name(self) -> str:
        return f"{self.select} at the flex tier"

    def apply(self, sim: Sim, evidence: Evidence | None) -> Sim:
        if not self.select.matches(sim.req):
            return sim
        usage = replace(sim.req.usage, price_context=FLEX)
        return replace(sim, req=replace(sim.req, usage=usage))

    def judge(self, evidence: Evidence | None) -> Judge:
        return Fixed("unchanged (same model); slower, and a 429 without flex capacity "
                     "goes to the standard tier at its price")  # fmt: skip


@dataclass(frozen=True, slots=True)
class OutputCap:
    select: Selector
    max_tokens: int

    @property
    def name(self) -> str:
        return f"{self.select} output <= {self.max_tokens} tokens"

    def apply(self, sim: Sim, evidence: Evidence | None) -> Sim:
        u = sim.req.usage
        if u.output_tokens <= self.max_tokens or not self.select.matches(sim.req):
            return sim
        out = self.max_tokens
        usage = replace(u, output_tokens=out, reasoning_tokens=min(u.reasoning_tokens, out))
        return replace(sim, req=replace(sim.req, usage=usage), truncated=True)

    def judge(self, evidence: Evidence | None) -> Judge:
        return CapJudge(self.select)


@dataclass(slots=True)
class CapJudge:
    select: Selector
    cut: int = 0
    matched: int = 0

    def add(self, before: Sim, after: Sim) -> None:
        self.cut += after.truncated
        self.matched += self.select.matches(before.req)

    def note(self) -> str:
        return (
            f"{self.cut} of {self.matched} answers cut short at the cap; effect on quality unknown"
        )


# -- running a simulation --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyResult:
    name: str
    requests: int
    changed: int  # requests whose tokens, model or price multipliers changed
    before: Decimal  # over the requests priced on both sides
    after: Decimal
    unpriced_before: int
    unpriced_after: int
    tokens_before: Usage
    tokens_after: Usage
    quality: str

    @property
    def saving(self) -> Decimal:
        return self.before - self.after

    @property
    def saving_share(self) -> Decimal | None:
        return None if not self.before else self.saving / self.before


@dataclass(frozen=True, slots=True)
class Simulation:
    source: str
    requests: int
    baseline_total: Decimal  # priced requests, today's prices
    baseline_unpriced: int
    logged_total: Decimal | None  # as the ledger recorded it, when every request has a cost
    results: tuple[PolicyResult, ...]
    curves: Curves  # spend over time for the plots: the baseline's, then each result's


@dataclass(slots=True)
class _Tally:
    """One result's sums over the requests read so far."""

    name: str
    judge: Judge
    requests: int = 0
    changed: int = 0
    before: Decimal = _ZERO
    after: Decimal = _ZERO
    unpriced_before: int = 0
    unpriced_after: int = 0
    tokens_before: Usage = field(default_factory=Usage)
    tokens_after: Usage = field(default_factory=Usage)

    def add(self, b: Sim, a: Sim, cb: Decimal | None, prices: PriceBook) -> Decimal | None:
        """Count a request before (costing ``cb``) and after; return its cost after."""
        ca = cost_of(a, prices) if a != b else cb
        self.requests += 1
        self.unpriced_before += cb is None
        self.unpriced_after += ca is None
        if cb is not None and ca is not None:
            self.before += cb
            self.after += ca
        self.tokens_before += b.req.usage
        self.tokens_after += a.req.usage
        self.changed += a != b
        self.judge.add(b, a)
        return ca

    def result(self) -> PolicyResult:
        return PolicyResult(
            name=self.name,
            requests=self.requests,
            changed=self.changed,
            before=self.before,
            after=self.after,
            unpriced_before=self.unpriced_before,
            unpriced_after=self.unpriced_after,
            tokens_before=self.tokens_before,
            tokens_after=self.tokens_after,
            quality=self.judge.note(),
        )


def simulate(
    traffic: Traffic,
    policies: Sequence[Policy],
    *,
    prices: PriceBook | None = None,
    combined: bool = True,
) -> Simulation:
    """Each policy alone, then (with ``combined`` and more than one) all in order,
    in one pass over the traffic: each request is priced as logged and under every
    result before the next is read."""
    prices = prices or PriceBook()
    ev = traffic.evidence
    tallies = [_Tally(p.name, p.judge(ev)) for p in policies]
    chain = combined and len(policies) > 1
    if chain:
        note = Fixed("the effects of each policy above, combined")
        tallies.append(_Tally("all of the above", note))
    curves = Curves.of(1 + len(tallies))
    requests = unpriced = 0
    total = logged = _ZERO
    every_logged = True
    for req in traffic.requests:
        base = Sim(req)
        cb = cost_of(base, prices)
        requests += 1
        if cb is None:
            unpriced += 1
        else:
            total += cb
        if req.logged_cost is None:
            every_logged = False
        else:
            logged += req.logged_cost
        costs = [cb]
        for policy, tally in zip(policies, tallies[: len(policies)], strict=True):
            costs.append(tally.add(base, policy.apply(base, ev), cb, prices))
        if chain:
            after = base
            for policy in policies:
                after = policy.apply(after, ev)
            costs.append(tallies[-1].add(base, after, cb, prices))
        curves.add(req.ts, costs)
    return Simulation(
        source=f"{traffic.name} ({requests} requests)",
        requests=requests,
        baseline_total=total,
        baseline_unpriced=unpriced,
        logged_total=logged if requests and every_logged else None,
        results=tuple(t.result() for t in tallies),
        curves=curves,
    )


# -- output ------------------------------------------------------------------------------


def _money(amount: Decimal) -> str:
    return f"${amount.quantize(Decimal('0.0001')):,}"


def render_table(sim: Simulation) -> str:
    """A plain-text table: one row per policy, then each policy's quality note."""
    lines = [f"traffic: {sim.source}"]
    base = f"baseline at today's prices: {_money(sim.baseline_total)}"
    if sim.baseline_unpriced:
        base += f" (+ {sim.baseline_unpriced} requests with no known price)"
    if sim.logged_total is not None:
        base += f"; as logged: {_money(sim.logged_total)}"
    lines.append(base)
    head = ("policy", "changed", "before", "after", "saving", "saving %")
    rows = [head]
    for r in sim.results:
        share = r.saving_share
        if r.unpriced_after == r.requests:  # nothing left to compare
            money = ("unknown",) * 3
        else:
            money = (_money(r.before), _money(r.after), _money(r.saving))
        pct = "-" if share is None else f"{(share * 100).quantize(Decimal('0.1'))}%"
        rows.append((r.name, f"{r.changed}/{r.requests}", *money, pct))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines.append("")
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    lines.append("quality:")
    for r in sim.results:
        lines.append(f"  {r.name}: {r.quality}")
        if r.unpriced_after != r.unpriced_before:
            lines.append(
                f"    requests with no known price: {r.unpriced_before} before, "
                f"{r.unpriced_after} after (left out of both totals)"
            )
    return "\n".join(lines)
