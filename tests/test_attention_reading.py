"""The attention implementation policies read: eager attention's output and probabilities, computed once."""

from __future__ import annotations

import pytest
import torch

from namm_bench import attention_reading
from namm_bench.attention_reading import grouped_attention


def eager_reference(query, key, value, scaling, softcap=None):
    """Transformers' eager attention written out: repeat KV heads, full additive mask, softmax, then the
    GQA-group mean of the probabilities (query head h reads KV head h // groups)."""
    b, heads, q, d = query.shape
    kv_heads, n = key.shape[1], key.shape[2]
    groups = heads // kv_heads
    k = key.repeat_interleave(groups, dim=1)
    v = value.repeat_interleave(groups, dim=1)
    logits = (query.double() @ k.double().transpose(2, 3)) * scaling
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    allowed = torch.ones(q, n, dtype=torch.bool).tril(diagonal=n - q)
    probs = logits.masked_fill(~allowed, float("-inf")).softmax(-1)
    out = (probs @ v.double()).transpose(1, 2)
    return out, probs.view(b, kv_heads, groups, q, n).mean(2)


@pytest.mark.parametrize(
    ("heads", "kv_heads", "q", "n"),
    [(8, 2, 7, 19), (4, 4, 5, 5), (6, 3, 1, 11), (9, 3, 16, 16)],
    ids=["gqa-with-past", "mha-no-past", "decode-step", "gqa-prefill"],
)
@pytest.mark.parametrize("softcap", [None, 5.0])
def test_output_and_probabilities_equal_eager_attention(heads, kv_heads, q, n, softcap):
    torch.manual_seed(heads + q + n)
    query, key, value = torch.randn(2, heads, q, 8), torch.randn(2, kv_heads, n, 8), torch.randn(2, kv_heads, n, 8)
    out, probs = grouped_attention(query, key, value, 0.35, softcap)
    want_out, want_probs = eager_reference(query, key, value, 0.35, softcap)
    assert out.shape == (2, q, heads, 8) and probs.shape == (2, kv_heads, q, n) and probs.dtype == torch.float32
    torch.testing.assert_close(out.double(), want_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(probs.double(), want_probs, atol=1e-6, rtol=1e-5)


def test_blocks_of_query_rows_give_the_same_result(monkeypatch):
    torch.manual_seed(1)
    query, key, value = torch.randn(1, 4, 13, 8), torch.randn(1, 2, 29, 8), torch.randn(1, 2, 29, 8)
    whole = grouped_attention(query, key, value, 0.3)
    monkeypatch.setattr(attention_reading, "BLOCK_ELEMENTS", 4 * 29 * 3)  # 3 query rows a block
    blocked = grouped_attention(query, key, value, 0.3)
    for a, b in zip(whole, blocked, strict=True):
        torch.testing.assert_close(a, b)


def test_half_precision_weights_give_float32_probabilities():
    torch.manual_seed(2)
    query, key, value = (torch.randn(1, 4, 6, 16, dtype=torch.bfloat16) for _ in range(3))
    key, value = key[:, :2].repeat(1, 1, 2, 1), value[:, :2].repeat(1, 1, 2, 1)  # 2 KV heads, 12 entries
    out, probs = grouped_attention(query, key, value, 0.25)
    assert out.dtype == torch.bfloat16 and probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, 2, 6))
    _, want = eager_reference(query, key, value, 0.25)
    torch.testing.assert_close(probs.double(), want, atol=2e-2, rtol=0)  # logits from bfloat16 inputs
