"""The memory controller: runs a model in chunks and lets a policy prune its KV cache.

It attaches to a stock Hugging Face model through forward hooks on the attention modules
(the kvpress pattern) and edits ``Cache.layers[i].keys/values`` in place:

- a forward pre-hook gives each layer the causal mask its own cache length needs (after
  eviction, layers differ in length, and new queries see every cached key plus the causal part
  of their own chunk);
- policies that read attention get the new queries' probabilities, averaged over each GQA
  group, from ``namm_bench.attention_reading``'s attention implementation (the others run on
  SDPA);
- after every forward of a chunk or decode step, at absolute token counts that are multiples of
  ``interval``, the policy selects per layer and KV head what to keep (``namm-reference.md``
  section 1.3), and the controller gathers keys, values and positions.

Kept keys keep the rotary position they were written with; new tokens take their true absolute
positions (the adapter builds position ids from ``start``/``end``), so the cache has gaps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

from . import attention_reading
from .policies.base import ALL_PROTOCOLS, MemoryPolicy, check_protocol, gather_tokens

T = TypeVar("T")
Forward = Callable[[int, int], T]
"""Runs the model on the tokens [start, end) at absolute positions start..end-1, with the cache."""

PROTOCOLS = ALL_PROTOCOLS


@dataclass(frozen=True)
class ControllerConfig:
    """When the policy runs.

    Parameters
    ----------
    chunk_size
        Prefill chunk, aligned to absolute multiples (paper: 128).
    interval
        A policy call whenever the absolute token count reaches a multiple of this, in prefill and
        decoding (paper: 512). ``streaming`` only.
    protocol
        ``streaming`` (the paper's: memory bounded during prefill), ``post-prefill`` (kvpress /
        KVCache-Factory: prefill all, evict once with the question inside, decode without
        eviction) or ``post-prefill-context`` (kvpress's default: evict once after the context,
        then prefill the question and decode without eviction).
    prompt_end_call
        ``streaming`` only: also call the policy when the prompt ends, so that budgets hold when
        generation starts. The paper's code leaves the last ``L mod 512`` prompt tokens unpruned;
        set False to reproduce that.
    """

    chunk_size: int = 128
    interval: int = 512
    protocol: str = "streaming"
    prompt_end_call: bool = True

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; known: {', '.join(PROTOCOLS)}")
        if self.chunk_size < 1 or self.interval < 1:
            raise ValueError("chunk_size and interval must be positive")


@dataclass
class CacheStats:
    """What the cache held during one sequence.

    ``calls``: after every policy call, the tokens seen and the entries retained per layer and
    KV head. ``fractions``: retained entries / (layers x kv_heads x tokens processed), sampled at
    the end of the prompt and after every decoding step.
    """

    calls: list[dict[str, Any]] = field(default_factory=list)
    fractions: list[float] = field(default_factory=list)
    prompt_fraction: float = 1.0
    peak_kv_bytes: int = 0
    tokens_seen: int = 0
    policy_seconds: float = 0.0

    @property
    def cache_fraction(self) -> float:
        """Mean of the samples: the end of the prompt and every decoding step."""
        return sum(self.fractions) / len(self.fractions) if self.fractions else 1.0


class MemoryController:
    """Owns one sequence's cache management for one policy. Batch size 1, no padding."""

    def __init__(self, policy: MemoryPolicy, config: ControllerConfig | None = None) -> None:
        self.policy = policy
        self.config = config or ControllerConfig()
        self.stats = CacheStats()
        self._cache: Any = None
        self._positions: list[torch.Tensor | None] = []
        self._padded: list[bool] = []
        self._masks: dict[tuple, torch.Tensor] = {}

    # ----------------------------------------------------------------- attaching
    @contextmanager
    def attach(
        self, model: nn.Module, cache: Any, attention_modules: Sequence[nn.Module], reset_policy: bool = True
    ) -> Iterator[None]:
        """Hook ``attention_modules`` (each with ``layer_idx``) of ``model`` for one sequence.

        ``reset_policy=False`` keeps what the policy observed of the cache's tokens (a shared prefix).
        """
        check_protocol(self.policy, self.config.protocol)
        previous = model.config._attn_implementation
        reads = self.policy.needs_attention or getattr(self.policy, "needs_queries", False)
        model.set_attn_implementation(attention_reading.register() if reads else "sdpa")
        handles = [m.register_forward_pre_hook(self._mask_hook, with_kwargs=True) for m in attention_modules]
        for i, m in enumerate(attention_modules):
            if self.policy.needs_attention:
                setattr(m, attention_reading.OBSERVER, lambda probs, layer=i: self.policy.observe(layer, probs))
            if getattr(self.policy, "needs_queries", False):
                setattr(m, attention_reading.QUERIES, lambda queries, layer=i: self._observe_queries(layer, queries))
        self._cache = cache
        # The managed layers, as indices into the cache (a hybrid model's sliding-window layers are left
        # out by its adapter: they keep their own window). Policies see them as 0..len-1.
        self._layers = [m.layer_idx for m in attention_modules]
        self._positions = [None] * len(attention_modules)
        self._padded = [False] * len(attention_modules)
        self._rotary: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(attention_modules)
        self.stats = CacheStats()
        if reset_policy:
            self.policy.reset(len(attention_modules))
        if hasattr(self.policy, "set_layers"):  # optional for policies not built on MemoryPolicy
            self.policy.set_layers(self._layers)
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            for m in attention_modules:
                for name in (attention_reading.OBSERVER, attention_reading.QUERIES, attention_reading.PADDING):
                    if hasattr(m, name):
                        delattr(m, name)
            model.set_attn_implementation(previous)

    def _mask_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        q = hidden.shape[1]
        past = self._layer_length(module.layer_idx)
        layer = self._layers.index(module.layer_idx)
        self._rotary[layer] = kwargs.get("position_embeddings")
        padding = self._positions[layer] < 0 if self._padded[layer] else None
        setattr(module, attention_reading.PADDING, padding)
        if padding is not None:
            kwargs["attention_mask"] = self._padded_mask(padding, q, module.num_key_value_groups, hidden.dtype)
        else:
            kwargs["attention_mask"] = None if q == 1 else self._causal_mask(q, past, hidden.dtype, hidden.device)
        return args, kwargs

    def _observe_queries(self, layer: int, queries: torch.Tensor) -> None:
        rotary = self._rotary[layer]
        if rotary is None:
            raise RuntimeError("the attention module got no position_embeddings: its queries' positions are unknown")
        self.policy.observe_queries(layer, queries, *rotary)

    def _padded_mask(self, padding: torch.Tensor, q: int, groups: int, dtype: torch.dtype) -> torch.Tensor:
        """Additive (B, heads, q, past + q) mask of a layer whose KV heads hold different numbers of
        entries: the causal mask, with each head's padding entries (``padding``, (B, kv_heads, past)) hidden."""
        b, kv_heads, past = padding.shape
        mask = self._causal_mask(q, past, dtype, padding.device).expand(b, kv_heads, q, past + q).clone()
        mask[..., :past].masked_fill_(padding[:, :, None, :], torch.finfo(dtype).min)
        return mask.repeat_interleave(groups, dim=1)  # query head h reads KV head h // groups

    def _causal_mask(self, q: int, past: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """Additive (1, 1, q, past + q) mask: query i sees the cached keys and new keys <= i."""
        key = (q, past, dtype, device)
        if key not in self._masks:
            allowed = torch.ones(q, past + q, dtype=torch.bool, device=device).tril(diagonal=past)
            mask = torch.zeros(q, past + q, dtype=dtype, device=device)
            mask.masked_fill_(~allowed, torch.finfo(dtype).min)
            self._masks[key] = mask[None, None]
        return self._masks[key]

    def _layer_length(self, layer: int) -> int:
        layers = self._cache.layers
        if layer >= len(layers) or getattr(layers[layer], "keys", None) is None:
            return 0
        return layers[layer].keys.shape[2]

    # ----------------------------------------------------------------- running
    @property
    def tokens_seen(self) -> int:
        return self.stats.tokens_seen

    def prefill(self, forward: Forward[T], length: int, question_start: int | None = None) -> T:
        """Run the prompt [0, length) in chunks, calling the policy as the protocol says."""
        cfg = self.config
        if length < 1:
            raise ValueError("empty prompt")
        compress_at = {"streaming": None, "post-prefill": length, "post-prefill-context": question_start}[cfg.protocol]
        if cfg.protocol == "post-prefill-context" and not (question_start and 0 < question_start <= length):
            raise ValueError("protocol post-prefill-context needs the prompt split into context and question")
        out, pos = None, self.tokens_seen
        while pos < length:
            end = min(length, (pos // cfg.chunk_size + 1) * cfg.chunk_size)
            if compress_at is not None and pos < compress_at < end:
                end = compress_at
            out = self._forward(forward, pos, end)
            if end == compress_at or self._crossed_interval(pos, end):
                self._call_policy()
            pos = end
        if cfg.protocol == "streaming" and cfg.prompt_end_call and not self._called_at(length):
            self._call_policy()
        self.stats.prompt_fraction = self._fraction()
        self.stats.fractions.append(self.stats.prompt_fraction)
        return out

    def resume_at_call(self, tokens_seen: int) -> None:
        """Take over an attached cache that holds the tokens [0, ``tokens_seen``), none evicted, and
        make the policy call that ``prefill`` made on reaching them.

        For runs that share a prompt prefix up to their first policy call: the policy must already
        hold what it observed there. A later ``prefill`` continues after the call.
        """
        if self.tokens_seen:
            raise RuntimeError("resume_at_call needs a freshly attached controller")
        for i, layer in enumerate(self._managed_cache()):
            b, h, n, _ = layer.keys.shape
            if n != tokens_seen:
                raise ValueError(f"layer {i} holds {n} tokens, not the {tokens_seen} resumed from")
            self._positions[i] = torch.arange(n, device=layer.keys.device).expand(b, h, n)
        self.stats.tokens_seen = tokens_seen
        self.stats.peak_kv_bytes = sum(layer.keys.nbytes + layer.values.nbytes for layer in self._managed_cache())
        self._call_policy()

    def step(self, forward: Forward[T], n: int = 1) -> T:
        """Run ``n`` generated tokens (a decoding step), calling the policy on interval multiples."""
        start = self.tokens_seen
        out = self._forward(forward, start, start + n)
        if self._crossed_interval(start, start + n):
            self._call_policy()
        self.stats.fractions.append(self._fraction())
        return out

    def _crossed_interval(self, start: int, end: int) -> bool:
        return self.config.protocol == "streaming" and end // self.config.interval > start // self.config.interval

    def _called_at(self, tokens: int) -> bool:
        return bool(self.stats.calls) and self.stats.calls[-1]["tokens_seen"] == tokens

    def _forward(self, forward: Forward[T], start: int, end: int) -> T:
        self._masks.clear()
        out = forward(start, end)
        self.stats.tokens_seen = end
        kv_bytes = 0
        for i, layer in enumerate(self._managed_cache()):
            b, h, n, _ = layer.keys.shape
            new = torch.arange(start, end, device=layer.keys.device).expand(b, h, end - start)
            old = self._positions[i]
            self._positions[i] = new if old is None else torch.cat([old, new], dim=2)
            assert self._positions[i].shape[2] == n, "cache and position bookkeeping disagree"
            kv_bytes += layer.keys.nbytes + layer.values.nbytes
        self.stats.peak_kv_bytes = max(self.stats.peak_kv_bytes, kv_bytes)
        return out

    def _call_policy(self) -> None:
        began = time.perf_counter()
        retained = []
        for i, layer in enumerate(self._managed_cache()):
            idx = self.policy.select(i, layer.keys, layer.values, self._positions[i], self.tokens_seen)
            if idx is not None:
                # -1 pads a head that keeps fewer entries than the layer's others (head-adaptive budgets)
                pad = idx < 0
                idx = idx.clamp(min=0)
                layer.keys = gather_tokens(layer.keys, idx)
                layer.values = gather_tokens(layer.values, idx)
                self._positions[i] = self._positions[i].gather(2, idx).masked_fill(pad, -1)
                self._padded[i] = bool((self._positions[i] < 0).any())
            retained.append(self._entries(i).tolist())
        self.stats.policy_seconds += time.perf_counter() - began
        self.stats.calls.append({"tokens_seen": self.tokens_seen, "retained": retained})

    def _managed_cache(self) -> list[Any]:
        """The cache layers the policy manages, in the order it sees them."""
        return [self._cache.layers[layer] for layer in self._layers]

    def _entries(self, layer: int) -> torch.Tensor:
        """Entries (not padding) each KV head of ``layer`` holds, averaged over the batch: (kv_heads,)."""
        positions = self._positions[layer]
        if self._padded[layer]:
            return (positions >= 0).sum(dim=2).float().mean(dim=0).round().long()
        b, h, n = positions.shape
        return torch.full((h,), n, dtype=torch.long)

    def _fraction(self) -> float:
        kept = sum(float(self._entries(i).float().mean()) for i in range(len(self._layers)))
        return kept / (len(self._layers) * self.tokens_seen)

    def positions(self, layer: int) -> torch.Tensor:
        """Absolute positions (B, kv_heads, N) of the entries now in ``layer``'s cache."""
        return self._positions[layer]

    def retention(self, start: int, end: int, bins: int = 1) -> list[float]:
        """Share of the positions ``start..end-1`` now cached, in ``bins`` equal spans, mean over layers and heads.

        Where in the prompt a policy keeps its memory (the first tokens, the question, ...); the
        text adapter records it per example, as the video and RL adapters record frames and timesteps.
        """
        if end <= start or not self._layers:
            return [0.0] * bins
        edges = torch.linspace(start, end, bins + 1)
        totals = torch.zeros(bins)
        for layer in range(len(self._layers)):
            pos = self._positions[layer].cpu()
            inside = pos[(pos >= start) & (pos < end)].float()
            counts = torch.bucketize(inside, edges[1:-1], right=True).bincount(minlength=bins)[:bins]
            totals += counts.float() / (pos.shape[0] * pos.shape[1])
        widths = (edges[1:].ceil() - edges[:-1].ceil()).clamp_min(1)  # integer positions per span
        return [round(float(x), 4) for x in totals / (len(self._layers) * widths)]

    def retained_per_layer(self) -> list[float]:
        """Entries per KV head now in each layer's cache (the heads' mean where they differ)."""
        out: list[float] = []
        for i in range(len(self._layers)):
            entries = self._entries(i)
            same = bool((entries == entries[0]).all())
            out.append(int(entries[0]) if same else round(float(entries.float().mean()), 2))
        return out
