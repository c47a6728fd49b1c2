"""Expected Attention: the attention future queries are expected to pay (Devoto et al., NVIDIA 2025)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .scorer import ScorerPolicy


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def rotary_frequencies(cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(angle per position, scale), each (d,), of rotary tables (q >= 2, d) at consecutive positions.

    RoPE turns dimension i by ``p * theta_i`` at position p, with theta_i <= 1: one step turns less
    than pi, so the phase unwraps step by step. Its tables may carry a scale (YaRN's attention factor).
    """
    phase = torch.atan2(sin.double(), cos.double())
    steps = torch.remainder(phase.diff(dim=0) + math.pi, 2 * math.pi) - math.pi
    theta = steps.sum(dim=0) / (phase.shape[0] - 1)
    return theta, torch.sqrt(cos.double() ** 2 + sin.double() ** 2).mean(dim=0)


@dataclass
class ExpectedAttention(ScorerPolicy):
    """Keep the keys that queries to come are expected to attend to most, weighted by their value norm.

    Devoto et al., "Expected Attention: KV Cache Compression by Estimating Attention from Future
    Queries Distribution", NVIDIA 2025. The queries seen so far (before RoPE, the first ``n_sink``
    left out) give a Gaussian with mean mu and covariance Sigma per query head; RoPE averaged over
    the next ``n_future_positions`` positions (matrix R) carries it to where future queries will
    be. For a Gaussian query, E[exp(q.k / sqrt(d))] = exp(mu'.k / sqrt(d) + k' Sigma' k / (2 d)),
    mu' = R mu, Sigma' = R Sigma R^T; the score is its softmax over the keys, averaged over each
    KV head's query heads, times the value's norm. The ``n_sink`` first tokens are always kept.
    The statistics come from the queries themselves, not from a question: it runs under every
    protocol, as kvpress's ``ExpectedAttentionPress``.

    Parameters
    ----------
    budget
        Entries kept per KV head: a token count or a ratio of tokens seen.
    n_future_positions
        Future positions RoPE is averaged over (kvpress: 512).
    n_sink
        First tokens kept whatever their score, and left out of the query statistics (kvpress: 4).
    use_covariance, use_vnorm
        Include the covariance term, and weight by the value norm (kvpress: both on).
    epsilon
        Added to the scores before the value-norm weighting (kvpress: 0).
    """

    n_future_positions: int = 512
    n_sink: int = 4
    use_covariance: bool = True
    use_vnorm: bool = True
    epsilon: float = 0.0

    name = "expected_attention"
    needs_queries = True

    def __post_init__(self) -> None:
        if self.n_future_positions < 1 or self.n_sink < 0:
            raise ValueError("expected_attention needs n_future_positions >= 1 and n_sink >= 0")
        self.reset(0)

    def reset(self, num_layers: int) -> None:
        self._seen = [0] * num_layers
        self._sum: list[torch.Tensor | None] = [None] * num_layers  # (B, heads, d) of pre-RoPE queries
        self._outer: list[torch.Tensor | None] = [None] * num_layers  # (B, heads, d, d)
        self._count = [0] * num_layers
        self._rope: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * num_layers

    def observe_queries(self, layer, queries, cos, sin):
        q = queries.shape[2]
        cos, sin = cos[0, -q:].to(queries.device), sin[0, -q:].to(queries.device)
        if q > 1 and self._rope[layer] is None:  # the first chunk: small positions, exact float tables
            self._rope[layer] = rotary_frequencies(cos, sin)
        # undo RoPE: its rotation's inverse, divided by the tables' squared scale
        plain = (queries.double() * cos - rotate_half(queries.double()) * sin) / (cos.double() ** 2 + sin.double() ** 2)
        start = self._seen[layer]
        self._seen[layer] += q
        plain = plain[:, :, max(0, self.n_sink - start) :]
        if plain.shape[2] == 0:
            return
        total, outer = plain.sum(dim=2), torch.einsum("bhsi,bhsj->bhij", plain, plain)
        if self._sum[layer] is not None:
            total, outer = total + self._sum[layer], outer + self._outer[layer]
        self._sum[layer], self._outer[layer], self._count[layer] = total, outer, self._count[layer] + plain.shape[2]

    def _future_rotation(self, layer: int, tokens_seen: int, d: int, device: torch.device) -> torch.Tensor:
        """R averaged over positions tokens_seen .. tokens_seen + n_future_positions - 1: (d, d)."""
        if self._rope[layer] is None:
            raise RuntimeError("expected_attention scores after a chunk of at least two queries")
        theta, scale = (t.to(device) for t in self._rope[layer])
        angles = (
            torch.arange(tokens_seen, tokens_seen + self.n_future_positions, device=device).double()[:, None] * theta
        )
        cos, sin = (angles.cos() * scale).mean(dim=0), (angles.sin() * scale).mean(dim=0)
        swap = torch.zeros(d, d, dtype=torch.float64, device=device)  # rotate_half as a matrix
        half = d // 2
        swap[:half, half:], swap[half:, :half] = -torch.eye(half), torch.eye(half)
        return torch.diag(cos) + torch.diag(sin) @ swap

    def score(self, layer, keys, values, positions, tokens_seen):
        b, kv_heads, n, d = keys.shape
        if self._count[layer] == 0:
            raise RuntimeError("expected_attention has seen no queries after the sinks")
        mean = self._sum[layer] / self._count[layer]  # (B, heads, d)
        rotation = self._future_rotation(layer, tokens_seen, d, keys.device)
        groups = mean.shape[1] // kv_heads
        k = keys.double().repeat_interleave(groups, dim=1)  # (B, heads, n, d)
        logits = torch.einsum("bhd,bhnd->bhn", mean @ rotation.T, k) / math.sqrt(d)
        if self.use_covariance:
            cov = self._outer[layer] / self._count[layer] - mean[..., :, None] * mean[..., None, :]
            cov = rotation @ cov @ rotation.T
            logits = logits + torch.einsum("bhni,bhij,bhnj->bhn", k, cov, k) / d / 2
        sink = positions < self.n_sink
        logits = logits.masked_fill(sink.repeat_interleave(groups, dim=1), float("-inf"))
        scores = F.softmax(logits, dim=-1).view(b, kv_heads, groups, n).mean(dim=2)
        if self.use_vnorm:
            scores = (scores + self.epsilon) * values.double().norm(dim=-1)
        return scores.masked_fill(sink, scores.max().item() + 1.0).float()

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "n_future_positions": self.n_future_positions,
            "n_sink": self.n_sink,
            "use_covariance": self.use_covariance,
            "use_vnorm": self.use_vnorm,
            "epsilon": self.epsilon,
        }
