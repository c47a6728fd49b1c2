"""Train a Decision Transformer on an offline dataset, as Chen et al. (NeurIPS 2021) did for MuJoCo.

Their gym settings, kept here: 3 layers, 1 head, embedding 128, ReLU, dropout 0.1, context
K = 20 timesteps, batch 64, AdamW (lr 1e-4, weight decay 1e-4), linear warm-up over 10^4 steps,
gradient norm clipped at 0.25, returns-to-go divided by 1000, trajectories sampled in proportion
to their length, states normalised by the dataset's mean and standard deviation, MSE on the
actions. Their runs took 10^5 steps; ``steps`` is an option (the CPU runs say what they used).

A run directory holds ``config.json``, ``state.pt`` (model, optimiser, schedule and random
generators, replaced atomically every ``checkpoint_every`` steps, so ``--resume`` continues the
same trajectory), ``log.jsonl`` and, at the end, ``model/`` (``save_pretrained`` + ``agent.json``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from namm_bench.adapters.decision_transformer import AGENT_FILE, AgentSpec
from namm_bench.files import refuse_overwrite
from namm_bench.suites.rl_datasets import ENVIRONMENTS
from namm_bench.training_runs import RunFiles, check_run, load_state, rewind_log, run_files, save_state, start_run

TARGET_RETURNS = {"hopper": 3600.0, "walker2d": 5000.0}  # Chen et al.'s conditioning returns


@dataclass(frozen=True)
class TrainConfig:
    env: str
    quality: str
    context: int = 20
    hidden_size: int = 128
    n_layer: int = 3
    n_head: int = 1
    dropout: float = 0.1
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 10_000
    steps: int = 100_000
    grad_clip: float = 0.25
    return_scale: float = 1000.0
    max_ep_len: int = 1000
    seed: int = 0
    log_every: int = 250
    checkpoint_every: int = 2000

    def __post_init__(self) -> None:
        if self.env not in TARGET_RETURNS:
            raise ValueError(f"unknown environment {self.env!r}; known: {', '.join(TARGET_RETURNS)}")
        for name in ("context", "batch_size", "steps", "warmup_steps", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


class Trajectories:
    """The dataset's episodes as training windows of K timesteps (Chen et al.'s sampler)."""

    def __init__(self, episodes: list[dict[str, np.ndarray]], cfg: TrainConfig) -> None:
        if not episodes:
            raise ValueError("the dataset has no episodes")
        self.cfg = cfg
        states = np.concatenate([e["observations"] for e in episodes])
        self.mean, self.std = states.mean(0), states.std(0) + 1e-6
        self.episodes = episodes
        self.returns_to_go = [np.cumsum(e["rewards"][::-1])[::-1].copy() for e in episodes]
        lengths = np.array([len(e["rewards"]) for e in episodes], dtype=np.float64)
        self.p = lengths / lengths.sum()
        self.state_dim, self.act_dim = states.shape[1], episodes[0]["actions"].shape[1]

    def batch(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """``batch_size`` windows, left-padded to K with mask 0 (actions padded with -10, as the original)."""
        cfg, k = self.cfg, self.cfg.context
        s = np.zeros((cfg.batch_size, k, self.state_dim), np.float32)
        a = np.full((cfg.batch_size, k, self.act_dim), -10.0, np.float32)
        r = np.zeros((cfg.batch_size, k, 1), np.float32)
        t = np.zeros((cfg.batch_size, k), np.int64)
        m = np.zeros((cfg.batch_size, k), np.int64)
        for i, ep in enumerate(rng.choice(len(self.episodes), size=cfg.batch_size, p=self.p)):
            e = self.episodes[ep]
            start = int(rng.integers(len(e["rewards"])))
            end = min(start + k, len(e["rewards"]))
            n = end - start
            s[i, k - n :] = (e["observations"][start:end] - self.mean) / self.std
            a[i, k - n :] = e["actions"][start:end]
            r[i, k - n :, 0] = self.returns_to_go[ep][start:end] / cfg.return_scale
            t[i, k - n :] = np.minimum(np.arange(start, end), cfg.max_ep_len - 1)
            m[i, k - n :] = 1
        names = ("states", "actions", "returns_to_go", "timesteps", "attention_mask")
        return {name: torch.from_numpy(x) for name, x in zip(names, (s, a, r, t, m), strict=True)}


def build_model(cfg: TrainConfig, state_dim: int, act_dim: int):
    from transformers import DecisionTransformerConfig, DecisionTransformerModel

    config = DecisionTransformerConfig(
        state_dim=state_dim,
        act_dim=act_dim,
        hidden_size=cfg.hidden_size,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        n_inner=4 * cfg.hidden_size,
        activation_function="relu",
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout,
        max_ep_len=cfg.max_ep_len,
        n_positions=1024,
        action_tanh=True,
    )
    return DecisionTransformerModel(config)


def train(cfg: TrainConfig, episodes: list[dict[str, np.ndarray]], out: Path, resume: bool = False) -> Path:
    """Train (or continue training) into ``out``; returns the exported model directory."""
    out = Path(out)
    wanted = dataclasses.asdict(cfg)
    files = check_run(out, wanted, resume)
    data = Trajectories(episodes, cfg)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, data.state_dim, data.act_dim)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min((step + 1) / cfg.warmup_steps, 1.0))
    rng = np.random.default_rng(cfg.seed)
    step = 0
    if resume:
        state = load_state(files, STATE_KEYS, "Decision Transformer")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        step = state["step"]
        rewind_log(files, step)
    else:
        start_run(files, wanted)
    model.train()
    bar = tqdm(total=cfg.steps, initial=step, desc=f"DT {cfg.env}/{cfg.quality}", unit="step", dynamic_ncols=True)
    losses, began = [], time.perf_counter()
    while step < cfg.steps:
        batch = data.batch(rng)
        preds = model(**batch).action_preds
        mask = batch["attention_mask"].bool()
        loss = F.mse_loss(preds[mask], batch["actions"][mask])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        step += 1
        losses.append(loss.item())
        if step % cfg.log_every == 0 or step == cfg.steps:
            row = {"step": step, "loss": float(np.mean(losses)), "lr": sched.get_last_lr()[0]}
            row["seconds"] = round(time.perf_counter() - began, 2)
            with files.log.open("a") as f:
                f.write(json.dumps(row) + "\n")
            bar.set_postfix(loss=f"{row['loss']:.4f}")
            losses, began = [], time.perf_counter()
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            _save_state(files, model, opt, sched, rng, step, data)
        bar.update(1)
    bar.close()
    return export_run(out, force=True)  # the run's own model/, rewritten as training goes


STATE_KEYS = ("state_mean", "state_std", "act_dim", "model", "optimizer", "scheduler", "numpy_rng", "torch_rng", "step")
"""What ``state.pt`` holds (``_save_state``); a file without them is not this trainer's."""


