"""One shared prefill per example under the post-prefill protocols: every policy's answer, cache and
statistics equal those of its own run, whichever policies share the prefill."""

from __future__ import annotations

import pytest
import torch
from conftest import save_tiny_family

from namm_bench.budget import Budget
from namm_bench.controller import ControllerConfig
from namm_bench.interfaces import TextExample
from namm_bench.policies import make_policy

POLICIES = [
    ("full", None),
    ("h2o", 0.25),
    ("snapkv", 0.3),
    ("tova", 0.5),
    ("knorm", 0.25),
    ("streaming_llm", 0.25),
    ("random", 0.4),
    ("adakv:h2o", 0.3),
    ("expected_attention", 0.3),
    ("namm", None),
]


def _policies():
    from namm_bench.namm.checkpoint import SHIPPED as SHIPPED_NAMM
    from namm_bench.namm.checkpoint import load_checkpoint

    namm = load_checkpoint(SHIPPED_NAMM)
    made = []
    for name, ratio in POLICIES:
        if name == "namm":
            made.append(make_policy("namm", checkpoint=namm))
        else:
            made.append(make_policy(name, Budget(ratio=ratio) if ratio else None))
    return made


@pytest.fixture(scope="module", params=["llama", "gemma3_text"])
def adapter(request, tmp_path_factory):
    from namm_bench.adapters import get_adapter

    directory = save_tiny_family(request.param, tmp_path_factory.mktemp(request.param))
    return get_adapter("llama", str(directory))


@pytest.mark.parametrize("protocol", ["post-prefill", "post-prefill-context"])
def test_each_branch_equals_the_policys_own_run(adapter, protocol):
    example = TextExample(
        "t", "t-0", "The grass is green. The sky is blue. " * 12, "\nWhat is the pass key?", "1", max_new_tokens=6
    )
    config = ControllerConfig(chunk_size=32, interval=64, protocol=protocol)
    shared = list(adapter.generate_shared(example, _policies(), config))
    assert len(shared) == len(POLICIES)
    layers = len(adapter.attention_modules())
    evicted = 0
    for (name, _), alone, together in zip(
        POLICIES, (adapter.generate(example, p, config) for p in _policies()), shared, strict=True
    ):
        assert together.text == alone.text, name
        a, b = alone.controller, together.controller
        assert b.retained_per_layer() == a.retained_per_layer(), name
        for layer in range(layers):
            assert torch.equal(b.positions(layer), a.positions(layer)), (name, layer)
        assert b.stats.calls == a.stats.calls, name
        assert b.stats.fractions == a.stats.fractions, name
        assert b.stats.peak_kv_bytes == a.stats.peak_kv_bytes, name
        evicted += a.retained_per_layer() != [together.prompt.ids.shape[1] + together.new_tokens] * layers
    assert evicted >= len(POLICIES) - 2  # the comparison covers caches that were pruned (not full's, maybe NAMM's)


def test_the_run_loop_writes_the_same_rows_shared_or_alone(tiny_model_dir, tmp_path, monkeypatch):
    from namm_bench.adapters.llama import LlamaAdapter
    from namm_bench.cli import main
    from namm_bench.results import ResultsStore

    def refuse(*args, **kwargs):
        raise AssertionError("a batch of several policies ran policy by policy")

    base = ["run", "synthetic", "--tasks", "passkey_1k", "--limit", "2", "--model", str(tiny_model_dir)]
    base += ["--protocol", "post-prefill"]
    shared_args = [
        *base,
        "--policies",
        "namm,full,h2o,knorm",
        "--budget",
        "0.25,match",
        "--out",
        str(tmp_path / "shared"),
    ]
    with monkeypatch.context() as patch:  # every batch holds several policies: none runs alone
        patch.setattr(LlamaAdapter, "run", refuse)
        assert main(shared_args) == 0
    for name in ("h2o", "knorm"):  # alone: each with the NAMM its match budget needs
        assert main([*base, "--policies", f"namm,{name}", "--budget", "0.25,match", "--out", str(tmp_path / name)]) == 0
    assert main([*base, "--policies", "full", "--out", str(tmp_path / "full")]) == 0
    fields = ("score", "prediction", "cache_fraction", "cache_fraction_prompt", "retained_per_layer", "budget_ratio")

    def table(rows):
        return {(r["example_id"], r["policy"], r["budget"]): tuple(r[f] for f in fields) for r in rows}

    shared = table(ResultsStore(tmp_path / "shared").rows())
    alone = {}
    for name in ("h2o", "knorm", "full"):
        alone.update(table(ResultsStore(tmp_path / name).rows()))
    assert len(shared) == 2 * (1 + 1 + 2 + 2) and shared == alone
    assert {k[2] for k in shared} == {"none", "0.25", "match"}
