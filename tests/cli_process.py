"""Running ``python -m namm_bench`` as a subprocess, the way a user would."""

import os
import subprocess
import sys
import tempfile

# One thread everywhere, as torchrun sets it per rank, and the CPU on GPU machines too, so every run
# does the same arithmetic (tests/test_cuda.py holds the GPU checks).
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
ENV["CUDA_VISIBLE_DEVICES"] = ""
# `python -m` puts the working directory first on sys.path; from the source tree that would shadow the
# installed package with the bare namm_bench/ folder, which lacks the package-dir mapped adapters/ and suites/.
RUN_DIR = tempfile.gettempdir()


def command(*args, torchrun: bool = False) -> list[str]:
    """The argv of ``namm-bench ARGS`` (under ``torchrun`` with 2 ranks when asked)."""
    head = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    return [*(head if torchrun else [sys.executable]), "-m", "namm_bench", *args]


def cli(*args, check: bool = True, torchrun: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run(command(*args, torchrun=torchrun), capture_output=True, text=True, env=ENV, cwd=RUN_DIR)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def start(*args) -> subprocess.Popen:
    """``namm-bench ARGS`` in the background, output discarded (for kill tests)."""
    return subprocess.Popen(command(*args), env=ENV, cwd=RUN_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
