"""The balance admission policy: reserve a request's worst-case charge, settle the actual.

Billing adds no reservation engine of its own. A prepaid balance is one more
hold in the caps' atomic reservation (`caps.policy.HoldSource`), on a lifetime
counter per customer:

    window  "credit:<customer>"   (one bucket, never expires)
    total   every debit ever settled + the holds of requests in flight
    limit   every credit ever granted (top-ups, adjustments, refunds)

so ``limit - total`` is the balance minus what requests in flight may still
cost, and a request is admitted only if its worst case fits, atomically with
every budget and limit that applies (in process, or in Redis across replicas).
The counter counts in nano-dollars (`caps.USD_UNIT`) or in tokens; charges are
rounded to the same nano-dollar (`plans.QUANTUM`), so the two agree exactly.

For each request:

1. `BillingPolicy.reserve` (before the caps) finds the customer — the request's
   ``user`` attribution — and their account and plan (cached for ``cache_ttl``
   seconds), and copies the plan's terms into ``decisions.billing`` of the
   request's record;
2. the caps call `holds` with their worst-case estimate; the worst-case charge
   becomes the hold. A refusal comes back through `refusal`, in the called
   API's format;
3. after the record is committed, `settle` appends the debit to the credit
   ledger (once per request), and the caps settle the hold to the same amount,
   computed from the record by the ``credit`` measure;
4. a crashed replica's hold is settled by the caps' sweeper from the record
   with the same measure, and its missing debit is appended by `reconcile`
   (run at start-up and by ``tokenomy credits reconcile``).

The counter starts from the ledger: a process seeds it with the customer's
settled debits the first time it sees them, where it does not exist yet, and
again when Redis lost the counters (`seed_again`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from ..caps.counters import CountersUnavailable, Hold, Window, units_to_usd, usd_to_units
from ..caps.estimate import Estimate
from ..caps.measures import register
from ..caps.model import ON_EXCEED
from ..caps.policy import CapsPolicy
from ..config import flag, number
from ..errors import ConfigError, InvalidRequest, Overloaded, RateLimited, TokenomyError
from ..ledger.base import Store
from ..pipeline.admit import AdmissionPolicy
from ..pipeline.context import ANTHROPIC, Call
from ..records import UsageRecord
from ..usage import Usage
from .credits import BillingStore, Customer
from .plans import Plan, charge, plan_terms, record_charge

__all__ = [
    "BillingConfig",
    "BillingPolicy",
    "admission_order",
    "billing_config",
    "billing_policy",
    "credit_units",
    "refusal_for",
]

log = logging.getLogger("tokenomy.billing")

MEASURE = "credit"
_PRUNE_EVERY = 1024


@dataclass(frozen=True, slots=True)
class BillingConfig:
    """The ``billing:`` section of the config file.

    billing:
      require_balance: false   # true: refuse requests of customers without a balance
      fail_mode: closed        # counters unreachable: "closed" refuses balance customers,
                               # "open" serves them (the ledger still never goes negative)
      on_exceed: refuse        # or "clamp": lower max_tokens to what the balance can pay
      cache_ttl: 2             # seconds an account (plan, credits) is trusted
      reconcile_window: 86400  # seconds of ledger `reconcile` looks back at start-up
    """

    require_balance: bool = False
    fail_mode: str = "closed"
    on_exceed: str = "refuse"
    cache_ttl: float = 2.0
    reconcile_window: float = 86400.0

    def __post_init__(self) -> None:
        if self.fail_mode not in ("open", "closed"):
            raise ConfigError("billing.fail_mode must be 'open' or 'closed'")
        if self.on_exceed not in ON_EXCEED:
            raise ConfigError("billing.on_exceed must be 'refuse' or 'clamp'")


def billing_config(settings: Any) -> BillingConfig:
    raw: Mapping[str, Any] = getattr(settings, "billing", None) or {}
    unknown = set(raw) - set(BillingConfig.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"billing: unknown settings {sorted(unknown)}")
    return BillingConfig(
        require_balance=flag(raw.get("require_balance", False), "billing.require_balance"),
        fail_mode=str(raw.get("fail_mode", "closed")),
        on_exceed=str(raw.get("on_exceed", "refuse")),
        cache_ttl=number(raw.get("cache_ttl", 2.0), "billing.cache_ttl"),
        reconcile_window=number(raw.get("reconcile_window", 86400.0), "billing.reconcile_window"),
    )


def credit_units(rec: UsageRecord) -> int:
    """The ``credit`` measure: what the record's request takes from its balance, in
    counter units (nano-dollars or tokens)."""
    _, amount = record_charge(rec)
    if not amount:
        return 0
    terms = rec.decisions.get("billing")
    unit = terms.get("unit") if isinstance(terms, Mapping) else None
    return int(amount) if unit == "tokens" else usd_to_units(amount)


register(MEASURE, credit_units)


def window_for(customer: str) -> Window:
    # Customer names come from clients: keep counter keys short and unambiguous.
    name = customer
    if len(name) > 64 or any(ch in name for ch in "|= \n"):
        name = "h." + hashlib.sha256(customer.encode()).hexdigest()[:24]
    return Window(f"credit:{name}")


def show(units: int, unit: str) -> str:
    if unit == "tokens":
        return f"{max(units, 0)} tokens"
    return f"${units_to_usd(max(units, 0))}"


def refusal_for(api: str, message: str) -> TokenomyError:
    """Out of credit, as each API says it: OpenAI's 429 ``insufficient_quota``
    (the SDK's RateLimitError), Anthropic's 400 for a balance too low (the SDK's
    BadRequestError). ``x-should-retry: false`` stops the SDKs' retries."""
    headers = {"x-should-retry": "false"}
    if api == ANTHROPIC:
        return InvalidRequest(message, code="insufficient_credit", headers=headers)
    return RateLimited(message, code="insufficient_quota", headers=headers)


@dataclass(slots=True)
class _Account:
    customer: Customer | None
    plan: Plan | None
    loaded: float  # monotonic


@dataclass(slots=True)
class _Ticket:
    """One admitted request of a billing customer, until it settles."""

    call: Call
    customer: Customer
    plan: Plan | None
    hold: Hold | None = None
    unheld: bool = False  # admitted without its hold: the counters were unreachable
    since: float = field(default_factory=time.monotonic)


class BillingPolicy:
    name = "billing"

    def __init__(self, store: Store, caps: CapsPolicy, config: BillingConfig | None = None):
        self.billing = BillingStore(store)
        self.caps = caps
        self.config = config or BillingConfig()
        self._accounts: dict[str, _Account] = {}
        self._tickets: dict[str, _Ticket] = {}
        self._by_hold: dict[int, _Ticket] = {}
        self._seeded: set[str] = set()
        self._unseeded: set[str] = set()  # seeded before the counters were lost, not since
        self._reserves = 0
        self._started = False
        self._start_lock: asyncio.Lock | None = None
        self._source = False

    def _ensure_source(self) -> None:
        # Only once a balance exists: until then the caps need not estimate every request.
        if not self._source:
            self._source = True
            self.caps.add_source(self)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Append the debits a crash left out, before any counter is seeded from them."""
        if self._started:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._started:
                return
            since = time.time() - self.config.reconcile_window
            try:
                n, any_balance = await asyncio.to_thread(
                    lambda: (self.billing.reconcile(since), self.billing.has_balances())
                )
            except Exception:  # billing must not keep the gateway from serving
                log.exception("reconciling the credit ledger failed")
                n, any_balance = 0, True
            if n:
                log.warning("appended %d debit(s) missing from the credit ledger", n)
            if any_balance:
                self._ensure_source()
            self._started = True

    def forget(self, customer: str | None = None) -> None:
        """Drop cached accounts (one, or all) after a change made on this replica."""
        if customer is None:
            self._accounts.clear()
        else:
            self._accounts.pop(customer, None)

    async def _account(self, customer: str) -> _Account:
        now = time.monotonic()
        acct = self._accounts.get(customer)
        if acct is not None and now - acct.loaded < self.config.cache_ttl:
            return acct

        def load() -> tuple[Customer | None, Plan | None]:
            found = self.billing.customer(customer)
            plan = self.billing.plan(found.plan) if found and found.plan else None
            return found, plan

        found, plan = await asyncio.to_thread(load)
        acct = _Account(found, plan, now)
        if found is not None and found.unit is not None:
            self._ensure_source()
            if customer not in self._seeded:
                await self._seed(found)
        if len(self._accounts) > 100_000:
            self._accounts.clear()
        self._accounts[customer] = acct
        return acct

    async def seed_again(self) -> None:
        """The counters were lost (Redis restarted empty): seed again the balance
        counter of every customer this process had seeded (others are seeded when
        first seen), from the ledger as it is now; raise if one could not be."""
        self._unseeded |= self._seeded
        self._seeded.clear()
        for customer in sorted(self._unseeded):
            found = await asyncio.to_thread(self.billing.customer, customer)
            if found is None or found.unit is None:
                self._unseeded.discard(customer)
                continue
            await self._seed(found)
        if self._unseeded:
            raise CountersUnavailable(f"{len(self._unseeded)} balance counter(s) not seeded again")

    async def _seed(self, c: Customer) -> None:
        assert c.unit is not None
        used = int(c.debited) if c.unit == "tokens" else usd_to_units(c.debited)
        try:
            await self.caps.backend.seed(window_for(c.customer), used)
        except CountersUnavailable as exc:
            log.warning("cannot seed the balance counter of %s now: %s", c.customer, exc)
            return
        self._seeded.add(c.customer)
        self._unseeded.discard(c.customer)

    # -- the request path -------------------------------------------------------------------

    async def reserve(self, call: Call) -> None:
        if not self._started:
            await self.start()
        customer = call.record.user
        if customer is None:
            if self.config.require_balance:
                raise refusal_for(
                    call.api,
                    "This gateway serves prepaid customers only, and the request names none "
                    "(OpenAI: 'user'; Anthropic: 'metadata.user_id'; or the key's user).",
                )
            return
        acct = await self._account(customer)
        c = acct.customer
        if c is None or c.unit is None:
            if self.config.require_balance:
                raise refusal_for(
                    call.api, f"Customer {customer!r} has no prepaid balance: top up to start."
                )
            if c is None:
                return  # not a billing customer: charged the provider cost, nothing to hold
        terms: dict[str, Any] = {"customer": customer, "unit": c.unit, **plan_terms(acct.plan)}
        call.record.decisions["billing"] = terms
        self._tickets[call.request_id] = _Ticket(call, c, acct.plan)
        self._reserves += 1
        if self._reserves % _PRUNE_EVERY == 0:
            self._prune()

    def holds(self, call: Call, estimate: Estimate | None) -> Sequence[Hold]:
        """`caps.policy.HoldSource`: the worst-case charge against the balance."""
        t = self._tickets.get(call.request_id)
        if t is None or t.customer.unit is None:
            return []
        if t.hold is not None:
            self._by_hold.pop(id(t.hold), None)
        c = t.customer
        worst = self._worst(t, call, estimate)
        limit = int(c.credited) if c.unit == "tokens" else usd_to_units(c.credited)
        t.hold = Hold(window_for(c.customer), worst, limit, MEASURE)
        self._by_hold[id(t.hold)] = t
        unit = c.unit
        call.record.decisions["billing"]["reserved"] = (
            str(worst) if unit == "tokens" else str(units_to_usd(worst))
        )
        return [t.hold]

    def _worst(self, t: _Ticket, call: Call, est: Estimate | None) -> int:
        if est is None:
            raise AssertionError("the caps estimate every request when a hold source is set")
        if t.customer.unit == "tokens":
            return est.tokens
        plan = t.plan
        fresh = Usage(input_tokens=est.input_tokens, output_tokens=est.total_output)
        if plan is not None and plan.fixed:
            cached = Usage(est.input_tokens, est.total_output, cache_read_tokens=est.input_tokens)
            worst = max(charge(plan, fresh, None) or Decimal(0),
                        charge(plan, cached, None) or Decimal(0))  # fmt: skip
            return usd_to_units(worst)
        if est.usd is None or est.price_unknown:
            model = call.record.served_model or call.record.requested_model
            raise InvalidRequest(
                f"No price is known for model {model!r} (or a model it may fall back to), "
                "so a request on a prepaid balance cannot be charged. Add a price override "
                "for it.",
                code="price_unknown",
                param="model",
            )
        cost = units_to_usd(est.usd)
        worst_usd = charge(plan, fresh, cost)
        assert worst_usd is not None
        return usd_to_units(worst_usd)

    def refusal(self, hold: Hold, total: int) -> TokenomyError:
        """`caps.policy.HoldSource`: the worst case does not fit what is left."""
        t = self._by_hold.get(id(hold))
        unit = t.customer.unit if t is not None and t.customer.unit else "usd"
        api = t.call.api if t is not None else "openai"
        who = t.customer.customer if t is not None else "this customer"
        left = (hold.limit or 0) - total
        # An embeddings request has no output: its worst case is its input alone.
        op = t.call.op if t is not None else "chat"
        if op == "embeddings":
            why = "the input). Top up, or send less input."
        else:
            cap = "max_output_tokens" if op == "responses" else "max_tokens"
            why = f"the prompt plus {cap}). Top up, or lower {cap}."
        return refusal_for(
            api,
            f"Insufficient credit: customer {who!r} has {show(left, unit)} of prepaid balance "
            f"available, and this request may cost up to {show(hold.amount, unit)} (worst "
            f"case: {why}",
        )

    def allowed_output(self, call: Call, hold: Hold, total: int, estimate: Estimate) -> int | None:
        """`caps.policy.HoldSource`, clamp mode: the largest output that the balance
        left can pay for at the customer's plan (None: refuse, the default)."""
        t = self._by_hold.get(id(hold))
        if self.config.on_exceed != "clamp" or t is None or hold.limit is None:
            return None
        left = hold.limit - total
        most = estimate.output_tokens - 1  # below what did not fit
        if t.customer.unit == "tokens":  # the worst case is input + every answer's tokens
            n = min(most, (left - estimate.input_tokens) // estimate.answers)
            return n if n >= 1 else None
        if t.plan is not None and t.plan.fixed:  # its own prices: the model's do not matter

            def worst(n: int) -> int:
                return self._worst(t, call, replace(estimate, output_tokens=n))

        elif estimate.input_usd is None or estimate.output_unit is None:
            return None  # no price to clamp by
        else:
            input_usd, unit = units_to_usd(estimate.input_usd), estimate.output_unit

            def worst(n: int) -> int:
                usd = usd_to_units(input_usd + unit * n)
                return self._worst(t, call, replace(estimate, output_tokens=n, usd=usd))

        lo, hi = 0, most  # the largest n in [1, most] whose worst case fits
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if worst(mid) <= left:
                lo = mid
            else:
                hi = mid - 1
        return lo if lo >= 1 else None

    async def settle(self, call: Call, record: UsageRecord) -> None:
        """After the record is committed: append the request's debit, once."""
        t = self._tickets.pop(call.request_id, None)
        if t is None:
            return
        if t.hold is not None:
            self._by_hold.pop(id(t.hold), None)
        if t.customer.unit is None:
            return
        _, amount = record_charge(record)
        if not amount:
            return
        if t.unheld:
            await self._count(t.customer, credit_units(record))
        try:
            debit = await asyncio.to_thread(
                self.billing.debit, t.customer.customer, call.request_id, amount, ts=record.ts
            )
        except Exception:  # the record holds the charge: reconcile appends it later
            log.exception("debit of %s for %s failed", call.request_id, t.customer.customer)
            return
        if debit.shortfall:
            log.warning(
                "balance of %s could not pay all of %s: %s %s short",
                t.customer.customer, call.request_id, debit.shortfall, t.customer.unit,
            )  # fmt: skip

    async def _count(self, c: Customer, units: int) -> None:
        """Add a charge no hold covered to the counter: a reservation of nothing,
        settled to the charge, so the counter keeps equal to the ledger's debits."""
        rid = f"billing-catch-up-{os.urandom(8).hex()}"
        try:
            await self.caps.backend.reserve(rid, [Hold(window_for(c.customer), 0)], lease=60.0)
            await self.caps.backend.settle(rid, [units])
        except CountersUnavailable as exc:
            log.error("the balance counter of %s misses %d units: %s", c.customer, units, exc)

    def check(self, call: Call) -> None:
        """After the caps reserved: refuse (fail closed) a balance customer's request
        that they admitted without its hold because the counters were unreachable."""
        t = self._tickets.get(call.request_id)
        if t is None or t.hold is None:
            return
        caps = call.record.decisions.get("caps")
        if not (isinstance(caps, Mapping) and caps.get("fail_open")):
            return
        if self.config.fail_mode == "closed":
            raise Overloaded(
                f"The counters ({self.caps.backend.name}) are unreachable, and prepaid "
                "balances fail closed: the request was refused.",
                code="billing_unavailable",
                headers={"x-tokenomy-caps": "fail-closed"},
            )
        t.unheld = True
        call.record.decisions["billing"]["fail_open"] = True

    def _prune(self) -> None:
        """Forget tickets a crashed request path never settled."""
        cutoff = time.monotonic() - self.caps.config.max_hold
        for rid in [rid for rid, t in self._tickets.items() if t.since < cutoff]:
            t = self._tickets.pop(rid)
            if t.hold is not None:
                self._by_hold.pop(id(t.hold), None)

    def open_count(self) -> int:
        return len(self._tickets)


def billing_policy(settings: Any, store: Store, caps: CapsPolicy | None) -> BillingPolicy | None:
    """The gateway's billing, or None without the caps (a ledger that is not SQL)."""
    if caps is None:
        return None
    return BillingPolicy(store, caps, billing_config(settings))


class _AfterCaps:
    """Billing's second look, once the caps have reserved (see `BillingPolicy.check`)."""

    name = "billing-check"

    def __init__(self, billing: BillingPolicy) -> None:
        self.billing = billing

    async def reserve(self, call: Call) -> None:
        self.billing.check(call)

    async def settle(self, call: Call, record: UsageRecord) -> None:
        pass  # BillingPolicy.settle does the work


def admission_order(
    caps: CapsPolicy | None, billing: BillingPolicy | None
) -> list[AdmissionPolicy]:
    """Billing finds the account, the caps reserve every hold at once, billing checks
    that its hold was among them."""
    if caps is None:
        return []
    if billing is None:
        return [caps]
    return [billing, caps, _AfterCaps(billing)]
