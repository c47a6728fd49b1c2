"""LongBench v2: the official zero-shot prompt, answer extraction and files read with clear errors."""

from __future__ import annotations

import json

import pytest

from namm_bench.interfaces import DataError
from namm_bench.suites.longbench_v2 import LongBenchV2Suite, extract_answer


def question(i: int, length: str, difficulty: str, answer: str = "B") -> dict:
    return {
        "_id": f"q{i}",
        "domain": "Single-Document QA",
        "difficulty": difficulty,
        "length": length,
        "question": f"Which colour is item {i}?",
        "choice_A": "red",
        "choice_B": "green",
        "choice_C": "blue",
        "choice_D": "grey",
        "answer": answer,
        "context": f"Item {i} is green. " * 20,
    }


@pytest.fixture
def data_dir(tmp_path):
    rows = [question(0, "short", "easy"), question(1, "long", "hard", "D"), question(2, "short", "hard", "A")]
    (tmp_path / "data.json").write_text(json.dumps(rows))
    return tmp_path


@pytest.mark.parametrize(
    ("response", "letter"),
    [
        ("The correct answer is (B)", "B"),
        ("**The correct answer is (C)**, because ...", "C"),  # asterisks removed first
        ("The correct answer is D.", "D"),
        ("The correct answer is (E)", None),
        ("I think (A)", None),
        ("", None),
    ],
)
def test_the_answer_is_read_as_the_official_pred_py_reads_it(response, letter):
    assert extract_answer(response) == letter


def test_tasks_split_by_length_and_difficulty_with_the_official_prompt(data_dir):
    suite = LongBenchV2Suite(str(data_dir))
    assert [e.example_id for e in suite.examples("short", len, 10**6, 0, None)] == ["short-q0", "short-q2"]
    assert [e.example_id for e in suite.examples("hard", len, 10**6, 0, None)] == ["hard-q1", "hard-q2"]
    assert [e.example_id for e in suite.examples("hard", len, 10**6, 0, 1)] == ["hard-q1"]
    ex = suite.examples("long", len, 10**6, 0, None)[0]
    assert ex.context.startswith("Please read the following text and answer the question below.\n\n<text>\nItem 1")
    assert ex.context.endswith("</text>\n\n")
    assert ex.question == (
        "What is the correct answer to this question: Which colour is item 1?\n"
        "Choices:\n(A) red\n(B) green\n(C) blue\n(D) grey\n\n"
        'Format your response as follows: "The correct answer is (insert answer here)".'
    )
    assert (ex.answer, ex.max_new_tokens) == ("D", 128)
    assert suite.score(ex, "The correct answer is (D)") == 1.0 and suite.score(ex, "The correct answer is (B)") == 0.0


def test_a_malformed_file_names_its_file_and_item(tmp_path):
    rows = [question(0, "short", "easy"), {k: v for k, v in question(1, "short", "easy").items() if k != "choice_C"}]
    (tmp_path / "data.json").write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"data.json item 1: lacks choice_C"):
        LongBenchV2Suite(str(tmp_path)).check(["short"])
    (tmp_path / "data.json").write_text(json.dumps([question(0, "short", "easy", answer="E")]))
    with pytest.raises(DataError, match=r"data.json item 0: answer must be one of A-D, got 'E'"):
        LongBenchV2Suite(str(tmp_path)).check(["short"])
    (tmp_path / "data.json").unlink()
    (tmp_path / "data.jsonl").write_text(json.dumps(question(0, "short", "easy")) + "\n{not json\n")
    with pytest.raises(DataError, match=r"data.jsonl:2: not JSON"):
        LongBenchV2Suite(str(tmp_path)).check(["short"])
    with pytest.raises(DataError, match="LongBench v2 data not found"):
        LongBenchV2Suite(str(tmp_path / "nowhere")).check(["short"])


def test_a_run_scores_the_tiny_model(tiny_model_dir, data_dir, tmp_path):
    from namm_bench.cli import main
    from namm_bench.results import ResultsStore

    args = ["run", "longbench_v2", "--tasks", "short", "--model", str(tiny_model_dir), "--data-dir", str(data_dir)]
    assert main([*args, "--policies", "full,snapkv", "--protocol", "post-prefill", "--out", str(tmp_path / "o")]) == 0
    rows = ResultsStore(tmp_path / "o").rows()
    assert len(rows) == 4 and all(r["score"] in (0.0, 1.0) and r["error"] is None for r in rows)
    assert all(r["choice"] == extract_answer(r["prediction"]) for r in rows)
