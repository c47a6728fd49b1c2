"""Member-evaluations per minute of the fitness modes, CPU and (when present) GPU.

Each member evaluation is one member scored on one example. The population is drawn around the
zero NAMM with sigma0 (a generation-0 population). ``fast`` excludes the one-off full-cache prefill
of each example (reported apart, it is paid once per example per run); ``paper`` runs the whole
streaming generation per member. ``fast:EVICTIONS`` is ``fast`` with ``fast_evictions`` set
(``end``, the default, ``interval`` or ``streaming``). Every rate is also printed as a ratio to
the same mode on one CPU process, measured in the same run.

    python benchmarks/evolution_throughput.py [--model DIR] [--task passkey_1k] [--examples 2] [--members 16]
        [--modes fast,fast:streaming,paper]
"""

from __future__ import annotations

import argparse
import time

import torch

from namm_bench.adapters import get_adapter
from namm_bench.evolution.config import config_from_dict
from namm_bench.evolution.fitness import FITNESS
from namm_bench.namm.features import RunningStats
from namm_bench.runner import ANSWER_RESERVE
from namm_bench.suites import get_suite


def measure(mode: str, device: str, args) -> tuple[float, float]:
    """(member evaluations per minute, prefill seconds per example) for ``mode`` on ``device``."""
    adapter = get_adapter("llama", args.model, device=device)
    suite = get_suite("synthetic")
    fitness_mode, _, evictions = mode.partition(":")
    config = config_from_dict(
        {
            "stages": [{"tasks": [args.task], "generations": 1}],
            "member_batch": args.batch,
            "fast_evictions": evictions or "end",
        }
    )
    examples = suite.examples(
        args.task, adapter.count_tokens, adapter.max_prompt_tokens(ANSWER_RESERVE), 1000, args.examples
    )
    fitness = FITNESS[fitness_mode](adapter, suite, config)
    began = time.perf_counter()
    stats = RunningStats.pooled(fitness.prepare(ex)[0].cpu() for ex in examples)
    prefill = (time.perf_counter() - began) / len(examples)
    members = config.sigma0 * torch.randn(
        args.members, config.namm.num_params, generator=torch.Generator().manual_seed(0)
    )
    members = members.to(device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    began = time.perf_counter()
    for ex in examples:
        for i in range(0, args.members, config.member_batch):
            fitness.members(ex, members[i : i + config.member_batch], stats)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    return args.members * len(examples) / seconds * 60, prefill


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="local model directory (default: embedded SmolLM2)")
    parser.add_argument("--task", default="passkey_1k")
    parser.add_argument("--examples", type=int, default=2)
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8, help="members per forward (fast)")
    parser.add_argument("--modes", default="fast,paper")
    args = parser.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(
        f"task {args.task}, {args.examples} examples, {args.members} members, torch threads {torch.get_num_threads()}"
    )
    print(f"{'mode':15} {'device':6} {'member-evals/min':>17} {'vs 1 CPU process':>17} {'prefill s/example':>18}")
    rates = {}
    for mode in args.modes.split(","):
        for device in devices:
            rate, prefill = measure(mode, device, args)
            rates[mode, device] = rate
            print(f"{mode:15} {device:6} {rate:17.1f} {rate / rates[mode, 'cpu']:16.2f}x {prefill:18.2f}")
    for device in devices:
        for mode in args.modes.split(","):
            if mode != "paper" and (mode, device) in rates and ("paper", device) in rates:
                print(f"{mode} / paper on {device}: {rates[mode, device] / rates['paper', device]:.1f}x")


if __name__ == "__main__":
    main()
