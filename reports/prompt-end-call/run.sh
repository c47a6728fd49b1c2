#!/usr/bin/env bash
# The streaming protocol with and without the policy call at the end of the prompt (namm-bench's
# default vs the paper's code): embedded SmolLM2, shipped NAMM, full cache / NAMM / H2O and L2 at
# 25% and at the NAMM's cache, on synthetic pass key and needle at 2k (prompts end 26-30 tokens
# past a multiple of 512) and LongBench multi_news (3 prompts of 1819-2947 tokens, ending 283-387
# tokens past one). Resumable (finished rows are skipped).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=reports/prompt-end-call
DATA=${NAMM_BENCH_LONGBENCH:-../shared/data/longbench}
for flag in --prompt-end-call --no-prompt-end-call; do
    namm-bench run synthetic --tasks passkey_2k,needle_2k --limit "${LIMIT:-5}" \
        --policies full,namm,h2o,l2 --budget 0.25,match "$flag" --out $OUT
    namm-bench run longbench --data-dir "$DATA" --tasks multi_news --limit 3 \
        --policies full,namm,h2o,l2 --budget 0.25,match "$flag" --out $OUT
done
namm-bench report $OUT
