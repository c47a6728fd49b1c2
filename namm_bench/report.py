"""Summarise ``DIR/results.jsonl`` into ``DIR/report.md`` (tables per suite) and ``DIR/report.csv``."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pandas as pd

from .files import write_atomic
from .kvpress_layout import kvpress_section
from .registry import SUITES
from .report_leaderboard import leaderboard_frame
from .report_plots import (
    FULL_POLICY,
    column_label,
    is_missing,
    nanmean,
    number_text,
    write_layer_heatmap,
    write_niah_heatmap,
    write_plot,
    write_position_plot,
)
from .results import ResultsStore, label_settings

logger = logging.getLogger(__name__)

GROUP_FIELDS: tuple[str, ...] = ("model", "suite", "task", "policy", "budget", "protocol")
"""Columns identifying a group of the summary (``model`` has a single value in most runs)."""

SUMMARY_COLUMNS: tuple[str, ...] = GROUP_FIELDS + (
    "n",
    "errors",
    "score",
    "score_se",
    "cache_pct",
    "peak_kv_mib",
    "seconds",
    "truncated",
    "paired_score",
    "paired_full",
)

_REQUIRED_FIELDS = GROUP_FIELDS + ("score", "cache_fraction")
# Optional fields and the value a row without them gets.
_OPTIONAL_FIELDS: dict[str, Any] = {
    "error": None,
    "peak_kv_bytes": math.nan,
    "seconds": math.nan,
    "truncated_tokens": 0,
}


def summary_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Summarise result rows, one line per (model, suite, task, policy, budget, protocol).

    Groups appear in the order of their first row. Means are over the rows without an error, so
    a failed example changes ``errors`` and nothing else except ``truncated``.

    Parameters
    ----------
    rows
        Result rows as stored in ``results.jsonl``.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SUMMARY_COLUMNS`: the group fields, ``n`` (rows without error), ``errors``
        (rows with one), ``score`` (100 x mean score), ``score_se`` (its standard error over the
        examples; NaN below 2), ``cache_pct`` (100 x mean cache fraction), ``peak_kv_mib`` (mean
        peak KV cache size, MiB), ``seconds`` (mean), ``truncated`` (rows whose prompt was
        truncated, errors included), and ``paired_score`` / ``paired_full``: 100 x the mean score
        of the group and of the full cache over the examples both have (the normalisation's
        terms, so that a run still in progress compares like with like). Means of a group with
        no error-free row are NaN.

    Raises
    ------
    ValueError
        If a row lacks a field the summary needs.
    """
    if not rows:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    df = pd.DataFrame(rows)
    missing = [name for name in _REQUIRED_FIELDS if name not in df.columns]
    if missing:
        raise ValueError(f"result rows lack field(s) {', '.join(missing)}")
    for name, default in _OPTIONAL_FIELDS.items():
        if name not in df.columns:
            df[name] = default
    if "long_inputs" in df.columns:  # a policy fed whole inputs is its own column beside the truncated ones
        stream = df["long_inputs"] == "stream"
        df.loc[stream, "policy"] = df.loc[stream, "policy"] + " (stream)"

    failed = df["error"].map(lambda e: not is_missing(e) and e != "").astype(bool)
    ok = ~failed

    def ok_mean_input(column: str, scale: float = 1.0) -> pd.Series:
        # Non-numeric or null values become NaN and are skipped by the mean.
        return pd.to_numeric(df[column], errors="coerce").where(ok) * scale

    # The full cache's score on the same example (same model, suite, protocol and task), if it ran.
    example = ["model", "suite", "protocol", "task", "example_id"]
    is_full = ok & (df["policy"] == FULL_POLICY)
    full_scores = pd.to_numeric(df.loc[is_full, "score"], errors="coerce") * 100.0
    full_by_example = full_scores.groupby([df.loc[is_full, k] for k in example]).mean()
    paired_full = pd.Series(
        full_by_example.reindex(pd.MultiIndex.from_frame(df[example].astype(object))).to_numpy(), index=df.index
    ).where(ok)
    paired = paired_full.notna()

    work = pd.DataFrame(
        {
            **{name: df[name] for name in GROUP_FIELDS},
            "_ok": ok.astype(int),
            "_failed": failed.astype(int),
            "_score": ok_mean_input("score", 100.0),
            "_cache": ok_mean_input("cache_fraction", 100.0),
            "_mib": ok_mean_input("peak_kv_bytes", 1.0 / 2**20),
            "_seconds": ok_mean_input("seconds"),
            "_truncated": (pd.to_numeric(df["truncated_tokens"], errors="coerce").fillna(0) > 0).astype(int),
            "_paired_score": ok_mean_input("score", 100.0).where(paired),
            "_paired_full": paired_full,
        }
    )
    summary = (
        work.groupby(list(GROUP_FIELDS), sort=False, dropna=False)
        .agg(
            n=("_ok", "sum"),
            errors=("_failed", "sum"),
            score=("_score", "mean"),
            score_se=("_score", "sem"),
            cache_pct=("_cache", "mean"),
            peak_kv_mib=("_mib", "mean"),
            seconds=("_seconds", "mean"),
            truncated=("_truncated", "sum"),
            paired_score=("_paired_score", "mean"),
            paired_full=("_paired_full", "mean"),
        )
        .reset_index()
    )
    return summary[list(SUMMARY_COLUMNS)]


