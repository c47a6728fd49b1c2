"""NAMMPress (in kvpress) against namm-bench's own NAMM under ``post-prefill``, on real prompts.

Run in a kvpress environment with namm-bench installed (``tox -e kvpress`` makes one)::

    python benchmarks/namm_press_agreement.py --model MODEL_DIR --data ruler-4096.jsonl

``--data`` is a kvpress dataset file (``benchmarks/kvpress_evaluate.py export`` writes namm-bench's
examples as one). For each prompt (context + question, the whole prompt compressed, as kvpress's
``query_aware``), the context is prefilled through kvpress's press hook as its pipeline does, and
through ``namm_bench.memory`` in namm-bench's chunks; the script prints, per prompt, its tokens,
the share of (layer, KV head) whose kept positions are the same, and both cache fractions.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> int:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

    from namm_bench import memory
    from namm_bench.kvpress import NAMMPress, agreement

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--checkpoint", default=None, help="a NAMM checkpoint (default: the shipped one)")
    args = parser.parse_args()
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    print("| prompt | tokens | same kept set (layer x head) | cache % kvpress | cache % namm-bench |")
    print("|---|---|---|---|---|")
    same_all = total_all = 0
    for line in args.data.read_text().splitlines():
        row = json.loads(line)
        ids = tokenizer.encode(row["context"] + row["question"], return_tensors="pt", add_special_tokens=False)
        press = NAMMPress(checkpoint=args.checkpoint, physical=True)
        with torch.no_grad(), press(model):
            model.model(input_ids=ids, past_key_values=DynamicCache())
        with torch.no_grad(), memory(model, "namm", protocol="post-prefill", namm_checkpoint=args.checkpoint) as m:
            model(ids)
        same, total = agreement(press, m.controller)
        same_all, total_all = same_all + same, total_all + total
        name = row.get("example_id", row["task"])
        kv, nb = 100 * (1 - press.compression_ratio), 100 * m.stats.prompt_fraction
        print(f"| {name} | {ids.shape[1]} | {same}/{total} | {kv:.2f} | {nb:.2f} |")
    print(f"\nall prompts: {same_all}/{total_all} (layer, KV head) kept sets the same")
    return 0 if same_all == total_all else 1


if __name__ == "__main__":
    raise SystemExit(main())
