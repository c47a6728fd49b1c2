"""The report's figures: normalised score against cache %, and what each layer kept."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from .files import write_figure

FULL_POLICY = "full"
NO_BUDGET = "none"


def is_missing(value: Any) -> bool:
    """True for None and NaN (pandas turns missing JSON fields into NaN)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def number_text(value: float) -> str:
    """A table number with one decimal, ``-`` when missing."""
    return "-" if is_missing(value) else f"{value:.1f}"


def nanmean(values: list[float]) -> float:
    """Mean of the values that are not missing; NaN when none is."""
    present = [v for v in values if not is_missing(v)]
    return sum(present) / len(present) if present else math.nan


def write_plot(frame: pd.DataFrame, path: Path) -> Path | None:
    """Normalised score against cache % per policy (one point per budget), with the Pareto front over
    every policy's points (none scores higher at less cache); None if nothing to plot."""
    if frame.empty or set(frame["policy"]) == {FULL_POLICY}:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(zip(frame["model"], frame["suite"], frame["protocol"], strict=True)))
    fig, axes = plt.subplots(1, len(groups), figsize=(7.5 * len(groups), 4.5), squeeze=False)
    colours = plt.get_cmap("tab20").colors
    for ax, (model, suite, protocol) in zip(axes[0], groups, strict=True):
        part = frame[(frame["model"] == model) & (frame["suite"] == suite) & (frame["protocol"] == protocol)]
        for i, policy in enumerate(dict.fromkeys(part["policy"])):
            points = part[part["policy"] == policy].sort_values("cache_pct")
            style = "*" if policy == FULL_POLICY else "o-"
            size = 11 if policy in ("namm", FULL_POLICY) else 5
            ax.plot(points["cache_pct"], points["normalised"], style, label=policy, ms=size, color=colours[i % 20])
        front = pareto_front(list(zip(part["cache_pct"], part["normalised"], strict=True)))
        if len(front) > 1:
            ax.step(*zip(*front, strict=True), where="post", ls="--", color="grey", lw=1, label="Pareto front")
        ax.set_title(f"{suite} ({protocol})\n{model}", fontsize=9)
        ax.set_xlabel("cache %")
        ax.set_ylabel("score / full-cache score (x100)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: points stay visible
    fig.tight_layout()
    write_figure(fig, path)
    return path


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (cache, score) points no other point beats (as much or more score at no more cache), by cache."""
    front: list[tuple[float, float]] = []
    present = [p for p in points if not (is_missing(p[0]) or is_missing(p[1]))]
    for cache, score in sorted(present, key=lambda p: (p[0], -p[1])):
        if not front or score > front[-1][1]:
            front.append((cache, score))
    return front


def column_label(policy: str, budget: Any) -> str:
    """Return the markdown column name of a (policy, budget): ``full``, ``namm``, ``h2o 0.25``."""
    if is_missing(budget) or str(budget) == NO_BUDGET:
        return str(policy)
    return f"{policy} {budget}"


def write_layer_heatmap(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Heat map of the share of each layer's tokens that memory policies kept; None without such rows.

    One line per (suite, policy, budget), one column per layer: retained entries per KV head at the
    end of the answer / tokens processed, averaged over that group's examples.
    """
    shares: dict[str, list[list[float]]] = {}
    for r in rows:
        layers, processed = r.get("retained_per_layer"), (r.get("tokens") or 0) + (r.get("new_tokens") or 0)
        if r.get("policy") == FULL_POLICY or not layers or processed <= 0 or r.get("error"):
            continue
        label = f"{r['suite']}: {column_label(r['policy'], r.get('budget'))}"
        if r.get("long_inputs") == "stream" and "(stream)" not in label:
            label += " (stream)"
        shares.setdefault(label, []).append([n / processed for n in layers])
    shares = {k: v for k, v in shares.items() if len({len(x) for x in v}) == 1}  # one model shape per line
    if not shares:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(shares)
    width = max(len(v[0]) for v in shares.values())
    grid = [[math.nan] * width for _ in labels]
    for i, label in enumerate(labels):
        runs = shares[label]
        for layer in range(len(runs[0])):
            grid[i][layer] = 100.0 * sum(run[layer] for run in runs) / len(runs)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.25 * width + 3), 0.4 * len(labels) + 1.6))
    image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=100)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("layer")
    fig.colorbar(image, ax=ax, label="tokens kept %")
    fig.tight_layout()
    write_figure(fig, path)
    return path


