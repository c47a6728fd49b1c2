"""L2 key norm (Devoto et al., EMNLP 2024)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .scorer import ScorerPolicy


@dataclass
class L2Norm(ScorerPolicy):
    """Keep the keys with the lowest L2 norm, per KV head.

    Devoto et al., "A Simple and Effective L2 Norm-Based Strategy for KV Cache Compression",
    EMNLP 2024: keys with a low norm draw high attention, so they are kept. Needs no attention
    probabilities, so models run on SDPA.

    Parameters
    ----------
    budget
        Whole-cache budget: a token count or a ratio of tokens seen, per KV head on average over
        all layers. Layers left unpruned hold every token, so the pruned layers keep
        ``(L * budget - s * n) / (L - s)`` entries (s skipped layers, n tokens) and the measured
        cache fraction equals the budget, which is what ``match`` compares at.
    skip_layers
        Layers never pruned (the paper's code skips the first two).
    min_length
        No pruning while the layer holds fewer entries than this.
    """

    skip_layers: tuple[int, ...] = (0, 1)
    min_length: int = 0

    name = "l2"

    def __post_init__(self) -> None:
        self._num_layers = 0

    def reset(self, num_layers: int) -> None:
        self._num_layers = num_layers

    def keep_count(self, layer, cache_length, tokens_seen):
        if layer in self.skip_layers or cache_length < self.min_length:
            return cache_length
        # the whole-cache average per layer, before this layer's own length caps it
        keep = self.budget.keep(tokens_seen, tokens_seen)
        skipped = sum(1 for i in set(self.skip_layers) if 0 <= i < self._num_layers)
        if skipped:
            pruned = self._num_layers - skipped
            keep = max(1, (self._num_layers * keep - skipped * tokens_seen) // pruned) if pruned else cache_length
        return keep

    def score(self, layer, keys, values, positions, tokens_seen):
        return -keys.float().norm(dim=-1)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "skip_layers": list(self.skip_layers),
            "min_length": self.min_length,
        }
