"""StreamingLLM: attention sinks plus a recent window (Xiao et al., ICLR 2024)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .scorer import ScorerPolicy


@dataclass
class StreamingLLM(ScorerPolicy):
    """Keep the first ``n_sink`` tokens and the most recent ones.

    Xiao, Tian, Chen, Han, Lewis, "Efficient Streaming Language Models with Attention Sinks",
    ICLR 2024: the first tokens draw attention whatever they hold ("attention sinks"), so a window
    of recent tokens plus a few sinks keeps a model stable. Scores are positions (newer is higher)
    with the sinks above every other; no attention is read.

    Parameters
    ----------
    budget
        Entries kept per KV head: a token count or a ratio of tokens seen.
    n_sink
        Sink tokens, always kept (paper and kvpress: 4).
    """

    n_sink: int = 4

    name = "streaming_llm"

    def __post_init__(self) -> None:
        if self.n_sink < 0:
            raise ValueError(f"n_sink must be >= 0, got {self.n_sink}")

    def score(self, layer, keys, values, positions, tokens_seen):
        scores = positions.float()
        return scores.masked_fill(positions < self.n_sink, torch.inf)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "n_sink": self.n_sink}
