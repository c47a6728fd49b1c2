"""Decision Transformer training: Chen et al.'s sampler, a crash then --resume, the exported agent."""

import json

import numpy as np
import pytest
import torch

from namm_bench.adapters.decision_transformer import DecisionTransformerAdapter
from namm_bench.cli import main
from namm_bench.training.decision_transformer import TrainConfig, Trajectories, train


def episodes(n=6, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        length = 5 + 3 * i
        out.append(
            {
                "observations": rng.normal(size=(length, 11)),
                "actions": np.tanh(rng.normal(size=(length, 3))),
                "rewards": rng.random(length),
            }
        )
    return out


def tiny(**kw):
    base = dict(env="hopper", quality="sac", context=4, hidden_size=16, n_layer=1, batch_size=4, steps=20)
    return TrainConfig(**{**base, "warmup_steps": 5, "log_every": 1, "checkpoint_every": 5, **kw})


def kill_at_batch(monkeypatch, n: int) -> None:
    """Make the ``n``-th batch of a run raise, as a kill mid-run would (``monkeypatch.undo()`` restores)."""
    original, calls = Trajectories.batch, [0]

    def dies(self, rng):
        calls[0] += 1
        if calls[0] == n:
            raise RuntimeError("killed")
        return original(self, rng)

    monkeypatch.setattr(Trajectories, "batch", dies)


def test_windows_are_left_padded_with_returns_to_go_of_their_episode():
    eps = episodes()
    data = Trajectories(eps, tiny())
    batch = data.batch(np.random.default_rng(1))
    assert batch["states"].shape == (4, 4, 11) and batch["actions"].shape == (4, 4, 3)
    for i in range(4):
        mask = batch["attention_mask"][i].bool()
        n = int(mask.sum())
        assert mask.tolist() == [False] * (4 - n) + [True] * n  # left padding
        assert torch.all(batch["actions"][i, ~mask] == -10)
        start = int(batch["timesteps"][i, 4 - n])
        ep = next(
            e
            for e in eps
            if len(e["rewards"]) > start
            and np.allclose(
                (e["observations"][start] - data.mean) / data.std, batch["states"][i, 4 - n].numpy(), atol=1e-5
            )
        )
        assert batch["returns_to_go"][i, 4 - n, 0] == pytest.approx(ep["rewards"][start:].sum() / 1000, rel=1e-5)


def test_a_crash_then_resume_gives_the_uninterrupted_run(tmp_path, monkeypatch):
    eps = episodes()
    whole = train(tiny(), eps, tmp_path / "whole")

    kill_at_batch(monkeypatch, 13)
    with pytest.raises(RuntimeError, match="killed"):
        train(tiny(), eps, tmp_path / "crashed")
    monkeypatch.undo()
    assert [json.loads(r)["step"] for r in (tmp_path / "crashed" / "log.jsonl").read_text().splitlines()][-1] == 12
    resumed = train(tiny(), eps, tmp_path / "crashed", resume=True)

    a, b = (torch.load(p / "state.pt", weights_only=False)["model"] for p in (tmp_path / "whole", tmp_path / "crashed"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    logs = [
        [{k: v for k, v in json.loads(r).items() if k != "seconds"} for r in (p / "log.jsonl").read_text().splitlines()]
        for p in (tmp_path / "whole", tmp_path / "crashed")
    ]
    assert logs[0] == logs[1] and [r["step"] for r in logs[0]] == list(range(1, 21))
    agent = json.loads((resumed / "agent.json").read_text())
    assert agent["env_id"] == "Hopper-v5" and agent["target_return"] == 3600.0 and agent["context"] == 4
    assert whole.name == "model"


def test_the_exported_model_acts_through_the_adapter(tmp_path):
    model_dir = train(tiny(steps=3), episodes(), tmp_path / "run")
    adapter = DecisionTransformerAdapter(model_dir)
    action = adapter.actor("window").act(np.zeros(11), 3600.0, 0)
    assert action.shape == (3,) and np.all(np.abs(action) <= 1)  # tanh head
    data = Trajectories(episodes(), tiny())
    assert adapter.agent.state_mean == pytest.approx(data.mean.tolist()) and adapter.agent.extra["trained_steps"] == 3


def test_a_run_stopped_midway_exports_its_last_checkpoint(tmp_path, monkeypatch, capsys):
    kill_at_batch(monkeypatch, 8)
    with pytest.raises(RuntimeError):
        train(tiny(), episodes(), tmp_path / "run")
    assert main(["rl-export", str(tmp_path / "run"), "--to", str(tmp_path / "agent")]) == 0
    assert f"agent: {tmp_path / 'agent'}" in capsys.readouterr().out
    agent = DecisionTransformerAdapter(tmp_path / "agent").agent
    assert agent.extra["trained_steps"] == 5 and agent.extra["train_config"]["steps"] == 20  # checkpoint every 5
    written = (tmp_path / "agent" / "agent.json").read_text()
    assert main(["rl-export", str(tmp_path / "run"), "--to", str(tmp_path / "agent")]) == 2
    err = capsys.readouterr().err
    assert "already holds an agent (config.json, model.safetensors, agent.json): pass --force" in err
    assert (tmp_path / "agent" / "agent.json").read_text() == written
    assert main(["rl-export", str(tmp_path / "run"), "--to", str(tmp_path / "agent"), "--force"]) == 0
    assert main(["rl-export", str(tmp_path / "nothing")]) == 2
    assert "holds no training state" in capsys.readouterr().err


def test_bad_runs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown environment 'ant'"):
        tiny(env="ant")
    with pytest.raises(ValueError, match="context must be positive"):
        tiny(context=0)
    with pytest.raises(ValueError, match="nothing to resume"):
        train(tiny(), episodes(), tmp_path / "none", resume=True)
    train(tiny(steps=2), episodes(), tmp_path / "run")
    before = (tmp_path / "run" / "config.json").read_text()
    with pytest.raises(ValueError, match="already holds a training run"):
        train(tiny(steps=2), episodes(), tmp_path / "run")
    with pytest.raises(ValueError, match="another config"):
        train(tiny(steps=4), episodes(), tmp_path / "run", resume=True)
    assert (tmp_path / "run" / "config.json").read_text() == before
