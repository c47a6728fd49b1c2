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


def write_plot(frame: pd.DataFrame, path: Path) -> Path | None:
    """Normalised score against cache % per policy (one point per budget); None if nothing to plot."""
    if frame.empty or set(frame["policy"]) == {FULL_POLICY}:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(zip(frame["model"], frame["suite"], frame["protocol"], strict=True)))
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4), squeeze=False)
    for ax, (model, suite, protocol) in zip(axes[0], groups, strict=True):
        part = frame[(frame["model"] == model) & (frame["suite"] == suite) & (frame["protocol"] == protocol)]
        for policy in dict.fromkeys(part["policy"]):
            points = part[part["policy"] == policy].sort_values("cache_pct")
            style = "*" if policy == FULL_POLICY else "o-"
            ax.plot(points["cache_pct"], points["normalised"], style, label=policy, ms=9 if policy == "namm" else 6)
        ax.set_title(f"{suite} ({protocol})\n{model}", fontsize=9)
        ax.set_xlabel("cache %")
        ax.set_ylabel("score / full-cache score (x100)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    write_figure(fig, path)
    return path


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
