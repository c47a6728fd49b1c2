"""H2O, L2 and the NAMM scorer against plain reference computations."""

import pytest
import torch

from namm_bench.budget import Budget, parse_budget
from namm_bench.namm.scorer import BamWeights, NammConfig, bam_scores, binary_selection
from namm_bench.policies import H2O, L2Norm, make_policy


def reference_h2o(acc: torch.Tensor, keep: int, heavy_fraction: float) -> list[list[int]]:
    """Per head: the `recent` newest tokens plus the highest accumulated attention among the rest."""
    n = acc.shape[-1]
    recent = keep - int(keep * heavy_fraction)
    out = []
    for head in acc[0]:
        window = list(range(n - recent, n))
        rest = sorted(range(n - recent), key=lambda j: -float(head[j]))[: keep - recent]
        out.append(sorted(window + rest))
    return out


def test_h2o_selects_reference_heavy_hitters_and_window():
    torch.manual_seed(0)
    policy = H2O(budget=Budget(tokens=10))
    policy.reset(1)
    acc = torch.zeros(1, 2, 40)
    # two observations: 24 queries over 24 keys, then 16 more queries over all 40
    for q, n in [(24, 24), (16, 40)]:
        attn = torch.rand(1, 2, q, n).softmax(-1)
        policy.observe(0, attn)
        acc[..., :n] += attn.sum(2)
    keys = torch.randn(1, 2, 40, 8)
    idx = policy.select(0, keys, keys, torch.arange(40).expand(1, 2, 40), tokens_seen=40)
    assert idx.tolist()[0] == reference_h2o(acc, 10, 0.5)


def test_h2o_odd_budget_gives_the_extra_token_to_the_recent_window():
    """Pins the heavy/recent split: budget 7 at heavy_fraction 0.5 is int(3.5) = 3 heavy hitters and
    7 - 3 = 4 recent tokens (H2O: half heavy, half recent; the odd token goes to the window).

    12 tokens, one query row. Recent window of 4: tokens 8..11, whatever their score. Heavy hitters:
    the 3 best of tokens 0..7, i.e. 0 (.20), 3 (.18), 5 (.16); token 7 (.14) is 4th and is dropped.
    Split the other way (4 heavy, 3 recent) would keep token 7 and drop token 8 (.02) instead.
    """
    row = torch.tensor([0.20, 0.03, 0.03, 0.18, 0.03, 0.16, 0.03, 0.14, 0.02, 0.02, 0.02, 0.14])
    policy = H2O(budget=Budget(tokens=7), heavy_fraction=0.5)
    policy.reset(1)
    policy.observe(0, row.view(1, 1, 1, 12))
    keys = torch.randn(1, 1, 12, 4)
    idx = policy.select(0, keys, keys, torch.arange(12).view(1, 1, 12), tokens_seen=12)
    assert idx.tolist() == [[[0, 3, 5, 8, 9, 10, 11]]]


def test_h2o_ratio_budget_rounds_down():
    assert Budget(ratio=0.25).keep(tokens_seen=1023, cache_length=2000) == 255
    assert Budget(ratio=0.3).keep(tokens_seen=10, cache_length=10) == 3
    assert Budget(tokens=512).keep(tokens_seen=4000, cache_length=300) == 300
    assert Budget(ratio=0.01).keep(tokens_seen=10, cache_length=10) == 1


def test_l2_keeps_lowest_norm_keys_per_head():
    torch.manual_seed(1)
    keys = torch.randn(1, 3, 50, 16)
    policy = L2Norm(budget=Budget(tokens=7), skip_layers=())
    policy.reset(4)
    idx = policy.select(2, keys, keys, None, tokens_seen=50)
    for h in range(3):
        norms = [float(keys[0, h, j].norm()) for j in range(50)]
        expected = sorted(sorted(range(50), key=lambda j: norms[j])[:7])
        assert idx[0, h].tolist() == expected


def test_l2_skips_layers_and_spends_their_share_on_the_others():
    keys = torch.randn(1, 2, 100, 8)
    policy = L2Norm(budget=Budget(ratio=0.25), skip_layers=(0, 1))
    policy.reset(10)
    assert policy.select(1, keys, keys, None, tokens_seen=100) is None
    idx = policy.select(5, keys, keys, None, tokens_seen=100)
    # whole cache: 2 layers x 100 + 8 layers x k = 10 layers x 25  ->  k = 6
    assert idx.shape[-1] == 6
    # the share is computed from tokens seen, not from what this layer still holds
    short = keys[:, :, :30]
    assert policy.select(5, short, short, None, tokens_seen=100).shape[-1] == 6
    assert L2Norm(budget=Budget(ratio=0.25), min_length=200).select(5, keys, keys, None, 100) is None


