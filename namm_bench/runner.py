"""Runs a suite: every example under every (policy, budget), one result row each, resumable."""

from __future__ import annotations

import json
import logging
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from . import __version__
from .budget import MATCH, Budget
from .controller import ControllerConfig
from .namm.checkpoint import NammCheckpoint, load_checkpoint
from .policies import BUDGETED, POLICIES, MemoryPolicy, make_policy
from .results import ResultsStore, row_key

log = logging.getLogger(__name__)

NO_BUDGET = "none"
LONG_INPUTS = ("truncate", "stream")
"""How a prompt longer than the model's context is fed: middle-truncated, or whole (the policy bounds the cache)."""
ANSWER_RESERVE = 64
"""Tokens kept free for the answer when a suite sizes its prompts to the model."""


@dataclass
class RunSpec:
    """Everything ``namm-bench run`` was asked for."""

    suite: str
    out: Path
    model: str | None = None
    policies: list[str] = field(default_factory=lambda: ["full", "h2o", "l2"])
    budgets: list[Budget | str] = field(default_factory=lambda: [Budget(ratio=0.25)])
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    tasks: list[str] | None = None
    limit: int | None = None
    seed: int = 0
    namm_checkpoint: str | None = None
    device: str = "cpu"
    data_dir: str | None = None
    long_inputs: str = "truncate"
    frames: int | None = None
    fps: float | None = None
    """Video files: N uniformly sampled frames, or a fixed rate (the adapter's default: 32 frames)."""


@dataclass(frozen=True)
class Variant:
    """One (policy, budget) to run on every example."""

    policy: str
    budget: Budget | str | None

    @property
    def label(self) -> str:
        return NO_BUDGET if self.budget is None else str(self.budget)


@cache
def code_version() -> str:
    """Package version plus the git commit it runs from, when it runs from a checkout."""
    try:
        sha = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__


def variants(spec: RunSpec) -> list[Variant]:
    """(policy, budget) pairs in run order: the NAMM first, since ``match`` reads its cache fraction."""
    for name in spec.policies:
        if name not in POLICIES:
            raise ValueError(f"unknown policy {name!r}; known policies: {', '.join(POLICIES)}")
    if MATCH in spec.budgets and "namm" not in spec.policies:
        raise ValueError("--budget match runs baselines at the NAMM's cache fraction: add namm to --policies")
    ordered = sorted(dict.fromkeys(spec.policies), key=lambda p: p != "namm")
    out: list[Variant] = []
    for name in ordered:
        if name in BUDGETED:
            if not spec.budgets:
                raise ValueError(f"policy {name!r} needs --budget")
            out += [Variant(name, b) for b in spec.budgets]
        else:
            out.append(Variant(name, None))
    return out


SHIPPED_NAMM = Path(__file__).parent / "checkpoints" / "namm-smollm2"
"""The NAMM evolved for the embedded SmolLM2 (``configs/evolution/smollm2.toml``), used by default."""


def load_namm(spec: RunSpec) -> NammCheckpoint | None:
    if "namm" not in spec.policies:
        return None
    if spec.namm_checkpoint is not None:
        return load_checkpoint(spec.namm_checkpoint)
    if not (SHIPPED_NAMM / "namm.json").is_file():
        raise ValueError(
            "no trained NAMM ships with this install: pass --namm-checkpoint PATH "
            "(a namm-bench checkpoint directory or an evo-memory ckpt.pt)"
        )
    return load_checkpoint(SHIPPED_NAMM)


