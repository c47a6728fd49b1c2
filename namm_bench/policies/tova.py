"""TOVA: the last query's attention, averaged over heads (Oren et al., EMNLP 2024)."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .scorer import ScorerPolicy
from .window import QueryWindow


@dataclass
class TOVA(ScorerPolicy):
    """Keep the keys the newest query attends to most, the same ones in every head of a layer.

    Oren, Hassid, Yarden, Adi, Schwartz, "Transformers are Multi-State RNNs", EMNLP 2024 (Token
    Omission Via Attention): at each eviction the newest token's attention, averaged over all the
    layer's heads, ranks the cached tokens; the newest token itself is kept.

    Parameters
    ----------
    budget
        Entries kept per KV head: a token count or a ratio of tokens seen.
    """

    name = "tova"
    needs_attention = True

    def __post_init__(self) -> None:
        self._window = QueryWindow(1)

    def reset(self, num_layers: int) -> None:
        self._window.reset(num_layers)

    def observe(self, layer, attention):
        self._window.add(layer, attention)

    def score(self, layer, keys, values, positions, tokens_seen):
        last = self._window.rows[layer][:, :, -1, :-1]  # (B, kv_heads, N - 1): group means of each KV head
        scores = last.mean(dim=1, keepdim=True)  # equal groups: the mean over every query head
        scores = F.pad(scores, (0, 1), value=scores.max().item() if scores.numel() else 0.0)
        return scores.expand(-1, keys.shape[1], -1)

    def kept(self, layer, idx):
        self._window.gather(layer, idx)
