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
        Model layers never pruned (the paper's code skips the first two). On a hybrid model they
        name model layers, not positions among the managed ones: Gemma 3's first two layers are
        sliding-window layers, so every global layer is pruned.
    min_length
        No pruning while the layer holds fewer entries than this.
    """

    skip_layers: tuple[int, ...] = (0, 1)
    min_length: int = 0

    name = "l2"

    def __post_init__(self) -> None:
        self._model_layers: tuple[int, ...] = ()

    def reset(self, num_layers: int) -> None:
        self._model_layers = tuple(range(num_layers))

    def set_layers(self, model_layers) -> None:
        self._model_layers = tuple(model_layers)

    def keep_count(self, layer, cache_length, tokens_seen):
        if cache_length < self.min_length or self._model_layers[layer] in self.skip_layers:
            return cache_length
        # the whole-cache average per layer, before this layer's own length caps it
        keep = self.budget.keep(tokens_seen, tokens_seen)
        skipped = sum(1 for i in self._model_layers if i in self.skip_layers)
        if skipped:
            layers = len(self._model_layers)
            keep = max(1, (layers * keep - skipped * tokens_seen) // (layers - skipped))
        return keep

    def score(self, layer, keys, values, positions, tokens_seen):
        return -keys.float().norm(dim=-1)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "skip_layers": list(self.skip_layers),
            "min_length": self.min_length,
        }


@dataclass
class Knorm(L2Norm):
    """L2 key norm as kvpress's ``KnormPress`` runs it: every layer pruned to the budget.

    The same score as ``l2`` (Devoto et al., EMNLP 2024); only the defaults differ: no layer is
    left unpruned, so each layer keeps ``budget`` entries per KV head.
    """

    skip_layers: tuple[int, ...] = ()

    name = "knorm"
