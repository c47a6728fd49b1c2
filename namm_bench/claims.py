"""A claims ledger: each claim of a paper checked against result rows, never typed by hand.

A claim compares a policy with another column on one table's rows ("the NAMM is above H2O at the
same cache on LongBench"): the margin of normalised scores with its paired bootstrap interval
(``namm_bench.bootstrap``) decides it. It **holds** when the interval's lower bound is above the
claim's ``margin`` (0 for "above", a negative tolerance for "keeps accuracy") and the policy's
mean cache is below ``max_cache_pct`` when the claim is about a smaller cache; it **does not
hold** otherwise; it is **not measured** when no example has both columns, when a task has fewer
than ``MIN_EXAMPLES`` examples, or when the rows mix settings.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .bootstrap import FULL, Column, mean_over_tasks, paired_bootstrap, paired_groups

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
NOT_MEASURED = "not measured"


def parse_column(text: str) -> Column:
    """``"namm"`` -> ``("namm", "none")``; ``"h2o@match"`` -> ``("h2o", "match")``."""
    policy, _, budget = text.partition("@")
    if not policy:
        raise ValueError(f"column {text!r}: expected POLICY or POLICY@BUDGET (h2o@match)")
    return policy, budget or "none"


def column_text(column: Column) -> str:
    policy, budget = column
    return policy if budget == "none" else f"{policy}@{budget}"


@dataclass(frozen=True)
class Claim:
    """One claim of the paper, as data.

    Attributes
    ----------
    id
        Short stable name (``longbench-vs-full``).
    table
        The table whose rows decide it (a directory of ``reports/paper``).
    text
        The claim in words.
    paper
        The paper's figure, as the paper states it (``+11% normalised at 25% cache``).
    policy, versus
        Columns compared: the margin is ``normalised(policy) - normalised(versus)``.
    margin
        The claim holds when the interval's lower bound is above this (normalised points).
    max_cache_pct
        When set, the policy's mean cache % must also be below it ("with a smaller cache").
    """

    id: str
    table: str
    text: str
    paper: str
    policy: Column
    versus: Column
    margin: float = 0.0
    max_cache_pct: float | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Claim:
        known = {"id", "table", "text", "paper", "policy", "versus", "margin", "max_cache_pct"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"claim {data.get('id', '?')!r}: unknown keys {sorted(unknown)}")
        missing = {"id", "table", "text", "paper", "policy", "versus"} - set(data)
        if missing:
            raise ValueError(f"claim {data.get('id', '?')!r}: missing {sorted(missing)}")
        return cls(
            id=str(data["id"]),
            table=str(data["table"]),
            text=str(data["text"]),
            paper=str(data["paper"]),
            policy=parse_column(str(data["policy"])),
            versus=parse_column(str(data["versus"])),
            margin=float(data.get("margin", 0.0)),
            max_cache_pct=None if data.get("max_cache_pct") is None else float(data["max_cache_pct"]),
        )


@dataclass(frozen=True)
class Verdict:
    """A claim checked: our figure, its interval and the verdict."""

    claim: Claim
    verdict: str
    examples: int = 0
    ours: float = math.nan
    low: float = math.nan
    high: float = math.nan
    cache_pct: float = math.nan
    why: str = ""


MIN_EXAMPLES = 10
"""Examples per task a verdict needs: fewer give a bootstrap interval too narrow to mean anything
(one example per task gives an interval of width 0)."""


def check(claim: Claim, rows: Iterable[Mapping[str, Any]], resamples: int = 2000, seed: int = 0) -> Verdict:
    """Decide one claim from its table's rows (see the module docstring)."""
    rows = list(rows)
    columns = [claim.policy, claim.versus]
    groups = paired_groups(rows, columns)
    if not groups:
        both = dict.fromkeys(map(column_text, (claim.policy, claim.versus, FULL)))
        return Verdict(claim, NOT_MEASURED, why=f"no example has rows of {' and '.join(both)}")
    examples = sum(len(v) for v in groups.values())
    settings = sorted({key[3] for key in groups if ";" in key[3]})  # label_settings marks them so
    if settings:
        return Verdict(claim, NOT_MEASURED, examples, why=f"rows of several settings ({' / '.join(settings)})")
    fewest = min(len(v) for v in groups.values())
    if fewest < MIN_EXAMPLES:
        why = f"{fewest} example(s) in a task; a verdict needs {MIN_EXAMPLES} per task"
        return Verdict(claim, NOT_MEASURED, examples, why=why)
    interval = paired_bootstrap(groups, claim.policy, claim.versus, resamples=resamples, seed=seed)
    if math.isnan(interval.point):
        why = "the full cache scores 0 on every example: nothing to normalise by"
        return Verdict(claim, NOT_MEASURED, examples=interval.examples, why=why)
    cache = mean_over_tasks(paired_groups(rows, columns, field="cache_fraction"), claim.policy)
    reasons = []
    if not interval.low > claim.margin:
        bound = "the interval reaches" if interval.point > claim.margin else "the margin is"
        reasons.append(f"{bound} {claim.margin:+g} or below")
    if claim.max_cache_pct is not None and not cache < claim.max_cache_pct:
        reasons.append(f"cache {cache:.1f}% is not below {claim.max_cache_pct:g}%")
    return Verdict(
        claim,
        DOES_NOT_HOLD if reasons else HOLDS,
        examples=interval.examples,
        ours=interval.point,
        low=interval.low,
        high=interval.high,
        cache_pct=cache,
        why="; ".join(reasons),
    )


LEDGER_COLUMNS = ("id", "table", "claim", "paper", "ours", "low", "high", "cache_pct", "n", "verdict", "why")


def ledger_rows(verdicts: Iterable[Verdict]) -> list[dict[str, Any]]:
    return [
        {
            "id": v.claim.id,
            "table": v.claim.table,
            "claim": v.claim.text,
            "paper": v.claim.paper,
            "ours": v.ours,
            "low": v.low,
            "high": v.high,
            "cache_pct": v.cache_pct,
            "n": v.examples,
            "verdict": v.verdict,
            "why": v.why,
        }
        for v in verdicts
    ]


def ledger_csv(verdicts: Iterable[Verdict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, LEDGER_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in ledger_rows(verdicts):
        writer.writerow({k: f"{v:.2f}" if isinstance(v, float) else v for k, v in row.items()})
    return out.getvalue()


def ledger_markdown(verdicts: Iterable[Verdict]) -> str:
    lines = [
        "| claim | table | paper | ours: margin [95% interval] | cache % | n | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in verdicts:
        ours = "" if math.isnan(v.ours) else f"{v.ours:+.1f} [{v.low:+.1f}, {v.high:+.1f}]"
        cache = "" if math.isnan(v.cache_pct) else f"{v.cache_pct:.1f}"
        verdict = f"**{v.verdict}**" + (f" ({v.why})" if v.why else "")
        lines.append(
            f"| {v.claim.text} | {v.claim.table} | {v.claim.paper} | {ours} | {cache} | {v.examples} | {verdict} |"
        )
    return "\n".join(lines) + "\n"
