"""A row's key names every setting that changes its result: a rerun with another one computes new rows."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import save_tiny_family

from namm_bench.cli import main
from namm_bench.report import write_report
from namm_bench.results import RESULTS_FILE, ResultsStore, label_settings

BASE = ["run", "synthetic", "--tasks", "passkey_1k", "--limit", "1", "--policies", "full"]


def run(model, out, *extra) -> list[dict]:
    assert main([*BASE, "--model", str(model), "--out", str(out), *extra]) == 0
    return ResultsStore(out).rows()


@pytest.mark.parametrize(
    "changed",
    [
        ["--seed", "1"],
        ["--interval", "256"],
        ["--chunk-size", "64"],
        ["--no-prompt-end-call"],
        ["--preset", "paper"],
        ["--rope-scaling", "linear:2"],
        ["--max-context", "1024"],
        ["--dtype", "bfloat16"],
    ],
    ids=["seed", "interval", "chunk-size", "prompt-end-call", "preset", "rope-scaling", "max-context", "dtype"],
)
def test_a_rerun_with_another_setting_computes_new_rows(tiny_model_dir, tmp_path, changed):
    out = tmp_path / "out"
    (first,) = run(tiny_model_dir, out)
    assert run(tiny_model_dir, out) == [first]  # the same settings: skipped
    rows = run(tiny_model_dir, out, *changed)
    assert len(rows) == 2 and rows[0] == first
    assert all(r["error"] is None for r in rows)
    # the report keeps the two apart, each in its own section (and normalised by its own full cache)
    write_report(out)
    sections = [line for line in (out / "report.md").read_text().splitlines() if line.startswith("## synthetic")]
    assert len(sections) == (1 if changed[0] == "--seed" else 2), sections


def test_synthetic_examples_of_another_seed_have_another_hash(tiny_model_dir, tmp_path):
    a = run(tiny_model_dir, tmp_path / "a")[0]
    b = run(tiny_model_dir, tmp_path / "b", "--seed", "1")[0]
    assert a["example_id"] == b["example_id"] and a["answer"] != b["answer"]
    assert a["example_hash"] != b["example_hash"]


def test_replaced_model_files_are_noticed(tmp_path):
    model = save_tiny_family("llama", tmp_path / "model")
    out = tmp_path / "out"
    (first,) = run(model, out)
    other = save_tiny_family("qwen2", tmp_path / "other")  # other weights, copied over the same path
    for name in ("config.json", "model.safetensors"):
        shutil.copy(other / name, model / name)
    rows = run(model, out)
    assert len(rows) == 2 and rows[1]["model_sha256"] != first["model_sha256"] and rows[1]["model"] == first["model"]


def test_rows_written_before_the_hashes_were_kept_still_count_as_done(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    (row,) = run(tiny_model_dir, out)
    old = {k: v for k, v in row.items() if k not in ("model_sha256", "example_hash", "preset", "prompt_end_call")}
    (out / RESULTS_FILE).write_text(json.dumps(old) + "\n")
    assert run(tiny_model_dir, out) == [old]


def test_the_paper_preset(tiny_model_dir, tmp_path, capsys):
    (row,) = run(tiny_model_dir, tmp_path / "out", "--preset", "paper")
    assert (row["preset"], row["chunk_size"], row["interval"], row["prompt_end_call"]) == ("paper", 128, 512, False)
    args = [*BASE, "--model", str(tiny_model_dir), "--out", str(tmp_path / "x"), "--preset", "paper"]
    assert main([*args, "--interval", "256"]) == 2
    assert "--preset paper runs with --interval 512, not 256" in capsys.readouterr().err
    assert main([*args, "--interval", "512"]) == 0  # the paper's own value is no conflict


@pytest.mark.parametrize("flag", ["--policies", "--tasks", "--budget"])
def test_an_empty_list_is_an_error(tiny_model_dir, tmp_path, flag, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*BASE, "--model", str(tiny_model_dir), "--out", str(tmp_path), flag, ","])
    assert exit_.value.code == 2
    assert f"argument {flag}: expected a comma-separated list of names, got ','" in capsys.readouterr().err


def test_a_replaced_model_is_a_report_section_of_its_own_and_rows_before_hashes_are_not():
    base = {"suite": "synthetic", "task": "t", "protocol": "streaming", "policy": "full"}
    rows = [{**base, "model_sha256": None}, {**base, "model_sha256": "aaaa1111bbbb"}]
    assert label_settings(rows) == rows  # an old row is taken to be of the same model
    other_model = [{**base, "model": "walker", "model_sha256": "eeee3333"}]
    assert label_settings(rows + other_model) == rows + other_model  # another model, other files: no setting
    rows.append({**base, "model_sha256": "cccc2222dddd"})
    assert [r["protocol"] for r in label_settings(rows)] == [
        "streaming; model unknown",
        "streaming; model aaaa1111",
        "streaming; model cccc2222",
    ]
