"""Processes sharing one ``--out``: no duplicate row, a file that loads, both exit 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cli_process import ENV, RUN_DIR, command

from namm_bench.results import ResultsStore, row_key

APPENDER = """
import sys
from namm_bench.results import ResultsStore
from namm_bench.results import row_key
store = ResultsStore(sys.argv[1])
done = store.done_keys()  # what a run skips, read once at its start as the runner does
base = {"suite": "s", "task": "t", "model": "m", "policy": "full", "budget": "none", "protocol": "p"}
rows = [{**base, "example_id": str(i), "writer": sys.argv[2]} for i in range(int(sys.argv[3]))]
print(sum(store.append(row) for row in rows if row_key(row) not in done))
"""


def test_four_processes_appending_the_same_rows_write_each_once(tmp_path):
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, str(tmp_path), str(w), "600"], stdout=subprocess.PIPE, text=True, env=ENV
        )
        for w in range(4)
    ]
    written = [int(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    rows = ResultsStore(tmp_path).rows()  # loads: no duplicate key, no torn line
    assert len(rows) == 600 == sum(written) and len({row_key(r) for r in rows}) == 600


def test_two_runs_on_one_out_whose_work_overlaps(tiny_model_dir, tmp_path):
    args = ["run", "synthetic", "--tasks", "passkey_1k", "--limit", "3", "--model", str(tiny_model_dir)]
    out = ["--out", str(tmp_path), "--budget", "0.25"]
    runs = [
        subprocess.Popen(command(*args, *out, "--policies", p), env=ENV, cwd=RUN_DIR, stderr=subprocess.PIPE, text=True)
        for p in ("full,h2o", "h2o,l2")
    ]
    errors = [r.communicate(timeout=300)[1] for r in runs]
    assert [r.returncode for r in runs] == [0, 0], errors
    rows = ResultsStore(Path(tmp_path)).rows()
    assert sorted((r["policy"], r["example_id"]) for r in rows) == sorted(
        (p, f"passkey_1k-{i:04d}") for p in ("full", "h2o", "l2") for i in range(3)
    )
