"""Soft thresholds: a webhook and a log line, once per budget, counter and period.

After a settle, `Alerts.check` compares the counter's total (spent plus held)
with the budget's thresholds. A threshold not yet seen by this process is
queued; the background worker claims it with a row in ``cap_alerts`` whose
primary key is (budget, counter, period, threshold), so across replicas only
the process whose insert lands sends it. Sending happens off the request path,
with a timeout; a failure is logged and never reaches a request.

The body is what a Slack incoming webhook accepts (``text``), plus the same
facts as fields for other receivers::

    {"text": "Budget 'search-daily' reached 80% ...", "budget": "search-daily",
     "budget_id": "bud_...", "scope": {"team": "search"}, "counter": "",
     "period": "2025-03-09", "threshold_pct": 80, "measure": "usd",
     "used": "4.01", "limit": "5", "percent": "80.2"}
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp

from .counters import units_to_usd
from .model import Budget
from .store import CapsStore

log = logging.getLogger("tokenomy.caps.alerts")

QUEUE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class Alert:
    budget: Budget
    entity: str
    period: str
    measure: str  # "usd" or "tokens"
    threshold: int  # percent
    total: int  # counter units
    limit: int

    def amount(self, units: int) -> str:
        return str(units_to_usd(units)) if self.measure == "usd" else str(units)

    def body(self) -> dict[str, Any]:
        pct = (Decimal(self.total) * 100 / Decimal(self.limit)) if self.limit else Decimal(100)
        pct = pct.quantize(Decimal("0.1"))
        unit = "$" if self.measure == "usd" else ""
        tokens = " tokens" if self.measure == "tokens" else ""
        who = f" for {self.entity}" if self.entity else ""
        text = (
            f"Budget '{self.budget.name}'{who} reached {self.threshold}% "
            f"({unit}{self.amount(self.total)}{tokens} of {unit}{self.amount(self.limit)}{tokens}, "
            f"{pct}%) in period {self.period}."
        )
        return {
            "text": text,
            "budget": self.budget.name,
            "budget_id": self.budget.id,
            "scope": self.budget.scope.as_dict(),
            "counter": self.entity,
            "period": self.period,
            "threshold_pct": self.threshold,
            "measure": self.measure,
            "used": self.amount(self.total),
            "limit": self.amount(self.limit),
            "percent": str(pct),
        }


class Alerts:
    def __init__(self, store: CapsStore, *, webhook_url: str | None, timeout: float) -> None:
        self.store = store
        self.webhook_url = webhook_url
        self.timeout = timeout
        self._seen: set[tuple[str, str, str, str, int]] = set()
        self._queue: asyncio.Queue[Alert] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.sent = 0  # webhooks delivered (for tests and metrics)

    def check(
        self, budget: Budget, entity: str, period: str, measure: str, total: int, limit: int
    ) -> None:
        """Queue every threshold ``total`` has reached that this process has not queued."""
        for pct in budget.alerts:
            if total * 100 < pct * limit:
                break  # thresholds are sorted
            key = (budget.id, entity, period, measure, pct)
            if key in self._seen:
                continue
            if len(self._seen) > 100_000:
                self._seen.clear()  # the database still says what fired
            self._seen.add(key)
            try:
                self._queue.put_nowait(Alert(budget, entity, period, measure, pct, total, limit))
            except asyncio.QueueFull:
                log.warning("alert queue full; dropped %s", key)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="tokenomy-caps-alerts")

    async def stop(self, *, drain: float = 2.0) -> None:
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), drain)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            alert = await self._queue.get()
            try:
                await self._fire(alert)
            except Exception:  # an alert must never take the worker down
                log.exception("alert for budget %s failed", alert.budget.name)
            finally:
                self._queue.task_done()

    async def _fire(self, alert: Alert) -> None:
        threshold = f"{alert.measure}:{alert.threshold}"
        try:
            claimed = await asyncio.to_thread(
                self.store.claim_alert,
                alert.budget.id,
                alert.entity,
                alert.period,
                threshold,
                alert.amount(alert.total),
                alert.amount(alert.limit),
            )
        except Exception:
            # Not recorded: let the next crossing of this threshold try again.
            self._seen.discard(
                (alert.budget.id, alert.entity, alert.period, alert.measure, alert.threshold)
            )
            raise
        if not claimed:
            return  # another replica (or an earlier run) already sent it
        body = alert.body()
        log.warning("budget alert: %s", body["text"])
        url = alert.budget.webhook_url or self.webhook_url
        if url:
            await self._post(url, body)

    async def _post(self, url: str, body: dict[str, Any]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        try:
            async with self._session.post(url, json=body) as resp:
                if resp.status >= 300:
                    log.warning("alert webhook %s answered %s", url, resp.status)
                else:
                    self.sent += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("alert webhook %s failed: %s", url, exc)