def run_suite(spec: RunSpec) -> Path:
    """Run ``spec`` and append its rows to ``spec.out/results.jsonl``; rows already there are skipped."""
    from namm_bench.adapters import get_adapter
    from namm_bench.suites import get_suite

    # Everything a user can get wrong is checked before the model loads.
    suite = get_suite(spec.suite, spec.data_dir)
    if hasattr(suite, "run"):  # a suite with a loop of its own (rl: episodes, not prompts)
        return suite.run(spec)
    tasks = spec.tasks or getattr(suite, "default_tasks", suite.tasks)()  # file-backed suites: the files present
    unknown = [t for t in tasks if t not in suite.tasks()]
    if unknown:
        raise ValueError(
            f"unknown task(s) {', '.join(unknown)} in suite {spec.suite}; known: {', '.join(suite.tasks())}"
        )
    if spec.long_inputs not in LONG_INPUTS:
        raise ValueError(f"--long-inputs must be one of {', '.join(LONG_INPUTS)}, got {spec.long_inputs!r}")
    if spec.limit is not None and spec.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {spec.limit}")
    if hasattr(suite, "check"):  # suites that read files find them (or say where they looked) now
        suite.check(tasks)
    plan = variants(spec)
    namm = load_namm(spec)
    store = ResultsStore(spec.out)
    refuse_other_namm(store, namm)
    adapter = get_adapter(suite.adapter, spec.model, device=spec.device)
    done = store.done_keys()
    max_prompt = adapter.max_prompt_tokens(ANSWER_RESERVE)
    examples = [
        ex for task in tasks for ex in suite.examples(task, adapter.count_tokens, max_prompt, spec.seed, spec.limit)
    ]
    namm_fraction = {
        (r["task"], r["example_id"]): r["cache_fraction"]
        for r in store.rows()
        if r["policy"] == "namm"
        and r["protocol"] == spec.controller.protocol
        and r["model"] == adapter.model_name
        and r.get("long_inputs", "truncate") == spec.long_inputs
    }
    jobs = [(ex, v) for ex in examples for v in plan]
    bar = tqdm(jobs, desc=f"{spec.suite}", unit="run", dynamic_ncols=True)
    for ex, variant in bar:
        row = _base_row(spec, suite.name, adapter.model_name, ex, variant)
        if row_key(row) in done:
            continue
        bar.set_postfix_str(f"{ex.example_id} {variant.policy}/{variant.label}")
        budget = resolve_match(variant.budget, namm_fraction.get((ex.task, ex.example_id)), ex.example_id)
        policy = _make(variant.policy, budget, namm)
        gen = adapter.generate(ex, policy, spec.controller, truncate=spec.long_inputs == "truncate")
        stats = gen.controller.stats
        row.update(
            budget_ratio=budget.ratio if isinstance(budget, Budget) else None,
            score=suite.score(ex, gen.text),
            cache_fraction=stats.cache_fraction,
            cache_fraction_prompt=stats.prompt_fraction,
            peak_kv_bytes=stats.peak_kv_bytes,
            tokens=int(gen.prompt.ids.shape[1]),
            truncated_tokens=gen.prompt.truncated_tokens,
            new_tokens=gen.new_tokens,
            seconds=round(gen.seconds, 3),
            policy_seconds=round(stats.policy_seconds, 3),
            policy_calls=len(stats.calls),
            retained_per_layer=gen.controller.retained_per_layer(),
            prediction=gen.text,
            answer=ex.answer,
            error=None,
            policy_config=policy.describe(),
            meta=ex.meta,
        )
        store.append(row)
        done.add(row_key(row))
        if variant.policy == "namm":
            namm_fraction[(ex.task, ex.example_id)] = stats.cache_fraction
    return spec.out


def resolve_match(budget: Budget | str | None, namm_fraction: float | None, what: str) -> Budget | None:
    """``budget``, with ``match`` replaced by the ratio the NAMM's row reached on the same example."""
    if budget != MATCH:
        return budget
    if namm_fraction is None:
        raise RuntimeError(f"{what}: no NAMM row to match (it should have run first)")
    return Budget(ratio=min(1.0, max(namm_fraction, 1e-6)))


def refuse_other_namm(store: ResultsStore, namm: NammCheckpoint | None) -> None:
    """Refuse ``store`` if it holds NAMM rows of a checkpoint other than ``namm`` (no-op without one).

    Rows are skipped by key, which does not name the checkpoint: NAMM rows of another one would be kept
    as this one's (and their cache fractions set the ``match`` budgets)."""
    if namm is None:
        return
    current = json.loads(json.dumps(_make("namm", None, namm).describe()))  # as a stored row holds it
    for row in store.rows():
        config = row.get("policy_config")
        if row["policy"] == "namm" and isinstance(config, dict) and config != current:
            theirs = config.get("provenance") or {}
            raise ValueError(
                f"{store.path} holds NAMM rows of another checkpoint (tasks {theirs.get('tasks')}, "
                f"{theirs.get('generations')} generations): choose another --out, or remove its namm and match rows"
            )


def _make(name: str, budget: Budget | None, namm: NammCheckpoint | None) -> MemoryPolicy:
    if name == "namm":
        return make_policy("namm", checkpoint=namm)
    return make_policy(name, budget if name in BUDGETED else None)


def _base_row(spec: RunSpec, suite: str, model: str, ex: Any, variant: Variant) -> dict[str, Any]:
    cfg = spec.controller
    return {
        "suite": suite,
        "task": ex.task,
        "example_id": ex.example_id,
        "model": model,
        "policy": variant.policy,
        "budget": variant.label,
        "protocol": cfg.protocol,
        "long_inputs": spec.long_inputs,
        "chunk_size": cfg.chunk_size,
        "interval": cfg.interval,
        "seed": spec.seed,
        "code_version": code_version(),
    }
