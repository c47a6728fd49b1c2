"""The memory controller on a tiny random Llama: masks, positions, protocols and statistics."""

import pytest
import torch
from transformers import DynamicCache

from namm_bench.budget import Budget
from namm_bench.controller import ControllerConfig, MemoryController
from namm_bench.policies import make_policy
from namm_bench.testing import EvictAtFirstCall

SMALL = ControllerConfig(chunk_size=32, interval=64)


def run_controlled(model, ids, policy, prompt_len, config=SMALL, device="cpu"):
    """Prefill ids[:prompt_len], then teacher-force the rest one token at a time on ``device``; logits on the CPU."""
    model, ids = model.to(device), ids.to(device)
    cache = DynamicCache(config=model.config)
    controller = MemoryController(policy, config)
    outs = []

    def forward(start, end):
        out = model(
            input_ids=ids[:, start:end],
            position_ids=torch.arange(start, end, device=device)[None],
            past_key_values=cache,
            use_cache=True,
        )
        outs.append(out.logits[0].cpu())
        return out.logits[:, -1]

    with torch.no_grad(), controller.attach(model, cache, [layer.self_attn for layer in model.model.layers]):
        controller.prefill(forward, prompt_len)
        for _ in range(prompt_len, ids.shape[1]):
            controller.step(forward)
    return torch.cat(outs), controller


@pytest.fixture
def ids():
    torch.manual_seed(5)
    return torch.randint(0, 320, (1, 200))


@pytest.mark.parametrize(
    "policy",
    [
        make_policy("full"),
        make_policy("namm"),
        make_policy("h2o", Budget(ratio=1.0)),
        make_policy("l2", Budget(tokens=999)),
    ],
    ids=["full", "namm-zero", "h2o-keep-all", "l2-keep-all"],
)
def test_keep_all_policies_equal_the_unpruned_model(model, ids, policy):
    with torch.no_grad():
        reference = model(ids).logits[0]
    logits, controller = run_controlled(model, ids, policy, prompt_len=150)
    torch.testing.assert_close(logits, reference, atol=2e-5, rtol=1e-4)
    assert controller.stats.cache_fraction == 1.0
    assert [c["tokens_seen"] for c in controller.stats.calls] == [64, 128, 150, 192]
    assert model.config._attn_implementation == "sdpa"  # restored after eager runs


def test_pruned_keys_keep_positions_and_new_tokens_continue_at_true_positions(model, ids):
    evict = tuple(range(5, 40, 3))
    logits, controller = run_controlled(model, ids, EvictAtFirstCall(evict=evict), prompt_len=64)
    # Reference: one unpruned pass where queries from position 64 on cannot see the evicted keys.
    n = ids.shape[1]
    allowed = torch.ones(n, n, dtype=torch.bool).tril()
    allowed[64:, list(evict)] = False
    mask = torch.zeros(n, n).masked_fill(~allowed, torch.finfo(torch.float32).min)[None, None]
    with torch.no_grad():
        reference = model(ids, attention_mask=mask, position_ids=torch.arange(n)[None]).logits[0]
    torch.testing.assert_close(logits, reference, atol=2e-5, rtol=1e-4)
    kept = controller.positions(0)[0, 0].tolist()
    assert kept == [p for p in range(n) if p not in evict]
    # a wrong position for the new tokens would break the equality above; check it really matters
    assert not torch.allclose(logits[64:], model(ids).logits[0, 64:], atol=1e-3)


def test_h2o_budget_holds_and_statistics_are_recorded(model, ids):
    _, controller = run_controlled(model, ids, make_policy("h2o", Budget(ratio=0.25)), prompt_len=150)
    stats = controller.stats
    assert stats.calls[-1]["retained"] == [[int(192 * 0.25)] * 2] * 3  # per layer and KV head
    assert abs(stats.prompt_fraction - int(150 * 0.25) / 150) < 1e-9
    assert 0.25 <= stats.cache_fraction < 0.45
    assert len(stats.fractions) == 1 + 50
    full_bytes = 3 * 2 * 2 * 200 * 16 * 4  # layers x (k, v) x kv heads x tokens x head_dim x fp32
    assert stats.peak_kv_bytes < full_bytes / 2


def test_post_prefill_protocols_evict_once(model, ids):
    cfg = ControllerConfig(chunk_size=32, interval=64, protocol="post-prefill")
    _, controller = run_controlled(model, ids, make_policy("h2o", Budget(ratio=0.25)), 150, cfg)
    assert [c["tokens_seen"] for c in controller.stats.calls] == [150]
    cfg = ControllerConfig(chunk_size=32, interval=64, protocol="post-prefill-context")
    with pytest.raises(ValueError, match="context and question"):
        run_controlled(model, ids, make_policy("full"), 150, cfg)


def test_namm_with_random_parameters_evicts_with_a_common_count_per_layer(model, ids):
    from namm_bench.namm.checkpoint import NammCheckpoint

    ckpt = NammCheckpoint.zeros()
    torch.manual_seed(0)
    ckpt.params = torch.randn(ckpt.config.num_params) * 0.5
    policy = make_policy("namm", checkpoint=ckpt)
    _, controller = run_controlled(model, ids, policy, prompt_len=150)
    retained = controller.stats.calls[-1]["retained"]
    assert all(len(set(layer)) == 1 for layer in retained)
    assert controller.stats.cache_fraction < 1.0
    newest = controller.positions(0)[0, :, -1]
    assert newest.tolist() == [199, 199]  # the newest token is always kept
    # empty statistics were pooled online: every layer, KV head and cached token at each call
    assert ckpt.stats.count > 3 * 2 * 64 and not ckpt.stats_frozen


def test_namm_shipped_statistics_stay_frozen(model, ids):
    from namm_bench.namm.checkpoint import NammCheckpoint
    from namm_bench.namm.features import RunningStats

    stats = RunningStats(mean=torch.full((17,), 0.01), var=torch.full((17,), 1e-4), count=10)
    ckpt = NammCheckpoint(torch.randn(4172) * 0.5, stats)
    run_controlled(model, ids, make_policy("namm", checkpoint=ckpt), prompt_len=150)
    assert ckpt.stats.count == 10 and torch.equal(ckpt.stats.mean, torch.full((17,), 0.01))


@pytest.mark.parametrize("shape", [{}, {"num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 4}])
def test_shipped_namm_is_the_default_and_runs_on_any_model_shape(shape, ids, make_tiny_llama):
    """The evolved SmolLM2 NAMM ships in the package and transfers to other shapes unchanged."""
    from namm_bench.runner import SHIPPED_NAMM, RunSpec, load_namm

    ckpt = load_namm(RunSpec(suite="synthetic", out=None, policies=["namm"]))
    assert SHIPPED_NAMM.is_dir() and ckpt.stats_frozen
    assert ckpt.params.abs().max() > 0, "the zero NAMM shipped instead of an evolved one"
    assert ckpt.provenance["generations"] > 0 and ckpt.provenance["fitness_mode"] == "fast"
    model = make_tiny_llama(**shape)
    _, controller = run_controlled(model, ids, make_policy("namm", checkpoint=ckpt), prompt_len=150)
    assert len(controller.stats.calls[-1]["retained"]) == model.config.num_hidden_layers
    assert 0 < controller.stats.cache_fraction <= 1.0
