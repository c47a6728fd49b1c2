"""Offline RL datasets in minari's format, generated from trained behaviour policies.

Where the official minari datasets (``mujoco/hopper/*``, ``mujoco/walker2d/*``) can be
downloaded, ``minari.load_dataset`` reads them and nothing here is needed. Offline, the project
writes its own from the stable-baselines3 SAC agents in ``../shared/data/rl/sb3`` (the actor is
``tanh(mu(relu(W2 relu(W0 obs))))`` and loads in plain torch), at two quality levels:

- ``sac``: the actor's deterministic action (its mean);
- ``sac-noisy``: the action plus Gaussian noise of standard deviation ``NOISE`` (clipped to the
  action box), a weaker and more varied behaviour.

Episodes are written with ``minari.create_dataset_from_buffers`` from whole-episode
``EpisodeBuffer`` objects, which needs ``minari[hdf5]`` only (step-by-step collection is what
pulls in jax through ``minari[create]``). The D4RL reference returns go into the dataset as
``ref_min_score``/``ref_max_score``, so ``minari.get_normalized_score`` gives D4RL-normalised
scores.
"""

from __future__ import annotations

import io
import json
import os
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from namm_bench.files import write_atomic

from .base import DataError, data_dir_from

ENV_SB3 = "NAMM_BENCH_SB3"
ENV_DATASETS = "NAMM_BENCH_RL_DATA"
NOISE = 0.3

D4RL_REFERENCE = {  # random and expert returns of D4RL (Fu et al. 2020), for the normalised score
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
}
ENVIRONMENTS = {"hopper": "Hopper-v5", "walker2d": "Walker2d-v5"}
SB3_NAMES = {"hopper": "Hopper-v3", "walker2d": "Walker2d-v3"}  # the agents were trained on v3 (same spaces)
QUALITIES = ("sac", "sac-noisy")


def normalised_score(env: str, episode_return: float) -> float:
    """D4RL-normalised score x100: 0 is the random policy, 100 the D4RL expert."""
    low, high = D4RL_REFERENCE[env]
    return 100.0 * (episode_return - low) / (high - low)


def dataset_id(env: str, quality: str) -> str:
    return f"namm-bench/{env}/{quality}-v0"


class SacActor:
    """The actor of a stable-baselines3 SAC agent, in plain torch."""

    def __init__(self, zip_path: str | Path) -> None:
        try:
            with zipfile.ZipFile(zip_path) as z:
                state = torch.load(io.BytesIO(z.read("policy.pth")), weights_only=True, map_location="cpu")
        except (OSError, KeyError, zipfile.BadZipFile) as err:
            raise DataError(f"{zip_path}: not a stable-baselines3 agent with a policy.pth ({err})") from err
        layers = [("actor.latent_pi.0", True), ("actor.latent_pi.2", True), ("actor.mu", False)]
        self.layers = [(state[f"{k}.weight"].double(), state[f"{k}.bias"].double(), relu) for k, relu in layers]

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(obs, dtype=torch.float64)
        for w, b, relu in self.layers:
            x = x @ w.T + b
            x = x.relu() if relu else x
        return x.tanh().numpy()


def sac_zip(env: str, sb3_dir: str | Path | None = None) -> Path:
    root = data_dir_from(sb3_dir, ENV_SB3)
    if root is None:
        root = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "rl" / "sb3"  # a checkout's ../shared
    path = Path(root) / "sac" / f"{SB3_NAMES[env]}_1" / f"{SB3_NAMES[env]}.zip"
    if not path.is_file():
        raise DataError(
            f"behaviour policy {path} not found: pass --sb3-dir DIR (or set ${ENV_SB3}) holding "
            f"sac/{SB3_NAMES[env]}_1/ from github.com/DLR-RM/rl-trained-agents"
        )
    return path


@dataclass
class Collected:
    buffers: list[Any]
    returns: list[float]
    steps: int


