"""SnapKV: attention of an observation window of the last queries, pooled (Li et al., NeurIPS 2024)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .base import POST_PREFILL
from .scorer import ScorerPolicy
from .window import QueryWindow


def pooled_window_scores(rows: torch.Tensor, window: int, kernel_size: int) -> torch.Tensor:
    """SnapKV's scores from the last ``window`` queries' attention ``rows`` (B, H, w, N).

    The mean attention each key outside the window receives from the window's queries, smoothed
    by a 1-D average pool (``kernel_size``, stride 1, zero padding counted); the window's own keys
    get the largest score, so they are kept.
    """
    b, h, _, n = rows.shape
    scores = rows[:, :, -window:, : n - window].mean(dim=2)
    scores = F.avg_pool1d(scores.reshape(b * h, 1, n - window), kernel_size, stride=1, padding=kernel_size // 2)
    scores = scores.view(b, h, n - window)
    # above every other score, so that the window is kept even when a key ties with the maximum
    return F.pad(scores, (0, window), value=scores.max().item() + 1.0 if scores.numel() else 1.0)


@dataclass
class SnapKV(ScorerPolicy):
    """Keep the keys the last ``window_size`` queries attend to most, after pooling, plus the window.

    Li et al., "SnapKV: LLM Knows What You are Looking for Before Generation", NeurIPS 2024. The
    queries at the end of the prompt (the question, under ``post-prefill``) show which keys
    generation will read; each head keeps the keys with the largest mean attention from them,
    smoothed over neighbouring positions so that whole phrases stay. Query-aware: it runs after
    the prompt (``post-prefill``, ``post-prefill-context``), not mid-prompt.

    Parameters
    ----------
    budget
        Entries kept per KV head, the window included: a token count or a ratio of tokens seen.
    window_size
        Observation window: the last queries whose attention scores the cache (kvpress: 64).
    kernel_size
        Average-pool width over key positions (kvpress: 5).
    """

    window_size: int = 64
    kernel_size: int = 5

    name = "snapkv"
    needs_attention = True
    protocols = POST_PREFILL

    def __post_init__(self) -> None:
        if self.window_size < 1 or self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError("snapkv needs window_size >= 1 and an odd kernel_size >= 1")
        self._window = QueryWindow(self.window_size)

    def reset(self, num_layers: int) -> None:
        self._window.reset(num_layers)

    def observe(self, layer: int, attention: torch.Tensor) -> None:
        self._window.add(layer, attention)

    def score(self, layer, keys, values, positions, tokens_seen):
        rows = self._window.rows[layer]
        window = min(self.window_size, rows.shape[2], keys.shape[2] - 1)
        return pooled_window_scores(rows, window, self.kernel_size)

    def kept(self, layer, idx):
        self._window.gather(layer, idx)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "window_size": self.window_size, "kernel_size": self.kernel_size}
