"""BAM scoring network and binary selection (``namm-reference.md`` sections 3 and 4).

One parameter vector, shared by every layer and KV head, laid out as
``[W_qkv (F x 3D, in-major), b_qkv (3D), W_o (D x 2F), b_o (2F), w (F x 1), b (1)]``
with F = 25 features and D = 32 hidden units: 4172 numbers for the released configuration.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..typed import check_field_types
from .features import N_BINS


@dataclass(frozen=True)
class NammConfig:
    """Architecture of the released stage-1 NAMM (``namm_bam_i1``); nothing depends on the LLM."""

    ema_coeff: float = 0.99
    recency_dims: int = 8
    recency_max_freq: float = 50000.0
    hidden_dim: int = 32

    def __post_init__(self) -> None:
        if not 0 < self.ema_coeff < 1:
            raise ValueError(f"NAMM ema_coeff must be in (0, 1), got {self.ema_coeff}")
        if self.recency_dims < 0 or self.recency_dims % 2:
            raise ValueError(f"NAMM recency_dims must be even and not negative, got {self.recency_dims}")
        if self.recency_max_freq <= 0 or self.hidden_dim < 1:
            raise ValueError(
                "NAMM recency_max_freq and hidden_dim must be positive, "
                f"got {self.recency_max_freq} and {self.hidden_dim}"
            )

    @classmethod
    def from_dict(cls, raw: dict, source: str) -> NammConfig:
        """A config read from a file: wrong types and values raise ``TypeError``/``ValueError`` naming ``source``."""
        check_field_types(cls, raw, source)
        try:
            return cls(**raw)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from err

    @property
    def feature_dim(self) -> int:
        return self.recency_dims + N_BINS

    @property
    def num_params(self) -> int:
        f, d = self.feature_dim, self.hidden_dim
        return (f * 3 * d + 3 * d) + (d * 2 * f + 2 * f) + (f + 1)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class BamWeights:
    w_qkv: torch.Tensor
    b_qkv: torch.Tensor
    w_o: torch.Tensor
    b_o: torch.Tensor
    w_head: torch.Tensor
    b_head: torch.Tensor

    def to(self, device: torch.device | str) -> BamWeights:
        return BamWeights(**{k: v.to(device) for k, v in vars(self).items()})

    @classmethod
    def unflatten(cls, params: torch.Tensor, config: NammConfig) -> BamWeights:
        if params.ndim != 1 or params.numel() != config.num_params:
            raise ValueError(f"NAMM parameter vector has shape {tuple(params.shape)}, expected ({config.num_params},)")
        f, d = config.feature_dim, config.hidden_dim
        sizes = [f * 3 * d, 3 * d, d * 2 * f, 2 * f, f, 1]
        parts = torch.split(params.float(), sizes)
        return cls(
            w_qkv=parts[0].view(f, 3 * d),
            b_qkv=parts[1],
            w_o=parts[2].view(d, 2 * f),
            b_o=parts[3],
            w_head=parts[4].view(f, 1),
            b_head=parts[5],
        )


def bam_scores(features: torch.Tensor, w: BamWeights) -> torch.Tensor:
    """Score every cached token: (B, H, N, F) features -> (B, H, N) unbounded scores.

    One attention head with a *backward* mask (token i attends to itself and newer tokens
    j >= i), then ``H = X * (1 + U) + R`` from the two halves of the output projection, then a
    linear head. The backward mask is a causal mask on the reversed sequence, which lets SDPA
    run it without materialising an N x N mask.
    """
    d = w.w_o.shape[0]
    q, k, v = (features @ w.w_qkv + w.b_qkv).split(d, dim=-1)
    flip = lambda t: t.flip(2)  # noqa: E731 - reverse the token axis
    out = F.scaled_dot_product_attention(flip(q), flip(k), flip(v), is_causal=True)
    out = flip(out) @ w.w_o + w.b_o
    feat = features.shape[-1]
    residual, mult = out[..., :feat], out[..., feat:]
    hidden = features * (1 + mult) + residual
    return (hidden @ w.w_head + w.b_head).squeeze(-1)


def binary_selection(scores: torch.Tensor) -> torch.Tensor | None:
    """Indices to keep (B, H, K) in chronological order, or None to keep everything.

    Tokens scoring >= 0 are kept; the newest token always is. Every head of the layer keeps the
    same count K = N - min over heads of #(score < 0), each its top-K by score, so a head with
    fewer non-negative scores keeps some negative ones (reference section 4).
    """
    scores = scores.clone()
    scores[..., -1] = torch.inf
    evict = int((scores < 0).sum(-1).min())
    if evict == 0:
        return None
    keep = scores.shape[-1] - evict
    return scores.topk(keep, dim=-1).indices.sort(dim=-1).values
