"""The report's leaderboard: kvpress's layout, one row per policy, one column per compression ratio."""

from __future__ import annotations

import pandas as pd

from .report_plots import FULL_POLICY, is_missing, nanmean, number_text

MATCHED = ("namm", "match")
"""Rows at the NAMM's own cache: the NAMM's, and baselines run with ``--budget match``."""
AT_NAMM = "at NAMM's cache"


def compression_of(budget: object) -> float | None:
    """kvpress's compression ratio (1 - kept fraction) of a ratio budget label such as ``0.25``; None otherwise."""
    try:
        ratio = float(str(budget))
    except ValueError:
        return None
    return round(1.0 - ratio, 6) if 0.0 < ratio <= 1.0 else None


def leaderboard_frame(section: pd.DataFrame) -> pd.DataFrame | None:
    """kvpress's leaderboard layout for one (model, suite, protocol) section of the summary.

    Rows: policies; columns: compression ratio 0 (the full cache), then each ratio budget's
    ``1 - ratio`` (``--budget 0.25`` is compression 0.75), then the NAMM's own cache (its row and
    ``match`` rows: score / cache %). Cells: the unweighted mean of the score x100 over the tasks
    the sweep ran on (``frame.attrs["tasks"]``; the full cache's other tasks are left out), ``*``
    when the policy lacks some of them. None unless at least two ratio budgets ran.
    """
    compression = section["budget"].map(compression_of)
    swept = section[compression.notna() & (compression > 0)]
    compressions = sorted(set(compression_of(b) for b in swept["budget"]))
    if len(compressions) < 2:
        return None
    tasks = list(dict.fromkeys(swept["task"]))
    section = section[section["task"].isin(tasks)]
    columns = ["0", *(f"{c:g}" for c in compressions)]
    matched = section[(section["policy"] == MATCHED[0]) | (section["budget"] == MATCHED[1])]
    if not matched.empty:
        columns.append(AT_NAMM)
    policies = sorted(dict.fromkeys(section["policy"]), key=lambda p: (p != FULL_POLICY, p != MATCHED[0], p))
    table = []
    for policy in policies:
        own = section[section["policy"] == policy]
        cells = {"policy": policy, **dict.fromkeys(columns, "")}
        for budget, group in own.groupby("budget", sort=False):
            if policy == FULL_POLICY:
                column = "0"
            elif policy == MATCHED[0] or budget == MATCHED[1]:
                column = AT_NAMM
            else:
                compression = compression_of(budget)
                column = f"{compression:g}" if compression is not None and compression > 0 else None
            if column is None:
                continue
            score, complete = _task_mean(group, tasks, "score")
            text = number_text(score) + ("" if complete else " *")
            if column == AT_NAMM:
                text += f" / {number_text(_task_mean(group, tasks, 'cache_pct')[0])}%"
            cells[column] = text
        table.append(cells)
    frame = pd.DataFrame(table, columns=["policy", *columns])
    frame.attrs["tasks"] = tasks
    return frame


def _task_mean(group: pd.DataFrame, tasks: list[str], column: str) -> tuple[float, bool]:
    """Unweighted mean over ``tasks`` of ``column``, and whether every task had a value."""
    values = [group[group["task"] == t][column].mean() for t in tasks]
    return nanmean(values), not any(is_missing(v) for v in values)
