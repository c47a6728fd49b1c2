"""PyramidKV: SnapKV scores with budgets that shrink with depth (Cai et al., 2024)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .snapkv import SnapKV

SCHEDULES = ("kvpress", "kvcache-factory")


@dataclass
class PyramidKV(SnapKV):
    """SnapKV's selection with per-layer budgets in an arithmetic sequence, largest in the first layer.

    Cai et al., "PyramidKV: Dynamic KV Cache Compression based on Pyramidal Information Funneling",
    2024: attention is broad in lower layers and concentrated in higher ones, so lower layers keep
    more. Two schedules of the counts, for n cached entries, a budget of C per KV head on average,
    a window of w and L layers:

    - ``kvpress`` (default, kvpress's ``PyramidKVPress``): with S = C (in floats, ``n * ratio``
      for a ratio budget), ``min = S / beta``, ``max = 2 S - min``; if ``max >= n - w``,
      ``max = n - w`` and ``min = 2 S - max``; unless ``n >= max >= min >= w`` every layer keeps
      ``round(S)`` (SnapKV); else layer l keeps ``round(max - l (max - min) / (L - 1))``, the window
      included.
    - ``kvcache-factory`` (the paper's code): with S = C - w, ``min = S // beta``,
      ``max = 2 S - min`` (capped at ``n - w`` as above), layer l keeps
      ``max - l ((max - min) // (L - 1)) + w``; below ``n = 2 S`` every layer keeps C.

    Parameters
    ----------
    budget
        Entries kept per KV head on average over the layers, the window included.
    window_size, kernel_size
        SnapKV's observation window and pooling width (64 and 5).
    beta
        Ratio of the largest to the smallest layer budget's share (paper and kvpress: 20).
    schedule
        ``kvpress`` or ``kvcache-factory``, above.
    """

    beta: int = 20
    schedule: str = "kvpress"

    name = "pyramidkv"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta < 1:
            raise ValueError(f"pyramidkv needs beta >= 1, got {self.beta}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"pyramidkv's schedule is one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        self._num_layers = 1

    def reset(self, num_layers: int) -> None:
        super().reset(num_layers)
        self._num_layers = num_layers

    def keep_count(self, layer, cache_length, tokens_seen):
        budget = super().keep_count(layer, cache_length, tokens_seen)
        if self._num_layers == 1:
            return budget
        if self.schedule == "kvpress":
            return self._kvpress_count(layer, cache_length, tokens_seen, budget)
        window = min(self.window_size, cache_length - 1)
        share = budget - window  # entries outside the window, per layer on average
        if share <= 0 or cache_length < 2 * share:
            return budget
        low = share // self.beta
        high = 2 * share - low
        if high >= cache_length - window:
            high = cache_length - window
            low = 2 * share - high
        step = (high - low) // (self._num_layers - 1)
        return high - layer * step + window

    def _kvpress_count(self, layer: int, n: int, tokens_seen: int, budget: int) -> int:
        share = self.budget.ratio * tokens_seen if self.budget.ratio is not None else float(budget)
        low = share / self.beta
        high = 2 * share - low
        if high >= n - self.window_size:
            high = n - self.window_size
            low = 2 * share - high
        if not n >= high >= low >= self.window_size:
            return min(n, max(1, round(share)))
        return round(high - layer * (high - low) / (self._num_layers - 1))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "beta": self.beta, "schedule": self.schedule}