def _save_state(files: RunFiles, model, opt, sched, rng: np.random.Generator, step: int, data: Trajectories) -> None:
    state = {
        "state_mean": data.mean.tolist(),
        "state_std": data.std.tolist(),
        "act_dim": data.act_dim,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "numpy_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "step": step,
    }
    save_state(files, state)


def export_run(run: Path, directory: Path | None = None, force: bool = False) -> Path:
    """Write the run's latest ``state.pt`` as a checkpoint the adapter loads (``save_pretrained`` + ``agent.json``).

    ``agent.json`` records the training config and ``trained_steps``: a run exported before its
    last step says so. An agent already in ``directory`` is replaced only with ``force``.
    """
    run = Path(run)
    if not (run / "state.pt").is_file():
        raise ValueError(f"{run} holds no training state (state.pt); train first with `namm-bench rl-train`")
    directory = Path(directory) if directory is not None else run / "model"
    refuse_overwrite(directory, ("config.json", "model.safetensors", AGENT_FILE), "an agent", force)
    cfg = TrainConfig(**json.loads((run / "config.json").read_text()))
    state = load_state(run_files(run), STATE_KEYS, "Decision Transformer")
    model = build_model(cfg, len(state["state_mean"]), state["act_dim"])
    model.load_state_dict(state["model"])
    model.eval()
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    AgentSpec(
        env_id=ENVIRONMENTS[cfg.env],
        state_mean=state["state_mean"],
        state_std=state["state_std"],
        target_return=TARGET_RETURNS[cfg.env],
        return_scale=cfg.return_scale,
        context=cfg.context,
        dataset=f"{cfg.env}/{cfg.quality}",
        extra={"train_config": dataclasses.asdict(cfg), "trained_steps": state["step"]},
    ).save(directory)
    return directory
