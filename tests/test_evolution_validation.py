"""Periodic evaluation of the CMA-ES mean and ``namm-bench export --solution best``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cli_process import cli as namm_bench
from test_evolution import write_config

from namm_bench.evolution.config import config_from_dict
from namm_bench.evolution.distributed import World
from namm_bench.evolution.trainer import load_state
from namm_bench.evolution.validation import Validation
from namm_bench.interfaces import TextExample
from namm_bench.namm.checkpoint import load_checkpoint


class SumFitness:
    """A stand-in fitness: every example's score is the sum of the member's parameters."""

    def prepare(self, example):
        return None, 1.0

    def members(self, example, params, stats):
        return params.sum(dim=1), torch.full((len(params),), 0.5)


def test_the_best_evaluated_mean_is_kept_not_the_last():
    config = config_from_dict({"stages": [{"tasks": ["t"], "generations": 4}], "eval_interval": 1})
    example = TextExample(task="t", example_id="t-0000", context="", question="", answer="", max_new_tokens=1)
    validation = Validation(config, {"t": [example]})
    assert validation.examples[0].example_id == "t-0000-validation"  # not the training pool's prefill
    state: dict = {}
    for generation, mean in enumerate([[1.0, 0.0], [3.0, 0.0], [2.0, 0.0]], start=1):
        state["generation"] = generation
        row = validation.evaluate(SumFitness(), np.array(mean), None, World(), state)
        assert row["eval_score"] == pytest.approx(mean[0] / (1 + 1e-7)) and row["eval_cache_fraction"] == 0.5
    assert state["best"]["generation"] == 2 and np.array_equal(state["best"]["params"], [3.0, 0.0])
    assert [validation.due(g) for g in range(1, 5)] == [True, True, True, True]
    every_3 = Validation(config_from_dict({"stages": [{"tasks": ["t"], "generations": 4}], "eval_interval": 3}), {})
    assert [every_3.due(g) for g in range(1, 5)] == [False, False, True, True]  # and after the last


@pytest.fixture(scope="module")
def evaluated_run(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluated")
    config = write_config(root / "tiny.toml", tiny_model_dir, eval_interval=2, eval_examples_per_task=2)
    namm_bench("evolve", str(config), "--out", str(root / "run"))
    return root / "run"


def test_the_run_logs_its_evaluations_and_export_writes_the_best(evaluated_run, tmp_path):
    state = load_state(evaluated_run)
    evaluated = [r for r in state["log"] if r.get("eval_fitness") is not None]
    assert [r["generation"] for r in evaluated] == [1, 3]  # after 2 and 4 generations
    best = max(evaluated, key=lambda r: r["eval_fitness"])
    assert state["best"]["generation"] == best["generation"] + 1
    assert "eval_fitness" in (evaluated_run / "log.csv").read_text().splitlines()[0]

    namm_bench("export", str(evaluated_run), "--to", str(tmp_path / "best"), "--solution", "best")
    ckpt = load_checkpoint(tmp_path / "best")
    assert torch.equal(ckpt.params, torch.from_numpy(state["best"]["params"]).float())
    assert ckpt.provenance["solution"] == "best-evaluated mean"
    assert ckpt.provenance["evaluation"] == {"after_generations": best["generation"] + 1, "examples_per_task": 2}
    assert ckpt.provenance["fitness"] == best["eval_fitness"]

    namm_bench("export", str(evaluated_run), "--to", str(tmp_path / "final"))
    final = load_checkpoint(tmp_path / "final")
    assert final.provenance["solution"] == "final mean" and final.provenance["evaluation"] is None


def test_export_best_of_a_run_never_evaluated_is_one_clear_error(tiny_model_dir, tmp_path):
    config = write_config(tmp_path / "tiny.toml", tiny_model_dir)
    namm_bench("evolve", str(config), "--out", str(tmp_path / "run"), "--stop-after", "1")
    proc = namm_bench("export", str(tmp_path / "run"), "--solution", "best", check=False)
    assert proc.returncode == 2 and "the mean was never evaluated" in proc.stderr
