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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from namm_bench.interfaces import EpisodeExample, Outcome

from .base import DataError
from .rl_datasets import D4RL_REFERENCE, normalised_score


def _env_name(env_id: str) -> str:
    name = env_id.split("-")[0].lower()
    if name not in D4RL_REFERENCE:
        raise DataError(f"no D4RL reference returns for {env_id}; known: {', '.join(D4RL_REFERENCE)}")
    return name


@dataclass
class RlSuite:
    """Trained agents found under ``model`` (``--model``: a directory of agent directories, one agent, or
    a hub id), by default the agents shipped in the package."""

    data_dir: str | None = None
    model: Path | str | None = None
    name: str = "rl"
    modality: str = "rl"
    default_adapter: str = "decision_transformer"
    default_limit: int = 10
    """Episodes per agent without ``--limit``."""
    policy_options: dict[str, dict[str, Any]] = field(default_factory=lambda: {"l2": {"skip_layers": ()}})
    """3 layers: skipping the LLM paper's first two L2 layers would leave one layer to prune."""

    def __post_init__(self) -> None:
        if self.data_dir is not None:
            raise ValueError("suite rl runs trained agents: pass them with --model DIR (--data-dir does not apply)")

    def _root(self) -> Path:
        return Path(self.model) if self.model is not None else _shipped_root()

    def agent_dirs(self) -> dict[str, Path | str]:
        """Agent name -> checkpoint directory, or hub id when ``model`` names one."""
        from namm_bench.models import is_hub_id

        if self.model is not None and is_hub_id(self.model):
            return {str(self.model).split("/")[-1]: str(self.model)}
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

    def check(self, tasks: list[str]) -> None:
        if not self.agent_dirs():  # a missing directory is a DataError naming it
            raise DataError(f"no agents found in {self._root()}: train one with `namm-bench rl-train`")

    def model_for(self, task: str, model: str | None) -> str:
        """Each agent is its own model."""
        return str(self.agent_dirs()[task])

    def plan(self, variants: list[Any], protocol: str) -> list[tuple[str, Any]]:
        """The window reference (full cache only) first, then every variant with the whole episode cached."""
        full = [v for v in variants if v.policy == "full"]
        return [("window", v) for v in full] + [("cached", v) for v in variants]

    def examples(self, task, count_tokens, max_prompt_tokens, seed: int, limit: int | None) -> list[EpisodeExample]:
        episodes = self.default_limit if limit is None else limit
        return [EpisodeExample(task, f"episode-{s}", s) for s in range(seed, seed + episodes)]

    def score(self, example: EpisodeExample, outcome: Outcome) -> float:
        """The D4RL-normalised return / 100."""
        return self.record(example, outcome)["normalised_return"] / 100.0

    def record(self, example: EpisodeExample, outcome: Outcome) -> dict[str, Any]:
        env_id = outcome.fields["env_id"]
        return {"normalised_return": normalised_score(_env_name(env_id), outcome.fields["episode_return"])}

    @staticmethod
    def write_plots(rows: list[dict[str, Any]], out_dir: Path) -> list[tuple[Path, str]]:
        """The suite's own report figures (the module's ``write_plots``)."""
        return write_plots(rows, out_dir)


def _shipped_root() -> Path:
    """Agents trained by the project (``namm-bench rl-train``) and shipped in the package, one directory each."""
    import namm_bench

    return Path(namm_bench.__file__).parent / "checkpoints" / "decision-transformers"


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
