"""Every file-backed suite: a malformed line, a row missing a field, an unknown task -> one clear error."""

import json
import shutil
from pathlib import Path

import pytest

from namm_bench.cli import main

LONGBENCH_CONFIG = Path(__file__).resolve().parents[2] / "shared" / "data" / "longbench" / "config"

# suite: (task, file name inside --data-dir, a valid row, a field the suite cannot do without)
CASES = {
    "longbench": (
        "passage_retrieval_zh",
        "data/passage_retrieval_zh.jsonl",
        {"input": "Q", "context": "C", "answers": ["A"], "all_classes": None, "length": 9, "_id": "r0"},
        "answers",
    ),
    "infinitebench": (
        "passkey",
        "passkey.jsonl",
        {"context": "The pass key is 123.", "input": "What is the pass key?", "answer": "123"},
        "answer",
    ),
    "lost_in_the_middle": (
        "kv75_start",
        "kv-retrieval-75_keys.jsonl",
        {"ordered_kv_records": [["k0", "v0"], ["k1", "v1"]], "key": "k1", "value": "v1"},
        "value",
    ),
    "choubun": (
        "wiki_qa",
        "wiki_qa.jsonl",
        {"context": "本文。", "input": "質問？", "answers": ["答え"], "_id": "j0"},
        "input",
    ),
}


def write_data(root: Path, suite: str, lines: list[str]) -> Path:
    _, name, _, _ = CASES[suite]
    if suite == "longbench":
        if not LONGBENCH_CONFIG.is_dir():
            pytest.skip(f"LongBench config files not found at {LONGBENCH_CONFIG}")
        shutil.copytree(LONGBENCH_CONFIG, root / "config")
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def run(suite: str, root: Path, task: str) -> int:
    """``namm-bench run`` with a model path that does not exist: data errors must come before the model loads."""
    argv = ["run", suite, "--data-dir", str(root / "data"), "--tasks", task, "--model", str(root / "no-model")]
    return main([*argv, "--out", str(root / "out"), "--policies", "full"])


@pytest.mark.parametrize("suite", sorted(CASES))
def test_a_malformed_line_names_its_file_and_line(suite, tmp_path, capsys):
    task, _, row, _ = CASES[suite]
    good = json.dumps(row, ensure_ascii=False)
    path = write_data(tmp_path / "data", suite, [good, good[:-5]])
    assert run(suite, tmp_path, task) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{path}:2: not JSON" in err[0], err
    assert not (tmp_path / "out" / "results.jsonl").exists()


@pytest.mark.parametrize("suite", sorted(CASES))
def test_a_row_missing_a_field_names_the_field(suite, tmp_path, capsys):
    task, _, row, field = CASES[suite]
    broken = {k: v for k, v in row.items() if k != field}
    path = write_data(tmp_path / "data", suite, [json.dumps(row, ensure_ascii=False), json.dumps(broken)])
    assert run(suite, tmp_path, task) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and field in err[0], err
    assert not (tmp_path / "out" / "results.jsonl").exists()


@pytest.mark.parametrize("suite", sorted(CASES))
def test_an_unknown_task_is_one_clear_error(suite, tmp_path, capsys):
    _, _, row, _ = CASES[suite]
    write_data(tmp_path / "data", suite, [json.dumps(row, ensure_ascii=False)])
    assert run(suite, tmp_path, "no_such_task") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no_such_task" in err[0] and "unknown" in err[0], err


@pytest.mark.parametrize("suite", ["longbench", "choubun"])
def test_answers_given_as_a_string_are_an_error_not_a_list_of_characters(suite, tmp_path, capsys):
    task, _, row, _ = CASES[suite]
    path = write_data(tmp_path / "data", suite, [json.dumps({**row, "answers": "Paris"}, ensure_ascii=False)])
    assert run(suite, tmp_path, task) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{path}:1: answers must be a list, got str 'Paris'" in err[0], err
