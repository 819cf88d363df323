"""Soft thresholds: a webhook and a log line, once per budget, counter and period.

After a settle, `Alerts.check` compares the counter's total (spent plus held)
with the budget's thresholds. A threshold not yet seen by this process is
queued; the background worker claims it with a row in ``cap_alerts`` whose
primary key is (budget, counter, period, threshold), so across replicas only
the process whose insert lands sends it. Sending happens off the request path,
with a timeout; a webhook that fails is tried again with backoff
(`tokenomy.webhook`), each delivery in its own task so one slow receiver does not
hold the others back; a failure is logged and never reaches a request.

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
import itertools
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp

from ..webhook import RETRY_DELAYS, retry_delay, scrubbed, shown
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
        self._deliveries: set[asyncio.Task[None]] = set()
        self.delays: tuple[float, ...] = RETRY_DELAYS
        self.sent = 0  # webhooks delivered (for tests and metrics)
        self.failed = 0  # webhooks given up on

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
        """Send what is queued, wait up to ``drain`` seconds in all, then give up on
        deliveries still waiting to try again (each is logged as not delivered)."""
        deadline = asyncio.get_running_loop().time() + drain
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), drain)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._deliveries:
            left = max(0.0, deadline - asyncio.get_running_loop().time())
            _, pending = await asyncio.wait(set(self._deliveries), timeout=left)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
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
            task = asyncio.create_task(self._deliver(url, body), name="tokenomy-alert-webhook")
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, url: str, body: dict[str, Any]) -> None:
        try:
            for attempt in itertools.count():
                status, error = await self._post(url, body)
                if status is not None and 200 <= status < 300:
                    self.sent += 1
                    return
                wait = retry_delay(attempt, status, self.delays)
                if wait is None:
                    break
                log.warning("alert webhook %s failed (%s); trying again in %ss",
                            shown(url), error, wait)  # fmt: skip
                await asyncio.sleep(wait)
        except asyncio.CancelledError:
            self._gave_up(url, "shutting down", body)
            raise
        self._gave_up(url, error, body)

    def _gave_up(self, url: str, error: str, body: dict[str, Any]) -> None:
        self.failed += 1
        log.error("alert webhook %s not delivered (%s): %s", shown(url), error, body["text"])

    async def _post(self, url: str, body: dict[str, Any]) -> tuple[int | None, str]:
        """The receiver's status (None: no answer) and a short reason."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        try:
            async with self._session.post(url, json=body) as resp:
                return resp.status, f"status {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return None, scrubbed(str(exc), url) or type(exc).__name__
