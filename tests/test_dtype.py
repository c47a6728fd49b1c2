"""``--dtype``: auto picks bfloat16 on CUDA and float32 elsewhere, per adapter; rows record what ran."""

from __future__ import annotations

import pytest
import torch

from namm_bench.cli import main
from namm_bench.models import resolve_dtype
from namm_bench.registry import ADAPTERS
from namm_bench.results import ResultsStore

BASE = ["run", "synthetic", "--tasks", "passkey_1k", "--limit", "1", "--policies", "full,h2o", "--device", "cpu"]


@pytest.mark.parametrize(
    ("adapter", "device", "want"),
    [
        ("llama", "cpu", "float32"),
        ("llama", "cuda", "bfloat16"),
        ("llama", "cuda:1", "bfloat16"),
        ("llava_next_video", "cuda:0", "bfloat16"),
        ("decision_transformer", "cuda", "float32"),  # declares float32 only
        ("decision_transformer", "cpu", "float32"),
    ],
)
def test_auto_is_bfloat16_on_cuda_where_the_adapter_runs_it(adapter, device, want):
    assert resolve_dtype("auto", device, ADAPTERS.get(adapter)) == want


def test_a_dtype_the_adapter_does_not_run_is_one_clear_error():
    with pytest.raises(ValueError, match="decision_transformer runs in float32, not bfloat16"):
        resolve_dtype("bfloat16", "cpu", ADAPTERS.get("decision_transformer"))
    with pytest.raises(ValueError, match="--dtype must be one of"):
        resolve_dtype("int8", "cpu", ADAPTERS.get("llama"))


def test_auto_on_cpu_is_the_float32_row_and_bfloat16_a_new_one(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    args = [*BASE, "--model", str(tiny_model_dir), "--out", str(out)]
    assert main(args) == 0  # default: auto
    auto = ResultsStore(out).rows()
    assert {r["dtype"] for r in auto} == {"float32"} and len(auto) == 2
    assert main([*args, "--dtype", "float32"]) == 0
    assert ResultsStore(out).rows() == auto  # the same key: nothing new
    assert main([*args, "--dtype", "bfloat16"]) == 0
    rows = ResultsStore(out).rows()
    bf16 = [r for r in rows if r["dtype"] == "bfloat16"]
    assert len(rows) == 4 and len(bf16) == 2 and all(r["error"] is None for r in bf16)
    assert all(r["prediction"] is not None and r["cache_fraction"] > 0 for r in bf16)


def test_the_video_adapter_runs_in_the_dtype_asked_for(tiny_video_dir):
    from namm_bench.models import make_adapter

    adapter = make_adapter("llava_next_video", str(tiny_video_dir), device="cpu", dtype=torch.bfloat16)
    assert {p.dtype for p in adapter.model.parameters()} == {torch.bfloat16}
