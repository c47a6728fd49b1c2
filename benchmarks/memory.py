"""Peak KV bytes and peak process memory of each policy at long contexts, as ratios to full cache.

Each (model, length, policy) runs in a fresh process (peak resident memory only grows within one)
on a random-weight model of an embedded model's shape (``config.json`` of the converted SmolLM2 /
Gemma 3 270M), float32 on the CPU: a prompt of LENGTH tokens in 128-token chunks, then
``--decode`` tokens, streaming protocol, a call every ``--interval`` tokens. It prints the peak KV
bytes of the managed layers (Gemma 3's sliding-window layers keep their own 512-token window and
are left out), the process's peak resident memory during the run (its peak is reset once the
weights are built) and that peak above the loaded model, each as a ratio to full cache, and
checks the budget bound for L2 and H2O at ratio r:

    peak KV(r) <= 1.1 * r * peak KV(full) + interval * KV bytes per token

Under the streaming protocol the cache holds r of the tokens seen after a call and grows by up to
``interval`` tokens before the next one. The NAMM is the shipped checkpoint (its budget is emergent).

    python benchmarks/memory.py [--models smollm2-135m-instruct,gemma3-270m] [--lengths 8192,16384,32768]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch
from policy_runs import build, policies, run_once

BOUND_SLACK = 1.1


def measure(model_name: str, length: int, policy: str, budget: float, decode: int, interval: int) -> dict:
    """One run in this process: KV and resident-memory peaks (bytes)."""
    from transformers import AutoConfig

    from namm_bench.adapters.llama import EMBEDDED_MODELS, embedded_model_dir

    source = embedded_model_dir(model_name) if model_name in EMBEDDED_MODELS else model_name
    config = AutoConfig.from_pretrained(source).to_dict()
    model = build(config, "cpu", torch.float32)
    ids = torch.randint(0, model.config.vocab_size, (1, length))
    loaded = _reset_peak()  # building the weights can peak above the run: measure from here
    m = run_once(model, ids, compared(budget)[policy](), decode, interval)
    peak = _status_bytes("VmHWM") if loaded is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    loaded = loaded if loaded is not None else 0
    return {"kv": m.peak_kv_bytes, "rss": peak, "above_model": peak - loaded, "cache": m.cache_fraction}


def _status_bytes(field: str) -> int:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(f"/proc/self/status has no {field}")


def _reset_peak() -> int | None:
    """Reset the process's peak resident memory to its current value (Linux ``clear_refs``) and
    return that value; None where the kernel does not offer it (then peaks count from the start)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_bytes("VmRSS")
    except OSError:
        return None


def compared(budget: float) -> dict:
    """The policies measured: full cache, L2, H2O and the shipped NAMM."""
    from namm_bench.namm.checkpoint import SHIPPED as SHIPPED_NAMM
    from namm_bench.namm.checkpoint import load_checkpoint

    runs = policies(budget, load_checkpoint(SHIPPED_NAMM))
    del runs["full, reads attention"]  # the same KV as full cache
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2-135m-instruct,gemma3-270m", help="embedded names or directories")
    parser.add_argument("--lengths", default="8192,16384,32768")
    parser.add_argument("--budget", type=float, default=0.25)
    parser.add_argument("--decode", type=int, default=8)
    parser.add_argument("--interval", type=int, default=512)
    parser.add_argument("--one", nargs=2, metavar=("MODEL:LENGTH", "POLICY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # a child: one measurement, as JSON
        model_name, length = args.one[0].rsplit(":", 1)
        print(json.dumps(measure(model_name, int(length), args.one[1], args.budget, args.decode, args.interval)))
        return

    names = list(compared(args.budget))
    failed = False
    for model_name in args.models.split(","):
        for length in [int(n) for n in args.lengths.split(",")]:
            results = {}
            for name in names:
                child = [sys.executable, __file__, "--one", f"{model_name}:{length}", name]
                child += ["--budget", str(args.budget), "--decode", str(args.decode), "--interval", str(args.interval)]
                done = subprocess.run(child, capture_output=True, text=True)
                if done.returncode != 0:
                    sys.exit(f"memory.py: {model_name} at {length} tokens under {name} failed:\n{done.stderr[-3000:]}")
                results[name] = json.loads(done.stdout.strip().splitlines()[-1])
            failed |= report(model_name, length, results, args)
    sys.exit(1 if failed else 0)


def report(model_name: str, length: int, results: dict, args: argparse.Namespace) -> bool:
    """Print one table; True if a budget bound fails."""
    full = results["full"]
    per_token = full["kv"] / (length + args.decode)
    print(f"\n{model_name}, {length}-token prompt + {args.decode} decoded, interval {args.interval}")
    header = ["cache %", "peak KV MiB", "KV x full", "bound x full", "peak RSS GiB", "RSS x full", "above model"]
    print(f"{'policy':<20}" + "".join(f"{h:>14}" for h in header) + "  bound")
    failed = False
    for name, r in results.items():
        cells = [100 * r["cache"], r["kv"] / 2**20, r["kv"] / full["kv"]]
        verdict = ""
        if name.startswith(("l2", "h2o")):
            bound = BOUND_SLACK * args.budget * full["kv"] + args.interval * per_token
            verdict = "holds" if r["kv"] <= bound else "FAILS"
            failed |= verdict == "FAILS"
            cells.append(bound / full["kv"])
        else:
            cells.append(float("nan"))
        above = r["above_model"] / full["above_model"] if full["above_model"] else float("nan")
        cells += [r["rss"] / 2**30, r["rss"] / full["rss"], above]
        print(f"{name:<20}" + "".join(f"{c:14.3f}" for c in cells) + f"  {verdict}")
    return failed


if __name__ == "__main__":
    main()
