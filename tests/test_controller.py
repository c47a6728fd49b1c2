"""The memory controller on a tiny random Llama: masks, positions, protocols and statistics."""

import pytest
import torch
from transformers import DynamicCache

from namm_bench import attention_reading
from namm_bench.budget import Budget
from namm_bench.controller import ControllerConfig, MemoryController
from namm_bench.policies import make_policy
from namm_bench.policies.base import MemoryPolicy
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
    assert model.config._attn_implementation == "sdpa"  # restored after runs that read attention
    assert not any(hasattr(m, attention_reading.OBSERVER) for m in model.modules())


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
    from namm_bench.namm.checkpoint import SHIPPED as SHIPPED_NAMM
    from namm_bench.runner import RunSpec, load_namm

    ckpt = load_namm(RunSpec(suite="synthetic", out=None, policies=["namm"]))
    assert SHIPPED_NAMM.is_dir() and ckpt.stats_frozen
    assert ckpt.params.abs().max() > 0, "the zero NAMM shipped instead of an evolved one"
    assert ckpt.provenance["generations"] > 0 and ckpt.provenance["fitness_mode"] == "fast"
    model = make_tiny_llama(**shape)
    _, controller = run_controlled(model, ids, make_policy("namm", checkpoint=ckpt), prompt_len=150)
    assert len(controller.stats.calls[-1]["retained"]) == model.config.num_hidden_layers
    assert 0 < controller.stats.cache_fraction <= 1.0


class RecordAttention(MemoryPolicy):
    """Keeps everything and records, per layer, every attention tensor the controller hands it."""

    needs_attention = True

    def reset(self, num_layers):
        self.seen = [[] for _ in range(num_layers)]

    def observe(self, layer, attention):
        self.seen[layer].append(attention.clone())


def test_observed_attention_averages_the_query_heads_of_each_kv_group(make_tiny_llama, ids):
    """Pins the GQA reduction: KV head k gets the mean of query heads h with h // groups == k (as
    ``repeat_kv`` maps them, namm-reference 1.4), not of a strided set such as {k, k + kv_heads, ...}.

    Reference: one unchunked eager forward with ``output_attentions``, heads grouped by an explicit loop.
    """
    model = make_tiny_llama(num_attention_heads=8, num_key_value_heads=2)  # groups of 4 query heads
    ids = ids[:, :72]
    policy = RecordAttention()
    run_controlled(model, ids, policy, prompt_len=70)  # chunks 0-32, 32-64, 64-70, then two decode steps
    model.set_attn_implementation("eager")
    with torch.no_grad():
        full = model(ids, output_attentions=True).attentions  # per layer (1, 8 query heads, T, T)
    for layer, observed in enumerate(policy.seen):
        assert [a.shape[2] for a in observed] == [32, 32, 6, 1, 1]
        heads = full[layer][0]
        expected = torch.stack([heads[[h for h in range(8) if h // 4 == k]].mean(0) for k in range(2)])
        for a in observed:
            q, n = a.shape[2:]
            torch.testing.assert_close(a[0], expected[:, n - q : n, :n], atol=1e-5, rtol=1e-4)


class RecordCalls:
    """Wraps a policy and records, per call on layer 0, (tokens seen, entries before, entries kept)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def select(self, layer, keys, values, positions, tokens_seen):
        idx = self.inner.select(layer, keys, values, positions, tokens_seen)
        if layer == 0:
            self.calls.append((tokens_seen, keys.shape[2], keys.shape[2] if idx is None else idx.shape[-1]))
        return idx


@pytest.mark.parametrize("preset", ["paper", "default"])
def test_the_paper_preset_calls_the_namm_on_the_paper_schedule(model, preset):
    """The paper's code calls the NAMM whenever the tokens processed reach a multiple of 512, in
    prefill and decoding, and not at the prompt's end: a 1300-token prompt keeps its last
    1300 - 1024 = 276 tokens unpruned until the call at 1536 (reference sections 1.3, 8.1.2)."""
    from namm_bench.namm.checkpoint import SHIPPED as SHIPPED_NAMM
    from namm_bench.namm.checkpoint import load_checkpoint
    from namm_bench.presets import PRESETS

    settings = PRESETS[preset]
    config = ControllerConfig(settings.chunk_size, settings.interval, prompt_end_call=settings.prompt_end_call)
    policy = RecordCalls(make_policy("namm", checkpoint=load_checkpoint(SHIPPED_NAMM)))
    torch.manual_seed(3)
    ids = torch.randint(0, 320, (1, 1540))
    cache = DynamicCache(config=model.config)
    controller = MemoryController(policy, config)

    def forward(start, end):
        out = model(input_ids=ids[:, start:end], position_ids=torch.arange(start, end)[None], past_key_values=cache)
        return out.logits[:, -1]

    with torch.no_grad(), controller.attach(model, cache, [layer.self_attn for layer in model.model.layers]):
        controller.prefill(forward, 1300)
        at_prompt_end = cache.layers[0].keys.shape[2]
        for _ in range(1300, 1540):
            controller.step(forward)
    seen = [call[0] for call in policy.calls]
    if preset == "paper":
        assert seen == [512, 1024, 1536]
        kept_at_1024 = policy.calls[1][2]
        assert at_prompt_end == kept_at_1024 + 276 and kept_at_1024 < 1024  # the NAMM pruned, the tail did not
        assert policy.calls[2][1] == kept_at_1024 + 512  # nothing called between 1024 and 1536
    else:
        assert seen == [512, 1024, 1300, 1536] and at_prompt_end == policy.calls[2][2]
