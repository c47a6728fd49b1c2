"""kvpress's evaluation layout: the committed directories kvpress's own ``evaluate.py`` wrote (on the same
RULER examples as ``reports/paper/ruler``) read into a report, and namm-bench's rows written in that layout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from namm_bench.cli import main
from namm_bench.kvpress_layout import parse_answers, read_kvpress, results_dir_name, write_kvpress
from namm_bench.report import summary_frame, write_report
from namm_bench.results import ResultsStore, label_settings

RULER = Path(__file__).resolve().parents[1] / "reports" / "paper" / "ruler"
KVPRESS = RULER / "kvpress"  # written by kvpress 0.5.5's evaluation/evaluate.py (benchmarks/kvpress_evaluate.py)


def test_kvpress_written_directories_are_read():
    runs = {run.config["press_name"]: run for run in read_kvpress(KVPRESS)}
    assert set(runs) == {"no_press", "knorm", "streaming_llm", "snapkv", "namm"}
    for run in runs.values():
        metrics = json.loads((run.directory / "metrics.json").read_text())
        assert run.scores == {f"{task}_4k": value["string_match"] for task, value in metrics.items()}
        assert run.directory.name.startswith(
            results_dir_name("ruler", "4096", "smollm2-135m-instruct", run.config["press_name"], 0)[:-5]
        )
    assert runs["no_press"].cache_pct == 100.0 and runs["knorm"].cache_pct == pytest.approx(17, abs=1)
    assert runs["snapkv"].config["query_aware"] is True
    answers = pd.read_csv(runs["knorm"].directory / "predictions.csv")["answer"]
    assert [parse_answers(a) for a in answers] == [["2158100"], ["7333626"], ["7298697"]]


def test_the_committed_ruler_report_shows_kvpress_beside_namm_bench(tmp_path):
    committed = (RULER / "report.md").read_text()
    section = committed.split("## Beside kvpress's results", 1)[1]
    row = next(line for line in section.splitlines() if line.startswith("| niah_single_1_4k |"))
    assert row.count("|") == 2 + 4 + 5  # the task, namm-bench's 4 columns, kvpress's 5
    copy = tmp_path / "ruler"
    shutil.copytree(RULER, copy)
    write_report(copy)
    assert (copy / "report.md").read_text() == committed.replace(str(RULER), str(copy))


def test_rows_in_kvpress_layout_read_back_and_match_kvpress_files(tmp_path):
    rows = ResultsStore(RULER).rows()
    written = write_kvpress(rows, tmp_path)
    names = {p.name for p in written}
    assert "ruler__4096__smollm2-135m-instruct__no_press__0.00" in names
    assert any(n.startswith("ruler__4096__smollm2-135m-instruct__namm_streaming__0.8") for n in names)
    summary = summary_frame(label_settings(rows))
    back = {run.config["press_name"]: run for run in read_kvpress(tmp_path)}
    for _, group in summary.iterrows():
        press = {"full": "no_press", "namm": "namm_streaming"}.get(
            group["policy"], f"{group['policy']}_match_streaming"
        )
        assert back[press].scores == {group["task"]: round(group["score"], 2)}
    theirs = next(run for run in read_kvpress(KVPRESS) if run.config["press_name"] == "knorm")
    ours = back["h2o_match_streaming"]
    their_config = yaml.safe_load((theirs.directory / "config.yaml").read_text())
    our_config = yaml.safe_load((ours.directory / "config.yaml").read_text())
    assert list(our_config) == list(their_config)  # kvpress's EvaluationConfig fields, in its order
    their_columns = set(pd.read_csv(theirs.directory / "predictions.csv").columns)
    assert their_columns <= set(pd.read_csv(ours.directory / "predictions.csv").columns)


def test_report_format_kvpress_on_the_command_line(tmp_path, capsys):
    assert main(["report", "--format", "kvpress", str(RULER), "--to", str(tmp_path / "out")]) == 0
    assert "wrote 4 kvpress result directories" in capsys.readouterr().out
    assert main(["report", "--format", "kvpress", str(RULER)]) == 2
    assert "name where with --to OUT" in capsys.readouterr().err


def test_a_malformed_kvpress_directory_is_named(tmp_path):
    bad = tmp_path / "ruler__4096__m__knorm__0.50"
    bad.mkdir()
    (bad / "config.yaml").write_text("dataset: ruler\nmodel: m\npress_name: knorm\n")
    (bad / "metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match="ruler__4096__m__knorm__0.50: not a kvpress result directory"):
        read_kvpress(tmp_path)
