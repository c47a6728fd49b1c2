"""The memory-policy interface shared by every cache policy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

ALL_PROTOCOLS = ("streaming", "post-prefill", "post-prefill-context")
"""The memory controller's protocols (``namm_bench.controller.PROTOCOLS``)."""
POST_PREFILL = ("post-prefill", "post-prefill-context")


def check_protocol(policy: type[MemoryPolicy] | MemoryPolicy, protocol: str) -> None:
    """Raise ``ValueError`` unless ``policy`` is defined for ``protocol``."""
    supported = getattr(policy, "protocols", ALL_PROTOCOLS)  # policies not built on MemoryPolicy: all
    if protocol in ALL_PROTOCOLS and protocol not in supported:
        name = getattr(policy, "name", type(policy).__name__)
        raise ValueError(
            f"policy {name} does not run under the {protocol} protocol; it runs under {', '.join(supported)}"
        )


@dataclass
class MemoryPolicy:
    """Decides, layer by layer, which KV-cache entries to keep.

    The memory controller calls ``reset`` at the start of every sequence, ``observe`` after each
    forward with the new queries' attention (only if ``needs_attention``), and ``select`` at every
    policy call. Policies never touch the model or the cache; they return indices and keep any
    per-token state of their own aligned with them.
    """

    name: ClassVar[str] = "base"
    needs_attention: ClassVar[bool] = False
    needs_queries: ClassVar[bool] = False
    """Whether the controller hands the policy the new queries (``observe_queries``)."""
    takes_budget: ClassVar[bool] = False
    """Whether the policy is built with a ``budget`` (``--budget`` applies to it)."""
    protocols: ClassVar[tuple[str, ...]] = ALL_PROTOCOLS
    """The controller protocols the policy is defined for: a query-aware method, which scores the
    cache by the question's attention, has no scores to give mid-prompt under ``streaming``."""

    def reset(self, num_layers: int) -> None:
        """Forget everything about the previous sequence."""

    def set_layers(self, model_layers: Sequence[int]) -> None:
        """The model layers that the policy's layers 0..n-1 stand for, called after ``reset``.

        A hybrid model's adapter leaves its sliding-window layers out, so layer ``i`` here is
        model layer ``model_layers[i]``. Only settings that name model layers need it.
        """

    def observe(self, layer: int, attention: torch.Tensor) -> None:
        """Attention of the new queries: (B, kv_heads, q, N), averaged over each GQA group.

        N is the layer's cache length including the q new tokens, which are its last q entries.
        """

    def observe_queries(self, layer: int, queries: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> None:
        """The new queries (B, heads, q, d) as attention reads them (RoPE applied), with the rotary
        tables (B, q, d) of their positions (``q * cos + rotate_half(q) * sin``; only if ``needs_queries``)."""

    def select(
        self, layer: int, keys: torch.Tensor, values: torch.Tensor, positions: torch.Tensor, tokens_seen: int
    ) -> torch.Tensor | None:
        """Indices (B, kv_heads, K) to keep, ascending, or None to keep the whole layer.

        ``keys``/``values``: (B, kv_heads, N, head_dim); ``positions``: (B, kv_heads, N) absolute
        token positions; ``tokens_seen``: tokens processed so far in this sequence.
        """
        return None

    def describe(self) -> dict[str, Any]:
        """Configuration recorded with every result row."""
        return {"name": self.name}


def gather_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Gather (B, H, N, ...) along the token axis with per-head indices (B, H, K)."""
    index = idx.reshape(*idx.shape, *([1] * (x.ndim - 3))).expand(*idx.shape, *x.shape[3:])
    return x.gather(2, index)


def top_k_chronological(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The k highest-scoring tokens per head, returned in chronological (ascending) order."""
    return scores.topk(k, dim=-1).indices.sort(dim=-1).values


def add_received(previous: torch.Tensor | None, attention: torch.Tensor) -> torch.Tensor:
    """Attention each cached entry has received, (B, H, N): ``previous`` (over the first entries)
    plus the new queries' ``attention`` (B, H, q, N) summed over those queries."""
    received = attention.float().sum(dim=2)
    if previous is not None:
        received[..., : previous.shape[-1]] += previous
    return received
