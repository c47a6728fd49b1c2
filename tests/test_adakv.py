"""AdaKV: the layer's budget shared across its heads by the wrapped scorer's scores, and a cache whose
heads hold different numbers of entries computing what per-head masking computes."""

from __future__ import annotations

import pytest
import torch
from test_baselines import KEEP, KV_HEADS, RATIO, T, reference_scores_snapkv, run_policy, setup  # noqa: F401

from namm_bench.budget import Budget
from namm_bench.controller import ControllerConfig
from namm_bench.policies import make_policy, policy_class
from namm_bench.policies.base import MemoryPolicy
from namm_bench.testing import run_controlled


def reference_adaptive(scores: torch.Tensor, keep: int, alpha: float = 0.2) -> list[list[int]]:
    """Ada-KV's allocation written out: each head secures its int(alpha * keep) best entries; the layer's
    remaining places go to the best of the rest across heads (kvpress prunes the lowest)."""
    heads, n = scores.shape
    secured = {(h, j) for h in range(heads) for j in sorted(range(n), key=lambda j: -scores[h, j])[: int(alpha * keep)]}
    rest = sorted((float(scores[h, j]), h, j) for h in range(heads) for j in range(n) if (h, j) not in secured)
    chosen = secured | {(h, j) for _, h, j in rest[len(rest) - (keep * heads - len(secured)) :]}
    return [sorted(j for h2, j in chosen if h2 == h) for h in range(heads)]


def per_head(idx: torch.Tensor) -> list[list[int]]:
    return [[j for j in row if j >= 0] for row in idx.tolist()]


@pytest.mark.parametrize("name", ["adakv", "adakv:snapkv", "adakv:knorm"])
def test_the_allocation_is_the_papers_over_the_scorers_scores(setup, name):  # noqa: F811 (the fixture)
    model, ids, attentions, keys = setup
    kept = run_policy(model, ids, make_policy(name, Budget(ratio=RATIO)))
    uneven = False
    for layer, idx in enumerate(kept):
        scores = reference_scores_snapkv(attentions[layer]) if name != "adakv:knorm" else -keys[layer].norm(dim=-1)
        want = reference_adaptive(scores, KEEP)
        assert per_head(idx) == want, f"layer {layer}"
        assert sum(map(len, want)) == KEEP * KV_HEADS
        uneven |= len({len(h) for h in want}) > 1
    assert uneven  # the heads' budgets did differ


def test_adakv_runs_under_its_scorers_protocols_only():
    assert policy_class("adakv:snapkv").protocols == ("post-prefill", "post-prefill-context")
    assert "streaming" in policy_class("adakv:knorm").protocols
    assert policy_class("adakv") is policy_class("adakv:snapkv")
    with pytest.raises(ValueError, match="scores every entry"):
        policy_class("adakv:namm")
    with pytest.raises(ValueError, match="wraps no other policy"):
        policy_class("h2o:snapkv")


class EvictPerHead(MemoryPolicy):
    """At the first call, KV head h drops every (h + 2)-th entry: heads keep different counts, -1 padded."""

    name = "evict-per-head"

    def __init__(self, reads_attention: bool):
        self.needs_attention = reads_attention
        self.dropped: dict[int, list[int]] = {}

    def select(self, layer, keys, values, positions, tokens_seen):
        if self.dropped.get(layer) is not None:
            return None
        b, h, n, _ = keys.shape
        rows = [[j for j in range(n) if j % (head + 2) != 1] for head in range(h)]
        self.dropped[layer] = [[j for j in range(n) if j % (head + 2) == 1] for head in range(h)]
        width = max(map(len, rows))
        idx = torch.tensor([row + [-1] * (width - len(row)) for row in rows], device=keys.device)
        return idx.expand(b, h, width)


@pytest.mark.parametrize("reads_attention", [False, True], ids=["sdpa", "reading"])
def test_a_cache_with_uneven_heads_computes_per_head_masked_attention(tiny_model_dir, reads_attention):
    from namm_bench.adapters import get_adapter

    adapter = get_adapter("llama", str(tiny_model_dir))
    config = adapter.model.config
    length, prompt = 60, 40
    ids = torch.randint(0, config.vocab_size, (1, length), generator=torch.Generator().manual_seed(1))
    policy = EvictPerHead(reads_attention)
    logits, controller = run_controlled(
        adapter, ids, policy, prompt, ControllerConfig(chunk_size=16, protocol="post-prefill")
    )
    groups = config.num_attention_heads // config.num_key_value_heads
    allowed = torch.ones(config.num_attention_heads, length, length, dtype=torch.bool).tril()
    for q_head in range(config.num_attention_heads):
        allowed[q_head, prompt:, policy.dropped[0][q_head // groups]] = False  # every layer drops the same
    mask = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)[None]
    with torch.inference_mode():
        reference = adapter.model(ids, attention_mask=mask, position_ids=torch.arange(length)[None]).logits[0]
        stock = adapter.model(ids).logits[0]
    torch.testing.assert_close(logits, reference, atol=2e-5, rtol=1e-4)
    assert not torch.allclose(reference[prompt:], stock[prompt:], atol=1e-3)  # the eviction mattered
    kept = [prompt - len(d) for d in policy.dropped[0]]
    want = sum(kept) / len(kept) + (length - prompt)
    assert controller.retained_per_layer() == [round(want, 2)] * len(policy.dropped)
    assert controller.stats.calls[0]["retained"][0] == kept


def test_padding_is_never_kept_even_where_a_head_secures_more_than_it_has():
    from namm_bench.policies.adakv import adaptive_selection

    scores = torch.tensor([[[0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [0.3, float("-inf"), float("-inf"), 0.2, 0.1, 0.05]]])
    idx = adaptive_selection(scores, keep=5, alpha_safeguard=1.0)  # each head secures 5 of its entries
    kept = per_head(idx[0])
    assert kept == [[0, 1, 2, 3, 4, 5], [0, 3, 4, 5]]  # 10 places: head 1 holds its 4 entries, not its padding
