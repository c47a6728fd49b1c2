"""The evolution loop: CMA-ES over NAMM parameters, one generation at a time, resumable.

Per generation (``namm-reference.md`` section 5): sample the stage's examples (the same for
every member), ask CMA-ES for a population, score every member and the current mean on every
example (members spread over ranks in fixed batches), turn scores into fitness (mean over tasks
of score / full-cache score, minus the optional sparsity term), tell CMA-ES, then write the
whole state atomically. The normalisation statistics are pooled from the full-cache features of
generation 0's examples and frozen from then on (the reference freezes them after iteration 0);
they do not depend on any member, so every rank computes the same ones. A run started from a
checkpoint (``init``) keeps that checkpoint's statistics instead.

Run directory: ``config.json`` (the config, checked on ``--resume``), ``state.pkl`` (CMA-ES,
NumPy generator, statistics, log; replaced atomically every generation), ``log.jsonl`` and
``log.csv`` (one row per generation), ``fitness.png``, and ``namm/`` after ``export``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..files import write_atomic, write_figure
from ..fingerprints import model_fingerprint
from ..models import make_adapter, make_suite, suite_adapter
from ..namm.checkpoint import load_checkpoint
from ..namm.features import RunningStats
from ..presets import resolve_preset
from ..registry import ADAPTERS
from .cmaes import CMAES
from .config import ConfigError, EvolutionConfig, config_from_dict, load_config
from .distributed import World, barrier, broadcast, close_world, init_world, sum_over_ranks
from .fitness import FITNESS
from .validation import EVAL_FIELDS, VALIDATION_SEED_OFFSET, Validation

log = logging.getLogger(__name__)

STATE_FILE = "state.pkl"
CONFIG_FILE = "config.json"
STATE_FORMAT = "namm-bench/evolution-state-v1"
LOG_FIELDS = (
    "generation",
    "stage",
    "tasks",
    "fitness_mode",
    "examples",
    "best",
    "mean",
    "mean_solution",
    "mean_solution_score",
    "mean_solution_cache_fraction",
    "population_cache_fraction",
    "sigma",
    "seconds",
    *EVAL_FIELDS,
)


class EvolutionError(ValueError):
    """A run directory that cannot be started or resumed as asked."""


def evolve(
    config_path: str | Path, out: str | Path, resume: bool = False, device: str = "cpu", stop_after: int | None = None
) -> Path:
    """Run (or resume) the evolution described by ``config_path`` in the directory ``out``.

    ``stop_after`` ends the run once that many generations are done (the config's stages stay the
    plan; a later ``--resume`` continues the same trajectory).
    """
    config = load_config(config_path)
    suite = make_suite(config.suite)
    config.validate(suite.tasks())
    if stop_after is not None and stop_after < 1:
        raise ConfigError(f"--stop-after must be at least 1, got {stop_after}")
    end = min(stop_after or config.total_generations, config.total_generations)
    out = Path(out)
    state = _open_run(out, config, resume)  # everything a user can get wrong is checked before writing
    adapter_name = suite_adapter(suite, config.model)
    model_sha256 = model_fingerprint(ADAPTERS.get(adapter_name).model_directory(config.model))
    if state is not None and state.setdefault("model_sha256", model_sha256) != model_sha256:
        raise EvolutionError(
            f"--resume: the model's files differ from those {out} was started with "
            f"(sha256 {model_sha256} against {state['model_sha256']})"
        )
    world = init_world(device)
    try:
        adapter = make_adapter(adapter_name, config.model, device=device, **config.adapter_options())
        fitness = FITNESS[config.fitness](adapter, suite, config)
        pools = example_pools(config, suite, adapter)
        validation = None
        if config.eval_interval:
            seed = config.pool_seed + VALIDATION_SEED_OFFSET
            validation = Validation(config, example_pools(config, suite, adapter, seed, config.eval_examples_per_task))
        if state is None:
            cma, state = _fresh_start(config, model_sha256)
            if world.is_main:
                out.mkdir(parents=True, exist_ok=True)
                write_atomic(out / CONFIG_FILE, json.dumps(config.to_dict(), indent=2))
        else:
            cma = CMAES.from_state(state["cma"])
            if world.is_main:  # a kill between the state and the logs left the logs a row short
                _write_logs(out, state["log"])
                for tmp in out.glob(".*.tmp"):  # temp files of writes a kill interrupted
                    tmp.unlink(missing_ok=True)
        bar = tqdm(
            total=config.total_generations,
            initial=state["generation"],
            desc="evolve",
            unit="gen",
            disable=not world.is_main,
            dynamic_ncols=True,
        )
        while state["generation"] < end:
            row = _generation(state, cma, config, fitness, pools, world, bar)
            state["generation"] += 1
            if validation is not None and validation.due(state["generation"]):
                bar.set_postfix_str(f"gen {row['generation']}: evaluating the mean")
                stats = RunningStats(**state["stats"])
                row.update(validation.evaluate(fitness, cma.mean, stats, world, state))
            state["log"].append(row)
            state["cma"] = cma.state()
            if world.is_main:
                _save_state(out, state)
                _write_logs(out, state["log"])
            barrier(world)
            bar.update(1)
            bar.set_postfix(best=f"{row['best']:.3f}", mean_solution=f"{row['mean_solution']:.3f}")
        bar.close()
    finally:
        close_world(world)
    return out


def _generation(state, cma: CMAES, config: EvolutionConfig, fitness, pools, world: World, bar) -> dict[str, Any]:
    began = time.perf_counter()
    g = state["generation"]
    stage_index, stage = config.stage_at(g)
    examples = sample_examples(config, pools, g)
    prepared = []
    for k, ex in enumerate(examples):
        bar.set_postfix_str(f"gen {g}: prefill {k + 1}/{len(examples)}")
        prepared.append(fitness.prepare(ex))
    if state["stats"] is None:
        stats = RunningStats.pooled(ema for ema, _ in prepared)
        state["stats"] = {"mean": stats.mean, "var": stats.var, "count": stats.count}
    stats = RunningStats(**state["stats"])
    full = torch.tensor([score for _, score in prepared], dtype=torch.float64)

    population = broadcast(world, torch.from_numpy(cma.ask()))
    items = torch.cat([population, torch.from_numpy(cma.mean)[None]]).float()  # members, then the mean

    def progress(members: list[int], k: int) -> None:
        bar.set_postfix_str(f"gen {g}: members {members[0]}-{members[-1]}, example {k + 1}/{len(examples)}")

    results = score_members(fitness, items, examples, stats, config.member_batch, world, progress)
    results = sum_over_ranks(world, results)
    value, perf, fraction = _fitness(results, full, [ex.task for ex in examples], config)
    cma.tell(population.numpy(), value[:-1].numpy())
    n = len(population)
    return {
        "generation": g,
        "stage": stage_index + 1,
        "tasks": ",".join(stage.tasks),
        "fitness_mode": config.fitness,
        "examples": len(examples),
        "best": float(value[:n].max()),
        "mean": float(value[:n].mean()),
        "mean_solution": float(value[n]),
        "mean_solution_score": float(perf[n]),
        "mean_solution_cache_fraction": float(fraction[n]),
        "population_cache_fraction": float(fraction[:n].mean()),
        "sigma": cma.sigma,
        "seconds": round(time.perf_counter() - began, 2),
    }


def _fresh_start(config: EvolutionConfig, model_sha256: str | None) -> tuple[CMAES, dict[str, Any]]:
    """CMA-ES at the zero NAMM with statistics still to pool, or at ``config.init`` with its statistics."""
    x0, stats = None, None
    if config.init:
        start = load_checkpoint(config.init)
        x0 = start.params.double().numpy()
        stats = {"mean": start.stats.mean, "var": start.stats.var, "count": start.stats.count}
    cma = CMAES(config.namm.num_params, config.population, config.sigma0, config.elite_ratio, config.seed, x0)
    return cma, {"generation": 0, "stats": stats, "log": [], "model_sha256": model_sha256}


def sample_examples(config: EvolutionConfig, pools: dict[str, list], generation: int) -> list:
    """The examples every member of ``generation`` is scored on: a seeded draw from each stage task's pool."""
    _, stage = config.stage_at(generation)
    rng = np.random.default_rng([config.seed, generation])
    return [
        pools[task][i]
        for task in stage.tasks
        for i in sorted(rng.choice(config.pool_per_task, config.examples_per_task, replace=False))
    ]


