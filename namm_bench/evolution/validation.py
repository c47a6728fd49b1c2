"""Periodic evaluation of the CMA-ES mean on a fixed validation draw, keeping the best one.

The paper's trainer evaluates its mean every ``eval_interval`` iterations and its ``ckpt.pt``
holds the mean with the best evaluation, not the last one (Cetin et al., ICLR 2025, Sec. 4;
evo-memory ``best_val_loss``). Every generation's own fitness is measured on that generation's
draw, so it cannot rank means across generations; one fixed draw can.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..namm.features import RunningStats
from .config import EvolutionConfig
from .distributed import World, sum_over_ranks

EVAL_FIELDS = ("eval_fitness", "eval_score", "eval_cache_fraction")
"""Log fields of a generation after which the mean was evaluated (empty otherwise)."""
VALIDATION_SEED_OFFSET = 1
"""The validation pool is drawn with ``pool_seed + 1``: other examples than the training pool's."""


class Validation:
    """The validation examples (every task of every stage) and their full-cache references.

    Parameters
    ----------
    config
        The run's config: ``eval_interval`` (0: never), ``eval_examples_per_task``.
    pools
        The validation examples per task (``example_pools`` with ``pool_seed + 1``).
    """

    def __init__(self, config: EvolutionConfig, pools: dict[str, list]) -> None:
        self.config = config
        # ids of their own: fitness modes cache each example's prefill by id, and a synthetic
        # example's id names its task and index, not its seed
        self.examples = [
            dataclasses.replace(ex, example_id=f"{ex.example_id}-validation") for pool in pools.values() for ex in pool
        ]
        self._prepared: torch.Tensor | None = None

    def due(self, generations_done: int) -> bool:
        """Whether the mean is evaluated once ``generations_done`` generations have finished."""
        interval = self.config.eval_interval
        return interval > 0 and (generations_done % interval == 0 or generations_done == self.config.total_generations)

    def evaluate(self, fitness, mean: np.ndarray, stats: RunningStats, world: World, state: dict) -> dict[str, float]:
        """Score ``mean`` on the validation draw; ``state["best"]`` takes it when its fitness is the best yet."""
        from .trainer import _fitness, score_members

        if self._prepared is None:  # the full cache's score on each example, once per process
            self._prepared = torch.tensor([fitness.prepare(ex)[1] for ex in self.examples], dtype=torch.float64)
        item = torch.from_numpy(mean)[None].float()
        results = sum_over_ranks(world, score_members(fitness, item, self.examples, stats, 1, world))
        value, perf, fraction = _fitness(results, self._prepared, [ex.task for ex in self.examples], self.config)
        row = {"eval_fitness": float(value[0]), "eval_score": float(perf[0]), "eval_cache_fraction": float(fraction[0])}
        best = state.get("best")
        if best is None or row["eval_fitness"] > best["eval_fitness"]:
            state["best"] = {**row, "generation": state["generation"], "params": mean.copy()}
        return row
