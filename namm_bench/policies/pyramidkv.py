"""PyramidKV: SnapKV scores with budgets that shrink with depth (Cai et al., 2024)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .snapkv import SnapKV


@dataclass
class PyramidKV(SnapKV):
    """SnapKV's selection with per-layer budgets in an arithmetic sequence, largest in the first layer.

    Cai et al., "PyramidKV: Dynamic KV Cache Compression based on Pyramidal Information Funneling",
    2024: attention is broad in lower layers and concentrated in higher ones, so lower layers keep
    more. With C the budget per KV head (window included), w the window and L layers, the layers
    keep, besides the window, ``max - l * ((max - min) // (L - 1))`` entries, where
    ``min = (C - w) // beta`` and ``max = 2 (C - w) - min``; if ``max`` exceeds the ``n - w``
    entries outside the window, ``max = n - w`` and ``min = 2 (C - w) - max``. Below
    ``n = 2 (C - w)`` every layer keeps C, as SnapKV (the paper's code's rule).

    Parameters
    ----------
    budget
        Entries kept per KV head on average over the layers, the window included.
    window_size, kernel_size
        SnapKV's observation window and pooling width (64 and 5).
    beta
        Ratio of the largest to the smallest layer budget's share (paper and kvpress: 20).
    """

    beta: int = 20

    name = "pyramidkv"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta < 1:
            raise ValueError(f"pyramidkv needs beta >= 1, got {self.beta}")
        self._num_layers = 1

    def reset(self, num_layers: int) -> None:
        super().reset(num_layers)
        self._num_layers = num_layers

    def keep_count(self, layer, cache_length, tokens_seen):
        budget = super().keep_count(layer, cache_length, tokens_seen)
        window = min(self.window_size, cache_length - 1)
        share = budget - window  # entries outside the window, per layer on average
        if share <= 0 or cache_length < 2 * share or self._num_layers == 1:
            return budget
        low = share // self.beta
        high = 2 * share - low
        if high >= cache_length - window:
            high = cache_length - window
            low = 2 * share - high
        step = (high - low) // (self._num_layers - 1)
        return high - layer * step + window

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "beta": self.beta}
