"""The attention rows of the last few queries, per layer: what query-window policies score with."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class QueryWindow:
    """Keeps, per layer, the attention (B, kv_heads, w, N) of the last ``size`` queries over the cache.

    Rows of earlier queries are zero over the tokens that arrived after them (they could not see
    them); ``gather`` keeps the columns of the entries a layer keeps.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"the query window needs at least one query, got {size}")
        self.size = size
        self.rows: list[torch.Tensor | None] = []

    def reset(self, num_layers: int) -> None:
        self.rows = [None] * num_layers

    def add(self, layer: int, attention: torch.Tensor) -> None:
        previous = self.rows[layer]
        if previous is not None:
            previous = F.pad(previous, (0, attention.shape[-1] - previous.shape[-1]))
            attention = torch.cat([previous[:, :, -self.size :], attention.float()], dim=2)
        self.rows[layer] = attention[:, :, -self.size :].float()

    def gather(self, layer: int, idx: torch.Tensor) -> None:
        rows = self.rows[layer]
        self.rows[layer] = rows.gather(3, idx[:, :, None, :].expand(-1, -1, rows.shape[2], -1))
