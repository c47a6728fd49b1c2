"""Spearman rank correlation between ``fast`` and ``paper`` fitness over one population.

Both modes score the same members on the same examples with the same normalisation statistics;
the script prints the per-member fitness of each and their rank correlation (of the fitness with
the config's sparsity term, and of the normalised score alone), and writes them to ``--out``.

    python benchmarks/fitness_correlation.py configs/evolution/smollm2.toml --run runs/evolve-smollm2 \\
        --members 16 --out reports/fitness-correlation.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from namm_bench.adapters import get_adapter
from namm_bench.evolution.cmaes import CMAES
from namm_bench.evolution.config import load_config
from namm_bench.evolution.fitness import FastFitness, PaperFitness
from namm_bench.evolution.trainer import _fitness, example_pools, load_state, sample_examples, score_members
from namm_bench.files import write_atomic
from namm_bench.models import suite_adapter
from namm_bench.namm.features import RunningStats
from namm_bench.suites import get_suite


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()  # ties get their mean rank
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("--run", type=Path, default=None, help="draw the population from this run's CMA-ES state")
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--generation", type=int, default=0, help="whose example sample to use")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    config = load_config(args.config)
    suite = get_suite(config.suite)
    adapter = get_adapter(suite_adapter(suite, config.model), config.model)
    _, stage = config.stage_at(args.generation)
    examples = sample_examples(config, example_pools(config, suite, adapter), args.generation)
    fast, paper = FastFitness(adapter, suite, config), PaperFitness(adapter, suite, config)
    if args.run:
        state = load_state(args.run)
        cma, stats = CMAES.from_state(state["cma"]), RunningStats(**state["stats"])
        source = f"{args.run} after generation {state['generation'] - 1}"
    else:
        cma, stats = (
            CMAES(config.namm.num_params, config.population, config.sigma0, config.elite_ratio, config.seed),
            None,
        )
        source = "generation 0"
    prepared = {"fast": [fast.prepare(ex) for ex in tqdm(examples, desc="prefill (fast)")]}
    if stats is None:
        stats = RunningStats.pooled(ema for ema, _ in prepared["fast"])
    prepared["paper"] = [paper.prepare(ex) for ex in tqdm(examples, desc="full cache (paper)")]
    members = torch.from_numpy(cma.ask(args.members)).float()
    tasks = [ex.task for ex in examples]
    out = {"source": source, "members": args.members, "examples": [ex.example_id for ex in examples]}
    for name, fitness in (("fast", fast), ("paper", paper)):
        began = time.perf_counter()
        results = score_members(fitness, members, examples, stats, config.member_batch)
        full = torch.tensor([s for _, s in prepared[name]], dtype=torch.float64)
        value, perf, fraction = _fitness(results, full, tasks, config)
        out[name] = {"fitness": value.tolist(), "score": perf.tolist(), "cache_fraction": fraction.tolist()}
        out[name]["seconds"] = round(time.perf_counter() - began, 1)
    for key in ("fitness", "score", "cache_fraction"):
        out[f"spearman_{key}"] = spearman(np.array(out["fast"][key]), np.array(out["paper"][key]))
    print(f"population: {args.members} members from {source}; {len(examples)} examples ({', '.join(stage.tasks)})")
    print(f"{'member':>6} {'fast fitness':>13} {'paper fitness':>14} {'fast cache':>11} {'paper cache':>12}")
    for i in range(len(members)):
        f, p = out["fast"], out["paper"]
        fc, pc = f["cache_fraction"][i], p["cache_fraction"][i]
        print(f"{i:6d} {f['fitness'][i]:13.3f} {p['fitness'][i]:14.3f} {fc:11.3f} {pc:12.3f}")
    for key in ("fitness", "score", "cache_fraction"):
        print(f"Spearman rho, {key}: {out[f'spearman_{key}']:.3f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.out, json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
