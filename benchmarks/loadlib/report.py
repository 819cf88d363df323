"""Figures from the raw runs, the markdown tables, the targets and the JSON file."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import BENCH, DIRECT, LITELLM, NAMES, REPO, TOKENOMY, TOKENOMY_CAPS
from .loadgen import pct
from .plan import Options, Scenario

RESULTS = BENCH / "results"
Figures = dict[str, Any]


def figures(runs: list[dict[str, Any]], stream: bool) -> Figures:
    """Pool one system's runs of one scenario: percentiles over every sample."""
    lat = sorted(v for r in runs for v in r["latency_ms"])
    first = sorted(v for r in runs for v in r["first_ms"])
    window = sum(r["window_s"] for r in runs)
    completed = sum(r["completed"] for r in runs)
    errors: dict[str, int] = {}
    for r in runs:
        for kind, n in r["errors"].items():
            errors[kind] = errors.get(kind, 0) + n
    gateway = [r["cpu_s"].get("gateway") for r in runs]
    gw = None if None in gateway else sum(v for v in gateway if v is not None)
    out: Figures = {
        "requests": completed,
        "rps": completed / window if window else 0.0,
        "p50_ms": pct(lat, 0.50),
        "p90_ms": pct(lat, 0.90),
        "p99_ms": pct(lat, 0.99),
        "max_ms": lat[-1] if lat else None,
        "errors": errors,
        "gateway_cpu_ms_per_req": gw * 1000 / completed if gw is not None and completed else None,
        "gateway_cpu_pct": gw / window * 100 if gw is not None and window else None,
        "upstream_cpu_pct": max(r["cpu_s"]["upstream"] / r["window_s"] * 100 for r in runs),
        "loadgen_cpu_pct": max(r["cpu_s"]["loadgen"] / r["window_s"] * 100 for r in runs),
        "late_ms_p99": max(r["late_ms_p99"] for r in runs),
        "late_ms_max": max(r["late_ms_max"] for r in runs),
    }
    admit = sorted(v for r in runs for v in r.get("admit_ms", ()))
    if admit:  # the gateway's own Server-Timing measurement of the admission check
        out["admit_p50_ms"] = pct(admit, 0.50)
        out["admit_p99_ms"] = pct(admit, 0.99)
    if stream:
        out["ttft_p50_ms"] = pct(first, 0.50)
        out["ttft_p99_ms"] = pct(first, 0.99)
    return out


def summarise(per: dict[str, list[dict[str, Any]]], sc: Scenario) -> dict[str, Figures]:
    """Figures per system, with latency added over the direct baseline (fixed rate)."""
    out = {name: figures(runs, sc.stream) for name, runs in per.items()}
    direct = out.get(DIRECT)
    if sc.mode != "open" or direct is None:
        return out
    keys = ["p50_ms", "p99_ms"] + (["ttft_p50_ms", "ttft_p99_ms"] if sc.stream else [])
    for name, fig in out.items():
        if name != DIRECT:
            for key in keys:
                mine, base = fig.get(key), direct.get(key)
                fig[f"added_{key}"] = None if mine is None or base is None else mine - base
    return out


def fmt(v: float | None, digits: int = 2) -> str:
    if v is None:
        return "n/a"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0 or (a <= 0 and b <= 0):
        return "n/a"
    r = a / b
    return f"{r:.3f}" if abs(r) < 10 else f"{r:.1f}"


def table(rows: list[tuple[str, dict[str, float | None], int]], systems: list[str]) -> list[str]:
    """A markdown table: one row per figure, one column per system, then the ratio."""
    both = systems == [TOKENOMY, LITELLM]
    head = "| figure | " + " | ".join(NAMES[s] for s in systems)
    out = [head + (" | Tokenomy/LiteLLM |" if both else " |")]
    out.append("|---" + "|---:" * (len(systems) + both) + "|")
    for label, values, digits in rows:
        cells = [fmt(values.get(s), digits) for s in systems]
        if both:
            cells.append(ratio(values.get(TOKENOMY), values.get(LITELLM)))
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return out


