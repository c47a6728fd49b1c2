"""How sure is a margin between two memory policies? A paired bootstrap of normalised scores.

The normalised score is the reports' (``report.normalised_frame``): the mean over tasks of a
policy's score divided by the full cache's on the same examples, x100. A margin between two
policies is the difference of their normalised scores on the same examples. The bootstrap draws
examples with replacement within each task, keeping an example's rows together, so the interval
says how much the margin depends on which examples were drawn (decoding is greedy: the model
adds no noise of its own).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .results import KEY_DEFAULTS, label_settings

Column = tuple[str, str]
"""A (policy, budget label) pair as in the result rows: ``("namm", "none")``, ``("h2o", "match")``."""

FULL: Column = ("full", "none")

GroupKey = tuple[str, ...]
"""(section, model, suite, protocol, task): the examples within one key are resampled together."""

Groups = dict[GroupKey, list[dict[Column, float]]]


@dataclass(frozen=True)
class Interval:
    """A margin with its bootstrap interval.

    Attributes
    ----------
    point
        The margin on the examples as they are (normalised points).
    low, high
        The 2.5% and 97.5% quantiles of the resampled margins (or the ``level`` asked for).
    share_at_or_below_zero
        Fraction of resamples whose margin is <= 0 (a one-sided bootstrap p-value).
    examples
        Examples that have every compared column, over all tasks.
    """

    point: float
    low: float
    high: float
    share_at_or_below_zero: float
    examples: int


def paired_groups(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[Column], section: str = "", field: str = "score"
) -> Groups:
    """Group result rows into examples that have a value under every column and the full cache.

    Parameters
    ----------
    rows
        Result rows (``results.jsonl``); rows with an error are left out.
    columns
        The (policy, budget) pairs to compare; the full cache is added.
    section
        A label kept in the group keys, so that rows of several directories stay apart.
    field
        The row field collected: ``score``, or ``cache_fraction`` for the same examples' caches.

    Returns
    -------
    dict
        (section, model, suite, protocol, task) -> one ``{column: value}`` per example, in example
        order. Examples pair within a protocol, suite seed and combination of settings: rows that
        differ in a setting (interval, preset, dtype ...) get it in their protocol, as the reports
        label them (``results.label_settings``), so they never pair with each other.
    """
    wanted = {FULL, *columns}
    kept = [dict(r) for r in rows if not r.get("error") and r.get("score") is not None]
    by_example: dict[tuple[str, ...], dict[Column, float]] = {}
    for row in label_settings(kept):
        column = (str(row["policy"]), str(row["budget"]))
        if column in wanted:
            seed = row.get("seed", KEY_DEFAULTS["seed"])  # suite seeds reuse example ids
            key = (*(str(row[k]) for k in ("model", "suite", "protocol", "task")), f"{row['example_id']}@{seed}")
            by_example.setdefault(key, {})[column] = float(row[field])
    groups: Groups = {}
    for (model, suite, protocol, task, _), values in by_example.items():
        if wanted <= values.keys():
            groups.setdefault((section, model, suite, protocol, task), []).append(values)
    return groups


def informative(groups: Groups) -> list[GroupKey]:
    """The tasks whose full cache scores above 0 on some example: the only ones a ratio can use."""
    return [key for key, examples in groups.items() if sum(e[FULL] for e in examples) > 0]


def normalised(groups: Groups, column: Column, tasks: Sequence[GroupKey] | None = None) -> float:
    """Mean over tasks of sum(score) / sum(full-cache score), x100; sections are averaged last.

    ``tasks`` defaults to :func:`informative` (as in the reports, a task the full cache never
    answers says nothing). NaN when there is no task, or one of ``tasks`` has a zero reference.
    """
    per_section: dict[tuple[str, ...], list[float]] = {}
    for key in informative(groups) if tasks is None else tasks:
        reference = sum(e[FULL] for e in groups[key])
        if reference <= 0:
            return float("nan")
        per_section.setdefault(key[:-1], []).append(sum(e[column] for e in groups[key]) / reference)
    if not per_section:
        return float("nan")
    return 100 * sum(sum(v) / len(v) for v in per_section.values()) / len(per_section)


def mean_over_tasks(groups: Groups, column: Column) -> float:
    """Mean over tasks (sections last) of the column's mean value, x100: a cache % of paired examples."""
    per_section: dict[tuple[str, ...], list[float]] = {}
    for key, examples in groups.items():
        per_section.setdefault(key[:-1], []).append(sum(e[column] for e in examples) / len(examples))
    if not per_section:
        return float("nan")
    return 100 * sum(sum(v) / len(v) for v in per_section.values()) / len(per_section)


def paired_bootstrap(
    groups: Groups, policy: Column, versus: Column, resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> Interval:
    """Margin ``normalised(policy) - normalised(versus)`` with a percentile bootstrap interval.

    Parameters
    ----------
    groups
        From :func:`paired_groups` (every example has both columns).
    policy, versus
        The columns compared; ``versus`` may be :data:`FULL` (margin over the full cache).
    resamples
        Bootstrap draws; each resamples every task's examples with replacement. The tasks stay
        those of the examples as drawn; a draw in which one of them has no full-cache score above
        0 cannot be normalised and is left out.
    seed
        Seed of the draws (the interval is reproducible).
    level
        Coverage of the interval.

    Raises
    ------
    ValueError
        If no example has both columns.
    """
    if not groups:
        raise ValueError(f"no example has {policy}, {versus} and the full cache")
    rng = random.Random(seed)
    tasks = informative(groups)
    point = normalised(groups, policy, tasks) - normalised(groups, versus, tasks)
    margins = []
    for _ in range(resamples):
        sample = {key: [rng.choice(ex) for _ in ex] for key, ex in groups.items()}
        margins.append(normalised(sample, policy, tasks) - normalised(sample, versus, tasks))
    margins = sorted(m for m in margins if not math.isnan(m))
    examples = sum(len(v) for v in groups.values())
    if not margins:
        return Interval(point, math.nan, math.nan, math.nan, examples)
    tail = (1 - level) / 2
    low = margins[min(int(math.floor(tail * len(margins) + 1e-9)), len(margins) - 1)]
    high = margins[max(int(math.ceil((1 - tail) * len(margins) - 1e-9)) - 1, 0)]
    share = sum(m <= 0 for m in margins) / len(margins)
    return Interval(point, low, high, share, examples)