def test_l2_skip_layers_name_model_layers_when_only_some_are_managed():
    keys = torch.randn(1, 2, 100, 8)
    policy = L2Norm(budget=Budget(ratio=0.25), skip_layers=(0, 1))
    policy.reset(3)
    policy.set_layers([1, 5, 11])  # a hybrid model's global layers
    assert policy.select(0, keys, keys, None, tokens_seen=100) is None  # model layer 1 is skipped
    # whole managed cache: 1 layer x 100 + 2 layers x k = 3 layers x 25  ->  k = 0, at least 1
    assert policy.select(1, keys, keys, None, tokens_seen=100).shape[-1] == 1
    policy.reset(3)
    policy.set_layers([5, 11, 17])  # none skipped: each keeps the budget itself
    assert [policy.select(i, keys, keys, None, tokens_seen=100).shape[-1] for i in range(3)] == [25, 25, 25]


def test_bam_mask_lets_a_token_attend_only_to_newer_tokens():
    torch.manual_seed(2)
    config = NammConfig()
    weights = BamWeights.unflatten(torch.randn(config.num_params) * 0.3, config)
    x = torch.randn(1, 1, 12, config.feature_dim)
    base = bam_scores(x, weights)
    # changing an older token (index 3) must leave the scores of tokens 4.. unchanged, and change its own
    older = x.clone()
    older[..., 3, :] += 1.0
    changed = bam_scores(older, weights)
    torch.testing.assert_close(changed[..., 4:], base[..., 4:])
    assert not torch.allclose(changed[..., :4], base[..., :4])
    # a newer token (index 8) influences every token up to it
    newer = x.clone()
    newer[..., 8, :] += 1.0
    changed = bam_scores(newer, weights)
    assert (changed[..., :9] - base[..., :9]).abs().min() > 0
    torch.testing.assert_close(changed[..., 9:], base[..., 9:])


def test_bam_equals_explicit_backward_masked_attention():
    torch.manual_seed(3)
    config = NammConfig()
    w = BamWeights.unflatten(torch.randn(config.num_params) * 0.2, config)
    x = torch.randn(1, 2, 9, config.feature_dim)
    q, k, v = (x @ w.w_qkv + w.b_qkv).split(32, dim=-1)
    logits = q @ k.transpose(-1, -2) / 32**0.5
    logits = logits.masked_fill(torch.ones(9, 9, dtype=torch.bool).tril(-1), float("-inf"))
    out = logits.softmax(-1) @ v @ w.w_o + w.b_o
    hidden = x * (1 + out[..., 25:]) + out[..., :25]
    torch.testing.assert_close(bam_scores(x, w), (hidden @ w.w_head + w.b_head).squeeze(-1))


def test_binary_selection_common_count_per_layer():
    scores = torch.tensor([[[1.0, -1.0, -2.0, 0.0, -0.5], [-3.0, 2.0, 1.0, -1.0, -4.0]]])
    idx = binary_selection(scores)
    # head 0 has 3 negatives (the newest is forced to +inf: 2), head 1 has 3 (newest forced: 2) -> evict 2
    assert idx.tolist() == [[[0, 3, 4], [1, 2, 4]]]
    assert binary_selection(torch.zeros(1, 2, 6)) is None


def test_binary_selection_evicts_the_smallest_negative_count_over_heads():
    """Pins reference section 4: c = min over batch rows and heads of #(score < 0), and every head keeps its
    top-(N - c), so no head drops a token scoring >= 0 (a head with more negatives keeps some of them).

    Head 0 has one negative (index 1; the newest's -5 is forced to +inf), head 1 has three (indices 0, 2, 3).
    c = 1: each keeps 5 of 6. Head 0 drops index 1 (and keeps the exact 0.0); head 1 drops only its lowest,
    index 2 (-3.0), keeping -0.5 and -0.2. Using the maximum (c = 3) would make head 0 drop 0.0 and 1.0.
    """
    scores = torch.tensor([[[2.0, -1.0, 0.0, 3.0, 1.0, -5.0], [-0.5, 1.0, -3.0, -0.2, 2.0, 0.5]]])
    assert binary_selection(scores).tolist() == [[[0, 2, 3, 4, 5], [0, 1, 3, 4, 5]]]


def test_zero_namm_parameters_count():
    assert NammConfig().num_params == 4172


@pytest.mark.parametrize("text", ["0", "1.5", "-0.2", "abc", "-3"])
def test_bad_budgets_are_refused(text):
    with pytest.raises(ValueError, match="budget"):
        parse_budget(text)


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="unknown policy 'quest'"):
        make_policy("quest")