def scenario_lines(sc: Scenario, s: dict[str, Figures], systems: list[str]) -> list[str]:
    rows: list[tuple[str, str, int]] = [("achieved req/s" if sc.mode == "open" else "requests/s",
                                         "rps", 1 if sc.mode == "open" else 0)]  # fmt: skip
    if sc.stream:
        rows += [("TTFT p50 (ms)", "ttft_p50_ms", 2), ("TTFT p99 (ms)", "ttft_p99_ms", 2)]
    total = "total latency" if sc.stream else "latency"
    rows += [(f"{total} p50 (ms)", "p50_ms", 2), (f"{total} p99 (ms)", "p99_ms", 2)]
    if sc.mode == "open" and DIRECT in s:
        if sc.stream:
            rows += [("added TTFT p50 over direct (ms)", "added_ttft_p50_ms", 2),
                     ("added TTFT p99 over direct (ms)", "added_ttft_p99_ms", 2)]  # fmt: skip
        rows += [(f"added {total} p50 over direct (ms)", "added_p50_ms", 2),
                 (f"added {total} p99 over direct (ms)", "added_p99_ms", 2)]  # fmt: skip
    rows += [("gateway CPU per request (ms)", "gateway_cpu_ms_per_req", 3),
             ("gateway CPU (% of one core)", "gateway_cpu_pct", 0)]  # fmt: skip
    out = [f"### {sc.title}", ""]
    direct = s.get(DIRECT)
    if direct is not None:
        ttft = f", TTFT p50 {fmt(direct.get('ttft_p50_ms'))} ms" if sc.stream else ""
        out += [f"Direct to the fake upstream: {fmt(direct['rps'], 0)} req/s, p50 "
                f"{fmt(direct['p50_ms'])} ms, p99 {fmt(direct['p99_ms'])} ms{ttft}.", ""]  # fmt: skip
    out += table([(label, {x: s[x].get(key) for x in systems}, d) for label, key, d in rows],
                 systems)  # fmt: skip
    notes = [
        f"{NAMES[x]} {s[x]['errors']}" for x in (*systems, DIRECT) if x in s and s[x]["errors"]
    ]
    out += ["", "Errors: " + ("; ".join(notes) if notes else "none") + "."]
    if sc.mode == "open":
        slow = [NAMES[x] for x in systems if s[x]["rps"] < 0.95 * sc.rate]
        if slow:
            out.append(f"Saturated (served under 95% of the offered rate): {', '.join(slow)}.")
    return out


def admission_lines(summaries: dict[str, dict[str, Figures]]) -> list[str]:
    """The admission check, from the gateway's Server-Timing header, with and without caps."""
    rows = []
    for key, what in (("rate-json", "non-streaming"), ("rate-stream", "streaming")):
        caps = summaries.get(key, {}).get(TOKENOMY_CAPS)
        plain = summaries.get(key, {}).get(TOKENOMY, {})
        if caps is None:
            continue
        delta = None
        if caps.get("added_p50_ms") is not None and plain.get("added_p50_ms") is not None:
            delta = caps["added_p50_ms"] - plain["added_p50_ms"]
        rows.append(f"| fixed rate, {what} | {fmt(plain.get('admit_p50_ms'), 3)} | "
                    f"{fmt(caps.get('admit_p50_ms'), 3)} | {fmt(caps.get('admit_p99_ms'), 3)} | "
                    f"{fmt(delta, 3)} |")  # fmt: skip
    if not rows:
        return []
    return ["### The admission check", "",
            "Tokenomy + caps: the same gateway with a daily team budget and a per-key "
            "rate limit (requests and tokens per minute) whose counters live in Redis on "
            "loopback. By default the gateway admits most requests from allowances, "
            "capacity it has reserved in Redis ahead (`caps.allowance`); with "
            "`--caps-allowance 0` every request reserves and settles in Redis. Times are "
            "the gateway's own `Server-Timing: admit` header, in ms.", "",
            "| scenario | admit p50, no caps | admit p50, caps on Redis | admit p99, caps on "
            "Redis | added latency p50, caps vs no caps |", "|---|---:|---:|---:|---:|",
            *rows]  # fmt: skip


