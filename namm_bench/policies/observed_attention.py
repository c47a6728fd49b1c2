"""Observed attention: the mean attention each key has received (kvpress's ObservedAttentionPress)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import add_received, gather_tokens
from .scorer import ScorerPolicy


@dataclass
class ObservedAttention(ScorerPolicy):
    """Keep the keys with the largest mean attention received so far, per KV head.

    The post-prefill form of H2O's accumulated attention (Zhang et al., NeurIPS 2023) as kvpress
    scores it: the attention a key received, summed over the queries that could see it and
    divided by their number (a key at position p has been seen by ``tokens_seen - p`` queries),
    averaged over the query heads of its KV group. Unlike ``h2o`` it sets aside no recent window
    and does not favour old keys for having been seen longer.

    Parameters
    ----------
    budget
        Entries kept per KV head: a token count or a ratio of tokens seen.
    """

    name = "observed_attention"
    needs_attention = True

    def __post_init__(self) -> None:
        self._sums: list[torch.Tensor | None] = []

    def reset(self, num_layers: int) -> None:
        self._sums = [None] * num_layers

    def observe(self, layer, attention):
        self._sums[layer] = add_received(self._sums[layer], attention)

    def score(self, layer, keys, values, positions, tokens_seen):
        return self._sums[layer] / (tokens_seen - positions).float()

    def kept(self, layer, idx):
        self._sums[layer] = gather_tokens(self._sums[layer], idx)