def write_report(out_dir: Path, kvpress: list[Path] | tuple[Path, ...] = ()) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.csv`` and ``report.tex`` (and the plots) for the results in ``out_dir``.

    Every file is replaced atomically, so a reader never sees a half-written report.

    Parameters
    ----------
    out_dir
        A run output directory holding ``results.jsonl``.
    kvpress
        Directories of kvpress results (``namm_bench.kvpress_layout``), shown beside the rows' scores;
        ``out_dir/kvpress`` is one whenever it exists.

    Returns
    -------
    tuple of Path
        The markdown and CSV paths.

    Raises
    ------
    ValueError
        If the directory has no results, or a row lacks a field the summary needs.
    ResultsFileError
        If the results file is corrupt.
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():  # ResultsStore would create it, leaving an empty directory behind a typo
        raise ValueError(f"{out_dir} has no results (no such directory)")
    store = ResultsStore(out_dir)
    rows = store.rows()
    if not rows:
        raise ValueError(f"{out_dir} has no results ({store.path} is missing or empty)")
    original, rows = rows, label_settings(rows)
    summary = summary_frame(rows)
    md_path = out_dir / "report.md"
    csv_path = out_dir / "report.csv"
    write_atomic(csv_path, summary.to_csv(index=False, float_format="%.4f", lineterminator="\n"))
    markdown, tables = _markdown(summary, rows)
    own = out_dir / "kvpress"
    markdown += kvpress_section(summary, [*kvpress, *([own] if own.is_dir() and own not in kvpress else [])])
    write_atomic(out_dir / "report.tex", _latex(tables))
    if write_plot(normalised_frame(summary), out_dir / "report.png"):
        markdown += "\n![normalised score against cache %](report.png)\n"
    if write_layer_heatmap(rows, out_dir / "report-layers.png"):
        markdown += "\n![share of each layer's tokens kept, per memory policy](report-layers.png)\n"
    if write_position_plot(rows, out_dir / "report-positions.png"):
        markdown += "\n![share of the prompt kept by position, per memory policy](report-positions.png)\n"
    if write_niah_heatmap(rows, out_dir / "report-niah.png"):
        markdown += "\n![score by needle depth and context length, per policy](report-niah.png)\n"
    for suite in dict.fromkeys(r.get("suite") for r in rows):
        # Suites with figures of their own; a suite whose plugin is not installed here has none.
        plots = getattr(SUITES.get(suite), "write_plots", None) if suite in SUITES else None
        for path, caption in plots(original, out_dir) if plots is not None else []:
            markdown += f"\n![{caption}]({path.name})\n"
    write_atomic(md_path, markdown)
    logger.info("wrote %s and %s (%d groups from %d rows)", md_path, csv_path, len(summary), len(rows))
    return md_path, csv_path


