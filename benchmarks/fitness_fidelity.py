"""How well each ``fast`` fitness variant predicts what a NAMM does under the streaming protocol.

For one NAMM checkpoint and the examples of one task, prints per example the gold answer's
teacher-forced probability (the fast fitness score) with the full cache and under the NAMM with
``fast_evictions`` = ``end``, ``interval`` and ``streaming``, each with its cache fraction, then
whether the streaming run's teacher-forced answer is all argmax (``tf_exact``) and the task
score of the NAMM's greedy answer under the streaming protocol (what ``namm-bench run``
measures). ``end`` and ``interval`` reuse the full cache's keys and values; ``streaming`` runs the
NAMM's own streaming prefill.

    python benchmarks/fitness_fidelity.py configs/evolution/smollm2-interval.toml \\
        --checkpoint namm_bench/checkpoints/namm-smollm2 --task passkey_2k --examples 5 --out fidelity.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from namm_bench.adapters import get_adapter
from namm_bench.controller import ControllerConfig
from namm_bench.evolution.config import FAST_EVICTIONS, load_config
from namm_bench.evolution.fitness import FastFitness, member_checkpoint, stream_answer
from namm_bench.files import write_atomic
from namm_bench.models import suite_adapter
from namm_bench.namm.checkpoint import SHIPPED as SHIPPED_NAMM
from namm_bench.namm.checkpoint import load_checkpoint
from namm_bench.policies.namm import NAMM
from namm_bench.runner import ANSWER_RESERVE
from namm_bench.suites import get_suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="evolution config: model, suite, chunk size, interval")
    parser.add_argument("--checkpoint", default=str(SHIPPED_NAMM))
    parser.add_argument("--task", required=True)
    parser.add_argument("--examples", type=int, default=5)
    parser.add_argument("--seed", type=int, default=None, help="suite seed (default: the config's pool_seed)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    config = load_config(args.config)
    suite = get_suite(config.suite)
    adapter = get_adapter(suite_adapter(suite, config.model), config.model)
    ckpt = load_checkpoint(args.checkpoint)
    seed = config.pool_seed if args.seed is None else args.seed
    examples = suite.examples(
        args.task, adapter.count_tokens, adapter.max_prompt_tokens(ANSWER_RESERVE), seed, args.examples
    )
    modes = {m: FastFitness(adapter, suite, replace(config, fast_evictions=m)) for m in FAST_EVICTIONS}
    streaming = ControllerConfig(config.chunk_size, config.interval, "streaming")
    member = member_checkpoint(ckpt.params, ckpt.stats, ckpt.config)
    rows = []
    for ex in tqdm(examples, desc="examples"):
        row = {"example_id": ex.example_id}
        for mode, fitness in modes.items():
            _, row["full"] = fitness.prepare(ex)  # the full cache; the streaming mode's, prepared last, is kept
            if mode == "streaming":  # what FastFitness.members runs, kept whole for its exact match
                prefilled = fitness._prefilled[ex.example_id]
                run = stream_answer(
                    adapter, NAMM(checkpoint=member), streaming, prefilled.prompt, prefilled.answer, prefilled.prefix
                )
                row[mode], row[f"{mode}_cache"], row["tf_exact"] = run.probability, run.cache_fraction, float(run.exact)
                continue
            score, fraction = fitness.members(ex, ckpt.params[None].float(), ckpt.stats)
            row[mode], row[f"{mode}_cache"] = float(score[0]), float(fraction[0])
        gen = adapter.generate(ex, NAMM(checkpoint=ckpt), streaming)
        row["greedy_score"], row["greedy_cache"] = suite.score(ex, gen.text), gen.controller.stats.prompt_fraction
        rows.append(row)

    columns = ["full", *FAST_EVICTIONS, "tf_exact", "greedy_score"]
    print(f"{args.checkpoint} on {args.task}, seed {seed}: gold-answer probability (cache fraction)")
    print(f"{'example':>18} " + " ".join(f"{c:>16}" for c in columns))
    for r in rows:
        cells = [f"{r['full']:16.3f}"] + [f"{r[m]:8.3f} ({r[m + '_cache']:.2f})" for m in FAST_EVICTIONS]
        cells.append(f"{r['tf_exact']:16.0f}")
        cells.append(f"{r['greedy_score']:8.3f} ({r['greedy_cache']:.2f})")
        print(f"{r['example_id']:>18} " + " ".join(cells))
    means = {c: sum(r[c] for r in rows) / len(rows) for c in columns}
    print(f"{'mean':>18} " + " ".join(f"{means[c]:16.3f}" for c in columns))
    if args.out:
        report = {"checkpoint": args.checkpoint, "task": args.task, "seed": seed, "rows": rows, "means": means}
        write_atomic(args.out, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
