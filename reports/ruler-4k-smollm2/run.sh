#!/usr/bin/env bash
# RULER 4k on the embedded SmolLM2 (kvpress's protocol: the context compressed, then the question).
# Resumable: rerun it and finished rows are skipped. Stage 1 measures the full cache on the tasks that
# need no data (those a 5-example screen put near or above 0.5 first), stage 2 runs every policy on the
# tasks where the full cache scores >= 0.5, stage 3 completes the full cache on the other tasks.
set -euo pipefail
out=$(dirname "$0")
common=(--protocol post-prefill-context --limit 20 --out "$out")
namm-bench run ruler --tasks niah_single_1_4k,niah_multikey_2_4k,fwe_4k --policies full "${common[@]}"
tasks=$(python - "$out/results.jsonl" <<'PY'
import json, sys, collections
scores = collections.defaultdict(list)
for line in open(sys.argv[1]):
    row = json.loads(line)
    if row["policy"] == "full" and row["protocol"] == "post-prefill-context" and row["score"] is not None:
        scores[row["task"]].append(row["score"])
print(",".join(t for t, s in scores.items() if sum(s) / len(s) >= 0.5))
PY
)
echo "tasks where the full cache scores >= 0.5: $tasks"
policies=full,namm,h2o,l2,knorm,observed_attention,streaming_llm,snapkv,pyramidkv,tova,adakv,keydiff,expected_attention,random
namm-bench run ruler --tasks "$tasks" --policies "$policies" --budget 0.75,0.5,0.25,0.125 "${common[@]}"
namm-bench run ruler --tasks niah_multikey_3_4k,vt_4k,cwe_4k --policies full "${common[@]}"
namm-bench report "$out"
