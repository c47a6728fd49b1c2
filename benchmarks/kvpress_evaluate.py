"""Run kvpress's own ``evaluation/evaluate.py`` offline on a local dataset file: kvpress-written results.

kvpress's evaluation reads its datasets from the Hugging Face hub; this script hands its
``EvaluationRunner`` a local JSONL file of the same columns instead (RULER's: ``context``,
``question``, ``answer_prefix``, ``answer`` (a list), ``task``, ``max_new_tokens``) and runs it
unchanged, so the directories it writes under ``--output-dir`` are kvpress's own
(``config.yaml``, ``metrics.json``, ``predictions.csv``). ``--press namm`` is namm-bench's
``NAMMPress``, registered in kvpress's press registry as a kvpress user would. Run it in a kvpress
environment (``tox -e kvpress`` makes one) with the ``evaluation/`` directory of kvpress's sdist;
``export`` (in namm-bench's environment) writes namm-bench's own examples as such a file::

    python benchmarks/kvpress_evaluate.py export --tasks niah_single_1_4k --limit 3 --out ruler-4096.jsonl
    python benchmarks/kvpress_evaluate.py --evaluation KVPRESS_SRC/evaluation --data ruler-4096.jsonl \\
        --dataset ruler --data-dir 4096 --model MODEL_DIR --press knorm --compression-ratio 0.5 --output-dir OUT
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def kvpress_evaluation(evaluation: Path):
    """kvpress's ``evaluate`` module, imported from its ``evaluation/`` directory."""
    if not (evaluation / "evaluate.py").is_file():
        raise SystemExit(f"{evaluation} holds no evaluate.py: pass kvpress's evaluation/ directory")
    sys.path.insert(0, str(evaluation))
    import evaluate  # kvpress's evaluation/evaluate.py

    return evaluate


def run(evaluation: Path, data: Path, output_dir: Path, press: str, **settings) -> Path:
    """Run kvpress's evaluation of ``press`` on ``data``; the result directory it wrote."""
    import pandas as pd

    module = kvpress_evaluation(evaluation)
    if press == "namm":
        from namm_bench.kvpress import NAMMPress

        module.PRESS_REGISTRY["namm"] = NAMMPress()

    class LocalDataset:  # what load_dataset(...) returns, as far as evaluate.py uses it
        def __init__(self, frame):
            self.frame = frame

        def to_pandas(self):
            return self.frame.copy()

    frame = pd.read_json(data, lines=True)
    module.load_dataset = lambda *args, **kwargs: LocalDataset(frame)
    before = {p for p in output_dir.rglob("config.yaml")} if output_dir.exists() else set()
    config = module.EvaluationConfig(press_name=press, output_dir=str(output_dir), device="cpu", **settings)
    module.EvaluationRunner(config).run_evaluation()
    (written,) = {p for p in output_dir.rglob("config.yaml")} - before
    return written.parent


def export(suite_name: str, tasks: list[str], limit: int, seed: int, out: Path) -> int:
    """Write namm-bench's examples of ``tasks`` (on the embedded SmolLM2's tokenizer) as a kvpress dataset file
    (run in namm-bench's environment), so that kvpress runs the examples namm-bench's rows hold."""
    import json

    from namm_bench.adapters.llama import LlamaAdapter
    from namm_bench.fingerprints import example_fingerprint
    from namm_bench.kvpress_layout import kvpress_task
    from namm_bench.models import make_suite
    from namm_bench.runner import ANSWER_RESERVE

    adapter, suite = LlamaAdapter(None), make_suite(suite_name)
    lines = []
    for task in tasks:
        for ex in suite.examples(task, adapter.count_tokens, adapter.max_prompt_tokens(ANSWER_RESERVE), seed, limit):
            answer = ex.meta.get("outputs", [ex.answer])
            row = {"context": ex.context, "question": ex.question, "answer_prefix": ex.answer_prefix}
            row.update(answer=list(answer), task=kvpress_task(suite_name, task)[1], max_new_tokens=ex.max_new_tokens)
            lines.append(json.dumps({**row, "example_id": ex.example_id, "example_hash": example_fingerprint(ex)}))
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} examples to {out}")
    return 0


def main() -> int:
    if sys.argv[1:2] == ["export"]:
        ex = argparse.ArgumentParser(prog="kvpress_evaluate.py export")
        ex.add_argument("--suite", default="ruler")
        ex.add_argument("--tasks", required=True, help="comma list of namm-bench tasks")
        ex.add_argument("--limit", type=int, required=True)
        ex.add_argument("--seed", type=int, default=0)
        ex.add_argument("--out", type=Path, required=True)
        a = ex.parse_args(sys.argv[2:])
        return export(a.suite, a.tasks.split(","), a.limit, a.seed, a.out)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evaluation", type=Path, required=True, help="kvpress's evaluation/ directory")
    parser.add_argument("--data", type=Path, required=True, help="JSONL file with the dataset's columns")
    parser.add_argument("--dataset", default="ruler")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--model", required=True)
    parser.add_argument("--press", required=True, help="a kvpress press name, or namm (NAMMPress)")
    parser.add_argument("--compression-ratio", type=float, default=0.5)
    parser.add_argument("--query-aware", action="store_true")
    parser.add_argument("--output-dir", type=Path, required=True)
    args = parser.parse_args()
    settings = {"dataset": args.dataset, "data_dir": args.data_dir, "model": args.model}
    settings.update(compression_ratio=args.compression_ratio, query_aware=args.query_aware)
    print(run(args.evaluation, args.data, args.output_dir, args.press, **settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
