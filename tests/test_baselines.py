"""The field's baselines: each selection equals its paper's formula computed plainly on a tiny model.

The reference runs one unchunked eager forward with ``output_attentions`` and the cache, and
scores every key by the formula written out (loops and explicit sums); the policy runs in the
memory controller (chunked prefill, the reading attention implementation) under ``post-prefill``.
Selected indices must be the same per layer and KV head.
"""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from namm_bench.budget import Budget
from namm_bench.controller import ControllerConfig, MemoryController
from namm_bench.policies import make_policy, policy_class
from namm_bench.runner import RunSpec, variants

T, HEADS, KV_HEADS, RATIO = 200, 8, 2, 0.4
GROUP = HEADS // KV_HEADS
KEEP = int(T * RATIO)  # kvpress: int(n * (1 - compression))


class RecordSelect:
    """Wraps a policy; records the indices it returns per layer."""

    def __init__(self, inner):
        self.inner, self.kept = inner, {}

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def select(self, layer, keys, values, positions, tokens_seen):
        idx = self.inner.select(layer, keys, values, positions, tokens_seen)
        self.kept[layer] = idx
        return idx


@pytest.fixture(scope="module")
def setup():
    from conftest import tiny_llama

    model = tiny_llama(num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, num_hidden_layers=3)
    with torch.no_grad():  # peaked attention, so that formulas that differ select differently
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(6.0)
    torch.manual_seed(3)
    ids = torch.randint(0, 320, (1, T))
    model.set_attn_implementation("eager")
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        out = model(ids, past_key_values=cache, use_cache=True, output_attentions=True)
    model.set_attn_implementation("sdpa")
    attentions = [a[0].double() for a in out.attentions]  # per layer (heads, T, T)
    keys = [layer.keys[0].double() for layer in cache.layers]  # per layer (kv_heads, T, d), RoPE applied
    return model, ids, attentions, keys


def run_policy(model, ids, policy):
    recorder = RecordSelect(policy)
    cache = DynamicCache(config=model.config)
    controller = MemoryController(recorder, ControllerConfig(chunk_size=32, protocol="post-prefill"))

    def forward(start, end):
        return model(input_ids=ids[:, start:end], position_ids=torch.arange(start, end)[None], past_key_values=cache)

    with torch.no_grad(), controller.attach(model, cache, [layer.self_attn for layer in model.model.layers]):
        controller.prefill(forward, ids.shape[1])
    everything = torch.arange(T).expand(KV_HEADS, T)  # a layer that keeps all returns None
    return [everything if recorder.kept[i] is None else recorder.kept[i][0] for i in sorted(recorder.kept)]


def top(scores: torch.Tensor, keep: int = KEEP) -> list[list[int]]:
    """Per KV head: the ``keep`` highest scores' indices, ascending."""
    return [sorted(row.topk(keep).indices.tolist()) for row in scores]


