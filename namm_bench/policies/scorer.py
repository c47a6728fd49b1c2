"""The scorer base: budget, top-k and bookkeeping for policies that rank tokens by a score."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from ..budget import Budget
from .base import MemoryPolicy, top_k_chronological


@dataclass
class ScorerPolicy(MemoryPolicy):
    """Keep, per layer and KV head, the ``budget`` entries with the highest ``score``.

    The pattern of kvpress's ``ScorerPress``: a subclass defines ``score`` (higher is kept) and may
    override ``keep_count`` (how many entries a layer keeps) and ``kept`` (to align per-token state
    with the kept entries). Ties and order do not matter: indices are returned chronologically.

    Parameters
    ----------
    budget
        Entries kept per KV head: a token count, or a ratio of the tokens seen so far.
    """

    budget: Budget = field(default_factory=lambda: Budget(ratio=0.25))

    takes_budget: ClassVar[bool] = True

    def score(
        self, layer: int, keys: torch.Tensor, values: torch.Tensor, positions: torch.Tensor, tokens_seen: int
    ) -> torch.Tensor:
        """Scores (B, kv_heads, N) of the layer's entries; the highest are kept."""
        raise NotImplementedError

    def keep_count(self, layer: int, cache_length: int, tokens_seen: int) -> int:
        """Entries per KV head the layer keeps (``cache_length`` or more: no eviction)."""
        return self.budget.keep(tokens_seen, cache_length)

    def kept(self, layer: int, idx: torch.Tensor) -> None:
        """Called with the indices (B, kv_heads, K) a layer keeps, to gather per-token state."""

    def select(self, layer, keys, values, positions, tokens_seen):
        n = keys.shape[2]
        keep = self.keep_count(layer, n, tokens_seen)
        if keep >= n:
            return None
        idx = top_k_chronological(self.score(layer, keys, values, positions, tokens_seen), keep)
        self.kept(layer, idx)
        return idx

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "budget": str(self.budget)}