def collect(env_name: str, quality: str, steps: int, seed: int, sb3_dir: str | Path | None = None) -> Collected:
    """Whole episodes of the behaviour policy until ``steps`` transitions are gathered."""
    from minari.data_collector import EpisodeBuffer

    from namm_bench.adapters.decision_transformer import make_env

    if env_name not in ENVIRONMENTS:
        raise DataError(f"unknown environment {env_name!r}; known: {', '.join(ENVIRONMENTS)}")
    if quality not in QUALITIES:
        raise DataError(f"unknown dataset quality {quality!r}; known: {', '.join(QUALITIES)}")
    actor = SacActor(sac_zip(env_name, sb3_dir))
    env = make_env(ENVIRONMENTS[env_name])
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    buffers, returns, total = [], [], 0
    bar = tqdm(total=steps, desc=dataset_id(env_name, quality), unit="step", dynamic_ncols=True)
    while total < steps:
        episode_seed = int(rng.integers(2**31))
        obs, _ = env.reset(seed=episode_seed)
        observations, actions, rewards, terms, truncs = [obs], [], [], [], []
        done = False
        while not done:
            action = actor(obs)
            if quality == "sac-noisy":
                action = np.clip(action + NOISE * rng.standard_normal(action.shape), low, high)
            obs, reward, terminated, truncated, _ = env.step(action.astype(np.float32))
            observations.append(obs)
            actions.append(action.astype(np.float32))
            rewards.append(float(reward))
            terms.append(bool(terminated))
            truncs.append(bool(truncated))
            done = terminated or truncated
        buffers.append(
            EpisodeBuffer(
                id=len(buffers),
                seed=episode_seed,
                observations=np.asarray(observations, dtype=np.float64),
                actions=np.asarray(actions),
                rewards=rewards,
                terminations=terms,
                truncations=truncs,
                infos={},
            )
        )
        returns.append(sum(rewards))
        total += len(rewards)
        bar.update(len(rewards))
    bar.close()
    return Collected(buffers, returns, total)


@contextmanager
def minari_root(root: Path) -> Iterator[None]:
    """Point minari's dataset directory at ``root`` (made absolute: minari mangles relative ones)."""
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(Path(root).resolve())
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("MINARI_DATASETS_PATH")
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous


def write_dataset(
    root: str | Path, env_name: str, quality: str, steps: int, seed: int = 0, sb3_dir: str | Path | None = None
) -> dict[str, Any]:
    """Generate one dataset under ``root`` (minari's layout); returns its summary (mean return etc.)."""
    import minari

    root = Path(root)
    did = dataset_id(env_name, quality)
    if (root / did).exists():
        raise DataError(f"{root / did} already exists: delete it to generate the dataset again")
    data = collect(env_name, quality, steps, seed, sb3_dir)
    low, high = D4RL_REFERENCE[env_name]
    root.mkdir(parents=True, exist_ok=True)
    with minari_root(root), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(author|code_permalink|eval_env).*", category=UserWarning)
        minari.create_dataset_from_buffers(
            dataset_id=did,
            buffer=data.buffers,
            env=ENVIRONMENTS[env_name],
            algorithm_name=f"stable-baselines3 SAC actor ({quality}, noise {NOISE if quality == 'sac-noisy' else 0})",
            ref_min_score=low,
            ref_max_score=high,
            author="namm-bench",
            description="generated by namm-bench (suites/rl_datasets.py) from DLR-RM/rl-trained-agents",
        )
    summary = {
        "dataset_id": did,
        "env": ENVIRONMENTS[env_name],
        "quality": quality,
        "episodes": len(data.returns),
        "steps": data.steps,
        "seed": seed,
        "mean_return": float(np.mean(data.returns)),
        "std_return": float(np.std(data.returns)),
        "mean_normalised": normalised_score(env_name, float(np.mean(data.returns))),
    }
    # written last and atomically: its presence is what marks the dataset complete (rl-datasets keeps it)
    write_atomic(root / did / "namm-bench.json", json.dumps(summary, indent=2) + "\n")
    return summary


def load_episodes(root: str | Path | None, env_name: str, quality: str) -> list[dict[str, np.ndarray]]:
    """Every episode of a dataset as arrays: observations (T, S), actions (T, A), rewards (T,)."""
    import minari

    root = data_dir_from(root, ENV_DATASETS)
    did = dataset_id(env_name, quality)
    if root is None or not (root / did).is_dir():
        raise DataError(
            f"dataset {did} not found in {root or '(no directory: pass --data-dir or set $' + ENV_DATASETS + ')'}: "
            "generate it with `namm-bench rl-datasets --out DIR`"
        )
    with minari_root(root):
        dataset = minari.load_dataset(did)
        return [
            {"observations": ep.observations[:-1], "actions": ep.actions, "rewards": ep.rewards}
            for ep in dataset.iterate_episodes()
        ]
