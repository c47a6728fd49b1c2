"""Benchmark metrics: the official LongBench scores, and cases worked out by hand."""

import json
from pathlib import Path

import pytest

from namm_bench.suites.longbench import score_prediction
from namm_bench.suites.metrics import (
    classification,
    code_sim,
    count,
    normalize_answer,
    qa_f1,
    qa_f1_zh,
    retrieval,
    retrieval_zh,
    rouge_l,
    rouge_l_zh,
)

CASES = Path(__file__).resolve().parents[2] / "shared" / "data" / "longbench" / "metric_cases.jsonl"


@pytest.mark.skipif(not CASES.is_file(), reason=f"official metric cases not found at {CASES}")
def test_every_official_metric_case():
    cases = [json.loads(line) for line in CASES.read_text().splitlines() if line.strip()]
    assert len(cases) == 65
    wrong = []
    for c in cases:
        got = score_prediction(c["dataset"], c["prediction"], c["answers"], c["all_classes"])
        if got != pytest.approx(c["score"], abs=1e-5):
            wrong.append((c["dataset"], c["prediction"][:40], got, c["score"]))
    assert not wrong, wrong


def test_english_qa_f1_by_hand():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    # "cat sat" against "cat sat down": precision 2/2, recall 2/3 -> F1 0.8
    assert qa_f1("The cat sat", "a cat sat down") == pytest.approx(0.8)
    assert qa_f1("", "yes") == 0.0 and qa_f1("no", "yes") == 0.0


def test_chinese_qa_f1_by_hand():
    # jieba: 我 / 爱 / 北京 against 北京: precision 1/3, recall 1 -> F1 0.5
    assert qa_f1_zh("我爱北京", "北京") == pytest.approx(0.5)
    assert qa_f1_zh("北京。", "北京") == 1.0  # Chinese punctuation is dropped


def test_rouge_l_by_hand():
    # The rouge package (summary-level Rouge-L) counts distinct words: the reference "the cat sat on
    # the mat" has 5, the union LCS with "the cat sat" 3. P = 3/3, R = 3/5, F = 2PR/(P+R) = 0.75.
    assert rouge_l("the cat sat", "the cat sat on the mat") == pytest.approx(0.75, abs=1e-6)
    assert rouge_l("", "the cat") == 0.0  # the package refuses an empty text; the official code scores 0
    # jieba: 我 爱 北京 against 我 爱 北京 天安门: P = 1, R = 3/4, F = 1.5 / 1.75
    assert rouge_l_zh("我爱北京", "我爱北京天安门") == pytest.approx(1.5 / 1.75, abs=1e-6)


def test_classification_count_retrieval_code_by_hand():
    classes = ["Location", "Location city", "Abbreviation"]
    # "Location" is inside the gold "Location city", so it does not count as a second class named
    assert classification("Location city", "Location city", all_classes=classes) == 1.0
    assert classification("Location or Abbreviation", "Location", all_classes=classes) == 0.5
    assert classification("Abbreviation", "Location", all_classes=classes) == 0.0
    assert count("There are 12 unique paragraphs out of 15", "12") == 0.5
    assert count("none", "12") == 0.0
    assert retrieval("Paragraph 3", "Paragraph 3") == 1.0 and retrieval("Paragraph 3 or 4", "Paragraph 3") == 0.5
    assert retrieval_zh("答案是段落7", "段落7") == 1.0 and retrieval_zh("段落17", "段落7") == 0.0
    # comments and fences are skipped: the first code line is compared
    assert code_sim("```python\n# next\nx = foo(1)\n", "x = foo(1)") == 1.0
    assert code_sim("abcd", "abce") == 0.75  # difflib: 2 * 3 matches / 8 characters, whole percent


def test_first_line_rule_and_best_answer():
    assert score_prediction("trec", "\nLocation\nAbbreviation", ["Location"], ["Location", "Abbreviation"]) == 1.0
    assert score_prediction("qasper", "Location\nAbbreviation", ["Location"]) == pytest.approx(2 / 3)
    assert score_prediction("hotpotqa", "Paris", ["London", "Paris"]) == 1.0
    assert score_prediction("hotpotqa_e", "Paris", ["London", "Paris"]) == 1.0


def test_code_sim_rounds_difflibs_ratio_to_a_whole_percent():
    # fuzzywuzzy's fuzz.ratio without python-Levenshtein: int(round(100 * SequenceMatcher(None, a, b).ratio())),
    # the ratio being 2 * M / T for M matched characters out of T in both strings.
    # "abc" / "abd": M = 2 ("ab"), T = 6 -> 66.67 % -> 67 -> 0.67 (unrounded 0.6666...)
    assert code_sim("abc", "abd") == 0.67
    # "abcdefg" / "abcdefh": M = 6, T = 14 -> 85.71 % -> 86 -> 0.86 (unrounded 0.857142...)
    assert code_sim("abcdefg", "abcdefh") == 0.86
    # "x = foo(1)" / "x = bar(1)": M = 7 ("x = ", "(1)"), T = 20 -> 70 % exactly, nothing to round
    assert code_sim("x = foo(1)", "x = bar(1)") == 0.7
    # "abbbbbbb" / "accccccc": M = 1, T = 16 -> 12.5 % -> Python 3's round halves to even: 12 -> 0.12
    assert code_sim("abbbbbbb", "accccccc") == 0.12
