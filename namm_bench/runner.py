"""Runs a suite: every example under every (policy, budget), one result row each, resumable."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from . import __version__
from .budget import MATCH, Budget
from .context import RopeScaling
from .controller import ControllerConfig
from .fingerprints import example_fingerprint, model_fingerprint
from .interfaces import ExampleError, RunOptions
from .models import make_adapter, make_suite, resolve_dtype, suite_adapter
from .namm.checkpoint import NammCheckpoint, load_checkpoint, load_shipped
from .policies import MemoryPolicy, make_policy, policy_class
from .policies.base import POST_PREFILL, check_protocol
from .registry import ADAPTERS
from .results import ResultsStore, legacy_key, row_key

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
    adapter: str | None = None
    """Registry name of the adapter; None: chosen by the model's ``config.model_type``."""
    adapter_options: dict[str, Any] = field(default_factory=dict)
    """Keyword options for the adapter (the video adapter's ``num_frames`` / ``fps``)."""
    preset: str = "default"
    """The ``--preset`` the controller settings came from (``namm_bench.presets``), in every row's key."""
    chat: bool | None = None
    """False: text prompts without the chat template (the paper preset); None: as each suite says."""
    dtype: str = "auto"
    """Weights' dtype (``namm_bench.models.DTYPES``): ``auto`` is bfloat16 on CUDA, float32 elsewhere."""
    rope_scaling: RopeScaling | None = None
    """RoPE scaling set on the model's config (``namm_bench.context``), in every row's key."""
    max_context: int | None = None
    """Context length set on the model's config (prompts truncate to it), in every row's key."""


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
    classes = {name: policy_class(name) for name in spec.policies}  # an unknown name lists the known ones
    for cls in classes.values():
        check_protocol(cls, spec.controller.protocol)
    if MATCH in spec.budgets and "namm" not in spec.policies:
        raise ValueError("--budget match runs baselines at the NAMM's cache fraction: add namm to --policies")
    ordered = sorted(dict.fromkeys(spec.policies), key=lambda p: p != "namm")
    out: list[Variant] = []
    for name in ordered:
        if classes[name].takes_budget:
            if not spec.budgets:
                raise ValueError(f"policy {name!r} needs --budget")
            out += [Variant(name, b) for b in spec.budgets]
        else:
            out.append(Variant(name, None))
    return out


def load_namm(spec: RunSpec) -> NammCheckpoint | None:
    if "namm" not in spec.policies:
        return None
    return load_checkpoint(spec.namm_checkpoint) if spec.namm_checkpoint is not None else load_shipped()