def score_members(
    fitness,
    items: torch.Tensor,
    examples: list,
    stats: RunningStats,
    batch: int,
    world: World | None = None,
    progress=None,
) -> torch.Tensor:
    """(items, examples, [score, cache fraction]) for this rank's batches; other ranks' rows stay 0.

    Items go in fixed batches of ``batch`` dealt to ranks round-robin, so what is computed for an
    item does not depend on the number of ranks.
    """
    world = world or World()
    results = torch.zeros(len(items), len(examples), 2, dtype=torch.float64)
    batches = [list(range(i, min(i + batch, len(items)))) for i in range(0, len(items), batch)]
    for b, members in enumerate(batches):
        if b % world.size != world.rank:
            continue
        for k, ex in enumerate(examples):
            if progress:
                progress(members, k)
            scores, fractions = fitness.members(ex, items[members], stats)
            results[members, k, 0] = scores.double()
            results[members, k, 1] = fractions.double()
    return results


def _fitness(results: torch.Tensor, full: torch.Tensor, tasks: list[str], config: EvolutionConfig):
    """Per item: fitness, normalised score (mean over tasks of S_t / R_t) and cache fraction."""
    per_task = []
    for task in dict.fromkeys(tasks):
        cols = [i for i, t in enumerate(tasks) if t == task]
        reference = full[cols].mean()
        if reference <= 0:  # the full cache failed every sampled example: the ratio says nothing
            log.warning("task %s: full-cache score 0 on this generation's examples; left out of the fitness", task)
            continue
        per_task.append(results[:, cols, 0].mean(dim=1) / (reference + 1e-7))
    perf = torch.stack(per_task).mean(dim=0) if per_task else torch.zeros(len(results), dtype=torch.float64)
    fraction = results[..., 1].mean(dim=1)
    value = perf - config.sparsity_weight * (fraction - config.sparsity_target).clamp_min(0)
    return value, perf, fraction


