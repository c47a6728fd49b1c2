"""benchmarks/memory.py: peak KV bytes per policy, and the budget bound it checks."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "memory.py"


def load_script():
    sys.path.insert(0, str(SCRIPT.parent))  # memory.py imports its neighbour policy_runs
    try:
        spec = importlib.util.spec_from_file_location("memory_benchmark", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(SCRIPT.parent))


def test_l2_and_h2o_keep_the_budget_bound_on_a_tiny_model(tmp_path):
    from conftest import save_tiny_tokenizer, tiny_llama

    # eight layers: L2 leaves the first two unpruned and spends their share on the other six
    tiny_llama(num_hidden_layers=8).save_pretrained(tmp_path)
    save_tiny_tokenizer(tmp_path)
    args = [sys.executable, str(SCRIPT), "--models", str(tmp_path), "--lengths", "1024"]
    out = subprocess.run([*args, "--interval", "128", "--decode", "4"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines() if line.startswith(("full", "l2", "h2o"))}
    assert set(rows) == {"full", "l2", "h2o"}
    assert rows["l2"][-1] == rows["h2o"][-1] == "holds"
    kv_ratio = float(rows["h2o"][4])  # peak KV x full: 0.25 of 1028 tokens plus up to 128 of growth
    assert 0.25 < kv_ratio <= 1.1 * 0.25 + 128 / 1028


def test_a_policy_over_the_bound_fails_the_check(capsys):
    memory = load_script()
    args = argparse.Namespace(budget=0.25, decode=0, interval=100)
    full = {"kv": 1000 * 64, "rss": 2.0, "above_model": 1.0, "cache": 1.0}  # 1000 tokens, 64 bytes each
    within = {**full, "kv": int((1.1 * 0.25 * 1000 + 100) * 64), "cache": 0.25}
    assert not memory.report("m", 1000, {"full": full, "h2o 0.25": within}, args)
    over = {**within, "kv": within["kv"] + 64}
    assert memory.report("m", 1000, {"full": full, "h2o 0.25": over}, args)
    assert "FAILS" in capsys.readouterr().out
