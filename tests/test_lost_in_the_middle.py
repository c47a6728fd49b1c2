"""Lost in the middle: the official prompt, the gold pair moved to each position, accuracy per position."""

import gzip
import json
from pathlib import Path

import pytest

from namm_bench.cli import main
from namm_bench.suites import get_suite
from namm_bench.suites.lost_in_the_middle import build

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "lost_in_the_middle"
ROW = {"ordered_kv_records": [["k1", "v1"], ["k2", "v2"], ["k3", "v3"]], "key": "k2", "value": "v2"}


def test_prompt_is_the_official_one_with_the_gold_pair_moved():
    context, question = build(ROW, "middle")  # index 3 // 2 = 1: where k2 already is
    expected = [
        "Extract the value corresponding to the specified key in the JSON object below.",
        "",
        "JSON data:",
        '{"k1": "v1",',
        ' "k2": "v2",',
        ' "k3": "v3"}',
        "",
        'Key: "k2"',
        "Corresponding value:",
    ]
    assert context + question == "\n".join(expected)
    assert build(ROW, "start")[0].endswith('{"k2": "v2",\n "k1": "v1",\n "k3": "v3"}')
    assert build(ROW, "end")[0].endswith('{"k1": "v1",\n "k3": "v3",\n "k2": "v2"}')


def test_files_give_tasks_per_position_and_accuracy_ignores_case(tmp_path):
    with gzip.open(tmp_path / "kv-retrieval-3_keys.jsonl.gz", "wt") as f:
        f.write(json.dumps(ROW) + "\n")
    suite = get_suite("lost_in_the_middle", str(tmp_path))
    assert suite.tasks() == ["kv3_start", "kv3_middle", "kv3_end"]
    (ex,) = suite.examples("kv3_end", len, 8000, 0, None)
    assert ex.meta["gold_index"] == 2 and ex.max_new_tokens == 100 and ex.answer == "v2"
    assert suite.score(ex, "The value is V2.") == 1.0 and suite.score(ex, "v1") == 0.0


def test_missing_file_is_one_clear_error(tmp_path, capsys):
    args = ["run", "lost_in_the_middle", "--model", str(tmp_path / "none"), "--tasks", "kv75_start"]
    assert main([*args, "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert f"kv-retrieval-75_keys.jsonl[.gz] not found in {tmp_path}" in capsys.readouterr().err


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"lost-in-the-middle files not found at {SHARED}")
def test_shared_75_key_file():
    suite = get_suite("lost_in_the_middle", str(SHARED))
    assert suite.tasks() == ["kv75_start", "kv75_middle", "kv75_end"]
    for task, index in (("kv75_start", 0), ("kv75_middle", 37), ("kv75_end", 74)):
        (ex,) = suite.examples(task, len, 8000, 0, 1)
        lines = ex.context.split("JSON data:\n")[1].split("\n")
        assert len(lines) == 75 and f'"{ex.answer}"' in lines[index]
