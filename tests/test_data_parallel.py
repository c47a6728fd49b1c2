"""``torchrun -m namm_bench run``: ranks split the examples and write one results file, every row once."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from cli_process import ENV, RUN_DIR, cli, command

from namm_bench.results import RESULTS_FILE, ResultsStore, row_key
from namm_bench.runner import rank_share

RUN = ["run", "synthetic", "--tasks", "passkey_1k", "--device", "cpu", "--policies", "full,h2o,namm"]
RUN += ["--budget", "0.25,match"]


def outcomes(directory: Path) -> dict:
    rows = ResultsStore(directory).rows()
    assert len({row_key(r) for r in rows}) == len(rows)
    return {row_key(r): (r["prediction"], r["score"], r["cache_fraction"], r["error"]) for r in rows}


def test_examples_go_whole_to_one_rank_in_turn():
    class Ex:
        def __init__(self, i):
            self.task, self.example_id = "t", f"e{i}"

    adapter = object()
    jobs = [(adapter, Ex(i), "streaming", v) for i in range(5) for v in ("namm", "h2o")]
    shares = [rank_share(jobs, r, 2) for r in range(2)]
    assert [[j[1].example_id for j in share] for share in shares] == [
        ["e0", "e0", "e2", "e2", "e4", "e4"],
        ["e1", "e1", "e3", "e3"],
    ]
    assert rank_share(jobs, 0, 1) == jobs


def test_two_ranks_write_the_rows_of_one_process(tiny_model_dir, tmp_path):
    args = [*RUN, "--limit", "3", "--model", str(tiny_model_dir)]
    cli(*args, "--out", str(tmp_path / "one"))
    cli(*args, "--out", str(tmp_path / "two"), torchrun=True)
    one, two = outcomes(tmp_path / "one"), outcomes(tmp_path / "two")
    assert len(one) == 3 * 4  # 3 examples x (full, h2o 0.25, h2o match, namm)
    assert two == one


def _children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_a_rank_killed_mid_run_and_a_rerun_leave_every_row_once(tiny_model_dir, tmp_path):
    args = [*RUN, "--limit", "8", "--model", str(tiny_model_dir), "--out", str(tmp_path / "out")]
    job = subprocess.Popen(command(*args, torchrun=True), env=ENV, cwd=RUN_DIR, stderr=subprocess.DEVNULL)
    results = tmp_path / "out" / RESULTS_FILE
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (not results.exists() or len(results.read_text().splitlines()) < 6):
        time.sleep(0.2)
    ranks = _children(job.pid)
    assert len(ranks) == 2, "torchrun should run two ranks"
    os.kill(ranks[1], signal.SIGKILL)
    assert job.wait(timeout=120) != 0  # torchrun stops the other rank and fails
    partial = len(ResultsStore(tmp_path / "out").rows())
    assert 6 <= partial < 8 * 4
    cli(*args, torchrun=True)
    cli(*[a if a != str(tmp_path / "out") else str(tmp_path / "one") for a in args])
    assert outcomes(tmp_path / "out") == outcomes(tmp_path / "one")