def example_pools(
    config: EvolutionConfig, suite, adapter, seed: int | None = None, count: int | None = None
) -> dict[str, list]:
    """``count`` examples (``pool_per_task``) of every stage task, drawn with ``seed`` (``pool_seed``)."""
    from ..runner import ANSWER_RESERVE

    seed = config.pool_seed if seed is None else seed
    count = count or config.pool_per_task
    tasks = dict.fromkeys(t for s in config.stages for t in s.tasks)
    max_prompt = adapter.max_prompt_tokens(ANSWER_RESERVE)
    chat = resolve_preset(config.preset).chat  # the paper preset: no chat template
    pools = {}
    for task in tasks:
        pool = suite.examples(task, adapter.count_tokens, max_prompt, seed, count)
        if chat is not None:
            pool = [dataclasses.replace(ex, chat=chat) for ex in pool]
        if len(pool) < count:
            raise ConfigError(f"task {task} yields {len(pool)} examples, fewer than the {count} asked for")
        pools[task] = pool
    return pools


# ----------------------------------------------------------------------------- run directory
def _open_run(out: Path, config: EvolutionConfig, resume: bool) -> dict[str, Any] | None:
    """The saved state to resume from, or None for a fresh run; refuses what would overwrite a run."""
    if out.exists() and not out.is_dir():
        raise EvolutionError(f"--out {out} is a file, not a run directory")
    if not resume:
        if (out / STATE_FILE).exists() or (out / CONFIG_FILE).exists():
            raise EvolutionError(f"{out} already holds an evolution run: pass --resume, or choose another --out")
        if out.exists() and any(out.iterdir()):
            raise EvolutionError(f"{out} is not empty: a new run needs a new or empty --out")
        return None
    if not (out / CONFIG_FILE).is_file():
        raise EvolutionError(
            f"--resume: {out} holds no evolution run ({CONFIG_FILE} missing); start it without --resume"
        )
    stored = read_run_config(out).to_dict()
    if stored != config.to_dict():
        changed = sorted(k for k in set(stored) | set(config.to_dict()) if stored.get(k) != config.to_dict().get(k))
        raise EvolutionError(f"--resume: the config differs from the one {out} was started with ({', '.join(changed)})")
    if not (out / STATE_FILE).exists():
        logged = out / "log.jsonl"
        if logged.is_file() and logged.stat().st_size:
            raise EvolutionError(
                f"--resume: {out} has generations in log.jsonl but no {STATE_FILE}; "
                "it cannot continue them (restore the state, or start a new run elsewhere)"
            )
        return None  # killed before the first generation finished
    state = load_state(out)
    if state["generation"] > config.total_generations:
        raise EvolutionError(
            f"{out / STATE_FILE} holds {state['generation']} generations, more than the config's "
            f"{config.total_generations}"
        )
    return state


