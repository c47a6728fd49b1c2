"""Tests for the results report (summary table, markdown and CSV)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from namm_bench.report import SUMMARY_COLUMNS, normalised_frame, summary_frame, write_report
from namm_bench.results import ResultsStore

MIB = 2**20


def make_row(
    task: str,
    example_id: int,
    policy: str,
    budget: str,
    score: float | None,
    cache_fraction: float,
    error: str | None = None,
    truncated_tokens: int = 0,
    model: str = "smollm2-135m",
    suite: str = "longbench",
) -> dict:
    return {
        "suite": suite,
        "task": task,
        "example_id": example_id,
        "model": model,
        "policy": policy,
        "budget": budget,
        "budget_ratio": None if budget == "none" else 0.25,
        "protocol": "post-prefill",
        "score": score,
        "cache_fraction": cache_fraction,
        "cache_fraction_prompt": cache_fraction,
        "peak_kv_bytes": 2 * MIB,
        "tokens": 100,
        "truncated_tokens": truncated_tokens,
        "new_tokens": 8,
        "seconds": 1.5,
        "prediction": "x",
        "answer": "x",
        "error": error,
        "policy_config": {},
        "code_version": "abc123",
    }


@pytest.fixture
def rows() -> list[dict]:
    # h2o appears before full in the file; the report must still put full first.
    return [
        make_row("qasper", 0, "h2o", "0.25", 1.0, 0.25),
        make_row("qasper", 1, "h2o", "0.25", 0.5, 0.30),
        make_row("qasper", 2, "h2o", "0.25", None, 0.90, error="CUDA out of memory"),
        make_row("qasper", 0, "full", "none", 1.0, 1.0),
        make_row("qasper", 1, "full", "none", 1.0, 1.0),
        make_row("qasper", 2, "full", "none", 0.9, 1.0, truncated_tokens=50),
        make_row("narrativeqa", 0, "full", "none", 0.5, 1.0),
        make_row("narrativeqa", 0, "h2o", "0.25", 0.25, 0.20),
    ]


def group(summary: pd.DataFrame, task: str, policy: str) -> pd.Series:
    match = summary[(summary["task"] == task) & (summary["policy"] == policy)]
    assert len(match) == 1
    return match.iloc[0]


def test_summary_frame_group_values(rows: list[dict]) -> None:
    summary = summary_frame(rows)
    assert list(summary.columns) == list(SUMMARY_COLUMNS)
    assert len(summary) == 4

    h2o = group(summary, "qasper", "h2o")
    # The error row is counted but excluded from every mean (its cache fraction of 0.9 too).
    assert (h2o["n"], h2o["errors"]) == (2, 1)
    assert h2o["score"] == pytest.approx(75.0)
    assert h2o["cache_pct"] == pytest.approx(27.5)
    assert h2o["peak_kv_mib"] == pytest.approx(2.0)
    assert h2o["seconds"] == pytest.approx(1.5)
    assert h2o["truncated"] == 0

    full = group(summary, "qasper", "full")
    assert (full["n"], full["errors"], full["truncated"]) == (3, 0, 1)
    assert full["score"] == pytest.approx(290 / 3)
    assert full["budget"] == "none"


def test_summary_frame_groups_by_model() -> None:
    rows = [
        make_row("qasper", 0, "full", "none", 1.0, 1.0, model="a"),
        make_row("qasper", 0, "full", "none", 0.0, 1.0, model="b"),
    ]
    summary = summary_frame(rows)
    assert list(summary["model"]) == ["a", "b"]
    assert list(summary["score"]) == [100.0, 0.0]


def test_summary_frame_all_rows_failed_gives_nan_score() -> None:
    summary = summary_frame([make_row("qasper", 0, "h2o", "0.25", None, 0.5, error="boom")])
    assert (summary.loc[0, "n"], summary.loc[0, "errors"]) == (0, 1)
    assert pd.isna(summary.loc[0, "score"])


def test_write_report_files(tmp_path: Path, rows: list[dict]) -> None:
    store = ResultsStore(tmp_path)
    for row in rows:
        store.append(row)

    md_path, csv_path = write_report(tmp_path)
    assert (md_path, csv_path) == (tmp_path / "report.md", tmp_path / "report.csv")
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # temp files replaced

    csv = pd.read_csv(csv_path)
    assert len(csv) == 4
    assert list(csv.columns) == list(SUMMARY_COLUMNS)
    h2o = csv[(csv["task"] == "qasper") & (csv["policy"] == "h2o")].iloc[0]
    assert h2o["score"] == pytest.approx(75.0) and h2o["errors"] == 1

    md = md_path.read_text(encoding="utf-8")
    assert "Model: `smollm2-135m`" in md
    assert "## longbench (post-prefill)" in md
    header = next(line for line in md.splitlines() if line.startswith("| task"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert cols == ["task", "full", "h2o 0.25"]  # full first though h2o came first in the file

    table = {
        cells[0]: cells[1:]
        for line in md.splitlines()
        if line.startswith("| ") and not line.startswith("| task")
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
        if len(cells) == 3 and "/" in line
    }
    # standard errors: full 100, 100, 90 -> sd 5.77 / sqrt 3 = 3.3; h2o 100, 50 (the error row left out) -> 25.0
    assert table["qasper"] == ["96.7 ± 3.3 / 100.0", "75.0 ± 25.0 / 27.5"]
    assert table["narrativeqa"] == ["50.0 / 100.0", "25.0 / 20.0"]  # one example: no standard error
    # Unweighted mean over tasks: (96.67 + 50) / 2 and (75 + 25) / 2; caches (27.5 + 20) / 2.
    assert table["average"] == ["73.3 / 100.0", "50.0 / 23.8"]

    assert "score x100" in md and "layers x KV heads x tokens processed" in md
    assert "errors: `h2o 0.25` on `qasper`: 1 of 3 examples" in md
    assert "truncated prompts: `full` on `qasper`: 1 of 3 examples" in md
    assert "Examples scored (n) per task:" in md
    n_rows = [line for line in md.splitlines() if line.startswith("| qasper") and "/" not in line]
    assert [c.strip() for c in n_rows[0].strip("|").split("|")] == ["qasper", "3", "2"]


def test_write_report_multiple_models_and_missing_task(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    store.append(make_row("qasper", 0, "full", "none", 1.0, 1.0, model="a"))
    store.append(make_row("narrativeqa", 0, "full", "none", 0.5, 1.0, model="a"))
    store.append(make_row("qasper", 0, "namm", "none", 0.8, 0.4, model="a"))  # no narrativeqa
    store.append(make_row("qasper", 0, "full", "none", 0.0, 1.0, model="b"))
    md_path, _ = write_report(tmp_path)
    md = md_path.read_text(encoding="utf-8")
    assert "## Model `a`" in md and "## Model `b`" in md
    assert "### longbench (post-prefill)" in md
    assert "| average" in md and "80.0 / 40.0 *" in md  # averaged over the one task namm has
    assert "`*`: averaged over the tasks this column has" in md


def test_write_report_without_results_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no results"):
        write_report(tmp_path)
    assert not (tmp_path / "report.md").exists()
    with pytest.raises(ValueError, match="no results"):
        write_report(tmp_path / "typo")
    assert not (tmp_path / "typo").exists()


def test_normalised_score_is_the_mean_over_tasks_of_score_over_full(tmp_path: Path, rows: list[dict]) -> None:
    rows = [*rows, make_row("zero", 0, "full", "none", 0.0, 1.0), make_row("zero", 0, "h2o", "0.25", 0.0, 0.2)]
    frame = normalised_frame(summary_frame(rows))
    h2o = frame[frame["policy"] == "h2o"].iloc[0]
    # qasper: h2o scored examples 0 and 1 (75), the full cache 100 on those two (its 90 on example 2,
    # where h2o failed, stays out); narrativeqa: 25 / 50; "zero" has a full-cache score of 0 and is left out.
    assert h2o["normalised"] == pytest.approx((75 / 100 * 100 + 50) / 2)
    qasper = group(summary_frame(rows), "qasper", "h2o")
    assert qasper["paired_score"] == pytest.approx(75) and qasper["paired_full"] == pytest.approx(100)
    assert h2o["cache_pct"] == pytest.approx((27.5 + 20) / 2) and h2o["tasks"] == 2
    assert frame[frame["policy"] == "full"].iloc[0]["normalised"] == pytest.approx(100)

    store = ResultsStore(tmp_path)
    for row in rows:
        store.append(row)
    md, _ = write_report(tmp_path)
    text = md.read_text()
    assert "| normalised " in text and "![normalised score against cache %](report.png)" in text
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_no_plot_without_a_full_cache_reference(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    store.append(make_row("qasper", 0, "h2o", "0.25", 1.0, 0.25))
    md, _ = write_report(tmp_path)
    assert not (tmp_path / "report.png").exists() and "normalised" not in md.read_text()


def test_latex_tables_layer_heat_map_and_a_directory_of_runs(tmp_path: Path, rows: list[dict]) -> None:
    from namm_bench.cli import main

    for r in rows:
        r["retained_per_layer"] = [108, 54] if r["policy"] == "full" else [27, 54]
    for run in ("a", "b"):
        store = ResultsStore(tmp_path / run)
        for row in rows:
            store.append(row)
    assert main(["report", str(tmp_path)]) == 0  # a directory of runs: each is regenerated
    for run in ("a", "b"):
        tex = (tmp_path / run / "report.tex").read_text()
        assert "\\begin{tabular}" in tex and "longbench (post-prefill)" in tex and "h2o 0.25" in tex
        assert (tmp_path / run / "report-layers.png").read_bytes()[:4] == b"\x89PNG"
        assert "report-layers.png" in (tmp_path / run / "report.md").read_text()
    from namm_bench.report import write_layer_heatmap

    full_only = [r for r in rows if r["policy"] == "full"]
    assert write_layer_heatmap(full_only, tmp_path / "none.png") is None  # no memory policy, no heat map
    assert main(["report", str(tmp_path / "a" / "nothing")]) == 2


def test_longbench_e_rows_get_a_table_by_length_bucket(tmp_path: Path) -> None:
    rows = []
    for i, (bucket, score) in enumerate([("0-4k", 1.0), ("0-4k", 0.0), ("8k+", 0.5)]):
        for policy, budget in (("full", "none"), ("h2o", "0.25")):
            row = make_row("qasper_e", i, policy, budget, score if policy == "full" else 0.0, 0.5)
            rows.append({**row, "meta": {"length_bucket": bucket}})
    store = ResultsStore(tmp_path)
    for row in rows:
        store.append(row)
    md = write_report(tmp_path)[0].read_text()
    assert "By length (LongBench-E" in md
    assert "| qasper_e | 0-4k     | 2   | 50.0   | 0.0        |" in md
    assert "| qasper_e | 8k+      | 1   | 50.0   | 0.0        |" in md


def test_needle_rows_get_a_heat_map_of_depth_by_length(tmp_path: Path) -> None:
    from namm_bench.report_plots import niah_cells

    store = ResultsStore(tmp_path)
    scores = {("full", 0.0): 1.0, ("full", 1.0): 1.0, ("h2o", 0.0): 0.0, ("h2o", 1.0): 1.0}
    for length, task in ((1024, "needle_1k"), (2048, "needle_2k")):
        for i, depth in enumerate((0.0, 1.0, 0.0)):
            for policy, budget in (("full", "none"), ("h2o", "0.25")):
                row = make_row(task, i, policy, budget, scores[(policy, depth)], 1.0, suite="synthetic")
                row["meta"] = {"depth": depth, "length": length, "kind": "needle"}
                store.append(row)
    store.append(make_row("qasper", 0, "full", "none", 0.5, 1.0))  # no depth: not a needle row
    cells = niah_cells(store.rows())
    assert set(cells) == {("needle", "full"), ("needle", "h2o 0.25")}
    assert cells[("needle", "h2o 0.25")][(0.0, 2048)] == [0.0, 0.0] and cells[("needle", "h2o 0.25")][(1.0, 1024)] == [
        1.0
    ]
    write_report(tmp_path)
    assert (tmp_path / "report-niah.png").stat().st_size > 0
    assert "](report-niah.png)" in (tmp_path / "report.md").read_text()


def test_no_needle_heat_map_without_depths(tmp_path: Path, rows: list[dict]) -> None:
    store = ResultsStore(tmp_path)
    for row in rows:
        store.append(row)
    write_report(tmp_path)
    assert not (tmp_path / "report-niah.png").exists()


def test_a_budget_sweep_gets_kvpress_leaderboard_layout(tmp_path: Path) -> None:
    from namm_bench.report_leaderboard import leaderboard_frame

    rows = []
    for task, scale in (("a", 1.0), ("b", 0.5)):
        rows += [make_row(task, 0, "full", "none", scale, 1.0), make_row(task, 0, "namm", "none", 0.8 * scale, 0.3)]
        for budget, score in (("0.75", 0.9), ("0.25", 0.4), ("0.125", 0.1)):
            rows.append(make_row(task, 0, "snapkv", budget, score * scale, float(budget)))
        rows.append(make_row(task, 0, "snapkv", "match", 0.6 * scale, 0.3))
    rows.append(make_row("a", 0, "tova", "0.25", 0.2, 0.25))  # tova lacks task b
    board = leaderboard_frame(summary_frame(rows)).set_index("policy")
    assert list(board.columns) == ["0", "0.25", "0.75", "0.875", "at NAMM's cache"]
    assert list(board.index) == ["full", "namm", "snapkv", "tova"]
    assert board.loc["full", "0"] == "75.0"  # (100 + 50) / 2
    assert board.loc["snapkv", "0.25"] == "67.5" and board.loc["snapkv", "0.875"] == "7.5"
    assert board.loc["snapkv", "0.75"] == "30.0"
    assert board.loc["namm", "at NAMM's cache"] == "60.0 / 30.0%"
    assert board.loc["snapkv", "at NAMM's cache"] == "45.0 / 30.0%"
    assert board.loc["tova", "0.75"] == "20.0 *" and board.loc["tova", "0.25"] == ""
    store = ResultsStore(tmp_path)
    for row in rows:
        store.append(row)
    md, _ = write_report(tmp_path)
    assert "Leaderboard (kvpress's layout)" in md.read_text()
    one_budget = [r for r in rows if r["budget"] in ("none", "0.25")]
    assert leaderboard_frame(summary_frame(one_budget)) is None  # no sweep, no leaderboard


def test_the_pareto_front_keeps_the_points_nothing_beats() -> None:
    from namm_bench.report_plots import pareto_front

    points = [(10, 50), (20, 40), (30, 80), (30, 70), (100, 100), (5, 10), (50, float("nan"))]
    assert pareto_front(points) == [(5, 10), (10, 50), (30, 80), (100, 100)]


def test_the_leaderboard_averages_over_the_tasks_the_sweep_ran_on() -> None:
    from namm_bench.report_leaderboard import leaderboard_frame

    rows = [make_row("a", 0, "full", "none", 1.0, 1.0), make_row("b", 0, "full", "none", 0.0, 1.0)]
    rows += [make_row("a", 0, "h2o", b, 0.5, float(b)) for b in ("0.5", "0.25")]
    board = leaderboard_frame(summary_frame(rows))
    assert board.attrs["tasks"] == ["a"]
    assert board.set_index("policy").loc["full", "0"] == "100.0"  # task b, never swept, left out


def test_needle_rows_of_one_length_get_one_panel_per_kind(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    for i, depth in enumerate((0.0, 0.5, 1.0)):
        for policy, budget in (("full", "none"), ("h2o", "0.25"), ("h2o", "0.5")):
            row = make_row("niah_4k", i, policy, budget, float(depth > 0), 1.0, suite="ruler")
            row["meta"] = {"depth": depth, "length": 4096, "kind": "niah_single_1"}
            store.append(row)
    write_report(tmp_path)
    assert (tmp_path / "report-niah.png").stat().st_size > 0


def test_position_plot_of_where_the_prompt_was_kept(tmp_path: Path, rows: list[dict]) -> None:
    from namm_bench.report_plots import write_position_plot

    for r in rows:
        r["position_retention"] = [1.0] * 10 if r["policy"] == "full" else [0.5] + [0.0] * 8 + [1.0]
        r["question_retention"] = 1.0
    store = ResultsStore(tmp_path)
    for row in rows:
        store.append(row)
    md = write_report(tmp_path)[0].read_text()
    assert (tmp_path / "report-positions.png").read_bytes()[:4] == b"\x89PNG" and "report-positions.png" in md
    full_only = [r for r in rows if r["policy"] == "full"]
    assert write_position_plot(full_only, tmp_path / "none.png") is None  # the full cache keeps everything