def run_suite(spec: RunSpec) -> Path:
    """Run ``spec`` and append its rows to ``spec.out/results.jsonl``; rows already there are skipped.

    The one run loop of every suite: the suite gives tasks, examples and the metric, the adapter
    runs each example under each (policy, budget), and the loop resumes, resolves ``match``
    budgets from the NAMM's rows, refuses NAMM rows of another checkpoint, records examples that
    cannot run as error rows and shows progress. Under torchrun each rank runs its share of the
    examples (``rank_share``) and appends to the same file, whose lock keeps every row once.
    """
    # Everything a user can get wrong is checked before a model loads.
    suite = make_suite(spec.suite, spec.data_dir, spec.model)
    tasks = spec.tasks or (suite.default_tasks() if hasattr(suite, "default_tasks") else suite.tasks())
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
    protocol = spec.controller.protocol
    plan = suite.plan(variants(spec), protocol) if hasattr(suite, "plan") else [(protocol, v) for v in variants(spec)]
    namm = load_namm(spec)
    store = ResultsStore(spec.out)
    refuse_other_namm(store, namm)
    # Examples that need no tokenizer are built (and bad files found) before any model loads.
    untokenised = (
        {} if suite.modality == "text" else {t: suite.examples(t, None, None, spec.seed, spec.limit) for t in tasks}
    )
    jobs, adapters = [], {}
    for task in tasks:
        model = suite.model_for(task, spec.model) if hasattr(suite, "model_for") else spec.model
        if model not in adapters:
            adapters[model] = load_adapter(spec, suite, model)
        adapter = adapters[model]
        if task in untokenised:
            examples = untokenised[task]
        else:
            max_prompt = adapter.max_prompt_tokens(ANSWER_RESERVE)
            examples = suite.examples(task, adapter.count_tokens, max_prompt, spec.seed, spec.limit)
            if spec.chat is not None:
                examples = [dataclasses.replace(ex, chat=spec.chat) for ex in examples]
        jobs += [(adapter, ex, row_protocol, v) for ex in examples for row_protocol, v in plan]
    rank, world = data_parallel_rank()
    jobs = rank_share(jobs, rank, world)
    done = store.done_keys()
    # the NAMM's cache fraction on each example under the same settings: what `match` budgets take
    namm_fraction = {
        _example_key(r): r["cache_fraction"] for r in store.rows() if r["policy"] == "namm" and not r.get("error")
    }
    options = getattr(suite, "policy_options", {})
    desc = spec.suite if world == 1 else f"{spec.suite} [rank {rank}/{world}]"
    pending = []
    for adapter, ex, row_protocol, variant in jobs:
        row = _base_row(spec, suite.name, adapter, ex, variant, row_protocol)
        if row_key(row) not in done and legacy_key(row_key(row)) not in done:
            pending.append((adapter, ex, row_protocol, variant, row))
    bar = tqdm(total=len(pending), desc=desc, unit="run", dynamic_ncols=True, position=rank if world > 1 else None)
    for group in _example_groups(pending):
        # `match` rows wait for the NAMM's row of their example, which runs in the first batch
        batches = [[j for j in group if j[3].budget != MATCH or _namm_fraction(namm_fraction, j[4]) is not None]]
        batches.append([j for j in group if j not in batches[0]])
        for batch in filter(None, batches):
            adapter, ex, row_protocol = batch[0][:3]
            bar.set_postfix_str(f"{ex.example_id} {', '.join(f'{j[3].policy}/{j[3].label}' for j in batch)}")
            policies = []
            for *_, variant, row in batch:
                budget = resolve_match(variant.budget, _namm_fraction(namm_fraction, row), f"{ex.task} {ex.example_id}")
                policies.append(_make(variant.policy, budget, namm, options.get(variant.policy, {})))
                ratio = budget.ratio if isinstance(budget, Budget) else None
                row.update(budget_ratio=ratio, answer=ex.answer, meta=ex.meta)
            run_options = RunOptions(row_protocol, spec.long_inputs)
            for (*_, variant, row), policy, outcome in zip(
                batch, policies, _outcomes(adapter, ex, policies, spec.controller, run_options), strict=True
            ):
                if isinstance(outcome, ExampleError):
                    row.update(score=None, cache_fraction=None, error=str(outcome), policy_config=policy.describe())
                else:
                    row.update(
                        {
                            "score": suite.score(ex, outcome),
                            **outcome.row_fields(),
                            "seconds": round(outcome.seconds, 3),
                            "error": None,
                            "policy_config": policy.describe(),
                            **outcome.fields,
                            **(suite.record(ex, outcome) if hasattr(suite, "record") else {}),
                        }
                    )
                    if variant.policy == "namm":
                        namm_fraction[_example_key(row)] = row["cache_fraction"]
                store.append(row)
                done.add(row_key(row))
                bar.update()
    bar.close()
    return spec.out


def _namm_fraction(namm_fraction: dict[tuple, float], row: dict[str, Any]) -> float | None:
    """The cache fraction of the NAMM's row on ``row``'s example (under a legacy key too), or None."""
    where = _example_key(row)
    return namm_fraction.get(where, namm_fraction.get(legacy_key(where)))


def _example_groups(pending: list[tuple]) -> list[list[tuple]]:
    """``pending`` jobs split into runs of consecutive jobs on one example under one protocol."""
    groups: list[list[tuple]] = []
    for job in pending:
        adapter, ex, protocol = job[:3]
        last = groups[-1][0] if groups else None
        if last is not None and (last[0], last[1].task, last[1].example_id, last[2]) == (
            adapter,
            ex.task,
            ex.example_id,
            protocol,
        ):
            groups[-1].append(job)
        else:
            groups.append([job])
    return groups


