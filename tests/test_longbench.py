"""LongBench suite: official templates and lengths, raw few-shot prompts, middle truncation, data errors."""

import json
import shutil
from pathlib import Path

import pytest

from namm_bench.adapters.llama import _stop_at, middle_truncate
from namm_bench.cli import main
from namm_bench.suites import TextExample, get_suite
from namm_bench.suites.longbench import LongBenchSuite, length_bucket

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "longbench"
needs_shared = pytest.mark.skipif(not (SHARED / "config").is_dir(), reason=f"LongBench files not found at {SHARED}")


def no_tokens(text):
    raise AssertionError("LongBench does not size its prompts")


@needs_shared
@pytest.mark.parametrize("task", ["multi_news", "multifieldqa_zh", "passage_retrieval_zh"])
def test_prompts_fill_the_official_templates(task):
    suite = get_suite("longbench", str(SHARED))
    templates = json.loads((SHARED / "config" / "dataset2prompt.json").read_text())
    maxlen = json.loads((SHARED / "config" / "dataset2maxlen.json").read_text())
    rows = [json.loads(line) for line in (SHARED / "data" / f"{task}.jsonl").read_text().splitlines()[:3]]
    examples = suite.examples(task, no_tokens, 8000, seed=0, limit=3)
    assert len(examples) == 3
    for ex, row in zip(examples, rows, strict=True):
        assert ex.context + ex.question == templates[task].format(**row)
        assert ex.context.endswith(row["context"]) and row["input"] in ex.question
        assert ex.max_new_tokens == maxlen[task] and ex.chat and ex.stop == ()
        assert ex.meta["answers"] == row["answers"] and ex.answer == row["answers"][0]
        assert ex.example_id == f"{task}-{row['_id']}"


@needs_shared
def test_few_shot_tasks_are_raw_samsum_stops_at_a_newline_and_e_rows_have_buckets(tmp_path):
    shutil.copytree(SHARED / "config", tmp_path / "config")
    row = {"input": "Q", "context": "C", "answers": ["A"], "all_classes": None, "length": 5000, "_id": "x"}
    tasks = ("samsum", "lcc", "trec_e", "qasper_e")
    for task in tasks:
        (tmp_path / f"{task}.jsonl").write_text(json.dumps(row) + "\n")  # the flat layout works too
    suite = LongBenchSuite(tmp_path)
    samsum, lcc, trec_e, qasper_e = (suite.examples(t, no_tokens, 8000, 0, None)[0] for t in tasks)
    assert not samsum.chat and samsum.stop == ("\n",) and samsum.max_new_tokens == 128
    assert not lcc.chat and lcc.question.startswith("Next line of code")
    assert not trec_e.chat and trec_e.meta["length_bucket"] == "4-8k" and qasper_e.chat
    assert [length_bucket(n) for n in (3999, 4000, 7999, 8000)] == ["0-4k", "4-8k", "4-8k", "8k+"]


def test_middle_truncation_keeps_the_official_halves():
    ids = list(range(10))
    assert middle_truncate(ids, 10) == ids
    assert middle_truncate(ids, 6) == [0, 1, 2, 7, 8, 9]
    assert middle_truncate(ids, 7) == [0, 1, 2, 7, 8, 9]  # int(max_length / 2) from each end


def test_raw_prompts_skip_the_chat_template_and_stop_strings_cut(tiny_model_dir):
    from namm_bench.adapters import get_adapter

    adapter = get_adapter("llama", str(tiny_model_dir))
    raw = TextExample("t", "t-0", "The grass is green. ", "What is the pass key?", "1", 8, chat=False)
    ids = adapter.build_prompt(raw).ids[0].tolist()
    assert ids == adapter.tokenizer.encode(raw.context + raw.question, add_special_tokens=True)
    chat = adapter.build_prompt(TextExample("t", "t-0", raw.context, raw.question, "1", 8)).ids[0].tolist()
    assert len(chat) > len(ids) and adapter.tokenizer.decode(chat).startswith("<s>")
    assert _stop_at("Anna calls.\nBob", ("\n",)) == len("Anna calls.")
    assert _stop_at("\nAnna calls.", ("\n",)) is None  # not on the first character
    assert _stop_at("no stop", ()) is None


def test_missing_files_are_one_clear_error_before_the_model_loads(tmp_path, capsys):
    args = ["run", "longbench", "--model", str(tmp_path / "no-model"), "--tasks", "qasper", "--out", str(tmp_path)]
    assert main([*args, "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "LongBench data directory" in capsys.readouterr().err
    assert main([*args, "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "dataset2prompt.json not found" in err and "github.com/THUDM/LongBench" in err
    (tmp_path / "config").mkdir()
    for name in ("dataset2prompt.json", "dataset2maxlen.json"):
        (tmp_path / "config" / name).write_text(json.dumps({"qasper": "{context} {input}"}))
    assert main([*args, "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"qasper.jsonl not found (looked in {tmp_path / 'data'}" in err and "data.zip" in err
    assert not (tmp_path / "results.jsonl").exists()
    assert main(["run", "synthetic", "--data-dir", str(tmp_path)]) == 2
    assert "--data-dir does not apply" in capsys.readouterr().err


@needs_shared
def test_run_and_report_on_the_official_files(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "longbench", "--data-dir", str(SHARED), "--model", str(tiny_model_dir), "--out", str(out)]
    assert main([*args, "--tasks", "passage_retrieval_zh", "--limit", "2", "--policies", "full,h2o"]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["policy"] for r in rows] == ["full", "h2o", "full", "h2o"]
    # 512-token tiny model: every prompt is middle-truncated, and the rows say by how much
    assert all(r["truncated_tokens"] > 0 and r["tokens"] <= 512 - 32 for r in rows)
    assert all(0.0 <= r["score"] <= 1.0 and r["answer"].startswith("段落") for r in rows)
    assert main(["report", str(out)]) == 0
    assert "passage_retrieval_zh" in (out / "report.md").read_text()


@needs_shared
def test_without_tasks_a_run_takes_the_tasks_whose_files_are_there(monkeypatch):
    monkeypatch.delenv("NAMM_BENCH_LONGBENCH", raising=False)
    suite = get_suite("longbench", str(SHARED))
    assert suite.default_tasks() == ["multifieldqa_zh", "multi_news", "passage_retrieval_zh"]
    assert len(suite.tasks()) == 34 and get_suite("longbench").default_tasks() == suite.tasks()
