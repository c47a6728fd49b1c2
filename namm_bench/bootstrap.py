"""How sure is a margin between two memory policies? A paired bootstrap of normalised scores.

The normalised score is the reports' (``report.normalised_frame``): the mean over tasks of a
policy's score divided by the full cache's on the same examples, x100. A margin between two
policies is the difference of their normalised scores on the same examples. The bootstrap draws
examples with replacement within each task, keeping an example's rows together, so the interval
says how much the margin depends on which examples were drawn (decoding is greedy: the model
adds no noise of its own).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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


def paired_groups(rows: Iterable[Mapping[str, Any]], columns: Sequence[Column], section: str = "") -> Groups:
    """Group result rows into examples that have a score under every column and the full cache.

    Parameters
    ----------
    rows
        Result rows (``results.jsonl``); rows with an error are left out.
    columns
        The (policy, budget) pairs to compare; the full cache is added.
    section
        A label kept in the group keys, so that rows of several directories stay apart.

    Returns
    -------
    dict
        (section, model, suite, protocol, task) -> one ``{column: score}`` per example, in
        example order. The full cache may have been run under another protocol than the others
        (the RL suite's ``window``); it is then paired by (model, suite, task, example) alone.
    """
    wanted = {FULL, *columns}
    scores: dict[tuple[str, str, str, str, str], dict[Column, float]] = {}
    full: dict[tuple[str, str, str, str], dict[str, float]] = {}
    for row in rows:
        if row.get("error") is not None or row.get("score") is None:
            continue
        column = (str(row["policy"]), str(row["budget"]))
        if column not in wanted:
            continue
        model, suite, task = (str(row[k]) for k in ("model", "suite", "task"))
        example = f"{row['example_id']}@seed{row.get('seed')}"  # suite seeds reuse example ids
        if column == FULL:
            full.setdefault((model, suite, task, example), {})[str(row["protocol"])] = float(row["score"])
        else:
            key = (model, suite, str(row["protocol"]), task, example)
            scores.setdefault(key, {})[column] = float(row["score"])
    groups: Groups = {}
    for (model, suite, protocol, task, example), by_column in scores.items():
        references = full.get((model, suite, task, example), {})
        if protocol in references:
            by_column[FULL] = references[protocol]
        elif len(references) == 1:
            by_column[FULL] = next(iter(references.values()))
        if wanted <= by_column.keys():
            groups.setdefault((section, model, suite, protocol, task), []).append(by_column)
    return groups


def normalised(groups: Groups, column: Column) -> float:
    """Mean over tasks of sum(score) / sum(full-cache score), x100; sections are averaged last.

    Tasks whose full cache scores 0 on every example say nothing and are left out (as in the
    reports); NaN when no task is left.
    """
    per_section: dict[tuple[str, ...], list[float]] = {}
    for key, examples in groups.items():
        reference = sum(e[FULL] for e in examples)
        if reference > 0:
            per_section.setdefault(key[:-1], []).append(sum(e[column] for e in examples) / reference)
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
        Bootstrap draws; each resamples every task's examples with replacement.
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
    point = normalised(groups, policy) - normalised(groups, versus)
    margins = []
    for _ in range(resamples):
        sample = {key: [rng.choice(ex) for _ in ex] for key, ex in groups.items()}
        margins.append(normalised(sample, policy) - normalised(sample, versus))
    margins = sorted(m for m in margins if m == m)  # a resample whose full cache scores 0 everywhere is NaN
    if not margins:
        nan = float("nan")
        return Interval(point, nan, nan, nan, sum(len(v) for v in groups.values()))
    tail = (1 - level) / 2
    low = margins[int(tail * len(margins))]
    high = margins[max(int((1 - tail) * len(margins)) - 1, 0)]
    share = sum(m <= 0 for m in margins) / len(margins)
    return Interval(point, low, high, share, sum(len(v) for v in groups.values()))
