"""Conformance kit: what every adapter of a language model (text, or video whose visual tokens enter the
language model's cache) must hold, checked on a (tiny) model it has loaded.

Outside packages call ``check_text_adapter(adapter)`` from their own tests; it runs every
property and raises one ``ConformanceError`` naming each property that failed. The adapter must
provide, beside the ``Adapter`` protocol (``namm_bench.interfaces``): ``model`` (a Hugging Face
causal LM), ``new_cache()`` and ``forward_tokens(cache, ids, start, end, last_only)``, the
forward its ``run`` uses.

Properties (``PROPERTIES``):

- keep-all: under a policy that keeps everything, chunked prefill and decoding through the
  controller give the stock model's logits;
- pruned = masked: after evicting fixed tokens, logits equal one stock forward whose mask hides
  those keys from the later queries, at the true positions (new tokens continue at their
  absolute positions, not at the cache length);
- kept positions: the controller's positions of the kept keys are the original ones;
- accounting: cache fraction and peak KV bytes as documented (full cache: fraction 1 and
  ``2 x layers x kv_heads x tokens x head_dim x bytes``; a budget of k: k / prompt tokens after
  the prompt and a smaller peak);
- retention: every layer is managed (but sliding-window ones, which keep their own window) and
  reported, one count per KV head;
- bad input: an example that cannot run (an answer longer than the context; a video example
  without a video) is one ``ValueError`` naming it, not a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .budget import Budget
from .controller import ControllerConfig, MemoryController
from .interfaces import RunOptions, TextExample, VideoExample
from .policies.base import MemoryPolicy
from .policies.full import FullCache
from .policies.h2o import H2O

PROPERTIES = {
    "keep-all": "a keep-all policy gives the stock model's logits",
    "pruned = masked": "a pruned run equals a masked full forward, new tokens at their true positions",
    "kept positions": "kept keys keep their positions",
    "accounting": "cache % and peak KV bytes are counted as documented",
    "retention": "retention is reported for every layer and KV head",
    "bad input": "bad input is one clear error",
}


class ConformanceError(AssertionError):
    """An adapter breaks one or more properties of the kit (each named in the message)."""


@dataclass
class _EvictAtFirstCall(MemoryPolicy):
    """Evicts the tokens at ``evict`` (absolute positions) from every layer and head at the first call."""

    evict: tuple[int, ...] = ()
    name = "evict-at-first-call"

    def select(self, layer, keys, values, positions, tokens_seen):
        keep = [j for j in range(keys.shape[2]) if int(positions[0, 0, j]) not in self.evict]
        if len(keep) == keys.shape[2]:
            return None
        return torch.tensor(keep, device=keys.device).expand(keys.shape[0], keys.shape[1], len(keep))


def run_controlled(adapter: Any, ids: torch.Tensor, policy: MemoryPolicy, prompt_len: int, config: ControllerConfig):
    """Prefill ``ids[:, :prompt_len]`` through the adapter's forward, then teacher-force the rest one token
    at a time; every position's logits (float32, CPU) and the controller."""
    cache = adapter.new_cache()
    controller = MemoryController(policy, config)
    outs: list[torch.Tensor] = []

    def forward(start: int, end: int) -> torch.Tensor:
        logits = adapter.forward_tokens(cache, ids[:, start:end], start, end, last_only=False)
        outs.append(logits[0].float().cpu())
        return logits[:, -1]

    with torch.inference_mode(), controller.attach(adapter.model, cache, adapter.attention_modules()):
        controller.prefill(forward, prompt_len)
        for _ in range(prompt_len, ids.shape[1]):
            controller.step(forward)
    return torch.cat(outs), controller


def _text_config(model: Any) -> Any:
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def managed_layers(text_config: Any) -> list[int]:
    """The layers memory policies manage: all but sliding-window ones (``layer_types``, as Gemma 3's)."""
    types = getattr(text_config, "layer_types", None) or ["full_attention"] * text_config.num_hidden_layers
    return [i for i, kind in enumerate(types) if kind != "sliding_attention"]


def _additive(allowed: torch.Tensor) -> torch.Tensor:
    return torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)[None, None]