def read_run_config(out: str | Path) -> EvolutionConfig:
    """The config a run was started with (its ``config.json``), read through the loader so options
    added since then compare at their defaults."""
    path = Path(out) / CONFIG_FILE
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise EvolutionError(f"{path} cannot be read: {err}") from err
    return config_from_dict(raw, str(path))


def load_state(out: str | Path) -> dict[str, Any]:
    path = Path(out) / STATE_FILE
    if not path.is_file():
        raise EvolutionError(f"{out} has no {STATE_FILE}: no generation has finished there")
    try:
        with open(path, "rb") as f:
            state = pickle.load(f)
        if state.get("format") != STATE_FORMAT:
            raise EvolutionError(f"{path}: not a namm-bench evolution state")
        generation, rows = state["generation"], state["log"]
        if not isinstance(generation, int) or generation < 0 or generation != len(rows):
            raise ValueError(f"generation {generation!r} with {len(rows)} log rows")
        CMAES.from_state(state["cma"])
        state["stats"]  # noqa: B018 - presence check
    except EvolutionError:
        raise
    except Exception as err:  # truncated or foreign file: one message naming it
        raise EvolutionError(f"{path} is corrupt: {err!r}") from err
    return state


def _save_state(out: Path, state: dict[str, Any]) -> None:
    write_atomic(out / STATE_FILE, pickle.dumps({**state, "format": STATE_FORMAT}))


def _write_logs(out: Path, rows: list[dict[str, Any]]) -> None:
    write_atomic(out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out / "log.csv", buf.getvalue())
    plot_fitness(rows, out / "fitness.png")


def plot_fitness(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gens = [r["generation"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(gens, [r["mean_solution"] for r in rows], label="CMA-ES mean (evaluated solution)", lw=2)
    ax.plot(gens, [r["best"] for r in rows], label="best member", lw=1, alpha=0.7)
    ax.plot(gens, [r["mean"] for r in rows], label="population average", lw=1, alpha=0.7)
    for r0, r1 in zip(rows, rows[1:], strict=False):
        if r1["stage"] != r0["stage"]:
            ax.axvline(r1["generation"] - 0.5, color="grey", ls=":", lw=1)
    ax.set_xlabel("generation")
    ax.set_ylabel(f"fitness ({rows[-1]['fitness_mode']})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    write_figure(fig, path)
