"""Stage 2: may this request run? Budgets, caps and rate limits plug in here.

An admission policy reserves what the request may cost before the upstream is
called, and settles or releases that reservation when the request ends. With no
policy configured, admission is free.
"""

from __future__ import annotations

from typing import Protocol

from ..records import UsageRecord
from .context import Call


class AdmissionPolicy(Protocol):
    async def reserve(self, call: Call) -> None:
        """Raise `tokenomy.errors.RateLimited` to refuse the request."""

    async def settle(self, call: Call, record: UsageRecord) -> None:
        """Called once for every reserved request, with its final record, after
        the record is committed to the ledger (or, if a later policy refused the
        request, with its record before any usage: a release)."""


class Admit:
    name = "admit"

    def __init__(self, policies: list[AdmissionPolicy] | None = None) -> None:
        self.policies = list(policies or [])

    async def __call__(self, call: Call) -> None:
        done: list[AdmissionPolicy] = []
        try:
            for policy in self.policies:
                await policy.reserve(call)
                done.append(policy)
        except BaseException:
            # A later policy refused: the earlier ones release what they reserved
            # (the record has no usage yet, so settling it releases).
            for policy in reversed(done):
                await policy.settle(call, call.record)
            raise

    async def settle(self, call: Call, record: UsageRecord) -> None:
        for policy in self.policies:
            await policy.settle(call, record)
