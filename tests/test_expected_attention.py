"""Expected Attention: the selection equals the paper's formula computed plainly from the model's own
pre-RoPE queries and rotary embedding (not the controller's reconstruction of them)."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import DynamicCache

from namm_bench.budget import Budget
from namm_bench.policies import make_policy
from namm_bench.policies.expected_attention import rotary_frequencies

T, HEADS, KV_HEADS, RATIO, SINK, FUTURE = 200, 8, 2, 0.4, 4, 512
KEEP = int(T * RATIO)


@pytest.fixture(scope="module")
def reference_inputs():
    from conftest import tiny_llama

    model = tiny_llama(num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, num_hidden_layers=3)
    with torch.no_grad():  # spread-out queries, so that the covariance term changes the choice
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(6.0)
    torch.manual_seed(5)
    ids = torch.randint(0, 320, (1, T))
    queries = {}
    hooks = [
        layer.self_attn.q_proj.register_forward_hook(lambda m, args, out, i=i: queries.__setitem__(i, out))
        for i, layer in enumerate(model.model.layers)
    ]
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        model(ids, past_key_values=cache, use_cache=True)
    for h in hooks:
        h.remove()
    d = model.config.hidden_size // HEADS
    plain = [queries[i][0].view(T, HEADS, d).transpose(0, 1).double() for i in range(3)]  # (heads, T, d) pre-RoPE
    dummy = torch.zeros(1, FUTURE, d)
    cos, sin = model.model.rotary_emb(dummy, torch.arange(T, T + FUTURE)[None])
    return model, ids, plain, cache, cos[0].double(), sin[0].double()


def reference_scores(plain, keys, values, cos, sin) -> torch.Tensor:
    """Devoto et al. 2025, written out: (kv_heads, T) scores, sinks first and largest."""
    d = keys.shape[-1]
    half = d // 2
    swap = torch.zeros(d, d, dtype=torch.float64)
    for i in range(half):
        swap[i, half + i], swap[half + i, i] = -1.0, 1.0
    rotation = sum(torch.diag(cos[t]) + torch.diag(sin[t]) @ swap for t in range(FUTURE)) / FUTURE
    scores = torch.zeros(KV_HEADS, T, dtype=torch.float64)
    for kv in range(KV_HEADS):
        for h in range(kv * (HEADS // KV_HEADS), (kv + 1) * (HEADS // KV_HEADS)):
            q = plain[h, SINK:]
            mu = q.mean(dim=0)
            sigma = sum(torch.outer(x - mu, x - mu) for x in q) / q.shape[0]
            mu, sigma = rotation @ mu, rotation @ sigma @ rotation.T
            logits = torch.tensor(
                [
                    float(mu @ keys[kv, j]) / math.sqrt(d) + float(keys[kv, j] @ sigma @ keys[kv, j]) / (2 * d)
                    for j in range(SINK, T)
                ]
            )
            scores[kv, SINK:] += torch.softmax(logits.double(), dim=0) / (HEADS // KV_HEADS)
        scores[kv, SINK:] *= values[kv, SINK:].norm(dim=-1)
        scores[kv, :SINK] = scores[kv].max() + 1
    return scores


def test_the_selection_is_the_papers_formula(reference_inputs):
    from test_baselines import run_policy

    model, ids, plain, cache, cos, sin = reference_inputs
    kept = run_policy(model, ids, make_policy("expected_attention", Budget(ratio=RATIO)))
    for layer, idx in enumerate(kept):
        keys, values = cache.layers[layer].keys[0].double(), cache.layers[layer].values[0].double()
        scores = reference_scores(plain[layer], keys, values, cos, sin)
        want = [sorted(row.topk(KEEP).indices.tolist()) for row in scores]
        assert idx.tolist() == want, f"layer {layer}"
        assert all(set(range(SINK)) <= set(row) for row in want)


def test_rotary_frequencies_are_recovered_from_scaled_tables():
    theta = torch.tensor([1.0, 0.3, 1e-2, 1e-4]).double()
    angles = torch.arange(0, 32).double()[:, None] * theta
    got, scale = rotary_frequencies(1.3 * angles.cos().float(), 1.3 * angles.sin().float())
    torch.testing.assert_close(got, theta, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(scale, torch.full((4,), 1.3, dtype=torch.float64), rtol=1e-6, atol=0)
