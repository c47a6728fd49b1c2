"""NAMM: Neural Attention Memory Model (Cetin et al., ICLR 2025)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..namm.checkpoint import NammCheckpoint
from ..namm.features import LayerSpectrograms, token_features
from ..namm.scorer import BamWeights, bam_scores, binary_selection
from .base import MemoryPolicy


@dataclass
class NAMM(MemoryPolicy):
    """Evict the tokens an evolved network scores below zero.

    Cetin, Sun, Zhao, Tang, "An Evolved Universal Transformer Memory", ICLR 2025. For every
    cached token, the attention it received is turned into a spectrogram (STFT over queries),
    reduced by an EMA, normalised, joined with a recency embedding, and scored by a backward
    attention network (BAM). Tokens scoring below zero are evicted with a common count per
    layer. The same parameters serve every layer and KV head; the budget is emergent.

    Parameters
    ----------
    checkpoint
        Parameters and normalisation statistics. Statistics the checkpoint ships are frozen;
        empty ones are pooled online from the features seen (the reference's running statistics),
        shared by every policy built from the same checkpoint.
    """

    checkpoint: NammCheckpoint = field(default_factory=NammCheckpoint.zeros)

    name = "namm"
    needs_attention = True

    def __post_init__(self) -> None:
        self.checkpoint.validate("NAMM parameters")
        self._weights = BamWeights.unflatten(self.checkpoint.params, self.checkpoint.config)
        self._stats = self.checkpoint.stats
        # Decided once per checkpoint: statistics it shipped stay frozen; empty ones keep pooling.
        self._update_stats = not self.checkpoint.stats_frozen
        # The attention history of the cached tokens; parameter-free, so runs that share a prompt
        # prefix may start from a copy of one (``namm_bench.evolution.fitness``).
        self.spectra = LayerSpectrograms(self.checkpoint.config.ema_coeff)

    def reset(self, num_layers: int) -> None:
        self.spectra.reset(num_layers)

    def observe(self, layer: int, attention: torch.Tensor) -> None:
        self.spectra.observe(layer, attention)

    def scores(self, layer: int, positions: torch.Tensor) -> torch.Tensor:
        """BAM scores (B, H, N) of the layer's cached tokens from the current features."""
        ema = self.spectra.states[layer].ema
        if self._update_stats:
            self._stats.merge(ema)
        cfg = self.checkpoint.config
        features = token_features(ema, positions, self._stats, cfg.recency_dims, cfg.recency_max_freq)
        w = self._weights if self._weights.w_qkv.device == ema.device else self._weights.to(ema.device)
        return bam_scores(features, w)

    def select(self, layer, keys, values, positions, tokens_seen):
        if self.spectra.states[layer] is None:  # no attention observed yet (cannot happen in the controller)
            return None
        idx = binary_selection(self.scores(layer, positions))
        if idx is not None:
            self.spectra.states[layer].gather(idx)
        return idx

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "provenance": self.checkpoint.provenance, "stats_count": self._stats.count}
