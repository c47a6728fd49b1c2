#!/usr/bin/env bash
# LongBench (the three tasks in ../shared/data, first 20 examples each) with the fifth run's NAMM
# and H2O at its cache (issue 23), streaming protocol; resumable (rows present are skipped).
# The full-cache rows are those of reports/history/longbench-smollm2 (NAMM-independent; the
# current code reproduces them: the first example of each task gives the same prediction).
# Usage: bash reports/history/longbench-smollm2-transfer/run.sh CHECKPOINT [LIMIT] [TASKS]
set -euo pipefail
ckpt=${1:?checkpoint directory}
limit=${2:-20}
tasks=${3:-passage_retrieval_zh,multifieldqa_zh,multi_news}
out=reports/history/longbench-smollm2-transfer
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1
if [ ! -s "$out/results.jsonl" ]; then
    python - <<'PY'
import json
with open("reports/history/longbench-smollm2/results.jsonl") as src, \
        open("reports/history/longbench-smollm2-transfer/results.jsonl", "w") as dst:
    for line in src:
        if json.loads(line)["policy"] == "full":
            dst.write(line)
PY
fi
namm-bench run longbench --data-dir ../shared/data/longbench --tasks "$tasks" --limit "$limit" \
    --policies full,namm,h2o --budget match --namm-checkpoint "$ckpt" --out "$out"
namm-bench report "$out"