def normalised_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """Per (model, suite, protocol, policy, budget): mean over tasks of score / full-cache score.

    Both scores are means over the same examples (``paired_score`` / ``paired_full``), as the
    paper normalises. Columns: those keys, ``normalised`` (x100), ``cache_pct`` (mean over the
    same tasks) and ``tasks``. Empty when no group has a full-cache reference above 0.
    """
    keys = ["model", "suite", "protocol"]
    out = []
    for (model, suite, protocol, policy, budget), group in summary.groupby(
        [*keys, "policy", "budget"], sort=False, dropna=False
    ):
        ratios, caches = [], []
        for _, row in group.iterrows():
            reference, score = row["paired_full"], row["paired_score"]
            if is_missing(reference) or reference <= 0 or is_missing(score):
                continue
            ratios.append(100.0 * score / reference)
            caches.append(row["cache_pct"])
        if ratios:
            out.append((model, suite, protocol, policy, budget, nanmean(ratios), nanmean(caches), len(ratios)))
    columns = [*keys, "policy", "budget", "normalised", "cache_pct", "tasks"]
    return pd.DataFrame(out, columns=columns)


def _latex(tables: list[tuple[str, pd.DataFrame]]) -> str:
    """The score / cache % tables as LaTeX (booktabs), one per suite and protocol."""
    parts = ["% namm-bench report: cells are score x100 / cache %; needs \\usepackage{booktabs}", ""]
    for title, frame in tables:
        parts.append(f"% {title}")
        parts.append(frame.to_latex(index=False, escape=True, caption=title.replace("_", "\\_"), position="t"))
    return "\n".join(parts)


def _markdown(summary: pd.DataFrame, rows: list[dict[str, Any]]) -> tuple[str, list[tuple[str, pd.DataFrame]]]:
    """Render the summary: per model (when several), suite and protocol, a score / cache % table.

    Returns the markdown and each section's (title, score table) for the LaTeX version.
    """
    models = list(dict.fromkeys(summary["model"]))
    lines = ["# namm-bench report", ""]
    if len(models) == 1:
        lines.append(f"Model: `{models[0]}`")
        lines.append("")
    versions = sorted({str(r["code_version"]) for r in rows if not is_missing(r.get("code_version"))})
    lines.append(f"{len(rows)} result rows" + (f"; code version {', '.join(versions)}" if versions else "") + ".")
    lines.append("")
    tables = []
    for model in models:
        level = "##"
        if len(models) > 1:
            lines += [f"## Model `{model}`", ""]
            level = "###"
        by_model = summary[summary["model"] == model]
        sections = list(dict.fromkeys(zip(by_model["suite"], by_model["protocol"], strict=True)))
        for suite, protocol in sections:
            section = by_model[(by_model["suite"] == suite) & (by_model["protocol"] == protocol)]
            lines += [f"{level} {suite} ({protocol})", ""]
            section_lines, table = _section(section)
            lines += section_lines
            tables.append((f"{suite} ({protocol}), {model}", table))
            board = leaderboard_frame(section)
            if board is not None:
                swept = ", ".join(f"`{t}`" for t in board.attrs["tasks"])
                lines += [
                    f"Leaderboard (kvpress's layout): mean score x100 over {swept} per policy and compression "
                    "ratio (1 - the budget's kept fraction; 0 is the full cache); the last column is at the "
                    "NAMM's own cache (score / cache %). `*`: some of those tasks missing.",
                    "",
                    _table(board),
                    "",
                ]
                tables.append((f"{suite} ({protocol}) leaderboard, {model}", board))
            lines += _length_buckets(
                [r for r in rows if (r["model"], r["suite"], r["protocol"]) == (model, suite, protocol)]
            )
    return "\n".join(lines).rstrip("\n") + "\n", tables


def _length_buckets(rows: list[dict[str, Any]]) -> list[str]:
    """LongBench-E's view: score x100 per task, length bucket and column, for rows that carry a bucket."""
    bucketed = [
        r for r in rows if isinstance(r.get("meta"), dict) and r["meta"].get("length_bucket") and not r.get("error")
    ]
    if not bucketed:
        return []
    frame = pd.DataFrame(
        {
            "task": [r["task"] for r in bucketed],
            "length": [r["meta"]["length_bucket"] for r in bucketed],
            "column": [column_label(r["policy"], r.get("budget")) for r in bucketed],
            "score": [100.0 * float(r["score"]) for r in bucketed],
        }
    )
    table = frame.pivot_table(index=["task", "length"], columns="column", values="score", aggfunc="mean", sort=False)
    counts = frame.groupby(["task", "length"], sort=False).size() // max(1, frame["column"].nunique())
    table = table.map(number_text).reset_index()
    table.insert(2, "n", [str(int(counts.get((t, b), 0))) for t, b in zip(table["task"], table["length"], strict=True)])
    return ["By length (LongBench-E buckets of the row's `length` field):", "", _table(table), ""]


