"""Prometheus metrics, kept as plain counters and rendered in the text format.

Spend is summed as `Decimal` and only turned into a decimal string when
rendered, so the exported figure equals the ledger's to the last digit.

The ``model`` label is the model name a client asked for (or the one served,
which a wildcard deployment takes from the request), so a client could make a
new series with every request. Its values are bounded: the first `MAX_MODELS`
names seen (each at most `MAX_MODEL_CHARS` long) are labels of their own, any
other is counted under `OTHER_MODEL`. Teams come from keys, which the operator
mints; statuses, error types, levers and kinds are the gateway's own words.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import TYPE_CHECKING

from .ledger.rollups import lever_savings
from .records import UsageRecord

if TYPE_CHECKING:
    from .pipeline.context import Call

Labels = tuple[str, ...]

MAX_MODELS = 1000  # distinct values of the model label
MAX_MODEL_CHARS = 200  # a longer model name is no label of its own
OTHER_MODEL = "(other)"


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    def __init__(self) -> None:
        self.requests: defaultdict[Labels, int] = defaultdict(int)  # model, team, status
        self.tokens: defaultdict[Labels, int] = defaultdict(int)  # model, team, kind
        self.spend: defaultdict[Labels, Decimal] = defaultdict(Decimal)  # model, team
        self.unpriced: defaultdict[Labels, int] = defaultdict(int)  # model
        self.errors: defaultdict[Labels, int] = defaultdict(int)  # model, team, type
        self.saved: defaultdict[Labels, Decimal] = defaultdict(Decimal)  # model, team, lever
        self.cache: defaultdict[Labels, int] = defaultdict(int)  # model, team, hit kind
        self.cascades: defaultdict[Labels, int] = defaultdict(int)  # alias, scorer, outcome
        self.unmetered: defaultdict[Labels, int] = defaultdict(int)  # call, model
        self.latency_sum: defaultdict[Labels, float] = defaultdict(float)  # model
        self.latency_count: defaultdict[Labels, int] = defaultdict(int)
        self.gauges: dict[str, Callable[[], float]] = {}
        self._models: set[str] = set()

    def _model(self, name: str) -> str:
        """The model label for ``name``: itself, unless too long or past `MAX_MODELS`."""
        if name in self._models:
            return name
        if len(name) > MAX_MODEL_CHARS or len(self._models) >= MAX_MODELS:
            return OTHER_MODEL
        self._models.add(name)
        return name

    def observe(self, rec: UsageRecord) -> None:
        model = self._model(rec.served_model or rec.requested_model or "")
        team = rec.team or ""
        self.requests[model, team, str(rec.status)] += 1
        u = rec.usage
        if u.input_tokens:
            self.tokens[model, team, "input"] += u.input_tokens
        if u.cache_read_tokens:
            self.tokens[model, team, "cache_read"] += u.cache_read_tokens
        if u.cache_write_tokens or u.cache_write_1h_tokens:
            self.tokens[model, team, "cache_write"] += (
                u.cache_write_tokens + u.cache_write_1h_tokens
            )
        if u.output_tokens:
            self.tokens[model, team, "output"] += u.output_tokens
        if u.reasoning_tokens:
            self.tokens[model, team, "reasoning"] += u.reasoning_tokens
        if rec.cost_usd is not None:
            self.spend[model, team] += rec.cost_usd
        elif rec.price_unknown:
            self.unpriced[(model,)] += 1
        if rec.error_type:
            self.errors[model, team, rec.error_type] += 1
        if rec.decisions:
            for lever, saved in lever_savings(rec.decisions):
                self.saved[model, team, lever] += saved
            hit = (rec.decisions.get("cache") or {}).get("hit")
            if hit:
                self.cache[model, team, str(hit)] += 1
            self._cascade(rec)
        if rec.latency_ms is not None:
            self.latency_sum[(model,)] += rec.latency_ms / 1000.0
            self.latency_count[(model,)] += 1

    def _cascade(self, rec: UsageRecord) -> None:
        """A cascade's reply (not its drafts' rows): kept from a draft or escalated,
        by the alias asked for and its scorer, the rate an operator tunes."""
        route = rec.decisions.get("route")
        if not isinstance(route, dict) or route.get("cascade") not in ("kept", "escalated"):
            return
        alias = self._model(rec.requested_model or "")
        self.cascades[alias, str(route.get("scorer") or ""), str(route["cascade"])] += 1

    def observe_unmetered(self, call: str, model: str = "") -> None:
        """A call relayed without a ledger row (token counting, moderation, a stored
        response read), answered."""
        self.unmetered[call, self._model(model)] += 1

    def observe_error(self, call: Call, status: int) -> None:
        self.requests[self._model(call.record.requested_model or ""), "", str(status)] += 1

    def render(self) -> bytes:
        out: list[str] = []

        def family(
            name: str, kind: str, help_: str, names: Labels, rows: Iterable[tuple[Labels, object]]
        ) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")
            for labels, value in rows:
                lab = ",".join(f'{n}="{_esc(v)}"' for n, v in zip(names, labels, strict=True))
                out.append(f"{name}{{{lab}}} {value}")

        family("tokenomy_requests_total", "counter", "Requests served, by status.",
               ("model", "team", "status"), self.requests.items())  # fmt: skip
        family("tokenomy_tokens_total", "counter", "Tokens metered, by kind.",
               ("model", "team", "kind"), self.tokens.items())  # fmt: skip
        family("tokenomy_spend_usd_total", "counter", "Metered spend in US dollars.",
               ("model", "team"), self.spend.items())  # fmt: skip
        family("tokenomy_unpriced_requests_total", "counter", "Requests whose price is unknown.",
               ("model",), self.unpriced.items())  # fmt: skip
        family("tokenomy_errors_total", "counter", "Failed requests, by error type.",
               ("model", "team", "type"), self.errors.items())  # fmt: skip
        family("tokenomy_saved_usd_total", "counter", "Dollars the levers say they saved.",
               ("model", "team", "lever"), self.saved.items())  # fmt: skip
        family("tokenomy_cache_hits_total", "counter", "Requests served from the response cache.",
               ("model", "team", "kind"), self.cache.items())  # fmt: skip
        family("tokenomy_cascade_total", "counter",
               "Cascaded requests, by alias, scorer and outcome (kept or escalated).",
               ("model", "scorer", "outcome"), self.cascades.items())  # fmt: skip
        family("tokenomy_unmetered_calls_total", "counter",
               "Calls relayed without metering (token counting, moderation, stored "
               "responses), by call and model.",
               ("call", "model"), self.unmetered.items())  # fmt: skip
        out.append("# HELP tokenomy_request_duration_seconds Request latency.")
        out.append("# TYPE tokenomy_request_duration_seconds summary")
        for (model,), total in self.latency_sum.items():
            lab = f'model="{_esc(model)}"'
            out.append(f"tokenomy_request_duration_seconds_sum{{{lab}}} {total}")
            out.append(
                f"tokenomy_request_duration_seconds_count{{{lab}}} {self.latency_count[(model,)]}"
            )
        for name, fn in self.gauges.items():
            out.append(f"# TYPE {name} gauge")
            out.append(f"{name} {fn()}")
        return ("\n".join(out) + "\n").encode()
