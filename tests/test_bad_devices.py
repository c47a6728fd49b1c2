"""``--device``: one clear error, before any model loads, for a device this machine cannot use."""

from __future__ import annotations

import pytest
import torch

from namm_bench.cli import main

RUN = ["run", "synthetic", "--tasks", "passkey_1k", "--limit", "1", "--policies", "full", "--model", "no/such-model"]
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible here")


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("banana", "--device banana: not a device (cpu, cuda, cuda:1, mps, ...)"),
        pytest.param(
            "cuda",
            "this PyTorch is a CPU build" if torch.version.cuda is None else "no CUDA GPU is visible",
            marks=no_cuda,
        ),
        pytest.param("cuda:3", "--device cuda:3:", marks=no_cuda),
    ],
)
@pytest.mark.parametrize("command", ["run", "evolve"])
def test_an_unusable_device_is_one_clear_error(tmp_path, capsys, device, message, command):
    args = [*RUN, "--out", str(tmp_path / "out")] if command == "run" else ["evolve", "x.toml", "--out", str(tmp_path)]
    assert main([*args, "--device", device]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out").exists()
