"""What the overhead and memory benchmarks share: model shapes, the policies compared, one timed run.

A run prefills a prompt in 128-token chunks and decodes greedily under one policy, streaming
protocol, through the memory controller, on a random-weight model (speed and memory depend on a
model's shape, not on its weights).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from namm_bench.budget import Budget
from namm_bench.controller import ControllerConfig, MemoryController
from namm_bench.policies import FullCache, make_policy

SMOLLM2 = dict(
    model_type="llama",
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    max_position_embeddings=8192,
    rope_theta=100000.0,
    tie_word_embeddings=True,
)
LLAMA3_8B = dict(
    model_type="llama",
    vocab_size=128256,
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    max_position_embeddings=32768,
    rope_theta=500000.0,
)
SHAPES = {"smollm2": SMOLLM2, "llama3-8b": LLAMA3_8B}
"""Shapes that need no files (a GPU machine builds them from numbers); memory.py also reads the embedded models'."""


class ReadsAttention(FullCache):
    """Keeps everything but reads attention: what the reading implementation alone costs."""

    needs_attention = True


def build(shape: dict, device: str, dtype: torch.dtype) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = dict(shape)
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=dtype).to(device).eval()


def policies(budget: float, namm=None) -> dict:
    """Name -> policy factory: full cache, the reading implementation alone, L2, H2O and the NAMM."""
    ratio = Budget(ratio=budget)
    named = {} if namm is None else {"checkpoint": namm}
    return {
        "full": lambda: make_policy("full"),
        "full, reads attention": ReadsAttention,
        f"l2 {budget:g}": lambda: make_policy("l2", ratio),
        f"h2o {budget:g}": lambda: make_policy("h2o", ratio),
        "namm (zero params)" if namm is None else "namm": lambda: make_policy("namm", **named),
    }


@dataclass
class Measured:
    seconds: float
    peak_kv_bytes: int  # the managed layers' keys and values, at their largest
    cache_fraction: float
    select_seconds: float
    cuda_peak_bytes: int | None  # torch.cuda.max_memory_allocated over the run


def run_once(model, ids: torch.Tensor, policy, decode_tokens: int, interval: int) -> Measured:
    """Prefill ``ids`` and decode ``decode_tokens`` greedily under ``policy`` (all layers managed)."""
    cache = DynamicCache(config=model.config)
    controller = MemoryController(policy, ControllerConfig(interval=interval))
    device = ids.device
    cuda = device.type == "cuda"

    def forward(tokens, start, end):
        out = model(
            input_ids=tokens,
            position_ids=torch.arange(start, end, device=device)[None],
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1]

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    layers = [layer.self_attn for layer in model.model.layers if not getattr(layer.self_attn, "is_sliding", False)]
    began = time.perf_counter()
    with torch.inference_mode(), controller.attach(model, cache, layers):
        logits = controller.prefill(lambda s, e: forward(ids[:, s:e], s, e), ids.shape[1])
        for _ in range(decode_tokens):
            token = logits.argmax(-1, keepdim=True)
            logits = controller.step(lambda s, e, t=token: forward(t, s, e))
    if cuda:
        torch.cuda.synchronize()
    s = controller.stats
    peak = torch.cuda.max_memory_allocated() if cuda else None
    return Measured(time.perf_counter() - began, s.peak_kv_bytes, s.cache_fraction, s.policy_seconds, peak)