def _outcomes(adapter: Any, ex: Any, policies: list[MemoryPolicy], controller: ControllerConfig, options: RunOptions):
    """Each policy's outcome (or the ``ExampleError`` it raised), timed, in order: from one shared
    prefill where the adapter has one and the protocol allows it, else run by run."""
    if len(policies) > 1 and controller.protocol == options.protocol in POST_PREFILL and hasattr(adapter, "run_shared"):
        produced = 0
        try:
            for outcome in adapter.run_shared(ex, policies, controller, options):
                produced += 1
                yield outcome
        except ExampleError as err:
            yield from [err] * (len(policies) - produced)
        return
    for policy in policies:
        began = time.perf_counter()
        try:
            outcome = adapter.run(ex, policy, controller, options)
        except ExampleError as err:
            yield err
        else:
            if outcome.seconds is None:
                outcome.seconds = time.perf_counter() - began
            yield outcome


def data_parallel_rank() -> tuple[int, int]:
    """(rank, world size) under torchrun (its ``RANK`` and ``WORLD_SIZE``, across nodes), else (0, 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if not 0 <= rank < world:
        raise ValueError(f"RANK {rank} is outside WORLD_SIZE {world}")
    return rank, world


def rank_share(jobs: list[tuple], rank: int, world: int) -> list[tuple]:
    """The jobs of examples ``rank``, ``rank + world``, ...: every variant of an example on one rank,
    since a ``match`` budget reads the NAMM's row of the same example."""
    examples: dict[tuple, int] = {}
    for adapter, ex, *_ in jobs:
        examples.setdefault((id(adapter), ex.task, ex.example_id), len(examples))
    return [job for job in jobs if examples[(id(job[0]), job[1].task, job[1].example_id)] % world == rank]


def load_adapter(spec: RunSpec, suite: Any, model: str | None) -> Any:
    """The adapter that runs ``model`` (``--adapter``, else by its model type, else the suite's default)."""
    name = suite_adapter(suite, model, spec.adapter)
    adapter_cls = ADAPTERS.get(name)
    if getattr(adapter_cls, "modality", suite.modality) != suite.modality:
        raise ValueError(
            f"adapter {name} runs {adapter_cls.modality} examples; suite {suite.name} has {suite.modality} examples"
        )
    context = {"rope_scaling": spec.rope_scaling, "max_context": spec.max_context}
    options = {**spec.adapter_options, **{k: v for k, v in context.items() if v is not None}}
    options["dtype"] = getattr(torch, resolve_dtype(spec.dtype, spec.device, adapter_cls))
    adapter = make_adapter(name, model, device=spec.device, **options)
    directory = getattr(adapter_cls, "model_directory", None)
    path = directory(model) if directory else (Path(model) if model and Path(model).is_dir() else None)
    adapter.model_sha256 = model_fingerprint(path)  # rows name the weights they ran on
    return adapter


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


def _make(
    name: str, budget: Budget | None, namm: NammCheckpoint | None, options: dict[str, Any] | None = None
) -> MemoryPolicy:
    options = options or {}
    if name == "namm":
        return make_policy("namm", checkpoint=namm, **options)
    return make_policy(name, budget if policy_class(name).takes_budget else None, **options)


def _base_row(spec: RunSpec, suite: str, adapter: Any, ex: Any, variant: Variant, protocol: str) -> dict[str, Any]:
    cfg = spec.controller
    return {
        "suite": suite,
        "task": ex.task,
        "example_id": ex.example_id,
        "model": adapter.model_name,
        "adapter": adapter.name,
        "policy": variant.policy,
        "budget": variant.label,
        "protocol": protocol,
        "long_inputs": spec.long_inputs,
        "chunk_size": cfg.chunk_size,
        "interval": cfg.interval,
        "prompt_end_call": cfg.prompt_end_call,
        "seed": spec.seed,
        "preset": spec.preset,
        "dtype": _dtype(adapter),
        "rope_scaling": spec.rope_scaling.label if spec.rope_scaling else None,
        "max_context": spec.max_context,
        "model_sha256": adapter.model_sha256,
        "example_hash": example_fingerprint(ex),
        "code_version": code_version(),
    }


def _example_key(row: dict[str, Any]) -> tuple:
    """The key of the NAMM's row on the same example under the same settings."""
    return row_key({**row, "policy": "namm", "budget": NO_BUDGET})


def _dtype(adapter: Any) -> str:
    """The dtype of the model's weights, as rows record it (``float32``)."""
    model = getattr(adapter, "model", None)
    param = next(model.parameters(), None) if model is not None else None
    return str(param.dtype).removeprefix("torch.") if param is not None else "float32"
