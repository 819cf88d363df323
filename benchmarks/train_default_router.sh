#!/usr/bin/env bash
# Rebuild the shipped default router from the dev routing data (../shared/data/routing):
# RouterDC's 7 models, LLMRouter's 9 and the MoT cascade samples. The small head is the
# mean of the 7-13B models, the large head the mean of the two ~50B Nemotrons and GPT-4
# (LLMRouter's ChatQA and CodeGemma models are left out: their scores look like
# answer-format failures, 0.18 and 0.30; GPT-3.5 has only the 369 date questions).
# Features: the defaults of `tokenomy router train` (lexical counts, the difficulty cues,
# 4,096 hashed word buckets), chosen on held-out dev tasks by benchmarks/router_select.py.
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results/outcomes
.venv/bin/python benchmarks/routing_data.py --sources routerdc,llmrouter,mot_cascade --out "$out"
.venv/bin/tokenomy router train \
  --data "$out/routerdc.jsonl" --data "$out/llmrouter.jsonl" --data "$out/mot_cascade.jsonl" \
  --head "small=mistralai/Mistral-7B-v0.1,meta-math/MetaMath-Mistral-7B,itpossible/Chinese-Mistral-7B-v0.1,HuggingFaceH4/zephyr-7b-beta,cognitivecomputations/dolphin-2.6-mistral-7b,meta-llama/Meta-Llama-3-8B,cognitivecomputations/dolphin-2.9-llama3-8b,qwen2.5-7b-instruct,mistral-7b-instruct-v0.3,gemma-2-9b-it,llama-3.1-8b-instruct,llama2_13B" \
  --head "large=llama-3.1-nemotron-51b-instruct,llama-3.3-nemotron-super-49b-v1,GPT4" \
  --out src/tokenomy/routing/learned/default_router.npz
