"""H2O: heavy hitters plus a recent window (Zhang et al., NeurIPS 2023)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .base import add_received, gather_tokens
from .scorer import ScorerPolicy


@dataclass
class H2O(ScorerPolicy):
    """Keep the keys with the largest accumulated attention, plus the most recent ones.

    Zhang et al., "H2O: Heavy-Hitter Oracle for Efficient Generative Inference of Large Language
    Models", NeurIPS 2023. Each key's score is the attention it has received, summed over all
    queries since it entered the cache and averaged over the query heads of its KV group. At every
    policy call (in prefill and decoding) a layer keeps ``budget`` entries per KV head: the
    ``recent`` newest tokens and the highest-scoring of the rest.

    Parameters
    ----------
    budget
        Entries kept per KV head: a token count or a ratio of tokens seen.
    heavy_fraction
        Share of the budget given to heavy hitters; the rest is the recent window (paper: half).
    """

    heavy_fraction: float = 0.5

    name = "h2o"
    needs_attention = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.heavy_fraction <= 1.0:
            raise ValueError(f"heavy_fraction must be in [0, 1], got {self.heavy_fraction}")
        self._scores: list[torch.Tensor | None] = []

    def reset(self, num_layers: int) -> None:
        self._scores = [None] * num_layers

    def observe(self, layer: int, attention: torch.Tensor) -> None:
        self._scores[layer] = add_received(self._scores[layer], attention)

    def score(self, layer, keys, values, positions, tokens_seen):
        n = keys.shape[2]
        keep = self.keep_count(layer, n, tokens_seen)
        recent = keep - int(keep * self.heavy_fraction)
        scores = self._scores[layer].clone()
        if recent > 0:  # the recent window always stays
            scores[..., n - recent :] = torch.inf
        return scores

    def kept(self, layer, idx):
        self._scores[layer] = gather_tokens(self._scores[layer], idx)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "heavy_fraction": self.heavy_fraction}