def _section(section: pd.DataFrame) -> tuple[list[str], pd.DataFrame]:
    """Markdown lines for one suite and protocol (score table, legend, problems, n table) and the score table."""
    tasks = list(dict.fromkeys(section["task"]))
    pairs = list(dict.fromkeys(zip(section["policy"], section["budget"], strict=True)))
    # Stable sort: the full-cache reference first, the rest in order of first appearance.
    pairs.sort(key=lambda pair: pair[0] != FULL_POLICY)
    labels = [column_label(policy, budget) for policy, budget in pairs]

    cells: dict[str, list[str]] = {"task": [*tasks, "average"]}
    counts: dict[str, list[str]] = {"task": list(tasks)}
    partial_average = False
    for (policy, budget), label in zip(pairs, labels, strict=True):
        col = section[(section["policy"] == policy) & (section["budget"] == budget)].set_index("task")
        col_cells, col_counts, scores, caches = [], [], [], []
        for task in tasks:
            if task not in col.index:
                col_cells.append("")
                col_counts.append("")
                continue
            group = col.loc[task]
            col_cells.append(_cell(group["score"], group["cache_pct"], group["score_se"]))
            col_counts.append(str(int(group["n"])))
            scores.append(group["score"])
            caches.append(group["cache_pct"])
        # Unweighted mean over tasks, skipping tasks whose rows all failed.
        average = _cell(nanmean(scores), nanmean(caches))
        if len(scores) < len(tasks):
            average += " *"
            partial_average = True
        cells[label] = [*col_cells, average]
        counts[label] = col_counts
    normalised = normalised_frame(section)
    if not normalised.empty:
        cells["task"].append("normalised")
        for (policy, budget), label in zip(pairs, labels, strict=True):
            hit = normalised[(normalised["policy"] == policy) & (normalised["budget"] == budget)]
            cells[label].append(_cell(hit["normalised"].iloc[0], hit["cache_pct"].iloc[0]) if len(hit) else "")

    n_values = sorted({int(n) for n in section["n"]})
    n_text = str(n_values[0]) if len(n_values) == 1 else f"{n_values[0]}-{n_values[-1]}"
    table = pd.DataFrame(cells)
    lines = [_table(table), ""]
    lines.append(
        f"Cells: score x100 ± its standard error over the examples / cache % (retained KV entries / (layers x KV "
        f"heads x tokens processed), x100), means over n = {n_text} examples per task; `average` is the "
        "unweighted mean over tasks."
    )
    if partial_average:
        lines.append("`*`: averaged over the tasks this column has, not all of them.")
    if not normalised.empty:
        lines.append(
            "`normalised`: mean over tasks of score / full-cache score on the same examples x100 (the paper's "
            "normalisation; tasks where the full cache scores 0 are left out) / mean cache %."
        )
    problems = _problems(section)
    if problems:
        lines.append("")
        lines += problems
    lines += ["", "Examples scored (n) per task:", "", _table(pd.DataFrame(counts)), ""]
    return lines, table


def _problems(section: pd.DataFrame) -> list[str]:
    """Bullet lines naming the groups with errors or truncated prompts."""
    lines = []
    for _, group in section.iterrows():
        label = column_label(group["policy"], group["budget"])
        total = int(group["n"]) + int(group["errors"])
        if group["errors"]:
            lines.append(
                f"- errors: `{label}` on `{group['task']}`: {int(group['errors'])} of {total} examples "
                "(excluded from the means)"
            )
        if group["truncated"]:
            lines.append(
                f"- truncated prompts: `{label}` on `{group['task']}`: {int(group['truncated'])} of {total} examples"
            )
    return lines


def _cell(score: float, cache_pct: float, se: float = math.nan) -> str:
    """Format a table cell like ``95.0 / 25.3``, or ``95.0 ± 2.1 / 25.3`` with a standard error; missing is ``-``."""
    spread = "" if is_missing(se) else f" ± {se:.1f}"
    return f"{number_text(score)}{spread} / {number_text(cache_pct)}"


def _table(frame: pd.DataFrame) -> str:
    # disable_numparse keeps "95.0 / 25.3" and counts exactly as written.
    return frame.to_markdown(index=False, disable_numparse=True, stralign="left")