def targets(summaries: dict[str, dict[str, Figures]], rss: dict[str, float],
            startup_ms: dict[str, float], systems: list[str]) -> list[str]:  # fmt: skip
    if TOKENOMY not in systems:
        return []
    checks: list[tuple[str, str, bool]] = []
    top = max((int(k[1:].split("-")[0]) for k in summaries if k.startswith("c")), default=0)
    cpu_cases = [("rate-json", "fixed rate, non-streaming"), ("rate-stream", "fixed rate, streaming"),
                 (f"c{top}-json", f"{top} concurrent, non-streaming"),
                 (f"c{top}-stream", f"{top} concurrent, streaming")]  # fmt: skip
    for key, what in cpu_cases:
        tok = summaries.get(key, {}).get(TOKENOMY, {})
        lit = summaries.get(key, {}).get(LITELLM, {})
        a, b = tok.get("gateway_cpu_ms_per_req"), lit.get("gateway_cpu_ms_per_req")
        if a is not None and b:
            share = f"1/{b / a:.1f}" if a else "0"
            checks.append((f"CPU per request ≤ 1/20 of LiteLLM's, {what}",
                           f"{a:.3f} vs {b:.3f} ms ({share})", a * 20 <= b))  # fmt: skip
    for key, what, fig in (("rate-json", "non-streaming", "added_p50_ms"),
                           ("rate-stream", "streaming TTFT", "added_ttft_p50_ms")):  # fmt: skip
        added = summaries.get(key, {}).get(TOKENOMY, {}).get(fig)
        if added is not None:
            checks.append((f"added p50 latency ≤ 1 ms at the fixed rate, {what}",
                           f"{added:.3f} ms", added <= 1.0))  # fmt: skip
    for key, what in (("rate-json", "non-streaming"), ("rate-stream", "streaming")):
        admit = summaries.get(key, {}).get(TOKENOMY_CAPS, {}).get("admit_p50_ms")
        if admit is not None:
            checks.append((f"admission check p50 < 0.5 ms, Redis on loopback, {what}",
                           f"{admit:.3f} ms", admit < 0.5))  # fmt: skip
    checks.append(("peak RSS < 150 MB", f"{rss[TOKENOMY]:.0f} MB", rss[TOKENOMY] < 150))
    up = startup_ms[TOKENOMY]
    checks.append(("start-up < 1 s", f"{up:.0f} ms", up < 1000))
    out = ["### Targets", "", "| target | Tokenomy | met |", "|---|---:|:---:|"]
    return out + [f"| {t} | {v} | {'yes' if ok else 'NO'} |" for t, v, ok in checks]


def machine_info() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    rev = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                         capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release(), "tokenomy_rev": rev or "unknown"}  # fmt: skip


def report(
    opt: Options,
    plan: list[Scenario],
    summaries: dict[str, dict[str, Figures]],
    raw: list[dict[str, Any]],
    process: dict[str, Any],
    litellm_version: str | None,
    elapsed: float,
) -> None:
    """Print the markdown report and save everything as JSON under benchmarks/results/."""
    systems = opt.systems
    lines = [f"## Tokenomy vs LiteLLM {litellm_version or ''}".rstrip(), ""]
    lines += [f"{'Quick' if opt.quick else 'Full'} run: {opt.rounds} interleaved round(s) of "
              f"{opt.duration:g} s per system and scenario, each after {opt.warmup:g} s of "
              f"warm-up; the gateway {'pinned to one core' if opt.pin else 'not pinned'}.", ""]  # fmt: skip
    for sc in plan:
        lines += [*scenario_lines(sc, summaries[sc.key], systems), ""]
    rss: dict[str, float] = process["peak_rss_mb"]
    startup_ms = {k: sorted(v)[len(v) // 2] * 1000 for k, v in process["startup_s"].items()}
    lines += ["### Process", ""]
    lines += table([("start-up to healthy (ms, median)", dict(startup_ms), 0),
                    ("peak RSS (MB, VmHWM summed over the process tree)", dict(rss), 0),
                    ("CPU when idle, after warm-up (% of one core)", process["idle_cpu_pct"], 1)],
                   systems)  # fmt: skip
    lines += ["", "Resident memory after each scenario (MB): " + "; ".join(
        f"{NAMES[x]} " + ", ".join(fmt(summaries[sc.key][x].get("rss_after_mb"), 0) for sc in plan)
        for x in systems) + "."]  # fmt: skip
    every = [f for s in summaries.values() for f in s.values()]
    lines += ["", f"Load generator CPU peaked at {max(f['loadgen_cpu_pct'] for f in every):.0f}% "
              f"of one core, the fake upstream at {max(f['upstream_cpu_pct'] for f in every):.0f}%; "
              f"fixed-rate sends left at most {max(f['late_ms_max'] for f in every):.2f} ms "
              f"after their scheduled time (p99 {max(f['late_ms_p99'] for f in every):.2f} ms)."]  # fmt: skip
    lines += ["", *admission_lines(summaries)]
    lines += ["", *targets(summaries, rss, startup_ms, systems)]
    text = "\n".join(lines)
    print("\n" + text + "\n")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"load-{time.strftime('%Y%m%d-%H%M%S')}.json"
    doc = {"machine": machine_info(), "litellm": litellm_version, "options": asdict(opt),
           "elapsed_s": round(elapsed, 1), **process,
           "summaries": summaries, "runs": raw, "markdown": text}  # fmt: skip
    path.write_text(json.dumps(doc, indent=1))
    print(f"raw results: {path.relative_to(REPO)} (took {elapsed:.0f} s)")
