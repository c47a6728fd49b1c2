"""Time and KV memory of each policy relative to full cache, measured in the same run.

A random-weight model of a real shape (default SmolLM2-135M's: 30 layers, 9 heads, 3 KV heads,
hidden 576; ``--shape llama3-8b`` on a GPU) prefills a prompt (default 4096 tokens) in 128-token
chunks and decodes 32 tokens greedily under each policy (streaming protocol, a call every 512
tokens). Prints seconds and peak KV bytes, each as a ratio to full cache, and on CUDA the peak
GPU memory. ``full, reads attention`` keeps everything but computes the probabilities policies
read (``namm_bench.attention_reading``): the part of H2O's and the NAMM's cost that is not their
own. The NAMM runs with all-zero parameters: every feature and score is computed at every call,
but nothing is evicted, so attention stays at full length (its worst case). Policies run in turn,
``--repeats`` rounds, and each keeps its fastest round.

    python benchmarks/overhead.py [--tokens 4096] [--repeats 1] [--device cpu]
    python benchmarks/overhead.py --shape llama3-8b --dtype bfloat16 --device cuda --tokens 32768
"""

from __future__ import annotations

import argparse

import torch
from policy_runs import SHAPES, build, policies, run_once


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--decode", type=int, default=32)
    parser.add_argument("--budget", type=float, default=0.25)
    parser.add_argument("--repeats", type=int, default=1, help="rounds over the policies; each keeps its best")
    parser.add_argument("--interval", type=int, default=512, help="tokens between policy calls")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="smollm2")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    model = build(SHAPES[args.shape], args.device, getattr(torch, args.dtype))
    ids = torch.randint(0, model.config.vocab_size, (1, args.tokens), device=args.device)
    runs = policies(args.budget)
    run_once(model, ids[:, :256], runs["full"](), 2, args.interval)  # warm-up: thread pools, allocator
    results: dict = {}
    for _ in range(args.repeats):  # rounds, so that a slow spell of the machine hits every policy alike
        for name, make in runs.items():
            m = run_once(model, ids, make(), args.decode, args.interval)
            if name not in results or m.seconds < results[name].seconds:
                results[name] = m
    base = results["full"]
    threads = f"{torch.get_num_threads()} threads" if args.device == "cpu" else args.device
    print(f"{args.shape} {args.dtype}, {args.tokens}-token prompt + {args.decode} decoded tokens, {threads}")
    header = ["seconds", "time x full", "peak KV MiB", "KV x full", "cache %", "in select s"]
    header += ["GPU peak GiB", "GPU x full"] if base.cuda_peak_bytes else []
    print(f"{'policy':<24}" + "".join(f"{h:>13}" for h in header))
    for name, m in results.items():
        cells = [m.seconds, m.seconds / base.seconds, m.peak_kv_bytes / 2**20, m.peak_kv_bytes / base.peak_kv_bytes]
        cells += [100 * m.cache_fraction, m.select_seconds]
        if base.cuda_peak_bytes:
            cells += [m.cuda_peak_bytes / 2**30, m.cuda_peak_bytes / base.cuda_peak_bytes]
        print(f"{name:<24}" + "".join(f"{c:13.3f}" for c in cells))


if __name__ == "__main__":
    main()
