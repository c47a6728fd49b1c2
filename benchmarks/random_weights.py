"""Save a model's shape (config, tokenizer, chat template), optionally with random weights.

Speed and memory depend on a model's shape, not on its weights. A GPU machine that the real weights
cannot reach (the embedded SmolLM2 is 98 MB, more than travels) gets the shape alone, a few MB, and
builds random weights there:

    python benchmarks/random_weights.py --shape-only --out .gpu/smollm2-shape   # here
    python benchmarks/random_weights.py --model .gpu/smollm2-shape --out /tmp/smollm2-random   # there
    python benchmarks/evolution_throughput.py --model /tmp/smollm2-random

A random model never says its end-of-turn token, so in ``paper`` fitness every answer runs to its
token limit: its generation costs more per member than the trained model's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model directory to copy (default: embedded SmolLM2)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--shape-only", action="store_true", help="config and tokenizer only, no weights")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from namm_bench.adapters.llama import embedded_model_dir

    source = args.model or embedded_model_dir()
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        parser.error(f"{args.out} exists and is not an empty directory")
    config = AutoConfig.from_pretrained(source)
    AutoTokenizer.from_pretrained(source).save_pretrained(args.out)
    if args.shape_only:
        config.save_pretrained(args.out)
        return
    torch.manual_seed(args.seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(args.out)
    print(f"random-weight {config.model_type} of {source} in {args.out}")


if __name__ == "__main__":
    main()
