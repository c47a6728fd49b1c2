"""RL suite: Decision Transformers acting in Hopper and Walker2d under each memory policy.

The paper's third transfer (Cetin et al., ICLR 2025, section 4.3): a NAMM evolved on text,
applied unchanged to a Decision Transformer's KV cache. A task is one trained agent (an
environment and the dataset it learned from, e.g. ``hopper-sac``); an example is one episode,
seeded. Every (policy, budget) runs the same episode seeds in two regimes, stored as the row's
``protocol``:

- ``window``: the reference of Chen et al., the last K timesteps recomputed at each step (full
  cache only: nothing to evict);
- ``cached``: the whole episode in the KV cache, 3 entries per timestep, with the memory policy
  called every ``--interval`` tokens (full, H2O, L2, NAMM; budgets and ``match`` as for text).
  L2 prunes every layer here: the text default skips the first two, which in a 3-layer Decision
  Transformer would leave one layer to carry the whole budget.

The score is the D4RL-normalised return / 100 (the report's x100 gives the usual 0-100 scale:
0 = random policy, 100 = D4RL expert); rows also hold the raw return, the episode length and,
per layer, which timesteps the cache kept at the end of the episode.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .base import DataError
from .rl_datasets import D4RL_REFERENCE, normalised_score


def _env_name(env_id: str) -> str:
    name = env_id.split("-")[0].lower()
    if name not in D4RL_REFERENCE:
        raise DataError(f"no D4RL reference returns for {env_id}; known: {', '.join(D4RL_REFERENCE)}")
    return name


@dataclass
class RlSuite:
    """Trained agents found under ``agents`` (a directory of agent directories, or one agent)."""

    agents: Path | str | None = None
    name: str = "rl"
    adapter: str = "decision_transformer"

    def _root(self) -> Path:
        return Path(self.agents) if self.agents is not None else _shipped_root()

    def agent_dirs(self) -> dict[str, Path | str]:
        """Agent name -> checkpoint directory, or hub id when ``agents`` names one."""
        from namm_bench.adapters import is_hub_id

        if self.agents is not None and is_hub_id(self.agents):
            return {str(self.agents).split("/")[-1]: str(self.agents)}
        root = self._root()
        if (root / "agent.json").is_file():
            return {root.name: root}
        if not root.is_dir():
            raise DataError(f"agent directory {root} not found: train one with `namm-bench rl-train`")
        return {p.name: p for p in sorted(root.iterdir()) if (p / "agent.json").is_file()}

    def tasks(self) -> list[str]:
        try:
            return list(self.agent_dirs())
        except DataError:
            return []

    def run(self, spec) -> Path:
        return run(spec)


def _shipped_root() -> Path:
    """Agents trained by the project (``namm-bench rl-train``) and shipped in the package, one directory each."""
    import namm_bench

    return Path(namm_bench.__file__).parent / "checkpoints" / "decision-transformers"


def run(spec) -> Path:
    """Run ``spec`` (a ``RunSpec`` with suite ``rl``): episodes x regimes x (policy, budget); resumable."""
    from namm_bench.adapters import get_adapter
    from namm_bench.adapters.decision_transformer import make_env, rollout
    from namm_bench.budget import Budget
    from namm_bench.results import ResultsStore, row_key
    from namm_bench.runner import _make, code_version, load_namm, refuse_other_namm, resolve_match, variants

    suite = RlSuite(spec.model)
    agents = suite.agent_dirs()
    tasks = spec.tasks or list(agents)
    unknown = [t for t in tasks if t not in agents]
    if unknown or not tasks:
        raise ValueError(f"unknown agent(s) {', '.join(unknown) or '(none found)'}; known: {', '.join(agents)}")
    episodes = spec.limit or 10
    cached = variants(spec)
    plan = [("window", None)] * ("full" in spec.policies) + [("cached", v) for v in cached]
    namm = load_namm(spec)
    store = ResultsStore(spec.out)
    refuse_other_namm(store, namm)
    done = store.done_keys()
    namm_fraction = {
        (r["task"], r["example_id"]): r["cache_fraction"]
        for r in store.rows()
        if r["suite"] == "rl" and r["policy"] == "namm" and r["protocol"] == "cached"
    }
    for task in tasks:
        adapter = get_adapter(suite.adapter, str(agents[task]), device=spec.device)
        env = make_env(adapter.agent.env_id)
        env_name = _env_name(adapter.agent.env_id)
        jobs = [(seed, regime, v) for seed in range(spec.seed, spec.seed + episodes) for regime, v in plan]
        for seed, regime, variant in tqdm(jobs, desc=f"rl {task}", unit="episode", dynamic_ncols=True):
            policy_name = "full" if variant is None else variant.policy
            label = "none" if variant is None else variant.label
            row: dict[str, Any] = {
                "suite": "rl",
                "task": task,
                "example_id": f"episode-{seed}",
                "model": adapter.model_name,
                "policy": policy_name,
                "budget": label,
                "protocol": regime,
                "long_inputs": "truncate",
            }
            if row_key(row) in done:
                continue
            budget = None if variant is None else variant.budget
            budget = resolve_match(budget, namm_fraction.get((task, row["example_id"])), f"{task} {row['example_id']}")
            began = time.perf_counter()
            if regime == "window":
                actor, policy = adapter.actor("window"), None
            else:
                policy = _make(policy_name, budget, namm)
                if policy_name == "l2":  # 3 layers: skipping the LLM paper's first two would leave one to prune
                    policy = dataclasses.replace(policy, skip_layers=())
                actor = adapter.actor("cached", policy, spec.controller)
            episode = rollout(adapter, env, actor, seed)
            normalised = normalised_score(env_name, episode.episode_return)
            row.update(
                budget_ratio=budget.ratio if isinstance(budget, Budget) else None,
                score=normalised / 100.0,
                normalised_return=normalised,
                episode_return=episode.episode_return,
                length=episode.length,
                cache_fraction=episode.cache_fraction,
                tokens=3 * episode.length - 1 if regime == "cached" else 3 * min(episode.length, adapter.agent.context),
                kept_timesteps=episode.kept_timesteps,
                seconds=round(time.perf_counter() - began, 3),
                policy_config=None if policy is None else policy.describe(),
                target_return=adapter.agent.target_return,
                interval=spec.controller.interval,
                code_version=code_version(),
                error=None,
            )
            store.append(row)
            done.add(row_key(row))
            if policy_name == "namm" and regime == "cached":
                namm_fraction[(task, row["example_id"])] = episode.cache_fraction
    return spec.out


def write_plots(rows: list[dict[str, Any]], out_dir: Path) -> list[tuple[Path, str]]:
    """The rl suite's own figures: return against cache %, and which timesteps each policy kept.

    Returns (path, caption) for each figure written; none without rl rows.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from namm_bench.files import write_figure
    from namm_bench.report import column_label

    rows = [r for r in rows if r.get("suite") == "rl" and not r.get("error")]
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    if not tasks:
        return []
    written = []

    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for r in rows:
            if r["task"] == task:
                groups.setdefault((r["protocol"], r["policy"], r["budget"]), []).append(r)
        for (regime, policy, budget), members in groups.items():
            returns = np.array([m["normalised_return"] for m in members])
            se = returns.std(ddof=1) / np.sqrt(len(returns)) if len(returns) > 1 else 0.0
            if regime == "window":
                ax.axhline(returns.mean(), ls="--", color="grey", label=f"full, window of K (n={len(returns)})")
                continue
            cache = 100 * np.mean([m["cache_fraction"] for m in members])
            ax.errorbar(
                cache,
                returns.mean(),
                yerr=se,
                fmt="*" if policy == "full" else "o",
                capsize=3,
                label=f"{column_label(policy, budget)} (n={len(returns)})",
            )
        ax.set_title(f"rl: {task}", fontsize=9)
        ax.set_xlabel("cache %")
        ax.set_ylabel("D4RL-normalised return (mean ± s.e.)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / "report-rl-return.png"
    write_figure(fig, path)
    written.append((path, "D4RL-normalised return against cache %, cached regime (the window regime dashed)"))

    bins = 10
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        shares: dict[str, list[np.ndarray]] = {}
        for r in rows:
            if r["task"] != task or r["protocol"] != "cached" or r["policy"] == "full" or not r.get("kept_timesteps"):
                continue
            length = r["length"]
            edges = np.linspace(0, length, bins + 1)
            per_bin = np.histogram(np.arange(length), edges)[0].clip(min=1)
            for kept in r["kept_timesteps"]:
                shares.setdefault(column_label(r["policy"], r["budget"]), []).append(
                    np.histogram(kept, edges)[0] / per_bin
                )
        for label, values in shares.items():
            ax.plot(100 * (np.arange(bins) + 0.5) / bins, 100 * np.mean(values, axis=0), "o-", label=label)
        ax.set_title(f"rl: {task}", fontsize=9)
        ax.set_xlabel("episode phase (% of the episode's timesteps)")
        ax.set_ylabel("timesteps still in the cache at the end (%)")
        ax.set_ylim(0, 105)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / "report-rl-timesteps.png"
    write_figure(fig, path)
    written.append((path, "which timesteps each memory policy kept, by episode phase (mean over layers and episodes)"))
    return written
