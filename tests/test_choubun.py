"""ChouBun: Japanese F1 and Rouge-L on MeCab words worked out by hand, prompts, a run on a fixture."""

import json

import pytest

from namm_bench.cli import main
from namm_bench.suites import get_suite
from namm_bench.suites.choubun import TEMPLATES
from namm_bench.suites.metrics import qa_f1_ja, rouge_l_ja

ROW = {
    "context": "株式会社サンプルの本社は東京都港区にある。売上高は100億円である。",
    "input": "本社はどこにありますか？",
    "answers": ["東京都港区"],
    "_id": "a1",
}


def test_japanese_metrics_by_hand():
    # MeCab: 東京 / です against 東京: precision 1/2, recall 1 -> F1 2/3
    assert qa_f1_ja("東京です", "東京") == pytest.approx(2 / 3)
    assert qa_f1_ja("東京。", "東京") == 1.0  # punctuation is dropped
    # 東京 / 都 / 港 / 区 against 東京 / 都 / 港 / 区: every word shared
    assert qa_f1_ja("東京都港区", "東京都港区") == 1.0
    # 東京 に いる against 東京 に 住ん で いる: LCS 3, P = 3/3, R = 3/5 -> F = 0.75
    assert rouge_l_ja("東京にいる", "東京に住んでいる") == pytest.approx(0.75, abs=1e-6)


def test_prompts_answer_lengths_and_scores_on_a_fixture(tmp_path):
    for task in TEMPLATES:
        (tmp_path / f"{task}.jsonl").write_text(json.dumps(ROW, ensure_ascii=False) + "\n", encoding="utf-8")
    suite = get_suite("choubun", str(tmp_path))
    (qa,) = suite.examples("wiki_qa", len, 8000, 0, None)
    assert qa.context + qa.question == TEMPLATES["wiki_qa"].format(**ROW)
    assert qa.question == "\n### 質問 ###\n本社はどこにありますか？\n### 回答 ###\n" and qa.max_new_tokens == 64
    assert suite.score(qa, "東京都港区です。") == pytest.approx(2 * 0.8 / 1.8)  # P 4/5, R 1
    (summary,) = suite.examples("corp_sec_sum", len, 8000, 0, None)
    assert summary.question == "\n### 要約 ###\n" and summary.max_new_tokens == 128
    assert suite.score(summary, "東京都港区") == pytest.approx(1.0)  # the rouge package adds 1e-8 to F's denominator


def test_missing_file_is_one_clear_error_and_a_run_reports(tiny_model_dir, tmp_path, capsys):
    args = ["run", "choubun", "--data-dir", str(tmp_path), "--model", str(tiny_model_dir), "--out", str(tmp_path)]
    assert main([*args, "--tasks", "wiki_qa"]) == 2
    assert f"wiki_qa.jsonl not found in {tmp_path}" in capsys.readouterr().err
    (tmp_path / "wiki_qa.jsonl").write_text(json.dumps(ROW, ensure_ascii=False) + "\n", encoding="utf-8")
    assert main([*args, "--tasks", "wiki_qa", "--policies", "full,l2", "--budget", "0.5"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["policy"] for r in rows] == ["full", "l2"] and all(0 <= r["score"] <= 1 for r in rows)