def write_position_plot(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Share of the prompt kept by position (ten spans), one line per (suite, policy, budget).

    Text rows hold ``position_retention`` (and ``question_retention``, in the legend): where in the
    prompt each policy kept its memory at the end of the answer, averaged over the group's
    examples. None without such rows.
    """
    spans: dict[str, list[list[float]]] = {}
    questions: dict[str, list[float]] = {}
    for r in rows:
        if r.get("policy") == FULL_POLICY or not r.get("position_retention") or r.get("error"):
            continue
        label = f"{r['suite']}: {column_label(r['policy'], r.get('budget'))}"
        spans.setdefault(label, []).append(r["position_retention"])
        if r.get("question_retention") is not None:
            questions.setdefault(label, []).append(r["question_retention"])
    if not spans:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for label, runs in spans.items():
        mean = [100.0 * sum(run[i] for run in runs) / len(runs) for i in range(len(runs[0]))]
        asked = questions.get(label)
        suffix = f" (question {100 * sum(asked) / len(asked):.0f}%)" if asked else ""
        ax.plot([(i + 0.5) * 100 / len(mean) for i in range(len(mean))], mean, marker="o", label=label + suffix)
    ax.set_xlabel("position in the prompt (%)")
    ax.set_ylabel("tokens kept %")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    write_figure(fig, path)
    return path


def niah_cells(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[tuple[float, int], list[float]]]:
    """Scores of needle-in-a-haystack rows (``meta`` holds ``depth`` and ``length``), by (kind, policy
    column) and then (depth, length). Rows without both, and error rows, are left out."""
    cells: dict[tuple[str, str], dict[tuple[float, int], list[float]]] = {}
    for r in rows:
        meta = r.get("meta") if isinstance(r.get("meta"), dict) else {}
        depth, length = meta.get("depth"), meta.get("length")
        if is_missing(depth) or is_missing(length) or r.get("error") or is_missing(r.get("score")):
            continue
        kind = str(meta.get("kind") or r["task"])
        panel = cells.setdefault((kind, column_label(r["policy"], r.get("budget"))), {})
        panel.setdefault((float(depth), int(length)), []).append(float(r["score"]))
    return cells


def write_niah_heatmap(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Score (x100) by needle depth and context length, one panel per (kind, policy); None without NIAH rows.

    The test RULER and the needle-in-a-haystack plots made familiar: where in the context, and at
    which length, each policy loses the needle.
    """
    cells = niah_cells(rows)
    if not cells:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len({n for panel in cells.values() for _, n in panel}) == 1:
        return _niah_one_length(cells, path, plt)
    kinds = list(dict.fromkeys(kind for kind, _ in cells))
    policies = sorted(dict.fromkeys(policy for _, policy in cells), key=lambda p: p != FULL_POLICY)  # full first
    fig, axes = plt.subplots(
        len(kinds), len(policies), figsize=(2.6 * len(policies) + 1, 2.4 * len(kinds) + 0.6), squeeze=False
    )
    for i, kind in enumerate(kinds):
        for j, policy in enumerate(policies):
            ax, panel = axes[i][j], cells.get((kind, policy), {})
            depths = sorted({d for d, _ in panel})
            lengths = sorted({n for _, n in panel})
            grid = [[math.nan] * len(lengths) for _ in depths]
            for (d, n), scores in panel.items():
                grid[depths.index(d)][lengths.index(n)] = 100.0 * sum(scores) / len(scores)
            _score_grid(ax, grid, fontsize=7)
            ax.set_xticks(
                range(len(lengths)), [f"{round(n / 1024)}k" if n >= 1024 else str(n) for n in lengths], fontsize=7
            )
            ax.set_yticks(range(len(depths)), [f"{d:.0%}" for d in depths], fontsize=7)
            ax.set_title(f"{kind}: {policy}", fontsize=8)
            if j == 0:
                ax.set_ylabel("needle depth")
            if i == len(kinds) - 1:
                ax.set_xlabel("context")
    fig.tight_layout()
    write_figure(fig, path)
    return path


def _niah_one_length(cells: dict, path: Path, plt: Any) -> Path:
    """One context length: one panel per kind, score (x100) by needle depth and policy column."""
    kinds = list(dict.fromkeys(kind for kind, _ in cells))
    widest = max(sum(1 for k, _ in cells if k == kind) for kind in kinds)
    fig, axes = plt.subplots(len(kinds), 1, figsize=(0.55 * widest + 2.5, 2.6 * len(kinds) + 1.2), squeeze=False)
    for ax, kind in zip(axes[:, 0], kinds, strict=True):
        policies = sorted((p for k, p in cells if k == kind), key=lambda p: p != FULL_POLICY)  # full first
        depths = sorted({d for p in policies for d, _ in cells[(kind, p)]})
        grid = [[math.nan] * len(policies) for _ in depths]
        for x, policy in enumerate(policies):
            for (d, _), scores in cells[(kind, policy)].items():
                grid[depths.index(d)][x] = 100.0 * sum(scores) / len(scores)
        _score_grid(ax, grid, fontsize=6)
        ax.set_xticks(range(len(policies)), policies, rotation=90, fontsize=7)
        ax.set_yticks(range(len(depths)), [f"{d:.0%}" for d in depths], fontsize=7)
        length = next(n for _, n in cells[(kind, policies[0])])
        ax.set_title(f"{kind}, {round(length / 1024)}k tokens: score by needle depth", fontsize=9)
        ax.set_ylabel("needle depth")
    fig.tight_layout()
    write_figure(fig, path)
    return path


def _score_grid(ax: Any, grid: list[list[float]], fontsize: int) -> None:
    """Draw scores x100 (rows by columns, NaN for no examples) as a red-to-green grid, each cell labelled."""
    ax.imshow(grid or [[math.nan]], aspect="auto", cmap="RdYlGn", vmin=0, vmax=100)
    for y, line in enumerate(grid):
        for x, value in enumerate(line):
            if not math.isnan(value):
                ax.text(x, y, f"{value:.0f}", ha="center", va="center", fontsize=fontsize)
