"""Random eviction, seeded: the floor every scoring method should clear."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .scorer import ScorerPolicy


@dataclass
class RandomPolicy(ScorerPolicy):
    """Keep a uniformly random subset of ``budget`` entries per KV head.

    The lower bound of kvpress's comparisons (``RandomPress``). Scores are uniform draws from a
    generator seeded at the start of every sequence, so a run repeats exactly.

    Parameters
    ----------
    budget
        Entries kept per KV head: a token count or a ratio of tokens seen.
    seed
        Seed of the draws, reset for every sequence.
    """

    seed: int = 0

    name = "random"

    def __post_init__(self) -> None:
        self._generator = torch.Generator().manual_seed(self.seed)

    def reset(self, num_layers: int) -> None:
        self._generator.manual_seed(self.seed)

    def score(self, layer, keys, values, positions, tokens_seen):
        return torch.rand(keys.shape[:3], generator=self._generator).to(keys.device)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "seed": self.seed}
