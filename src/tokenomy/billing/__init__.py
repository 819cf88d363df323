"""Prepaid credits and per-customer billing, on top of the caps engine.

- `plans`: a plan's price for a request (`charge`), exact and rounded once.
- `credits`: the append-only credit ledger, customers and plans (`BillingStore`).
- `plan_changes`: when each customer's plan changed, for statements.
- `statements`: a customer's statement for a period, as JSON or CSV.
- `policy`: the admission policy that reserves a request's worst-case charge
  against the customer's balance and settles it to the actual charge.

See ``docs/billing.md``.
"""

from __future__ import annotations

from .credits import KINDS, BillingStore, CreditEntry, Customer, Debit
from .plan_changes import PlanSpan
from .plans import (
    QUANTUM,
    UNITS,
    Plan,
    charge,
    money_text,
    parse_money,
    plan_from_terms,
    plan_terms,
    record_charge,
    token_charge,
)
from .policy import BillingConfig, BillingPolicy, billing_config, billing_policy
from .statements import CSV_COLUMNS, Period, Statement, build_statement, parse_period

__all__ = [
    "CSV_COLUMNS",
    "KINDS",
    "QUANTUM",
    "UNITS",
    "BillingConfig",
    "BillingPolicy",
    "BillingStore",
    "CreditEntry",
    "Customer",
    "Debit",
    "Period",
    "Plan",
    "PlanSpan",
    "Statement",
    "billing_config",
    "billing_policy",
    "build_statement",
    "charge",
    "money_text",
    "parse_money",
    "parse_period",
    "plan_from_terms",
    "plan_terms",
    "record_charge",
    "token_charge",
]
