"""``namm-bench``: run suites, write reports, list what is available."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .budget import parse_budget
from .controller import PROTOCOLS, ControllerConfig

log = logging.getLogger("namm_bench")


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="namm-bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a suite under several memory policies; appends to OUT/results.jsonl")
    run.add_argument("suite", help="suite name (see `namm-bench list`)")
    run.add_argument("--model", default=None, help="hub id or local directory (default: embedded SmolLM2-135M)")
    run.add_argument("--policies", type=_csv, default=["full", "h2o", "l2"], help="comma list (default full,h2o,l2)")
    run.add_argument(
        "--budget",
        type=_csv,
        default=["0.25"],
        help="comma list of RATIO (0.25), TOKENS (512) or match; applies to h2o and l2 (default 0.25)",
    )
    run.add_argument("--protocol", choices=PROTOCOLS, default="streaming")
    run.add_argument("--data-dir", default=None, help="directory of the suite's data files (suites that read files)")
    run.add_argument(
        "--long-inputs",
        choices=("truncate", "stream"),
        default="truncate",
        help="prompts longer than the context: middle-truncate (default) or feed whole (the policy bounds the cache)",
    )
    run.add_argument("--tasks", type=_csv, default=None, help="comma list of tasks (default: all of the suite)")
    run.add_argument("--limit", type=int, default=None, help="examples per task")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--namm-checkpoint", default=None, help="namm-bench checkpoint directory or evo-memory ckpt.pt")
    run.add_argument("--out", type=Path, default=Path("runs/latest"), help="results directory (default runs/latest)")
    run.add_argument("--chunk-size", type=int, default=128, help="prefill chunk (default 128)")
    run.add_argument("--interval", type=int, default=512, help="tokens between policy calls (default 512)")
    run.add_argument(
        "--no-prompt-end-call",
        action="store_true",
        help="streaming: do not call the policy at the end of the prompt (the paper's code does not)",
    )
    run.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda when available)")
    run.add_argument("--frames", type=int, default=None, help="video files: N frames sampled uniformly (default 32)")
    run.add_argument("--fps", type=float, default=None, help="video files: sample at this frame rate instead")

    rep = sub.add_parser(
        "report", help="write DIR/report.{md,csv,tex} and plots from DIR/results.jsonl (or for each DIR/*/)"
    )
    rep.add_argument("dir", type=Path)

    evo = sub.add_parser("evolve", help="evolve a NAMM with CMA-ES (torchrun spreads the population over ranks)")
    evo.add_argument("config", type=Path, help="evolution config (TOML), e.g. configs/evolution/smollm2.toml")
    evo.add_argument("--out", type=Path, required=True, help="run directory: state, logs, fitness.png")
    evo.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    evo.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda when available)")
    evo.add_argument("--stop-after", type=int, default=None, help="stop once this many generations are done")

    exp = sub.add_parser("export", help="write a run's CMA-ES mean as a NAMM checkpoint (safetensors + JSON)")
    exp.add_argument("run_dir", type=Path)
    exp.add_argument("--to", type=Path, default=None, help="checkpoint directory (default RUN_DIR/namm)")
    exp.add_argument("--force", action="store_true", help="replace a checkpoint already in the --to directory")

    data = sub.add_parser(
        "rl-datasets", help="generate offline RL datasets (minari format) from the SAC behaviour policies"
    )
    data.add_argument("--out", type=Path, required=True, help="dataset root (minari layout); datasets there are kept")
    data.add_argument("--envs", type=_csv, default=["hopper", "walker2d"], help="comma list (default hopper,walker2d)")
    data.add_argument("--qualities", type=_csv, default=["sac", "sac-noisy"], help="comma list (default sac,sac-noisy)")
    data.add_argument("--steps", type=int, default=100_000, help="transitions per dataset, whole episodes (100000)")
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--sb3-dir", default=None, help="rl-trained-agents directory (default ../shared/data/rl/sb3)")

    train = sub.add_parser("rl-train", help="train a Decision Transformer on a dataset (Chen et al.'s settings)")
    train.add_argument("--env", required=True, help="hopper or walker2d")
    train.add_argument("--quality", required=True, help="dataset: sac or sac-noisy (see rl-datasets)")
    train.add_argument("--data-dir", default=None, help="dataset root written by rl-datasets ($NAMM_BENCH_RL_DATA)")
    train.add_argument("--out", type=Path, required=True, help="run directory: config, state.pt, log.jsonl, model/")
    train.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    train.add_argument("--context", type=int, default=20, help="K, timesteps per training window (20)")
    train.add_argument("--steps", type=int, default=100_000, help="gradient steps (Chen et al.: 100000)")
    train.add_argument("--warmup-steps", type=int, default=10_000, help="linear learning-rate warm-up (10000)")
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--seed", type=int, default=0)

    rl_exp = sub.add_parser("rl-export", help="write a training run's latest state as an agent checkpoint")
    rl_exp.add_argument("run_dir", type=Path)
    rl_exp.add_argument("--to", type=Path, default=None, help="checkpoint directory (default RUN_DIR/model)")
    rl_exp.add_argument("--force", action="store_true", help="replace an agent already in the --to directory")

    vid = sub.add_parser(
        "video-train", help="train the embedded video model's vision tower and projector (SmolLM2 frozen)"
    )
    vid.add_argument("--out", type=Path, required=True, help="run directory: config, state.pt, log.jsonl, vision/")
    vid.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    vid.add_argument("--align-steps", type=int, default=1500, help="frame-to-word alignment steps (1500)")
    vid.add_argument("--qa-steps", type=int, default=300, help="question-answering steps through SmolLM2 (300)")
    vid.add_argument("--seed", type=int, default=0)

    vid_exp = sub.add_parser("video-export", help="write a video training run's latest state as vision weights")
    vid_exp.add_argument("run_dir", type=Path)
    vid_exp.add_argument("--to", type=Path, default=None, help="checkpoint directory (default RUN_DIR/vision)")
    vid_exp.add_argument("--force", action="store_true", help="replace weights already in the --to directory")

    sub.add_parser("list", help="list suites, tasks, policies and adapters")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "report":
            return _report(args.dir)
        if args.command == "evolve":
            return _evolve(args)
        if args.command == "export":
            return _export(args)
        if args.command == "rl-datasets":
            return _rl_datasets(args)
        if args.command == "rl-train":
            return _rl_train(args)
        if args.command == "rl-export":
            from namm_bench.adapters.decision_transformer_training import export_run

            print(f"agent: {export_run(args.run_dir, args.to, force=args.force)}")
            return 0
        if args.command == "video-train":
            from namm_bench.adapters.llava_next_video_training import VideoTrainConfig, train

            cfg = VideoTrainConfig(align_steps=args.align_steps, qa_steps=args.qa_steps, seed=args.seed)
            print(f"vision weights: {train(cfg, args.out, resume=args.resume)}  (log: {args.out / 'log.jsonl'})")
            return 0
        if args.command == "video-export":
            from namm_bench.adapters.llava_next_video_training import export_run as export_vision

            print(f"vision weights: {export_vision(args.run_dir, args.to, force=args.force)}")
            return 0
        return _list()
    except (ValueError, OSError) as err:
        print(f"namm-bench: error: {err}", file=sys.stderr)
        return 2


def _device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    local_rank = os.environ.get("LOCAL_RANK")  # under torchrun, one GPU per rank
    if local_rank is None:
        return "cuda"
    if int(local_rank) >= torch.cuda.device_count():  # nccl cannot put two ranks on one GPU
        raise ValueError(
            f"rank {local_rank} has no GPU of its own ({torch.cuda.device_count()} visible): "
            "use --nproc-per-node at most that, or --device cpu"
        )
    return f"cuda:{local_rank}"


def _evolve(args: argparse.Namespace) -> int:
    from .evolution.trainer import evolve

    out = evolve(args.config, args.out, resume=args.resume, device=_device(args.device), stop_after=args.stop_after)
    print(f"run: {out}  (log: {out / 'log.csv'}, plot: {out / 'fitness.png'}; checkpoint: namm-bench export {out})")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .evolution.trainer import export

    path = export(args.run_dir, args.to, force=args.force)
    print(f"wrote {path / 'namm.safetensors'} and {path / 'namm.json'}")
    return 0


def _rl_datasets(args: argparse.Namespace) -> int:
    import json

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


def _rl_train(args: argparse.Namespace) -> int:
    from namm_bench.adapters.decision_transformer_training import TrainConfig, train
    from namm_bench.suites.rl_datasets import load_episodes

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


def _run(args: argparse.Namespace) -> int:
    from .runner import RunSpec, run_suite

    device = _device(args.device)
    spec = RunSpec(
        suite=args.suite,
        out=args.out,
        model=args.model,
        policies=args.policies,
        budgets=[parse_budget(b) for b in args.budget],
        controller=ControllerConfig(
            chunk_size=args.chunk_size,
            interval=args.interval,
            protocol=args.protocol,
            prompt_end_call=not args.no_prompt_end_call,
        ),
        tasks=args.tasks,
        limit=args.limit,
        seed=args.seed,
        namm_checkpoint=args.namm_checkpoint,
        device=device,
        data_dir=args.data_dir,
        long_inputs=args.long_inputs,
        frames=args.frames,
        fps=args.fps,
    )
    out = run_suite(spec)
    print(f"results: {out / 'results.jsonl'}  (tables: namm-bench report {out})")
    return 0


def _report(directory: Path) -> int:
    from .report import write_report
    from .results import RESULTS_FILE

    # A directory of result directories (like reports/) regenerates each of them.
    runs = [directory] if (directory / RESULTS_FILE).exists() or not directory.is_dir() else []
    runs = runs or sorted(p.parent for p in directory.glob(f"*/{RESULTS_FILE}"))
    if not runs:
        raise ValueError(f"{directory} holds no {RESULTS_FILE}, nor do its subdirectories")
    for run in runs:
        md, csv = write_report(run)
        if len(runs) == 1:
            print(md.read_text())
        print(f"wrote {md}, {csv} and {md.with_suffix('.tex')}")
    return 0


def _list() -> int:
    from namm_bench.adapters import ADAPTERS
    from namm_bench.suites import SUITES, get_suite

    from .policies import BUDGETED, POLICIES

    print("suites:")
    for name in SUITES:
        suite = get_suite(name)
        print(f"  {name} (adapter {suite.adapter}): {', '.join(suite.tasks())}")
    print("policies:")
    for name, cls in POLICIES.items():
        kind = "budget: ratio or tokens" if name in BUDGETED else "no budget" if name == "full" else "emergent budget"
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"  {name} ({kind}): {summary}")
    print("adapters:")
    for name in ADAPTERS:
        print(f"  {name}")
    return 0
