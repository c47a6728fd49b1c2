#!/usr/bin/env bash
# The GPU checks, in one go on a CUDA machine with namm-bench installed: the CUDA tests, then the
# evolution throughput on a random-weight model of SmolLM2's shape (the real weights need not be
# there). Logs go to OUT_DIR. Usage: benchmarks/gpu_check.sh SHAPE_DIR OUT_DIR [MEMBERS]
#   SHAPE_DIR from: python benchmarks/random_weights.py --shape-only --out SHAPE_DIR
set -uo pipefail
shape=$1 out=$2 members=${3:-16}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -P -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" |
    tee -a "$out/gpu.txt"
timeout 200 python3 -P -m pytest -q -p no:cacheprovider ${TESTS:-tests/test_cuda.py tests/test_evolution.py} 2>&1 |
    tail -n 30 | tee "$out/pytest.log"
model=$(mktemp -d)/smollm2-random
python3 benchmarks/random_weights.py --model "$shape" --out "$model" 2>&1 | tail -n 1
timeout 280 python3 benchmarks/evolution_throughput.py --model "$model" --members "$members" --modes fast,fast:streaming,paper 2>&1 |
    grep -v "Loading weights" | tee "$out/throughput.log"
