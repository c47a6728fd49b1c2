"""AdaKV: head-adaptive budgets over any scorer (Feng et al., 2024)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from .scorer import ScorerPolicy


def adaptive_selection(scores: torch.Tensor, keep: int, alpha_safeguard: float) -> torch.Tensor:
    """Indices (B, H, K) of the ``keep * H`` best entries of a layer chosen across its heads, -1 padded.

    ``scores`` (B, H, N), -inf where an entry must not be kept. Each head first secures its own
    ``int(alpha_safeguard * keep)`` best entries; the rest of the layer's ``keep * H`` entries go
    to the highest scores of any head. Heads then hold different counts: each head's indices are
    ascending, followed by -1 up to the largest head's count K.
    """
    b, h, n = scores.shape
    scores = scores.float().clone()
    excluded = torch.isneginf(scores)
    safe = int(alpha_safeguard * keep)
    if safe > 0:
        secured = scores.topk(min(safe, n), dim=-1).indices
        scores.scatter_(-1, secured, torch.finfo(scores.dtype).max)
        scores.masked_fill_(excluded, float("-inf"))  # a head with fewer entries than it secures
    total = min(keep * h, int(torch.isfinite(scores).sum(dim=(1, 2)).min()) if scores.numel() else 0)
    chosen = scores.reshape(b, h * n).topk(total, dim=-1).indices
    kept = torch.zeros(b, h * n, dtype=torch.bool, device=scores.device)
    kept.scatter_(1, chosen, True)
    kept = kept.view(b, h, n)
    width = int(kept.sum(dim=-1).max())
    order = torch.arange(n, device=scores.device).expand(b, h, n)
    # kept entries first, in chronological order; the others sort after them and become -1
    ranked = torch.where(kept, order, order + n).sort(dim=-1).values[..., :width]
    return torch.where(ranked < n, ranked, torch.full_like(ranked, -1))


_WRAPPED: dict[type, type] = {}


@dataclass
class AdaKV(ScorerPolicy):
    """A layer's budget shared among its KV heads by the scores of another policy.

    Feng et al., "Ada-KV: Optimizing KV Cache Eviction by Adaptive Budget Allocation for Efficient
    LLM Inference", 2024. Heads differ in how concentrated their attention is; instead of the same
    number of entries in every head, the layer keeps its ``budget * kv_heads`` entries with the
    highest scores among all its heads, each head first securing ``alpha_safeguard`` of its
    per-head budget. ``adakv:NAME`` wraps the scorer policy ``NAME`` (plain ``adakv``: SnapKV, as
    kvpress's AdaSnapKV), and runs under the protocols that scorer runs under. Heads then hold
    different numbers of entries: the cache pads the shorter ones with entries no query sees, and
    the cache fraction counts real entries only.

    Parameters
    ----------
    budget
        Entries kept per KV head on average over the layer's heads (the scorer's budget).
    alpha_safeguard
        Share of each head's budget it keeps whatever the other heads score (paper and kvpress: 0.2).
    scorer_options
        Options of the wrapped scorer (its defaults otherwise).
    """

    alpha_safeguard: float = 0.2
    scorer_options: dict[str, Any] = field(default_factory=dict)

    name = "adakv"
    scorer_name: ClassVar[str] = "snapkv"
    scorer_class: ClassVar[type[ScorerPolicy] | None] = None

    @classmethod
    def wrapping(cls, scorer: type) -> type[AdaKV]:
        """The AdaKV class over the scorer policy class ``scorer`` (named ``adakv:<its name>``)."""
        if scorer in _WRAPPED:
            return _WRAPPED[scorer]
        if not (isinstance(scorer, type) and issubclass(scorer, ScorerPolicy)) or issubclass(scorer, AdaKV):
            raise ValueError(
                f"adakv wraps a policy that scores every entry; {getattr(scorer, 'name', scorer)!r} does not"
            )
        attrs = {
            "name": f"adakv:{scorer.name}",
            "scorer_name": scorer.name,
            "scorer_class": scorer,
            "needs_attention": scorer.needs_attention,
            "protocols": scorer.protocols,
            "__doc__": cls.__doc__,
        }
        return _WRAPPED.setdefault(scorer, type(f"AdaKV_{scorer.__name__}", (cls,), attrs))

    def __post_init__(self) -> None:
        if not 0 <= self.alpha_safeguard <= 1:
            raise ValueError(f"adakv needs 0 <= alpha_safeguard <= 1, got {self.alpha_safeguard}")
        if self.scorer_class is None:
            raise ValueError("adakv is built through policy_class('adakv:NAME')")
        self.scorer = self.scorer_class(budget=self.budget, **self.scorer_options)

    def reset(self, num_layers: int) -> None:
        self.scorer.reset(num_layers)

    def set_layers(self, model_layers: Sequence[int]) -> None:
        self.scorer.set_layers(model_layers)

    def observe(self, layer: int, attention: torch.Tensor) -> None:
        self.scorer.observe(layer, attention)

    def select(self, layer, keys, values, positions, tokens_seen):
        n = keys.shape[2]
        keep = self.scorer.keep_count(layer, n, tokens_seen)
        if keep >= n:
            return None
        scores = self.scorer.score(layer, keys, values, positions, tokens_seen)
        scores = scores.float().masked_fill(positions < 0, float("-inf"))  # padding stays out
        idx = adaptive_selection(scores, keep, self.alpha_safeguard)
        self.scorer.kept(layer, idx.clamp(min=0))
        return idx

    def describe(self) -> dict[str, Any]:
        return {**self.scorer.describe(), "name": self.name, "alpha_safeguard": self.alpha_safeguard}
