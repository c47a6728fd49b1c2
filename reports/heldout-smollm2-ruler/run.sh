#!/usr/bin/env bash
# Held-out evaluation of a NAMM on synthetic + RULER (issue 23): examples of suite seed 4, which no
# run drew (evolution used pool seeds 1000 and 1001), on the synthetic 2k tasks (evolution trained at
# 1k), RULER niah_single_1 / niah_multikey_2 at 2k and niah_single_1 at 4k. Full cache, the NAMM,
# H2O and L2 at the NAMM's cache, streaming protocol; two processes, one per core; resumable (rows
# already in the run directories are skipped).
# Usage: bash reports/heldout-smollm2-ruler/run.sh [CHECKPOINT] [LIMIT] [OUT]
# (defaults: the shipped NAMM, 20, reports/heldout-smollm2-ruler)
set -euo pipefail
ckpt=${1:-namm_bench/checkpoints/namm-smollm2}
limit=${2:-20}
out=${3:-reports/heldout-smollm2-ruler}
runs=runs/$(basename "$out")
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1
common=(--limit "$limit" --seed 4 --policies full,namm,h2o,l2 --budget match --namm-checkpoint "$ckpt")
namm-bench run synthetic+ruler --tasks passkey_2k,niah_single_1_4k "${common[@]}" \
    --out "$runs-a" > "$runs-a.log" 2>&1 &
namm-bench run synthetic+ruler --tasks needle_2k,niah_single_1_2k,niah_multikey_2_2k "${common[@]}" \
    --out "$runs-b" > "$runs-b.log" 2>&1 &
wait
mkdir -p "$out"
cat "$runs-a/results.jsonl" "$runs-b/results.jsonl" > "$out/results.jsonl"
namm-bench report "$out"
python benchmarks/heldout_bootstrap.py "$out" --baselines h2o@match,l2@match