def check_text_adapter(
    adapter: Any, length: int = 96, prompt_len: int = 64, atol: float = 2e-5, seed: int = 0
) -> list[str]:
    """Check every property on ``adapter``; return their names, or raise ``ConformanceError`` naming each failure.

    ``length`` tokens (``prompt_len`` of them prompt) of random ids run with 16-token chunks and a
    policy call every 32 tokens; ``atol`` bounds logit differences (float32 models).
    """
    config = ControllerConfig(chunk_size=16, interval=32)
    text = _text_config(adapter.model)
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, text.vocab_size, (1, length), generator=generator).to(adapter.device)
    with torch.inference_mode():
        stock = adapter.model(ids).logits[0].float().cpu()
    failures: list[str] = []

    def check(name: str, test: Callable[[], None]) -> None:
        try:
            test()
        except Exception as err:  # every failure is reported with its property, whatever raised it
            failures.append(f"{name} ({PROPERTIES[name]}): {type(err).__name__}: {err}")

    def keep_all() -> None:
        logits, _ = run_controlled(adapter, ids, FullCache(), prompt_len, config)
        torch.testing.assert_close(logits, stock, atol=atol, rtol=1e-4)

    evict = tuple(range(3, config.interval - 2, 3))

    def pruned_equals_masked() -> None:
        logits, _ = run_controlled(adapter, ids, _EvictAtFirstCall(evict=evict), prompt_len, config)
        causal = torch.ones(length, length, dtype=torch.bool).tril()
        allowed = causal.clone()
        allowed[config.interval :, list(evict)] = False
        mask: Any = _additive(allowed).to(adapter.device, adapter.model.dtype)
        if len(managed) < text.num_hidden_layers:  # sliding-window layers see their window, nothing evicted
            window = causal & ~causal.tril(-text.sliding_window)
            sliding = _additive(window).to(adapter.device, adapter.model.dtype)
            mask = {"full_attention": mask, "sliding_attention": sliding}
        with torch.inference_mode():
            reference = adapter.model(
                ids, attention_mask=mask, position_ids=torch.arange(length, device=adapter.device)[None]
            ).logits[0]
        torch.testing.assert_close(logits, reference.float().cpu(), atol=atol, rtol=1e-4)

    def kept_positions() -> None:
        _, controller = run_controlled(adapter, ids, _EvictAtFirstCall(evict=evict), prompt_len, config)
        for layer in range(len(controller.retained_per_layer())):
            kept = controller.positions(layer)[0].tolist()
            want = [p for p in range(length) if p not in evict]
            if any(head != want for head in kept):
                raise AssertionError(f"layer {layer} keeps positions {kept[0][:12]}..., expected {want[:12]}...")

    managed = managed_layers(text)
    kv_heads = text.num_key_value_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    budget = 8

    def accounting() -> None:
        _, full = run_controlled(adapter, ids, FullCache(), prompt_len, config)
        element = adapter.model.dtype.itemsize
        expected = 2 * len(managed) * kv_heads * length * head_dim * element
        if full.stats.cache_fraction != 1.0 or full.stats.peak_kv_bytes != expected:
            raise AssertionError(
                f"full cache: fraction {full.stats.cache_fraction}, peak {full.stats.peak_kv_bytes} bytes; "
                f"expected 1.0 and {expected}"
            )
        _, h2o = run_controlled(adapter, ids, H2O(budget=Budget(tokens=budget)), prompt_len, config)
        if abs(h2o.stats.prompt_fraction - budget / prompt_len) > 1e-9:
            raise AssertionError(f"budget {budget}: fraction {h2o.stats.prompt_fraction} after {prompt_len} tokens")
        if not h2o.stats.peak_kv_bytes < expected / 2:
            raise AssertionError(f"budget {budget}: peak {h2o.stats.peak_kv_bytes} bytes, full cache {expected}")

    def retention() -> None:
        modules = adapter.attention_modules()
        if [m.layer_idx for m in modules] != managed:
            raise AssertionError(f"attention modules of layers {[m.layer_idx for m in modules]}")
        _, h2o = run_controlled(adapter, ids, H2O(budget=Budget(tokens=budget)), prompt_len, config)
        retained = h2o.stats.calls[-1]["retained"]
        if retained != [[budget] * kv_heads] * len(managed):
            raise AssertionError(f"retained per layer and head {retained}")
        if h2o.retained_per_layer() != [budget + length % config.interval] * len(managed):
            raise AssertionError(f"entries now per layer {h2o.retained_per_layer()}")

    def bad_input() -> None:
        if getattr(adapter, "modality", "text") == "video":  # a video example with no video
            bad: Any = VideoExample("conformance", "no-video", "?", ("a", "b"), 0)
        else:  # an answer longer than the model's context
            bad = TextExample("conformance", "too-long", "x", "?", "", max_new_tokens=10**7)
        try:
            adapter.run(bad, FullCache(), config, RunOptions())
        except ValueError as err:
            if bad.example_id not in str(err):
                raise AssertionError(f"the error does not name the example: {err}") from err
        else:
            raise AssertionError(f"{bad} ran")

    check("keep-all", keep_all)
    check("pruned = masked", pruned_equals_masked)
    check("kept positions", kept_positions)
    check("accounting", accounting)
    check("retention", retention)
    check("bad input", bad_input)
    if failures:
        raise ConformanceError(f"{type(adapter).__name__} fails the conformance kit:\n- " + "\n- ".join(failures))
    return list(PROPERTIES)
