"""The dashboard's HTML, rendered on the server; the charts draw from JSON on the page.

Every value from the ledger is escaped. Money is shown rounded and carried
exactly in ``data-usd`` attributes, so a test (or a script) can read the exact
figures behind what a person sees.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from html import escape
from typing import Any

import orjson

from ..reports import Group, Totals, plain
from .data import BREAKDOWNS, Dashboard, ForecastPanel, View
from .state import StatePanel


def usd(value: Decimal | None) -> str:
    if value is None:
        return "unknown"
    places = 2 if abs(value) >= 1 else 6
    return f"${value:,.{places}f}"


def _money_cell(value: Decimal | None) -> str:
    if value is None:
        return '<td class="num" data-usd="">unknown</td>'
    return f'<td class="num" data-usd="{plain(value)}">{usd(value)}</td>'


def _cost_cell(t: Totals) -> str:
    """A group's cost, as `tokenomy report` shows it: unknown when none of its
    requests has a price (never $0), a lower bound when some have none."""
    if not t.priced_requests:
        return _money_cell(None)
    cell = _money_cell(t.cost_usd)
    return cell.replace("</td>", " + unknown</td>") if t.unpriced_requests else cell


def _num(n: int) -> str:
    return f'<td class="num" data-n="{n}">{n:,}</td>'


def _pct(value: Decimal | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _text(value: Any) -> str:
    return "(none)" if value is None or value == "" else escape(str(value))


def _json(data: Any) -> str:
    # Safe inside <script>: no "</" can close the element early.
    return orjson.dumps(data).decode().replace("<", "\\u003c")


def layout(title: str, body: str, *, header: bool = True) -> str:
    top = ""
    if header:
        top = (
            '<header><h1>Tokenomy</h1><form method="post" action="/ui/logout">'
            '<button type="submit">Sign out</button></form></header>'
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title>"
        '<link rel="stylesheet" href="/ui/static/dashboard.css">'
        '<script src="/ui/static/chart.js" defer></script>'
        f"</head><body>{top}{body}</body></html>"
    )


def login_page(error: str | None = None, disabled: bool = False) -> str:
    if disabled:
        inner = (
            "<h1>Dashboard disabled</h1><p>Set <code>TOKENOMY_MASTER_KEY</code> "
            "to use the dashboard.</p>"
        )
    else:
        problem = f'<p class="error">{escape(error)}</p>' if error else ""
        inner = (
            "<h1>Tokenomy dashboard</h1>"
            f"{problem}"
            '<form method="post" action="/ui/login">'
            '<label for="key">Master key</label>'
            '<input id="key" name="key" type="password" autocomplete="current-password" '
            "required autofocus>"
            '<button type="submit">Sign in</button></form>'
        )
    return layout("Tokenomy: sign in", f'<div class="login">{inner}</div>', header=False)


def _select(name: str, label: str, options: Sequence[str], current: str | None) -> str:
    opts = ['<option value="">all</option>'] + [
        f'<option value="{escape(o)}"{" selected" if o == current else ""}>{escape(o)}</option>'
        for o in options
    ]
    return f'<label>{label}<select name="{name}" id="f-{name}">{"".join(opts)}</select></label>'


def _filters(view: View, options: dict[str, list[str]]) -> str:
    by = "".join(
        f'<option value="{b}"{" selected" if b == view.by else ""}>{b}</option>' for b in BREAKDOWNS
    )
    problems = "".join(f'<p class="error">{escape(p)}</p>' for p in view.problems)
    return (
        f'{problems}<form class="filters" method="get" action="/ui">'
        f'<label>From<input type="date" name="since" id="f-since" value="{view.since}"></label>'
        f'<label>To<input type="date" name="until" id="f-until" value="{view.until}"></label>'
        + _select("team", "Team", options["team"], view.team)
        + _select("model", "Model", options["model"], view.model)
        + _select("tag", "Tag", options["tag"], view.tag)
        + f'<label>Break down by<select name="by" id="f-by">{by}</select></label>'
        '<button type="submit" id="apply">Apply</button>'
        '<a class="reset" href="/ui">Reset</a></form>'
    )


def _kpis(d: Dashboard) -> str:
    t = d.total
    fc = d.forecast
    cards = [
        ("spend", "Spend (priced requests)", usd(t.cost_usd), plain(t.cost_usd),
         f"{t.priced_requests:,} priced requests"),
        ("requests", "Requests", f"{t.requests:,}", str(t.requests), f"{t.errors:,} errors"),
        ("tokens", "Tokens in / out", f"{t.input_tokens:,} / {t.output_tokens:,}",
         f"{t.input_tokens}/{t.output_tokens}", f"cache share {_pct(t.cache_share)}"),
        ("unpriced", "Requests with unknown price", f"{t.unpriced_requests:,}",
         str(t.unpriced_requests), "not counted as $0"),
        ("saved", "Saved by levers", usd(t.saved_usd), plain(t.saved_usd),
         f"{len(d.levers)} levers"),
        ("forecast", f"Projected {fc.month}", usd(fc.projected) if fc.projected is not None
         else "unavailable", plain(fc.projected) if fc.projected is not None else "",
         f"{usd(fc.low)} to {usd(fc.high)}" if fc.projected is not None else "see below"),
    ]  # fmt: skip
    return (
        '<div class="kpis">'
        + "".join(
            f'<div class="kpi" id="kpi-{key}"><div class="label">{escape(label)}</div>'
            f'<div class="value" data-value="{escape(exact)}">{escape(shown)}</div>'
            f'<div class="note">{escape(note)}</div></div>'
            for key, label, shown, exact, note in cards
        )
        + "</div>"
    )


def _chart(kind: str, ident: str, data: Any) -> str:
    return (
        f'<div class="chart" id="{ident}" data-chart="{kind}" data-source="{ident}-data"></div>'
        f'<script type="application/json" id="{ident}-data">{_json(data)}</script>'
    )


def _panel(ident: str, title: str, body: str, *, note: str = "", wide: bool = False) -> str:
    cls = "panel wide" if wide else "panel"
    note_html = f'<p class="note">{escape(note)}</p>' if note else ""
    return (
        f'<section class="{cls}" id="{ident}"><h2>{escape(title)}</h2>{note_html}{body}</section>'
    )


def _table(head: Iterable[tuple[str, bool]], rows: Iterable[str]) -> str:
    th = "".join(f'<th class="num">{escape(h)}</th>' if n else f"<th>{escape(h)}</th>"
                 for h, n in head)  # fmt: skip
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _spenders(d: Dashboard) -> str:
    total = d.total.cost_usd
    rows = []
    for g in d.spenders:
        t = g.totals
        share = (t.cost_usd / total) if total else None
        rows.append(
            f'<tr data-key="{escape(str(g.key[0] or ""))}"><td>{_text(g.key[0])}</td>'
            f"{_num(t.requests)}{_num(t.input_tokens)}{_num(t.output_tokens)}"
            f'{_cost_cell(t)}<td class="num">{_pct(share)}</td>'
            f"{_num(t.unpriced_requests)}</tr>"
        )
    head = [(d.view.by, False), ("requests", True), ("input tokens", True),
            ("output tokens", True), ("cost", True), ("share", True), ("unpriced", True)]  # fmt: skip
    return _table(head, rows) if rows else "<p>No requests in this range.</p>"


def _spenders_cut(d: Dashboard) -> str:
    if d.spender_groups <= len(d.spenders):
        return ""
    return (
        f"The {len(d.spenders)} largest of {d.spender_groups:,} by {d.view.by}; "
        f"tokenomy report --group-by {d.view.by} lists every one."
    )


def _top_cut(d: Dashboard) -> str:
    priced = d.total.priced_requests
    if not d.top_cut:
        return ""
    return (
        f"The {len(d.top)} most expensive of {priced:,} priced requests; "
        "tokenomy report --top N lists more."
    )


def _top(records: Sequence[Any]) -> str:
    rows = [
        f'<tr data-request="{escape(r.request_id)}"><td>{escape(r.request_id)}</td>'
        f"<td>{datetime.fromtimestamp(r.ts, UTC):%Y-%m-%d %H:%M}</td><td>{_text(r.team)}</td>"
        f"<td>{_text(r.user)}</td><td>{_text(r.served_model or r.requested_model)}</td>"
        f"{_num(r.usage.input_tokens)}{_num(r.usage.output_tokens)}{_money_cell(r.cost_usd)}</tr>"
        for r in records
    ]
    head = [("request", False), ("time (UTC)", False), ("team", False), ("user", False),
            ("model", False), ("input", True), ("output", True), ("cost", True)]  # fmt: skip
    return _table(head, rows) if rows else "<p>No priced requests in this range.</p>"


def _unpriced(groups: Sequence[Group]) -> str:
    if not groups:
        return "<p>Every request in this range has a known price.</p>"
    rows = [
        f'<tr data-model="{escape(str(g.key[0]))}"><td>{_text(g.key[0])}</td><td>{_text(g.key[1])}</td>'
        f"{_num(g.totals.unpriced_requests)}{_num(g.totals.unpriced_input_tokens)}"
        f"{_num(g.totals.unpriced_output_tokens)}</tr>"
        for g in groups
    ]
    head = [("model", False), ("provider", False), ("requests", True), ("input tokens", True),
            ("output tokens", True)]  # fmt: skip
    return _table(head, rows)


def _levers(levers: Sequence[tuple[str, Decimal]]) -> str:
    if not levers:
        return "<p>No lever recorded a saving in this range.</p>"
    rows = [
        f'<tr data-lever="{escape(lever)}"><td>{escape(lever)}</td>{_money_cell(saved)}</tr>'
        for lever, saved in levers
    ]
    chart = _chart("hbars", "savings-chart", {"labels": [lv for lv, _ in levers],
                                               "values": [float(s) for _, s in levers]})  # fmt: skip
    return chart + _table([("lever", False), ("saved", True)], rows)


def _routes(groups: Sequence[Group]) -> str:
    rows = [
        f'<tr data-route="{escape(str(g.key[0]))}"><td>{_text(g.key[0])}</td>{_num(g.totals.requests)}'
        f"{_cost_cell(g.totals)}{_money_cell(g.totals.cost_per_1k_requests)}"
        f'<td class="num">{_pct(g.totals.cache_share)}</td></tr>'
        for g in groups
    ]
    head = [("route", False), ("requests", True), ("cost", True), ("per 1,000 requests", True),
            ("cache share", True)]  # fmt: skip
    return _table(head, rows) if rows else "<p>No requests in this range.</p>"


def _state(panel: StatePanel, *, money: Sequence[str] = ()) -> str:
    if panel.unavailable:
        return f'<p class="unavailable">{escape(panel.unavailable)}</p>'

    def cells(row: Sequence[Any]) -> str:
        out = []
        for col, v in zip(panel.columns, row, strict=True):
            if isinstance(v, Decimal) and col in money:
                out.append(_money_cell(v))
            else:
                out.append(
                    f'<td class="num">{_text(v)}</td>' if col in money else f"<td>{_text(v)}</td>"
                )
        return "".join(out)

    rows = []
    for row, used in zip(panel.rows, panel.used, strict=True):
        meter = "<td>-</td>" if used is None else f"<td>{_meter(*used)}</td>"
        rows.append(f"<tr>{cells(row)}{meter}</tr>")
    rows += [f'<tr class="total">{cells(row)}<td></td></tr>' for row in panel.totals]
    head = [(c, c in money) for c in panel.columns] + [("of limit", False)]
    notes = "".join(f'<p class="note cut">{escape(n)}</p>' for n in panel.notes)
    return _table(head, rows) + notes


def _meter(spent: Decimal, limit: Decimal) -> str:
    """A bar of spent over limit, in SVG (the page's CSP allows no inline styles)."""
    ratio = min(spent / limit, Decimal(1)) if limit > 0 else Decimal(1)
    level = "over" if spent >= limit else "high" if ratio >= Decimal("0.8") else "ok"
    return (
        f'<svg class="meter {level}" width="90" height="8" data-ratio="{ratio:.4f}">'
        f'<rect width="90" height="8" rx="4" class="meter-bg"/>'
        f'<rect width="{float(ratio) * 90:.1f}" height="8" rx="4" class="meter-fill"/></svg> '
        f"{spent / limit * 100 if limit > 0 else 100:.0f}%"
    )


def _forecast(fc: ForecastPanel) -> str:
    if fc.unavailable or fc.chart is None:
        return f'<p class="unavailable" id="forecast-unavailable">{escape(fc.unavailable or "Forecast unavailable.")}</p>'
    summary = (
        f'<p>Spent so far: <strong data-usd="{plain(fc.actual)}">{usd(fc.actual)}</strong>; '
        f'projected month end: <strong data-usd="{plain(fc.projected)}">{usd(fc.projected)}</strong> '
        f"(80% band {usd(fc.low)} to {usd(fc.high)}).</p>"
    )
    return summary + _chart("cumulative", "forecast-chart", fc.chart)


def dashboard_page(d: Dashboard) -> str:
    v = d.view
    spend = {"labels": d.days,
             "series": [{"name": n, "values": [float(x) for x in vals]} for n, vals in d.series]}  # fmt: skip
    body = (
        "<main>"
        + _filters(v, d.options)
        + _kpis(d)
        + _panel("spend", f"Spend per day by {v.by}", _chart("bars", "spend-chart", spend),
                 note=f"{v.since} to {v.until}, UTC days; priced requests only."
                 + (" A request with several tags counts under each." if v.by == "tag" else ""), wide=True)
        + '<div class="grid">'
        + _panel("spenders", f"Top spenders by {v.by}", _spenders(d), note=_spenders_cut(d))
        + _panel("forecast", f"Forecast for {d.forecast.month}", _forecast(d.forecast),
                 note="This month so far and its projection, for the same filters.")
        + _panel("budgets", "Budgets", _state(d.budgets, money=("spent", "limit", "remaining")),
                 note="Spend in each budget's current period, from the ledger.", wide=True)
        + _panel("balances", "Prepaid balances",
                 _state(d.balances, money=("balance", "credited", "spent")))
        + _panel("unpriced", "Models with unknown prices", _unpriced(d.unpriced),
                 note="Their requests are counted here, never as $0 in the spend.")
        + _panel("savings", "Savings by lever", _levers(d.levers),
                 note='What each lever recorded as decisions[lever]["saved_usd"].')
        + _panel("routes", "Cost per 1,000 requests by route", _routes(d.routes))
        + _panel("top", "Most expensive requests", _top(d.top), note=_top_cut(d), wide=True)
        + "</div>"
        + "</main>"
    )  # fmt: skip
    return layout("Tokenomy dashboard", body)
