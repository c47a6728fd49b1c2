"""Compare namm-bench's policies with NVIDIA kvpress's presses on the same model and prompt.

kvpress pins transformers < 5.3, so it runs in a virtual environment of its own; this script has
three steps, the middle one in that environment (it imports neither namm_bench nor this project):

    python benchmarks/kvpress_compare.py model OUT                  # a tiny random Llama + prompt ids
    KVPRESS_PYTHON benchmarks/kvpress_compare.py kvpress OUT        # each press's kept indices
    python benchmarks/kvpress_compare.py compare OUT                # namm-bench's, and the agreement

``model`` takes ``--seed`` (weights and prompt), ``--tokens`` and ``--compression`` (kept in
OUT); attention is sharpened so that formulas that differ choose differently. kvpress
compresses the prompt in one forward (its default, the question not part of it); namm-bench
runs the same prompt in chunks under ``post-prefill`` and selects once at its end. Both keep
``int(n (1 - compression))`` entries per KV head. The comparison prints, per policy, the share of
(layer, KV head) whose kept set is the same, and the mean Jaccard overlap of the kept sets; exit
status 1 if any policy is below 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PAIRS = {  # namm-bench policy -> kvpress press, both at their defaults
    "streaming_llm": "StreamingLLMPress",
    "snapkv": "SnapKVPress",
    "pyramidkv": "PyramidKVPress",
    "tova": "TOVAPress",
    "keydiff": "KeyDiffPress",
    "observed_attention": "ObservedAttentionPress",
    "knorm": "KnormPress",
    "expected_attention": "ExpectedAttentionPress",
    "adakv": "AdaKVPress(SnapKVPress)",
}


def make_model(out: Path, seed: int, tokens: int, compression: float) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=320,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=8,
        num_key_value_heads=2,
        max_position_embeddings=4096,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(6.0)
    model.save_pretrained(out / "model")
    ids = torch.randint(0, config.vocab_size, (tokens,), generator=torch.Generator().manual_seed(seed + 1))
    (out / "ids.json").write_text(json.dumps(ids.tolist()))
    (out / "compression.json").write_text(json.dumps(compression))


def kept_by_kvpress(out: Path) -> None:
    """Run each press in kvpress's own environment; write the kept indices per layer and KV head."""
    import kvpress
    import torch
    from transformers import AutoModelForCausalLM, DynamicCache

    ids = torch.tensor([json.loads((out / "ids.json").read_text())])
    compression = json.loads((out / "compression.json").read_text())
    results = {}
    for policy, press_name in PAIRS.items():
        eager = policy == "observed_attention"  # kvpress's ObservedAttentionPress reads eager attentions
        model = AutoModelForCausalLM.from_pretrained(out / "model", attn_implementation="eager" if eager else "sdpa")
        with torch.no_grad():
            full = DynamicCache()
            model(ids, past_key_values=full, use_cache=True)
        if press_name.startswith("AdaKVPress"):
            press = kvpress.AdaKVPress(kvpress.SnapKVPress(compression_ratio=compression))
        else:
            press = getattr(kvpress, press_name)(compression_ratio=compression)
        cache = DynamicCache()
        with torch.no_grad(), press(model):
            model(ids, past_key_values=cache, use_cache=True, output_attentions=eager)
        layers = []
        for i, attention in enumerate(model.model.layers):
            masked = getattr(attention.self_attn, "masked_key_indices", None)
            if masked is not None:  # AdaKV keeps the shape and masks what it prunes
                heads, n = full.layers[i].keys.shape[1:3]
                keep = torch.ones(heads, n, dtype=torch.bool)
                keep[masked[1], masked[2]] = False
                layers.append([torch.nonzero(row).flatten().tolist() for row in keep])
                continue
            kept, everything = cache.layers[i].keys[0], full.layers[i].keys[0]  # (heads, K, d), (heads, n, d)
            layers.append(
                [
                    sorted(int((everything[h] == row).all(dim=-1).nonzero()[0]) for row in kept[h])
                    for h in range(kept.shape[0])
                ]
            )
        results[policy] = layers
    (out / "kvpress.json").write_text(json.dumps(results))


def kept_by_namm_bench(out: Path) -> dict[str, list[list[list[int]]]]:
    import torch
    from transformers import AutoModelForCausalLM, DynamicCache

    from namm_bench.budget import Budget
    from namm_bench.controller import ControllerConfig, MemoryController
    from namm_bench.policies import make_policy

    ids = torch.tensor([json.loads((out / "ids.json").read_text())])
    compression = json.loads((out / "compression.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(out / "model").eval()
    results = {}
    for policy in PAIRS:
        inner = make_policy(policy, Budget(ratio=1 - compression))
        kept: dict[int, torch.Tensor | None] = {}
        select = inner.select

        def recording(layer, keys, values, positions, tokens_seen, select=select, kept=kept):
            idx = select(layer, keys, values, positions, tokens_seen)
            kept[layer] = idx
            return idx

        inner.select = recording
        cache = DynamicCache(config=model.config)
        controller = MemoryController(inner, ControllerConfig(chunk_size=32, protocol="post-prefill"))

        def forward(start, end, cache=cache):
            positions = torch.arange(start, end)[None]
            return model(input_ids=ids[:, start:end], position_ids=positions, past_key_values=cache)

        with torch.no_grad(), controller.attach(model, cache, [layer.self_attn for layer in model.model.layers]):
            controller.prefill(forward, ids.shape[1])
        n = ids.shape[1]
        results[policy] = [
            [list(range(n))] * model.config.num_key_value_heads
            if kept[i] is None
            else [[j for j in row if j >= 0] for row in kept[i][0].tolist()]
            for i in sorted(kept)
        ]
    return results


def compare(out: Path) -> int:
    theirs = json.loads((out / "kvpress.json").read_text())
    ours = kept_by_namm_bench(out)
    compression = json.loads((out / "compression.json").read_text())
    tokens = len(json.loads((out / "ids.json").read_text()))
    worst = 1.0
    print(f"{tokens} tokens, compression {compression}:")
    print("| policy | kvpress press | same kept set (layer x head) | mean Jaccard |")
    print("|---|---|---|---|")
    for policy, press in PAIRS.items():
        same, overlaps = 0, []
        for ours_layer, theirs_layer in zip(ours[policy], theirs[policy], strict=True):
            for a, b in zip(ours_layer, theirs_layer, strict=True):
                same += set(a) == set(b)
                overlaps.append(len(set(a) & set(b)) / len(set(a) | set(b)))
        share = same / len(overlaps)
        worst = min(worst, share)
        print(f"| `{policy}` | `{press}` | {share:.3f} | {sum(overlaps) / len(overlaps):.4f} |")
    return 0 if worst == 1.0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["model", "kvpress", "compare"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--compression", type=float, default=0.75, help="kvpress's compression ratio")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.step == "model":
        make_model(args.out, args.seed, args.tokens, args.compression)
        return 0
    if args.step == "kvpress":
        kept_by_kvpress(args.out)
        return 0
    return compare(args.out)


if __name__ == "__main__":
    sys.exit(main())
