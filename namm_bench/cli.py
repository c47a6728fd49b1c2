"""``namm-bench``: run suites, write reports, list what is available."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .budget import parse_budget
from .context import RopeScaling, parse_rope_scaling
from .controller import PROTOCOLS
from .models import DTYPES
from .presets import PRESETS, resolve_preset
from .registry import COMMANDS

log = logging.getLogger("namm_bench")


def _csv(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:  # "--tasks ," would otherwise mean "all tasks" and "--policies ," "run nothing"
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of names, got {text!r}")
    return items


def _rope_scaling(text: str) -> RopeScaling:
    try:
        return parse_rope_scaling(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="namm-bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a suite under several memory policies; appends to OUT/results.jsonl")
    run.add_argument("suite", help="suite name (see `namm-bench list`)")
    run.add_argument("--model", default=None, help="hub id or local directory (default: the suite's embedded model)")
    run.add_argument(
        "--adapter",
        default=None,
        help="adapter name (see `namm-bench list`; default: by the model's config.model_type)",
    )
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
    run.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="default",
        help="paper: the NAMM paper's settings (chunk 128, a call every 512 tokens, none at the prompt end, "
        "no chat template); default: namm-bench's",
    )
    run.add_argument("--chunk-size", type=int, default=None, help="prefill chunk (default 128)")
    run.add_argument("--interval", type=int, default=None, help="tokens between policy calls (default 512)")
    run.add_argument(
        "--prompt-end-call",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="streaming: also call the policy at the end of the prompt (default: yes; the paper's code does not)",
    )
    run.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda when available)")
    run.add_argument(
        "--dtype", choices=DTYPES, default="auto", help="weights (default auto: bfloat16 on CUDA, float32 on CPU)"
    )
    run.add_argument(
        "--rope-scaling",
        type=_rope_scaling,
        default=None,
        help="text models: linear:F, dynamic:F, yarn:F, llama3:F, ntk:F:ALPHA (paper's Llama 3: ntk:4:2), theta:B",
    )
    run.add_argument("--max-context", type=int, default=None, help="text models: context length (prompts fit in it)")
    run.add_argument("--frames", type=int, default=None, help="video files: N frames sampled uniformly (default 32)")
    run.add_argument("--fps", type=float, default=None, help="video files: sample at this frame rate instead")

    rep = sub.add_parser(
        "report", help="write DIR/report.{md,csv,tex} and plots from DIR/results.jsonl (or for each DIR/*/)"
    )
    rep.add_argument("dir", type=Path)
    rep.add_argument(
        "--format",
        choices=("namm-bench", "kvpress"),
        default="namm-bench",
        help="namm-bench: report.md/csv/tex and plots in DIR; kvpress: kvpress's evaluation layout in --to",
    )
    rep.add_argument("--to", type=Path, default=None, help="--format kvpress: where its result directories go")
    rep.add_argument(
        "--kvpress",
        type=Path,
        action="append",
        default=[],
        help="a directory of kvpress results (evaluate.py's output_dir) to show beside the rows (repeatable)",
    )

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
    exp.add_argument(
        "--solution",
        choices=("final", "best"),
        default="final",
        help="final: the last CMA-ES mean (default); best: the mean with the best periodic evaluation (eval_interval)",
    )

    pap = sub.add_parser(
        "paper", help="run the paper's tables from one configuration and one NAMM; write OUT/ tables and claims.md"
    )
    pap.add_argument("config", nargs="?", type=Path, default=Path("configs/paper.toml"), help="(default %(default)s)")
    pap.add_argument("--out", type=Path, default=Path("reports/paper"), help="(default %(default)s)")
    pap.add_argument("--limit", type=int, default=None, help="examples per task in every table (default: each table's)")
    pap.add_argument("--tables", type=_csv, default=None, help="comma list of the config's tables (default: all)")
    pap.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda when available)")
    pap.add_argument("--report-only", action="store_true", help="rewrite the reports and claims from the rows there")

    for _, add in COMMANDS.items():  # plugins' subcommands (namm-bench's own training recipes among them)
        add(sub)

    sub.add_parser("list", help="list suites, tasks, policies and adapters")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "report":
            return _report(args.dir, args.format, args.to, args.kvpress)
        if args.command == "evolve":
            return _evolve(args)
        if args.command == "export":
            return _export(args)
        if args.command == "list":
            return _list()
        if args.command == "paper":
            return _paper(args)
        return args.handler(args)
    except (ValueError, OSError) as err:
        print(f"namm-bench: error: {err}", file=sys.stderr)
        return 2


def _device(name: str) -> str:
    import torch

    if name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError as err:
            raise ValueError(f"--device {name}: not a device (cpu, cuda, cuda:1, mps, ...): {err}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            why = "this PyTorch is a CPU build" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(f"--device {name}: {why}; use --device cpu (or auto)")
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) visible")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"--device {name}: MPS is not available here; use --device cpu (or auto)")
        return name

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


def _paper(args: argparse.Namespace) -> int:
    from .paper import run_paper

    device = "cpu" if args.report_only else _device(args.device)
    out, failed = run_paper(
        args.config, args.out, device=device, limit=args.limit, only=args.tables, report_only=args.report_only
    )
    print((out / "claims.md").read_text())
    print(f"wrote {out / 'README.md'} (index), {out / 'claims.md'}, {out / 'claims.csv'} and one report per table")
    for line in failed:
        print(f"namm-bench: error: table {line}", file=sys.stderr)
    return 1 if failed else 0


def _export(args: argparse.Namespace) -> int:
    from .evolution.export import export

    path = export(args.run_dir, args.to, force=args.force, solution=args.solution)
    print(f"wrote {path / 'namm.safetensors'} and {path / 'namm.json'}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from .runner import RunSpec, run_suite

    device = _device(args.device)
    preset = resolve_preset(
        args.preset, chunk_size=args.chunk_size, interval=args.interval, prompt_end_call=args.prompt_end_call
    )
    spec = RunSpec(
        suite=args.suite,
        out=args.out,
        model=args.model,
        policies=args.policies,
        budgets=[parse_budget(b) for b in args.budget],
        controller=preset.controller(args.protocol),
        preset=args.preset,
        chat=preset.chat,
        tasks=args.tasks,
        limit=args.limit,
        seed=args.seed,
        namm_checkpoint=args.namm_checkpoint,
        device=device,
        data_dir=args.data_dir,
        long_inputs=args.long_inputs,
        adapter=args.adapter,
        adapter_options={k: v for k, v in (("num_frames", args.frames), ("fps", args.fps)) if v is not None},
        dtype=args.dtype,
        rope_scaling=args.rope_scaling,
        max_context=args.max_context,
    )
    out = run_suite(spec)
    print(f"results: {out / 'results.jsonl'}  (tables: namm-bench report {out})")
    return 0


def _report(directory: Path, form: str = "namm-bench", to: Path | None = None, kvpress: list[Path] = ()) -> int:
    from .report import write_report
    from .results import RESULTS_FILE, ResultsStore

    if form == "kvpress":
        from .kvpress_layout import write_kvpress

        if to is None:
            raise ValueError("--format kvpress writes kvpress's result directories: name where with --to OUT")
        if not (directory / RESULTS_FILE).is_file():
            raise ValueError(f"{directory} holds no {RESULTS_FILE}")
        written = write_kvpress(ResultsStore(directory).rows(), to)
        for path in written:
            print(path)
        print(f"wrote {len(written)} kvpress result directories under {to}")
        return 0
    if to is not None:
        raise ValueError("--to is for --format kvpress")

    # A directory of result directories (like reports/, history/ and paper/ included) regenerates each.
    runs = [directory] if (directory / RESULTS_FILE).exists() or not directory.is_dir() else []
    runs = runs or sorted(p.parent for p in directory.glob(f"**/{RESULTS_FILE}"))
    if not runs:
        raise ValueError(f"{directory} holds no {RESULTS_FILE}, nor do its subdirectories")
    for run in runs:
        md, csv = write_report(run, kvpress)
        if len(runs) == 1:
            print(md.read_text())
        print(f"wrote {md}, {csv} and {md.with_suffix('.tex')}")
    return 0


def _list() -> int:
    from .models import make_suite
    from .policies import policy_class
    from .registry import ADAPTERS, POLICIES, SUITES

    print("suites:")
    for name in SUITES.names():
        suite = make_suite(name)
        adapter = getattr(suite, "default_adapter", None)
        default = f", default adapter {adapter}" if adapter else ""
        print(f"  {name} ({suite.modality}{default}): {', '.join(suite.tasks()) or '(no tasks found)'}")
    print("policies:")
    for name in POLICIES.names():
        cls = policy_class(name)
        kind = "budget: ratio or tokens" if cls.takes_budget else "no budget" if name == "full" else "emergent budget"
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        protocols = ", ".join(getattr(cls, "protocols", PROTOCOLS))
        print(f"  {name} ({kind}; {protocols}): {summary}")
    print("adapters (model types they serve):")
    for name, cls in ADAPTERS.items():
        print(f"  {name} ({cls.modality}): {', '.join(cls.model_types)}")
    return 0
