"""The CUDA path gives the CPU's numbers: the controller with each policy, and both fitness modes.

Skipped where no CUDA device is present (CI has none); run ``pytest tests/test_cuda.py`` on a GPU.
"""

import pytest
import torch
from test_controller import run_controlled
from test_evolution import write_config

from namm_bench.budget import Budget
from namm_bench.evolution.config import config_from_dict
from namm_bench.evolution.fitness import FITNESS
from namm_bench.namm.checkpoint import NammCheckpoint
from namm_bench.namm.features import RunningStats
from namm_bench.policies import make_policy

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def random_namm() -> NammCheckpoint:
    ckpt = NammCheckpoint.zeros()
    ckpt.params = torch.randn(ckpt.config.num_params, generator=torch.Generator().manual_seed(0)) * 0.5
    return ckpt


@pytest.mark.parametrize(
    "make",
    [
        lambda: make_policy("namm", checkpoint=random_namm()),
        lambda: make_policy("h2o", Budget(ratio=0.3)),
        lambda: make_policy("l2", Budget(tokens=50)),
    ],
    ids=["namm-random", "h2o", "l2"],
)
def test_evicting_policies_keep_the_same_tokens_on_cuda_as_on_cpu(make_tiny_llama, make):
    model = make_tiny_llama()
    ids = torch.randint(0, 320, (1, 200), generator=torch.Generator().manual_seed(5))
    cpu_logits, cpu = run_controlled(model, ids, make(), 150)
    gpu_logits, gpu = run_controlled(model, ids, make(), 150, device="cuda")
    assert cpu.stats.cache_fraction < 1.0, "the policy should evict"
    for layer in range(model.config.num_hidden_layers):
        assert torch.equal(gpu.positions(layer).cpu(), cpu.positions(layer)), f"layer {layer} kept other tokens"
    torch.testing.assert_close(gpu_logits, cpu_logits, atol=1e-3, rtol=1e-3)
    assert gpu.stats.cache_fraction == cpu.stats.cache_fraction


@pytest.mark.parametrize("mode", ["fast:end", "fast:streaming", "paper:end"], ids=["fast", "fast-streaming", "paper"])
def test_fitness_modes_score_members_on_cuda_as_on_cpu(tiny_model_dir, mode):
    from namm_bench.adapters import get_adapter
    from namm_bench.suites import get_suite

    suite = get_suite("synthetic")
    namm = {"hidden_dim": 4, "recency_dims": 2}
    fitness_mode, evictions = mode.split(":")
    stages = [{"tasks": ["passkey_1k"], "generations": 1}]
    config = config_from_dict(
        {"stages": stages, "namm": namm, "fast_evictions": evictions, "chunk_size": 64, "interval": 128}
    )
    params = torch.cat(
        [
            torch.zeros(1, config.namm.num_params),
            0.5 * torch.randn(3, config.namm.num_params, generator=torch.Generator().manual_seed(0)),
        ]
    )
    results = []
    for device in ("cpu", "cuda"):
        adapter = get_adapter("llama", str(tiny_model_dir), device=device)
        example = suite.examples("passkey_1k", adapter.count_tokens, adapter.max_prompt_tokens(64), 0, 1)[0]
        fitness = FITNESS[fitness_mode](adapter, suite, config)
        ema, full = fitness.prepare(example)
        stats = RunningStats.pooled([ema.cpu()])
        scores, fractions = fitness.members(example, params.to(device), stats)
        if evictions == "streaming":  # the members resume the shared run's state at its first call
            assert fitness._prefilled[example.example_id].prefix is not None
        results.append((ema.cpu(), full, scores.cpu(), fractions.cpu()))
    (cpu_ema, cpu_full, cpu_scores, cpu_fractions), (gpu_ema, gpu_full, gpu_scores, gpu_fractions) = results
    torch.testing.assert_close(gpu_ema, cpu_ema, atol=1e-5, rtol=1e-3)
    assert gpu_full == pytest.approx(cpu_full, rel=1e-3, abs=1e-5)
    torch.testing.assert_close(gpu_scores, cpu_scores, atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(gpu_fractions, cpu_fractions)
    assert (cpu_fractions[1:] < 1).all(), "random members should evict something"


def test_evolution_on_cuda_follows_the_cpu_trajectory(tiny_model_dir, tmp_path):
    import json

    from namm_bench.evolution.trainer import evolve

    config = write_config(tmp_path / "tiny.toml", tiny_model_dir)  # 2 stages, 2 generations each
    logs = []
    for device in ("cpu", "cuda"):
        run = evolve(config, tmp_path / device, device=device)
        logs.append([json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()])
    assert len(logs[0]) == len(logs[1]) == 4
    for cpu_row, gpu_row in zip(*logs, strict=True):
        for key in ("best", "mean", "mean_solution", "sigma", "mean_solution_cache_fraction"):
            assert gpu_row[key] == pytest.approx(cpu_row[key], rel=1e-3, abs=1e-4), key
