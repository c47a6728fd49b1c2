"""The synthetic suite: deterministic examples, sizes, needle placement and the metric (no model)."""

from __future__ import annotations

import re

import pytest

from namm_bench.suites.base import TextExample
from namm_bench.suites.synthetic import DEFAULT_EXAMPLES, NUM_KV_PAIRS, NUM_NEEDLES, SyntheticSuite


def count_chars(text: str) -> int:
    """A stand-in tokenizer: four characters a token."""
    return len(text) // 4


def count_words(text: str) -> int:
    return len(text.split())


SUITE = SyntheticSuite()
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def make(task: str, limit: int | None = 5, seed: int = 0, cap: int = 100_000, counter=count_chars):
    return SUITE.examples(task, counter, cap, seed, limit)


def needle_position(example: TextExample) -> float:
    """Where the asked needle starts, as a fraction of the context."""
    if example.meta["kind"] == "kv":
        at = example.context.index(f'"{example.answer}"')
    else:
        at = example.context.index(example.answer)
    return at / len(example.context)


def test_tasks_are_kinds_major_with_six_lengths():
    tasks = SUITE.tasks()
    lengths = ["1k", "2k", "4k", "8k", "16k", "32k"]
    assert tasks == [f"{kind}_{n}" for kind in ("passkey", "needle", "kv") for n in lengths]
    assert SUITE.name == "synthetic" and SUITE.modality == "text" and SUITE.default_adapter == "llama"


def test_registry_builds_the_suite():
    from namm_bench.suites import get_suite

    assert isinstance(get_suite("synthetic"), SyntheticSuite)


@pytest.mark.parametrize("task", ["passkey_1k", "needle_2k", "kv_1k"])
def test_same_seed_same_examples_other_seed_differs(task):
    first, again, other = make(task, seed=3), make(task, seed=3), make(task, seed=4)
    assert first == again
    assert [e.example_id for e in first] == [e.example_id for e in other]
    assert [e.answer for e in first] != [e.answer for e in other]
    assert [e.context for e in first] != [e.context for e in other]


def test_limit_gives_a_prefix_and_default_count():
    full = make("needle_1k", limit=None)
    assert len(full) == DEFAULT_EXAMPLES
    assert make("needle_1k", limit=7) == full[:7]
    assert [e.example_id for e in full[:3]] == ["needle_1k-0000", "needle_1k-0001", "needle_1k-0002"]
    assert len({e.answer for e in full}) > DEFAULT_EXAMPLES // 2


def test_example_fields():
    for task, new_tokens in (("passkey_1k", 16), ("needle_1k", 32), ("kv_1k", 96)):
        ex = make(task, limit=6)
        kind = task.split("_")[0]
        assert [e.meta["depth"] for e in ex] == [0.0, 0.25, 0.5, 0.75, 1.0, 0.0]
        assert all(e.meta["kind"] == kind and e.meta["length"] == 1024 for e in ex)
        assert all(e.max_new_tokens == new_tokens and e.task == task for e in ex)


def test_passkey_needle_appears_once():
    for ex in make("passkey_2k", limit=5):
        assert re.fullmatch(r"\d{5}", ex.answer)
        needle = f"The pass key is {ex.answer}. Remember it. {ex.answer} is the pass key."
        assert ex.context.count(needle) == 1
        assert ex.context.count(ex.answer) == 2  # both inside the needle
        assert ex.context.startswith("There is an important info hidden")
        assert ex.question == "\n\nWhat is the pass key? Answer with the number only."
        assert ex.answer not in ex.question


def test_needle_has_distinct_keys_each_once_asked_among_them():
    for ex in make("needle_1k", limit=5):
        needles = re.findall(r"The special magic number for ([a-z]+-[a-z]+) is: (\d{7})\.", ex.context)
        assert len(needles) == NUM_NEEDLES
        keys = [k for k, _ in needles]
        numbers = [n for _, n in needles]
        assert len(set(keys)) == NUM_NEEDLES and len(set(numbers)) == NUM_NEEDLES
        for key, number in needles:
            assert ex.context.count(f"for {key} is") == 1
            assert ex.context.count(number) == 1
        asked = re.search(r"magic number for ([a-z]+-[a-z]+) mentioned", ex.question).group(1)
        assert dict(needles)[asked] == ex.answer
        assert ex.answer not in ex.question


def test_kv_pairs_each_once_asked_among_them():
    for ex in make("kv_2k", limit=5):
        pairs = re.findall(rf'The value of key "({UUID})" is "({UUID})"\.', ex.context)
        assert len(pairs) == NUM_KV_PAIRS
        uuids = [u for pair in pairs for u in pair]
        assert len(set(uuids)) == 2 * NUM_KV_PAIRS
        assert all(ex.context.count(u) == 1 for u in uuids)
        asked = re.search(rf'key "({UUID})"\?', ex.question).group(1)
        assert dict(pairs)[asked] == ex.answer
        assert ex.answer not in ex.question


@pytest.mark.parametrize("counter", [count_chars, count_words])
@pytest.mark.parametrize("task", ["passkey_1k", "passkey_8k", "needle_2k", "needle_4k", "kv_1k", "kv_8k"])
def test_length_within_two_percent_and_never_above(task, counter):
    target = {"1k": 1024, "2k": 2048, "4k": 4096, "8k": 8192}[task.split("_")[1]]
    for ex in make(task, limit=5, counter=counter):
        tokens = counter(ex.context + ex.question)
        assert tokens == ex.meta["tokens"]
        assert 0.98 * target <= tokens <= target


