"""The library behind ``benchmarks/load.py``; run that file, not this package.

procfs    CPU time and peak RSS of a process tree, read from /proc
loadgen   the load generator: a bare HTTP/1.1 client, open- and closed-loop drivers
systems   the processes under test: the fake upstream, Tokenomy and LiteLLM
plan      scenarios, options, and one load-generator run in its own process
report    figures, markdown tables, targets and the JSON results file
"""

from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
REPO = BENCH.parent
HOST = "127.0.0.1"  # loopback only
MODEL = "gpt-4o-mini"
PRICE_IN, PRICE_OUT = "0.15", "0.60"  # $ per million tokens, the same for both gateways
TOKENOMY, LITELLM, DIRECT = "tokenomy", "litellm", "direct"
# Tokenomy with caps on Redis (a team budget and a per-key limit): fixed-rate runs only.
TOKENOMY_CAPS = "tokenomy-caps"
NAMES = {TOKENOMY: "Tokenomy", LITELLM: "LiteLLM", DIRECT: "direct",
         TOKENOMY_CAPS: "Tokenomy + caps"}  # fmt: skip
