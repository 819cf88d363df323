"""Write a demo ledger: 60 days of plausible traffic, priced by Tokenomy's own price book.

    python scripts/demo_ledger.py demo.db --end 2026-11-28
    tokenomy report --db demo.db --since 2026-11-01 --until 2026-11-29

The traffic is seeded, so the same ``--end`` gives the same ledger (prices come
from the installed genai-prices). Four teams call five models through a few
routes, with a weekly rhythm and a rising trend; one model has no known price;
the cache, routing and compression levers record what they saved, as
``decisions[lever]["saved_usd"]``. Used for the sample in ``docs/reports.md``
and the dashboard screenshot.
"""

from __future__ import annotations

import argparse
import math
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from tokenomy.ledger import Store, open_store
from tokenomy.pricing import PriceBook
from tokenomy.records import UsageRecord
from tokenomy.usage import Usage

TEAMS = {  # team: (requests per weekday, users, routes)
    "search": (150, ["ana", "ben", "chen"], ["answer", "rerank"]),
    "support": (110, ["dee", "eli"], ["reply", "summarise"]),
    "ads": (60, ["fay", "gus"], ["copy"]),
    "research": (25, ["hal"], ["explore"]),
}
MODELS = [  # (model, provider, share, typical input, typical output)
    ("gpt-4o", "openai", 0.28, 2400, 380),
    ("gpt-4o-mini", "openai", 0.34, 1800, 260),
    ("claude-sonnet-4-20250514", "anthropic", 0.22, 3200, 520),
    ("claude-3-5-haiku-20241022", "anthropic", 0.10, 1500, 220),
    ("house-llama-70b", "vllm", 0.06, 2000, 300),  # self-hosted: no price is known
]


def records(end: date, days: int = 60, seed: int = 7) -> list[UsageRecord]:
    rng = random.Random(seed)
    book = PriceBook()
    out: list[UsageRecord] = []
    start = end - timedelta(days=days - 1)
    n = 0
    for d in range(days):
        day = start + timedelta(days=d)
        weekday = day.weekday() < 5
        trend = 1 + 0.6 * d / days
        for team, (per_day, users, routes) in TEAMS.items():
            count = int(per_day * trend * (1.0 if weekday else 0.35) * rng.uniform(0.85, 1.15))
            for _ in range(count):
                n += 1
                model, provider, _, inp, outp = rng.choices(MODELS, [m[2] for m in MODELS])[0]
                if team == "research" and rng.random() < 0.5:
                    model, provider, inp, outp = "claude-sonnet-4-20250514", "anthropic", 9000, 1400
                input_tokens = max(20, int(rng.lognormvariate(math.log(inp), 0.6)))
                output_tokens = max(1, int(rng.lognormvariate(math.log(outp), 0.7)))
                cached = int(input_tokens * rng.choice([0, 0, 0.3, 0.6, 0.85]))
                usage = Usage(input_tokens, output_tokens, cache_read_tokens=cached)
                cost = book.cost(usage, model=model, provider=provider)
                route = rng.choice(routes)
                user = rng.choice(users)
                decisions: dict[str, object] = {}
                if cost.total is not None and cached:
                    full = book.cost(Usage(input_tokens, output_tokens), model=model,
                                     provider=provider).total  # fmt: skip
                    if full is not None and full > cost.total:
                        decisions["cache"] = {"hit": "prompt", "saved_usd": str(full - cost.total)}
                if cost.total is not None and model == "gpt-4o-mini" and rng.random() < 0.4:
                    big = book.cost(usage, model="gpt-4o", provider="openai").total
                    if big is not None:
                        decisions["route"] = {"from": "gpt-4o", "saved_usd": str(big - cost.total)}
                if cost.total is not None and rng.random() < 0.15:
                    decisions["compress"] = {
                        "ratio": 0.7,
                        "saved_usd": str((cost.total * Decimal("0.3")).quantize(Decimal("1e-9"))),
                    }
                failed = rng.random() < 0.01
                ts = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
                ts += rng.uniform(6, 22) * 3600
                out.append(
                    UsageRecord(
                        request_id=f"demo-{n:07d}",
                        ts=ts,
                        api="anthropic" if provider == "anthropic" else "openai",
                        endpoint="/v1/messages"
                        if provider == "anthropic"
                        else "/v1/chat/completions",
                        key_id=f"tk-{team[:4]}-{user}",
                        org="acme",
                        team=team,
                        user=user,
                        tags={"env": "prod" if rng.random() < 0.9 else "staging", "route": route},
                        requested_model=model,
                        served_model=model,
                        provider=provider,
                        usage=Usage() if failed else usage,
                        cost_usd=None if failed else cost.total,
                        price_unknown=cost.price_unknown and not failed,
                        latency_ms=rng.uniform(300, 4000),
                        status=500 if failed else 200,
                        error_type="upstream_error" if failed else None,
                        decisions={} if failed else decisions,
                    )
                )
    return out


def add_budgets_and_balances(store: Store, recs: list[UsageRecord]) -> None:
    """A few budgets and prepaid balances, so the dashboard has state to show
    (skipped when this build has no caps or billing)."""
    try:
        from tokenomy.billing import BillingStore
        from tokenomy.caps.model import budget_from
        from tokenomy.caps.store import CapsStore
    except ImportError as exc:
        print(f"no budgets or balances: {exc}")
        return
    caps = CapsStore(store)
    for raw in (
        {"name": "search-monthly", "scope": {"team": "search"}, "limit_usd": "60"},
        {"name": "research-monthly", "scope": {"team": "research"}, "limit_usd": "25"},
        {"name": "support-tokens", "scope": {"team": "support"}, "limit_tokens": 20_000_000},
    ):
        caps.save_budget(budget_from({**raw, "period": "monthly"}), new=True)
    billing = BillingStore(store)
    for user, amount in (("ana", "12"), ("dee", "8")):
        billing.topup(user, Decimal(amount))
        mine = [r for r in recs if r.user == user and r.cost_usd][-400:]
        for r in mine:
            billing.debit(user, r.request_id, r.cost_usd or Decimal(0), ts=r.ts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("db", help="ledger path or URL (it is created and migrated)")
    parser.add_argument("--end", type=date.fromisoformat, default=datetime.now(UTC).date(),
                        help="last day of traffic (default: today, UTC)")  # fmt: skip
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--state", action="store_true",
                        help="also define budgets and prepaid balances (caps and billing)")  # fmt: skip
    args = parser.parse_args()
    recs = records(args.end, args.days)
    with open_store(args.db) as store:
        store.migrate()
        for i in range(0, len(recs), 5000):
            store.insert_records(recs[i : i + 5000])
        if args.state:
            add_budgets_and_balances(store, recs)
    print(f"wrote {len(recs)} requests ending {args.end} to {args.db}")


if __name__ == "__main__":
    main()
