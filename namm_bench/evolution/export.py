"""``namm-bench export``: a run's CMA-ES mean as a NAMM checkpoint, with its provenance."""

from __future__ import annotations

from pathlib import Path

import torch

from ..files import refuse_overwrite
from ..models import make_suite, suite_adapter
from ..namm.checkpoint import CONFIG_FILE as NAMM_CONFIG_FILE
from ..namm.checkpoint import PARAMS_FILE as NAMM_PARAMS_FILE
from ..namm.checkpoint import NammCheckpoint, save_checkpoint
from ..namm.features import RunningStats
from ..registry import ADAPTERS
from .cmaes import CMAES
from .trainer import EvolutionError, load_state, read_run_config


def _default_model(suite_name: str) -> str:
    """The name of the model a run without ``model`` evolved on: its suite's default adapter's."""
    suite = make_suite(suite_name)
    return ADAPTERS.get(suite_adapter(suite, None)).default_model


SOLUTIONS = ("final", "best")


def export(run_dir: str | Path, to: str | Path | None = None, force: bool = False, solution: str = "final") -> Path:
    """Write a CMA-ES mean of the run as a namm-bench checkpoint (safetensors + JSON) with provenance.

    ``solution="final"``: CMA-ES's latest mean (updated after the last generation); the fitness
    in the provenance is the last one measured, that of the mean which sampled the last
    generation (``fitness_generation``). ``"best"``: the mean with the best periodic evaluation
    (config ``eval_interval``), as the paper's ``ckpt.pt`` holds it; the provenance gives that
    evaluation. ``provenance["solution"]`` says which.
    """
    from ..runner import code_version

    run_dir = Path(run_dir)
    target = Path(to) if to else run_dir / "namm"
    refuse_overwrite(target, (NAMM_CONFIG_FILE, NAMM_PARAMS_FILE), "a NAMM checkpoint", force)
    state = load_state(run_dir)
    config = read_run_config(run_dir)
    if not state["log"]:
        raise EvolutionError(f"{run_dir}: no generation has finished, there is nothing to export")
    if solution not in SOLUTIONS:
        raise ValueError(f"--solution must be one of {', '.join(SOLUTIONS)}, got {solution!r}")
    best = state.get("best")
    if solution == "best" and best is None:
        raise EvolutionError(
            f"{run_dir}: the mean was never evaluated (the config's eval_interval is {config.eval_interval}); "
            "export the final mean, or run with eval_interval > 0"
        )
    last = state["log"][-1]
    # the final mean's measurement is its generation's; the best one's, the validation draw's
    if solution == "best":
        mean = best["params"]
        measured = {
            "fitness_generation": None,
            "fitness": best["eval_fitness"],
            "normalised_score": best["eval_score"],
            "cache_fraction": best["eval_cache_fraction"],
            "solution": "best-evaluated mean",
            "evaluation": {"after_generations": best["generation"], "examples_per_task": config.eval_examples_per_task},
        }
    else:
        mean = CMAES.from_state(state["cma"]).mean
        measured = {
            "fitness_generation": last["generation"],
            "fitness": last["mean_solution"],
            "normalised_score": last["mean_solution_score"],
            "cache_fraction": last["mean_solution_cache_fraction"],
            "solution": "final mean",
            "evaluation": None,
        }
    provenance = {
        "tasks": list(dict.fromkeys(t for s in config.stages[: last["stage"]] for t in s.tasks)),
        "generations": state["generation"],
        "seed": config.seed,
        "fitness_mode": config.fitness,
        **measured,
        "model": config.model or _default_model(config.suite),
        "model_sha256": state.get("model_sha256"),
        "suite": config.suite,
        "init": config.init or None,
        "config": config.to_dict(),
        "code_version": code_version(),
    }
    ckpt = NammCheckpoint(
        params=torch.from_numpy(mean).float(),
        stats=RunningStats(**state["stats"]),
        config=config.namm,
        provenance=provenance,
        stats_frozen=True,
    )
    return save_checkpoint(ckpt, target)
