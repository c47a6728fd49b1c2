"""InfiniteBench suite: the official scoring rules by hand, official prompts, truncate vs stream rows."""

import gzip
import json
from pathlib import Path

import pytest

from namm_bench.cli import main
from namm_bench.suites import get_suite
from namm_bench.suites.infinitebench import TEMPLATES, InfiniteBenchSuite, fill, gold_label, score_prediction

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "infinitebench"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"InfiniteBench files not found at {SHARED}")


def test_official_scoring_rules_by_hand():
    assert score_prediction("passkey", "The pass key is 69682.", ["69682"]) == 1.0
    assert score_prediction("passkey_16384", "It is 6968 or 69682", ["69682"]) == 0.0  # the first integer counts
    assert score_prediction("number_string", "", ["123"]) == 0.0
    assert score_prediction("kv_retrieval", 'The value is "ab-12".', ["ab-12"]) == 1.0
    assert score_prediction("kv_retrieval", "The value is ab-123", ["ab-12"]) == 0.0  # whole words only
    label = ["the red door", "B"]
    assert score_prediction("longbook_choice_eng", "B", label) == 1.0
    assert score_prediction("longbook_choice_eng", "The answer is: C", label) == 0.0
    assert score_prediction("longbook_choice_eng", "I think the option is B, clearly", label) == 1.0
    assert score_prediction("longbook_choice_eng", "Maybe B or C", label) == 1.0  # first letter word
    assert score_prediction("longbook_choice_eng", "the answer is the red door", label) == 1.0
    debug = ["parse_args", "C"]
    assert score_prediction("code_debug", "C. parse_args", debug) == 1.0
    assert score_prediction("code_debug", "The answer is: parse_args", debug) == 1.0
    assert score_prediction("code_debug", "The answer is: B", debug) == 0.0
    assert score_prediction("math_find", "The largest number is 97", [97]) == 1.0
    assert score_prediction("math_find", "97.5", [97]) == 0.0 and score_prediction("math_find", "0.5", [0.5]) == 1.0
    # QA F1: "red door" against "the red door" -> both normalise to "red door"
    assert score_prediction("longbook_qa_eng", "A red door.", ["the red door", "blue"]) == 1.0


def test_choice_prompts_fill_their_options_and_the_letter_is_derived():
    row = {"context": "BOOK", "input": "Which door?", "answer": ["red"], "options": ["blue", "red", "green", "grey"]}
    context, question = fill("longbook_choice_eng", row)
    assert context == "Read the book and answer the question.\n\nBOOK"
    assert question.startswith("\n\nQuestion: Which door?") and question.endswith("C. green\nD. grey")
    assert gold_label("longbook_choice_eng", row) == ["red", "B"]
    context, question = fill("math_find", {"context": "[1, 5]", "input": "The largest number is", "answer": 5})
    assert context == "What is the largest number in the following list?\n\n[1, 5]"


@needs_shared
def test_passkey_rows_fill_the_official_template():
    suite = get_suite("infinitebench", str(SHARED))
    assert {"passkey_8192", "passkey_16384"} <= set(suite.tasks()) and suite.tasks()[0] == "passkey"
    with gzip.open(SHARED / "passkey_16384.jsonl.gz", "rt") as f:
        row = json.loads(f.readline())
    (ex,) = suite.examples("passkey_16384", len, 8000, seed=0, limit=1)
    assert ex.context + ex.question == TEMPLATES["passkey"].format(context=row["context"], input=row["input"])
    assert ex.question == "\n\nWhat is the pass key?" and ex.max_new_tokens == 6 and ex.answer == row["answer"]
    assert suite.score(ex, f"The pass key is {row['answer']}") == 1.0


def test_missing_task_file_is_one_clear_error(tmp_path, capsys):
    args = ["run", "infinitebench", "--data-dir", str(tmp_path), "--model", str(tmp_path / "none"), "--tasks"]
    assert main([*args, "passkey", "--out", str(tmp_path / "out")]) == 2
    assert f"passkey.jsonl[.gz] not found in {tmp_path}" in capsys.readouterr().err
    assert not InfiniteBenchSuite(tmp_path).tasks()[7:]  # no TASK_SUFFIX files there


def test_truncated_full_cache_and_streamed_policies_side_by_side(tiny_model_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    filler = "The grass is green. The sky is blue. " * 150
    row = {"context": filler + "The pass key is 12345. " + filler, "input": "What is the pass key?", "answer": "12345"}
    (data / "passkey_long.jsonl").write_text(json.dumps(row) + "\n")
    out = tmp_path / "run"
    common = ["run", "infinitebench", "--data-dir", str(data), "--model", str(tiny_model_dir), "--tasks"]
    common += ["passkey_long", "--out", str(out)]
    assert main([*common, "--policies", "full"]) == 0
    assert main([*common, "--policies", "full,h2o", "--budget", "128", "--long-inputs", "stream"]) == 0
    lines = (out / "results.jsonl").read_text().splitlines()
    rows = {(r["policy"], r["long_inputs"]): r for r in map(json.loads, lines)}
    assert set(rows) == {("full", "truncate"), ("full", "stream"), ("h2o", "stream")}
    truncated, streamed = rows[("full", "truncate")], rows[("h2o", "stream")]
    assert truncated["truncated_tokens"] > 0 and truncated["tokens"] <= 512
    assert streamed["truncated_tokens"] == 0 and streamed["tokens"] > 2 * 512  # the whole input, past the context
    assert rows[("full", "stream")]["cache_fraction"] == 1.0 and streamed["cache_fraction"] < 0.2
    assert main(["report", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "h2o (stream)" in report and "full (stream)" in report