@pytest.mark.parametrize("task", ["passkey_8k", "needle_4k", "kv_2k"])
def test_max_prompt_tokens_caps_the_size(task):
    for ex in make(task, limit=3, cap=900):
        tokens = count_chars(ex.context + ex.question)
        assert 0.98 * 900 <= tokens <= 900
        assert ex.meta["length"] == 900


def test_max_prompt_tokens_above_the_task_length_changes_nothing():
    assert make("kv_1k", cap=1024) == make("kv_1k", cap=5000)


def test_cap_too_small_for_the_needles_errors():
    with pytest.raises(ValueError, match="too small"):
        make("kv_8k", cap=20)


@pytest.mark.parametrize("task", ["passkey_2k", "needle_2k", "kv_2k"])
def test_depth_zero_near_start_depth_one_near_end(task):
    ex = make(task, limit=5)
    positions = [needle_position(e) for e in ex]
    assert positions[0] < 0.1
    assert 0.15 < positions[1] < 0.35
    assert 0.4 < positions[2] < 0.6
    assert 0.65 < positions[3] < 0.85
    assert positions[4] > 0.9


def test_needle_and_kv_fillers_vary_passkey_filler_repeats():
    needle = make("needle_1k", limit=2)
    assert needle[0].context[300:600] != needle[1].context[300:600]
    passkey = make("passkey_1k", limit=1)[0]
    assert passkey.context.count("The grass is green. The sky is blue. The sun is yellow.") > 10


def test_unknown_task_and_bad_limit_error():
    with pytest.raises(ValueError, match=r"'passkey_64k'.*passkey_1k.*kv_32k"):
        make("passkey_64k")
    with pytest.raises(ValueError, match="unknown synthetic task 'qa_1k'"):
        make("qa_1k")
    with pytest.raises(ValueError, match="limit"):
        make("kv_1k", limit=0)


def example(task: str, answer: str) -> TextExample:
    kind = task.split("_")[0]
    return TextExample(task, f"{task}-0000", "ctx", "q", answer, 16, {"kind": kind})


@pytest.mark.parametrize(
    ("task", "answer", "prediction", "expected"),
    [
        ("passkey_1k", "71432", "71432", 1.0),
        ("passkey_1k", "71432", "71433", 0.0),
        ("passkey_1k", "71432", "The pass key is 71432.", 1.0),
        ("passkey_1k", "71432", "  71432 is the pass key", 1.0),
        ("passkey_1k", "71432", "714321", 0.0),  # a longer number is not the key
        ("passkey_1k", "71432", "I think 12 then 71432", 0.0),  # only the first number counts
        ("passkey_1k", "71432", "", 0.0),
        ("passkey_1k", "71432", "I don't know.", 0.0),
        ("needle_1k", "4817263", "The special magic number for calm-river is: 4817263.", 1.0),
        ("needle_1k", "4817263", "481 7263", 0.0),
        (
            "kv_1k",
            "74e61ed3-63e1-4512-a408-19969d2cd4ce",
            '"74e61ed3-63e1-4512-a408-19969d2cd4ce"',
            1.0,
        ),
        ("kv_1k", "74e61ed3-63e1-4512-a408-19969d2cd4ce", "74E61ED3-63E1-4512-A408-19969D2CD4CE", 1.0),
        ("kv_1k", "74e61ed3-63e1-4512-a408-19969d2cd4ce", "74e61ed3-63e1-4512-a408-19969d2cd4cf", 0.0),
        ("kv_1k", "74e61ed3-63e1-4512-a408-19969d2cd4ce", "74e61ed3-63e1-4512-a408", 0.0),
        ("kv_1k", "74e61ed3-63e1-4512-a408-19969d2cd4ce", "", 0.0),
    ],
)
def test_score(task, answer, prediction, expected):
    assert SUITE.score(example(task, answer), prediction) == expected


KEY = "ea88f5fd-d7a4-4dab-a1c0-338da59c4d1d"
VALUE = "74e61ed3-63e1-4512-a408-19969d2cd4ce"
OTHER = "75fee925-d7ba-4e66-8320-cce6c4edaa90"


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        (f'The value of key "{KEY}" is "{VALUE}".', 1.0),  # restating the asked key is fine
        (f'The value of key "{KEY.upper()}" is {VALUE}', 1.0),
        (f'The value of key "{KEY}" is "{OTHER}". Or "{VALUE}".', 0.0),  # first other uuid counts
        (f'The value of key "{KEY}" is 1000.', 0.0),  # the key alone is no answer
        (KEY, 0.0),
    ],
)
def test_kv_score_skips_the_asked_key(prediction, expected):
    ex = TextExample("kv_1k", "kv_1k-0000", "ctx", f'\n\nWhat is the value of key "{KEY}"?', VALUE, 96)
    assert SUITE.score(ex, prediction) == expected


def test_score_on_generated_examples():
    for task in ("passkey_1k", "needle_1k", "kv_1k"):
        ex = make(task, limit=1)[0]
        assert SUITE.score(ex, f"The answer is {ex.answer}.") == 1.0
        assert SUITE.score(ex, "") == 0.0
