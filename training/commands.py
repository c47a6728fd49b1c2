"""``namm-bench rl-datasets``, ``rl-train``, ``rl-export``, ``video-train`` and ``video-export``.

Each ``add_*`` function adds its subcommand to the CLI's subparsers and sets the ``handler`` that
runs it (the ``namm_bench.commands`` entry-point convention).
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_rl_datasets(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rl-datasets", help="generate offline RL datasets (minari format) from the SAC behaviour policies"
    )
    p.add_argument("--out", type=Path, required=True, help="dataset root (minari layout); datasets there are kept")
    p.add_argument("--envs", type=_csv, default=["hopper", "walker2d"], help="comma list (default hopper,walker2d)")
    p.add_argument("--qualities", type=_csv, default=["sac", "sac-noisy"], help="comma list (default sac,sac-noisy)")
    p.add_argument("--steps", type=int, default=100_000, help="transitions per dataset, whole episodes (100000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sb3-dir", default=None, help="rl-trained-agents directory (default ../shared/data/rl/sb3)")
    p.set_defaults(handler=_rl_datasets)


def _rl_datasets(args: argparse.Namespace) -> int:
    from namm_bench.suites.rl_datasets import dataset_id, write_dataset

    if args.steps < 1:
        raise ValueError(f"--steps must be positive, got {args.steps}")
    for env in args.envs:
        for quality in args.qualities:
            summary_file = args.out / dataset_id(env, quality) / "namm-bench.json"
            if summary_file.is_file():
                verb, summary = "kept", json.loads(summary_file.read_text())
            else:
                verb, summary = "wrote", write_dataset(args.out, env, quality, args.steps, args.seed, args.sb3_dir)
            print(
                f"{verb} {summary['dataset_id']}: {summary['episodes']} episodes, {summary['steps']} steps, mean "
                f"return {summary['mean_return']:.1f} (D4RL-normalised {summary['mean_normalised']:.1f})"
            )
    return 0


def add_rl_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rl-train", help="train a Decision Transformer on a dataset (Chen et al.'s settings)")
    p.add_argument("--env", required=True, help="hopper or walker2d")
    p.add_argument("--quality", required=True, help="dataset: sac or sac-noisy (see rl-datasets)")
    p.add_argument("--data-dir", default=None, help="dataset root written by rl-datasets ($NAMM_BENCH_RL_DATA)")
    p.add_argument("--out", type=Path, required=True, help="run directory: config, state.pt, log.jsonl, model/")
    p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    p.add_argument("--context", type=int, default=20, help="K, timesteps per training window (20)")
    p.add_argument("--steps", type=int, default=100_000, help="gradient steps (Chen et al.: 100000)")
    p.add_argument("--warmup-steps", type=int, default=10_000, help="linear learning-rate warm-up (10000)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=_rl_train)


def _rl_train(args: argparse.Namespace) -> int:
    from namm_bench.suites.rl_datasets import load_episodes

    from .decision_transformer import TrainConfig, train

    cfg = TrainConfig(
        env=args.env,
        quality=args.quality,
        context=args.context,
        steps=args.steps,
        warmup_steps=args.warmup_steps,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    model = train(cfg, load_episodes(args.data_dir, args.env, args.quality), args.out, resume=args.resume)
    print(f"model: {model}  (log: {args.out / 'log.jsonl'})")
    return 0


def _export_parser(sub: argparse._SubParsersAction, name: str, what: str, default: str, module: str, label: str):
    """``NAME RUN_DIR [--to DIR] [--force]``: write a training run's latest state as ``what``."""

    def handler(args: argparse.Namespace) -> int:
        export_run = importlib.import_module(module, __package__).export_run
        print(f"{label}: {export_run(args.run_dir, args.to, force=args.force)}")
        return 0

    p = sub.add_parser(name, help=f"write a training run's latest state as {what}")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--to", type=Path, default=None, help=f"checkpoint directory (default RUN_DIR/{default})")
    p.add_argument("--force", action="store_true", help=f"replace {what} already in the --to directory")
    p.set_defaults(handler=handler)


def add_rl_export(sub: argparse._SubParsersAction) -> None:
    _export_parser(sub, "rl-export", "an agent checkpoint", "model", ".decision_transformer", "agent")


def add_video_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "video-train", help="train the embedded video model's vision tower and projector (SmolLM2 frozen)"
    )
    p.add_argument("--out", type=Path, required=True, help="run directory: config, state.pt, log.jsonl, vision/")
    p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    p.add_argument("--align-steps", type=int, default=1500, help="frame-to-word alignment steps (1500)")
    p.add_argument("--qa-steps", type=int, default=300, help="question-answering steps through SmolLM2 (300)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=_video_train)


def _video_train(args: argparse.Namespace) -> int:
    from .llava_next_video import VideoTrainConfig, train

    cfg = VideoTrainConfig(align_steps=args.align_steps, qa_steps=args.qa_steps, seed=args.seed)
    print(f"vision weights: {train(cfg, args.out, resume=args.resume)}  (log: {args.out / 'log.jsonl'})")
    return 0


def add_video_export(sub: argparse._SubParsersAction) -> None:
    _export_parser(sub, "video-export", "vision weights", "vision", ".llava_next_video", "vision weights")
