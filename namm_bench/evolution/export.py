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


def export(run_dir: str | Path, to: str | Path | None = None, force: bool = False) -> Path:
    """Write the run's CMA-ES mean as a namm-bench checkpoint (safetensors + JSON) with provenance.

    The exported mean is CMA-ES's latest (updated after the last generation); the fitness in the
    provenance is the last one measured, that of the mean which sampled the last generation
    (``fitness_generation``).
    """
    from ..runner import code_version

    run_dir = Path(run_dir)
    target = Path(to) if to else run_dir / "namm"
    refuse_overwrite(target, (NAMM_CONFIG_FILE, NAMM_PARAMS_FILE), "a NAMM checkpoint", force)
    state = load_state(run_dir)
    config = read_run_config(run_dir)
    if not state["log"]:
        raise EvolutionError(f"{run_dir}: no generation has finished, there is nothing to export")
    cma = CMAES.from_state(state["cma"])
    last = state["log"][-1]
    provenance = {
        "tasks": list(dict.fromkeys(t for s in config.stages[: last["stage"]] for t in s.tasks)),
        "generations": state["generation"],
        "seed": config.seed,
        "fitness_mode": config.fitness,
        "fitness_generation": last["generation"],
        "fitness": last["mean_solution"],
        "normalised_score": last["mean_solution_score"],
        "cache_fraction": last["mean_solution_cache_fraction"],
        "model": config.model or _default_model(config.suite),
        "model_sha256": state.get("model_sha256"),
        "suite": config.suite,
        "init": config.init or None,
        "config": config.to_dict(),
        "code_version": code_version(),
    }
    ckpt = NammCheckpoint(
        params=torch.from_numpy(cma.mean).float(),
        stats=RunningStats(**state["stats"]),
        config=config.namm,
        provenance=provenance,
        stats_frozen=True,
    )
    return save_checkpoint(ckpt, target)
