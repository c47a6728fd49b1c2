"""benchmarks/heldout_bootstrap.py: the paired bootstrap of the NAMM's held-out margin."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "heldout_bootstrap.py"


def write_results(directory, scores):
    """scores: {policy: [score per example]} on one task; budgets as the held-out reports write them."""
    directory.mkdir()
    rows = [
        {"model": "m", "suite": "s", "protocol": "streaming", "seed": 0, "task": "t", "example_id": f"t-{i}"}
        | {"policy": p, "budget": "match" if p in ("h2o", "l2") else "none", "score": s}
        for p, per_example in scores.items()
        for i, s in enumerate(per_example)
    ]
    (directory / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def run(*dirs):
    out = subprocess.run([sys.executable, str(SCRIPT), *map(str, dirs)], capture_output=True, text=True, check=True)
    return out.stdout


def test_a_clear_win_has_an_interval_above_zero_and_a_tie_does_not(tmp_path):
    n = 20
    namm, h2o = [1] * 15 + [0] * 5, [0] * 15 + [1] * 5
    write_results(tmp_path / "win", {"full": [1] * n, "namm": namm, "h2o": h2o, "l2": [1] * n})
    out = run(tmp_path / "win")
    assert "namm 75.0, h2o@match 25.0, l2@match 100.0" in out
    h2o, l2 = (line for line in out.splitlines() if line.startswith("namm - "))
    assert h2o.startswith("namm - h2o@match: +50.0")
    low, high = (float(x) for x in h2o.split("[")[1].split("]")[0].split(", "))
    assert 0 < low < 50 < high
    assert l2.startswith("namm - l2@match: -25.0")
    # A tie on every example: every resample gives 0. Examples missing a policy (here l2) are left out.
    write_results(tmp_path / "tie", {"full": [1] * n, "namm": [1, 0] * 10, "h2o": [1, 0] * 10, "l2": [0] * (n - 1)})
    assert "namm - h2o@match: +0.0, 95% bootstrap interval [+0.0, +0.0], resamples <= 0: 1.000" in run(tmp_path / "tie")
    # Two directories: the mean of their normalised scores.
    out = run(tmp_path / "win", tmp_path / "tie")
    assert "19/20 examples each" in out and "namm 63.8, h2o@match 38.8" in out