def group_mean(per_query_head: torch.Tensor) -> torch.Tensor:
    """(heads, N) -> (kv_heads, N): KV head k averages query heads h with h // GROUP == k."""
    return torch.stack([per_query_head[[h for h in range(HEADS) if h // GROUP == k]].mean(0) for k in range(KV_HEADS)])


def reference(name: str, attention: torch.Tensor, keys: torch.Tensor, layer: int) -> list[list[int]]:
    n = T
    if name == "streaming_llm":  # 4 sinks + the newest KEEP - 4
        return [list(range(4)) + list(range(n - (KEEP - 4), n))] * KV_HEADS
    if name == "snapkv":  # window 64, kernel 5
        return top(reference_scores_snapkv(attention))
    if name == "tova":  # the last query's attention over the others, mean over all heads; the last kept
        scores = attention[:, -1, :-1].mean(dim=0)
        scores = torch.cat([scores, scores.max()[None]])
        return top(scores.expand(KV_HEADS, -1))
    if name == "keydiff":
        unit = keys / keys.norm(dim=-1, keepdim=True)
        anchor = unit.mean(dim=1, keepdim=True)
        cosine = (keys * anchor).sum(-1) / (keys.norm(dim=-1) * anchor.norm(dim=-1))
        return top(-cosine)
    if name == "observed_attention":  # attention received / queries that saw the key
        seen_by = torch.tensor([n - j for j in range(n)], dtype=torch.float64)
        return top(group_mean(attention.sum(dim=1) / seen_by))
    if name == "knorm":  # every layer pruned
        return top(-keys.norm(dim=-1))
    if name == "random":  # the policy's generator, seeded 0 at the sequence start, draws layer by layer
        generator = torch.Generator().manual_seed(0)
        draws = [torch.rand((1, KV_HEADS, n), generator=generator)[0] for _ in range(layer + 1)]
        return top(draws[layer])
    raise AssertionError(name)


@pytest.mark.parametrize(
    "name", ["streaming_llm", "snapkv", "tova", "keydiff", "observed_attention", "knorm", "random"]
)
def test_the_selection_is_the_papers_formula(setup, name):
    model, ids, attentions, keys = setup
    kept = run_policy(model, ids, make_policy(name, Budget(ratio=RATIO)))
    assert len(kept) == len(attentions)
    for layer, idx in enumerate(kept):
        assert idx.shape == (KV_HEADS, KEEP)
        assert idx.tolist() == reference(name, attentions[layer], keys[layer], layer), f"layer {layer}"


def pyramid_budgets(n: int, budget: int, window: int, layers: int, beta: int = 20) -> list[int]:
    """PyramidKV's per-layer counts (Cai et al. 2024, their code's arithmetic), written out."""
    share = budget - window
    if n < 2 * share:
        return [budget] * layers
    low, high = share // beta, 2 * share - share // beta
    if high >= n - window:
        high, low = n - window, 2 * share - (n - window)
    return [high - layer * ((high - low) // (layers - 1)) + window for layer in range(layers)]


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [(RATIO, [96, 80, 64]), (0.67, [200, 134, 68]), (0.9, [180, 180, 180])],
    ids=["pyramid", "first-layer-capped", "uniform-below-2-shares"],
)
def test_pyramidkv_keeps_snapkvs_choice_at_budgets_shrinking_with_depth(setup, ratio, expected):
    model, ids, attentions, keys = setup
    counts = pyramid_budgets(T, int(T * ratio), 64, len(attentions))
    assert counts == expected and sum(counts) == 3 * int(T * ratio)
    kept = run_policy(model, ids, make_policy("pyramidkv", Budget(ratio=ratio), schedule="kvcache-factory"))
    snapkv = run_policy(model, ids, make_policy("snapkv", Budget(tokens=max(counts))))
    for layer, idx in enumerate(kept):
        assert idx.shape == (KV_HEADS, counts[layer])
        if counts[layer] < T:  # SnapKV's ranking, cut at this layer's count
            want = snapkv[layer] if counts[layer] == max(counts) else None
            scores = reference_scores_snapkv(attentions[layer])
            assert idx.tolist() == top(scores, counts[layer]), f"layer {layer}"
            assert want is None or idx.tolist() == want.tolist()


def kvpress_pyramid(n: int, ratio: float, window: int, layers: int, beta: int) -> list[int]:
    """kvpress's PyramidKVPress counts, written out (floats, rounded; SnapKV's round(n r) outside its range)."""
    cap = window + n * ratio
    low = (cap - window) / beta
    high = (cap - window) * 2 - low
    if high >= n - window:
        high, low = n - window, (cap - window) * 2 - (n - window)
    if not n >= high >= low >= window:
        return [round(n * ratio)] * layers
    return [round(high - layer * (high - low) / (layers - 1)) for layer in range(layers)]


@pytest.mark.parametrize(
    ("ratio", "window", "beta", "expected"),
    [(RATIO, 8, 2, [120, 80, 40]), (0.7, 8, 2, [192, 140, 88]), (RATIO, 64, 20, [80, 80, 80])],
    ids=["pyramid", "first-layer-capped", "snapkv-below-its-range"],
)
def test_pyramidkv_follows_kvpress_schedule_by_default(setup, ratio, window, beta, expected):
    model, ids, attentions, keys = setup
    counts = kvpress_pyramid(T, ratio, window, len(attentions), beta)
    assert counts == expected
    kept = run_policy(model, ids, make_policy("pyramidkv", Budget(ratio=ratio), window_size=window, beta=beta))
    for layer, idx in enumerate(kept):
        assert idx.shape == (KV_HEADS, counts[layer]), f"layer {layer}"
        if window == 64:
            assert idx.tolist() == top(reference_scores_snapkv(attentions[layer]), counts[layer]), f"layer {layer}"


def reference_scores_snapkv(attention: torch.Tensor) -> torch.Tensor:
    w, n = 64, T
    mean = attention[:, n - w :, : n - w].mean(dim=1)
    pooled = torch.zeros_like(mean)
    for j in range(n - w):
        pooled[:, j] = sum(mean[:, i] for i in range(j - 2, j + 3) if 0 <= i < n - w) / 5
    scores = group_mean(pooled)
    return torch.cat([scores, torch.full((KV_HEADS, w), scores.max().item() + 1, dtype=scores.dtype)], dim=1)


def test_streaming_llm_keeps_its_sinks_across_calls_while_streaming(setup):
    model, ids, _, _ = setup
    recorder = RecordSelect(make_policy("streaming_llm", Budget(tokens=12)))
    cache = DynamicCache(config=model.config)
    controller = MemoryController(recorder, ControllerConfig(chunk_size=16, interval=16))

    def forward(start, end):
        return model(input_ids=ids[:, start:end], position_ids=torch.arange(start, end)[None], past_key_values=cache)

    with torch.no_grad(), controller.attach(model, cache, [layer.self_attn for layer in model.model.layers]):
        controller.prefill(forward, T)
        positions = controller.positions(0)[0, 0].tolist()
    assert positions == [0, 1, 2, 3, *range(T - 8, T)]


@pytest.mark.parametrize("name", ["snapkv", "pyramidkv", "adakv:snapkv", "adakv:pyramidkv"])
def test_a_query_aware_policy_is_refused_under_streaming(name, setup, tmp_path):
    model, ids, _, _ = setup
    assert policy_class(name).protocols == ("post-prefill", "post-prefill-context")
    spec = RunSpec(suite="synthetic", out=tmp_path, policies=["full", name])
    with pytest.raises(ValueError, match=f"policy {name} does not run under the streaming protocol"):
        variants(spec)
    controller = MemoryController(make_policy(name, Budget(ratio=0.5)), ControllerConfig(protocol="streaming"))
    with pytest.raises(ValueError, match="does not run under the streaming protocol"):
        with controller.attach(model, DynamicCache(config=model.config), [m.self_attn for m in model.model.layers]):
            pass
    for protocol in ("post-prefill", "post-prefill-context"):
        variants(
            RunSpec(suite="synthetic", out=tmp_path, policies=[name], controller=ControllerConfig(protocol=protocol))
        )


def test_every_baseline_runs_a_suite_and_holds_its_budget(tiny_model_dir, tmp_path):
    from namm_bench.cli import main
    from namm_bench.results import ResultsStore

    names = "streaming_llm,snapkv,pyramidkv,tova,keydiff,observed_attention,knorm,random,adakv,expected_attention"
    args = ["run", "synthetic", "--tasks", "passkey_1k", "--limit", "1", "--model", str(tiny_model_dir)]
    args += ["--policies", names, "--budget", "0.25", "--protocol", "post-prefill", "--out", str(tmp_path)]
    assert main(args) == 0
    rows = ResultsStore(tmp_path).rows()
    assert sorted(r["policy"] for r in rows) == sorted(names.split(","))
    for row in rows:  # evicted once at the prompt's end to int(0.25 n), then the answer's tokens append
        assert row["error"] is None and row["cache_fraction_prompt"] <= 0.25, row["policy"]
