"""How sure is a held-out win? A paired bootstrap of the NAMM's normalised-score margin.

    python benchmarks/heldout_bootstrap.py reports/heldout-smollm2-needle reports/heldout-smollm2-needle-seed1

Each DIR holds a ``results.jsonl`` with ``full``, ``namm`` and the baselines at ``match`` budget on
the same examples. The normalised score is the reports' (mean over tasks of score / full-cache
score on the same examples, x100); with several DIRs it is their mean. The method is
``namm_bench.bootstrap``: examples are resampled with replacement within each (DIR, task),
keeping each example's rows together, so the interval reflects which examples were drawn, not
the model's sampling (decoding is greedy).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from namm_bench.bootstrap import normalised, paired_bootstrap, paired_groups
from namm_bench.claims import parse_column
from namm_bench.results import ResultsStore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", type=Path)
    ap.add_argument("--baselines", default="h2o@match,l2@match", help="columns POLICY@BUDGET (default h2o/l2 at match)")
    ap.add_argument("--protocol", default="streaming", help="rows of this protocol only (default streaming)")
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    namm = parse_column("namm")
    baselines = [parse_column(b) for b in args.baselines.split(",")]
    groups = {}
    for d in args.dirs:
        rows = [r for r in ResultsStore(d).rows() if r["protocol"] == args.protocol]
        groups.update(paired_groups(rows, [namm, *baselines], section=str(d)))
    if not groups:
        raise SystemExit(f"no example has full, namm and {args.baselines} under {args.protocol} in these directories")
    counts = sorted({len(ex) for ex in groups.values()})
    print(f"{len(args.dirs)} dir(s), {len(groups)} (dir, task) groups, {'/'.join(map(str, counts))} examples each")
    print(f"normalised score: namm {normalised(groups, namm):.1f}", end="")
    print("".join(f", {'@'.join(b)} {normalised(groups, b):.1f}" for b in baselines))
    for b in baselines:
        i = paired_bootstrap(groups, namm, b, resamples=args.resamples, seed=args.seed)
        print(
            f"namm - {'@'.join(b)}: {i.point:+.1f}, 95% bootstrap interval [{i.low:+.1f}, {i.high:+.1f}], "
            f"resamples <= 0: {i.share_at_or_below_zero:.3f}"
        )


if __name__ == "__main__":
    main()
