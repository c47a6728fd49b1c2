"""Time and KV memory of each policy relative to full cache, measured in the same run.

A random-weight model in SmolLM2-135M's shape (30 layers, 9 heads, 3 KV heads, hidden 576)
prefills a prompt (default 4096 tokens) in 128-token chunks and decodes 32 tokens greedily under
each policy (streaming protocol, a call every 512 tokens). Prints seconds and peak KV bytes, each
as a ratio to full cache. The NAMM runs with all-zero parameters: every feature and score is
computed at every call, but nothing is evicted, so attention stays at full length (its worst case).

    python benchmarks/overhead.py [--tokens 4096] [--repeats 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

from namm_bench.budget import Budget
from namm_bench.controller import ControllerConfig, MemoryController
from namm_bench.policies import make_policy

SMOLLM2_SHAPE = dict(
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    max_position_embeddings=8192,
    rope_theta=100000.0,
    tie_word_embeddings=True,
)


def run_once(model, ids, policy, decode_tokens: int, interval: int) -> tuple[float, int, float, float]:
    cache = DynamicCache(config=model.config)
    controller = MemoryController(policy, ControllerConfig(interval=interval))
    device = ids.device

    def forward(tokens, start, end):
        out = model(
            input_ids=tokens,
            position_ids=torch.arange(start, end, device=device)[None],
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1]

    if device.type == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    with torch.inference_mode(), controller.attach(model, cache, [layer.self_attn for layer in model.model.layers]):
        logits = controller.prefill(lambda s, e: forward(ids[:, s:e], s, e), ids.shape[1])
        for _ in range(decode_tokens):
            token = logits.argmax(-1, keepdim=True)
            logits = controller.step(lambda s, e, t=token: forward(t, s, e))
    if device.type == "cuda":
        torch.cuda.synchronize()
    stats = controller.stats
    return time.perf_counter() - began, stats.peak_kv_bytes, stats.cache_fraction, stats.policy_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--decode", type=int, default=32)
    parser.add_argument("--budget", type=float, default=0.25)
    parser.add_argument("--repeats", type=int, default=1, help="best of N runs per policy")
    parser.add_argument("--interval", type=int, default=512, help="tokens between policy calls")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SMOLLM2_SHAPE)).to(args.device).eval()
    ids = torch.randint(0, SMOLLM2_SHAPE["vocab_size"], (1, args.tokens), device=args.device)
    budget = Budget(ratio=args.budget)
    policies = {
        "full": lambda: make_policy("full"),
        f"l2 {args.budget:g}": lambda: make_policy("l2", budget),
        f"h2o {args.budget:g}": lambda: make_policy("h2o", budget),
        "namm (zero params)": lambda: make_policy("namm"),
    }
    run_once(model, ids[:, :256], make_policy("full"), 2, args.interval)  # warm-up: thread pools, allocator
    results = {}
    for name, make in policies.items():
        runs = [run_once(model, ids, make(), args.decode, args.interval) for _ in range(args.repeats)]
        results[name] = min(runs)
    base_s, base_bytes = results["full"][:2]
    print(
        f"{args.tokens}-token prompt + {args.decode} decoded tokens, {args.device}, {torch.get_num_threads()} threads"
    )
    header = ["seconds", "time x full", "peak KV MiB", "KV x full", "cache %", "in select s"]
    print(f"{'policy':<20}" + "".join(f"{h:>13}" for h in header))
    for name, (secs, kv, frac, select_s) in results.items():
        cells = [secs, secs / base_s, kv / 2**20, kv / base_bytes, 100 * frac, select_s]
        print(f"{name:<20}" + "".join(f"{c:13.3f}" for c in cells))


if __name__ == "__main__":
    main()
