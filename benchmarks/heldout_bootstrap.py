"""How sure is a held-out win? A paired bootstrap of the NAMM's normalised-score margin.

    python benchmarks/heldout_bootstrap.py reports/heldout-smollm2-streaming reports/heldout-smollm2-streaming-seed1

Each DIR holds a ``results.jsonl`` with ``full``, ``namm`` and the baselines at ``match`` budget on
the same examples. The normalised score is the reports' (mean over tasks of score / full-cache
score on the same examples, x100); with several DIRs it is their mean. The bootstrap resamples
examples with replacement within each (DIR, task), keeping each example's rows together, so the
interval reflects which examples were drawn, not the model's sampling (decoding is greedy).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

BASELINES = ("h2o", "l2")


def load(dirs: list[Path]) -> dict[tuple[str, str], list[dict[str, float]]]:
    """(dir, task) -> one {policy: score} per example that has every policy's row."""
    groups: dict[tuple[str, str], list[dict[str, float]]] = {}
    for d in dirs:
        per_example: dict[tuple[str, str], dict[str, float]] = {}
        for line in (d / "results.jsonl").read_text().splitlines():
            row = json.loads(line)
            budget = str(row["budget"])
            if (row["policy"], budget) in {("full", "none"), ("namm", "none")} or budget == "match":
                per_example.setdefault((row["task"], row["example_id"]), {})[row["policy"]] = row["score"]
        for (task, _), scores in sorted(per_example.items()):
            if {"full", "namm", *BASELINES} <= scores.keys():
                groups.setdefault((str(d), task), []).append(scores)
    if not groups:
        raise SystemExit("no example has full, namm and every baseline at match in these directories")
    return groups


def normalised(groups: dict[tuple[str, str], list[dict[str, float]]], policy: str) -> float:
    per_dir: dict[str, list[float]] = {}
    for (d, _), examples in groups.items():
        full = sum(e["full"] for e in examples)
        if full > 0:  # as the reports: a task the full cache never answers says nothing
            per_dir.setdefault(d, []).append(sum(e[policy] for e in examples) / full)
    return 100 * sum(sum(v) / len(v) for v in per_dir.values()) / len(per_dir)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", type=Path)
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    groups = load(args.dirs)
    rng = random.Random(args.seed)
    margins: dict[str, list[float]] = {b: [] for b in BASELINES}
    for _ in range(args.resamples):
        sample = {key: [rng.choice(ex) for _ in ex] for key, ex in groups.items()}
        namm = normalised(sample, "namm")
        for b in BASELINES:
            margins[b].append(namm - normalised(sample, b))
    counts = sorted({len(ex) for ex in groups.values()})
    print(f"{len(args.dirs)} dir(s), {len(groups)} (dir, task) groups, {'/'.join(map(str, counts))} examples each")
    print(f"normalised score: namm {normalised(groups, 'namm'):.1f}", end="")
    print("".join(f", {b} match {normalised(groups, b):.1f}" for b in BASELINES))
    for b in BASELINES:
        m = sorted(margins[b])
        lo, hi = m[int(0.025 * len(m))], m[int(0.975 * len(m)) - 1]
        point = normalised(groups, "namm") - normalised(groups, b)
        share = sum(x <= 0 for x in m) / len(m)
        print(f"namm - {b}: {point:+.1f}, 95% bootstrap interval [{lo:+.1f}, {hi:+.1f}], resamples <= 0: {share:.3f}")


if __name__ == "__main__":
    main()
