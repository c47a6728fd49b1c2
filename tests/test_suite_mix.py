"""A suite mix (``synthetic+ruler``): one suite of several suites' tasks, each with its own metric."""

import pytest

from namm_bench.evolution.config import config_from_dict
from namm_bench.models import make_suite


def words(text: str) -> int:
    return len(text.split())


def test_each_task_keeps_its_suites_examples_and_metric():
    mix = make_suite("synthetic+ruler")
    synthetic, ruler = make_suite("synthetic"), make_suite("ruler")
    assert mix.tasks() == synthetic.tasks() + ruler.tasks()
    assert (mix.modality, mix.default_adapter) == ("text", "llama")
    for task, alone in (("passkey_1k", synthetic), ("niah_single_1_2k", ruler)):
        (example,) = mix.examples(task, words, 10**6, 4, 1)
        assert example == alone.examples(task, words, 10**6, 4, 1)[0]
        answer = example.meta["outputs"][0] if task.startswith("niah") else example.answer
        assert mix.score(example, f"It is {answer}.") == alone.score(example, f"It is {answer}.") == 1.0
        assert mix.score(example, "no idea") == alone.score(example, "no idea") == 0.0
    (example,) = mix.examples("passkey_1k", words, 10**6, 4, 1)
    assert mix.record(example, "x") == synthetic.record(example, "x")
    with pytest.raises(ValueError, match="unknown task nope"):
        mix.examples("nope", words, 10**6, 0, 1)


def test_a_mix_that_cannot_be_one_suite_is_refused():
    with pytest.raises(ValueError, match="names a suite twice"):
        make_suite("synthetic+synthetic")
    from namm_bench.suite_mix import SuiteMix

    with pytest.raises(ValueError, match="task passkey_1k is in more than one suite"):
        SuiteMix({"a": make_suite("synthetic"), "b": make_suite("synthetic")})
    with pytest.raises(ValueError, match="differ in modality"):
        make_suite("synthetic+rl")


def test_an_evolution_config_trains_on_a_mix():
    config = config_from_dict(
        {"suite": "synthetic+ruler", "stages": [{"tasks": ["passkey_1k", "niah_multikey_2_2k"], "generations": 1}]}
    )
    config.validate(make_suite(config.suite).tasks())
    bad = config_from_dict({"suite": "synthetic", "stages": [{"tasks": ["niah_multikey_2_2k"], "generations": 1}]})
    with pytest.raises(ValueError, match="unknown task"):
        bad.validate(make_suite(bad.suite).tasks())
