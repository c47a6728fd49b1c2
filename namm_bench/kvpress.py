"""``NAMMPress``: namm-bench's NAMM as a kvpress press (kvpress 0.5.x, an optional dependency).

::

    from transformers import pipeline
    from namm_bench.kvpress import NAMMPress

    pipe = pipeline("kv-press-text-generation", model=model, tokenizer=tokenizer)
    answer = pipe(context, question=question, press=NAMMPress())["answer"]

kvpress compresses the context once, after prefilling it in one forward; the press then does what
namm-bench's ``post-prefill`` protocol does with the NAMM (Cetin et al., "An Evolved Universal
Transformer Memory", ICLR 2025): for each layer, the attention every context query gave the
cached keys is observed in ``chunk_size`` rows at a time (namm-bench's prefill chunks), turned
into the NAMM's spectrogram features and scored, and the tokens it scores below zero are evicted
(a count common to the layer's heads). The NAMM sets its own cache size, so ``compression_ratio``
is what it reached on the last context (read-only: kvpress's ``evaluate.py`` may assign to it,
which is ignored). kvpress pins transformers below namm-bench's range, so this module runs in a
kvpress environment with namm-bench installed without its dependencies (``tox -e kvpress``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

try:
    from kvpress import BasePress
    from kvpress.utils import get_prerope_query_states
except ImportError as err:  # an optional dependency
    raise ImportError(f"NAMMPress needs kvpress (0.5.x): pip install kvpress ({err})") from err

from .attention_reading import grouped_attention
from .hf_memory import build_policy, managed_attention_modules
from .policies.namm import NAMM

log = logging.getLogger(__name__)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


@dataclass
class NAMMPress(BasePress):
    """Evict what a NAMM scores below zero, once the context is prefilled.

    Parameters
    ----------
    checkpoint
        A namm-bench checkpoint directory or an evo-memory ``ckpt.pt``; None: the NAMM shipped with
        namm-bench.
    chunk_size
        Query rows per attention observation, as namm-bench's prefill chunks (128, the paper's).
    physical
        False (default): evicted entries are masked as kvpress's ``AdaKVPress`` masks them (its
        attention patch), since kvpress's pipeline needs one cache length in every layer and the
        NAMM keeps a count of its own per layer; True: removed from the cache tensors (the memory
        saved), for callers that run the cache themselves.
    """

    checkpoint: str | None = None
    chunk_size: int = 128
    physical: bool = False
    kept: dict[int, torch.Tensor] = field(default_factory=dict, init=False, repr=False)
    """The last context's kept positions (B, kv_heads, K) per model layer index."""

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        self.policy: NAMM = build_policy("namm", namm_checkpoint=self.checkpoint)  # type: ignore[assignment]
        self._layers: dict[int, int] = {}
        self._seen = self._total = 0

    # kvpress's evaluate.py sets compression_ratio on every press that has one
    @property
    def compression_ratio(self) -> float:
        """1 - the share of the last context's entries the NAMM kept (over the layers it compressed)."""
        return 1.0 - self._seen / self._total if self._total else 0.0

    @compression_ratio.setter
    def compression_ratio(self, value: float) -> None:
        log.info("NAMMPress keeps what its NAMM selects: compression_ratio=%s is ignored", value)

    def post_init_from_model(self, model: nn.Module) -> None:
        """Called as the press is entered (once per context): a new sequence for the NAMM."""
        layers = [m.layer_idx for m in managed_attention_modules(model)]
        self._layers = {layer: i for i, layer in enumerate(layers)}
        self.policy.reset(len(layers))
        self.policy.set_layers(layers)
        self.kept, self._seen, self._total = {}, 0, 0

    def compress(
        self,
        module: nn.Module,
        hidden_states: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        attentions: torch.Tensor | None,
        kwargs: dict[str, Any],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        layer = self._layers.get(module.layer_idx)
        if layer is None:  # a layer the NAMM does not manage (a sliding-window one)
            return keys, values
        b, kv_heads, n, _ = keys.shape
        queries = self._queries(module, hidden_states, kwargs)
        past = n - queries.shape[2]  # 0 in kvpress's prefill: the cache is the context
        start = 0
        while start < queries.shape[2]:
            end = min(queries.shape[2], ((past + start) // self.chunk_size + 1) * self.chunk_size - past)
            visible = past + end  # the chunk's queries see every earlier key and their own, causally
            _, probs = grouped_attention(
                queries[:, :, start:end], keys[:, :, :visible], values[:, :, :visible], module.scaling
            )
            self.policy.observe(layer, probs)
            start = end
        positions = torch.arange(n, device=keys.device).expand(b, kv_heads, n)
        idx = self.policy.select(layer, keys, values, positions, n)
        self._total += kv_heads * n
        if idx is None:
            self.kept[module.layer_idx] = positions
            self._seen += kv_heads * n
            return keys, values
        self.kept[module.layer_idx] = idx
        self._seen += int(idx.shape[1] * idx.shape[2])
        if self.physical:
            gather = idx[..., None].expand(*idx.shape, keys.shape[-1])
            return keys.gather(2, gather).contiguous(), values.gather(2, gather).contiguous()
        evicted = torch.ones(b, kv_heads, n, dtype=torch.bool, device=keys.device).scatter_(2, idx, False)
        module.masked_key_indices = evicted.nonzero(as_tuple=True)  # (batch, head, position), as AdaKVPress
        return keys, values

    @staticmethod
    def _queries(module: nn.Module, hidden_states: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
        """The layer's queries (B, heads, q, d) with RoPE, as its attention computed them."""
        queries = get_prerope_query_states(module, hidden_states)
        cos, sin = kwargs["position_embeddings"]
        return queries * cos.unsqueeze(1) + _rotate_half(queries) * sin.unsqueeze(1)


def agreement(press: NAMMPress, controller: Any) -> tuple[int, int]:
    """(layers x KV heads whose kept positions under ``press`` equal those ``controller`` kept, all of them): the
    press's last context against namm-bench's own run of it (``MemoryController``, or ``memory()``'s)."""
    same = total = 0
    for i, layer in enumerate(sorted(press.kept)):
        ours, theirs = controller.positions(i)[0], press.kept[layer][0]
        for head in range(ours.shape[0]):
            total += 1
            same += int(ours.shape == theirs.shape and torch.equal(ours[head], theirs[head]))
    return same, total
