"""Offline RL datasets: the SAC actor in plain torch, files that minari reads back, clear errors."""

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mujoco", reason="the rl extra (gymnasium[mujoco], minari[hdf5]) is not installed")

from namm_bench.cli import main  # noqa: E402
from namm_bench.suites.rl_datasets import SacActor, dataset_id, load_episodes, normalised_score  # noqa: E402

SHARED_SB3 = Path(__file__).resolve().parents[2] / "shared" / "data" / "rl" / "sb3"


def fake_sb3(root: Path, name: str = "Hopper-v3", obs: int = 11, act: int = 3) -> Path:
    """A stable-baselines3 zip whose policy.pth holds a random SAC actor of the right shapes."""
    torch.manual_seed(0)
    shapes = {"actor.latent_pi.0": (256, obs), "actor.latent_pi.2": (256, 256), "actor.mu": (act, 256)}
    state = {}
    for key, shape in shapes.items():
        state[f"{key}.weight"] = torch.randn(shape) / shape[1] ** 0.5
        state[f"{key}.bias"] = torch.zeros(shape[0])
    buf = io.BytesIO()
    torch.save(state, buf)
    path = root / "sac" / f"{name}_1" / f"{name}.zip"
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("policy.pth", buf.getvalue())
    return path


def test_sac_actor_is_tanh_mu_of_two_relu_layers(tmp_path):
    actor = SacActor(fake_sb3(tmp_path))
    obs = np.linspace(-1, 1, 11)
    (w0, b0, _), (w2, b2, _), (wm, bm, _) = actor.layers
    x = torch.as_tensor(obs)
    expected = torch.tanh(wm @ torch.relu(w2 @ torch.relu(w0 @ x + b0) + b2) + bm).numpy()
    np.testing.assert_allclose(actor(obs), expected)
    assert np.all(np.abs(actor(obs)) <= 1)


def test_generated_datasets_read_back_through_minari(tmp_path, capsys, monkeypatch):
    import minari

    fake_sb3(tmp_path / "sb3")
    monkeypatch.chdir(tmp_path)
    out = Path("datasets")  # relative, as a user types it
    args = ["rl-datasets", "--out", str(out), "--envs", "hopper", "--steps", "150", "--sb3-dir", str(tmp_path / "sb3")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "wrote namm-bench/hopper/sac-v0" in printed and "wrote namm-bench/hopper/sac-noisy-v0" in printed
    for quality in ("sac", "sac-noisy"):
        summary = json.loads((out / dataset_id("hopper", quality) / "namm-bench.json").read_text())
        episodes = load_episodes(out, "hopper", quality)
        assert summary["steps"] >= 150 and summary["episodes"] == len(episodes)
        assert sum(len(e["rewards"]) for e in episodes) == summary["steps"]
        returns = [float(np.sum(e["rewards"])) for e in episodes]
        assert summary["mean_return"] == pytest.approx(np.mean(returns))
        assert all(e["observations"].shape == (len(e["rewards"]), 11) and e["actions"].shape[1] == 3 for e in episodes)
    # minari itself: the dataset is found by id, and the D4RL references normalise its returns
    sac_steps = json.loads((out / dataset_id("hopper", "sac") / "namm-bench.json").read_text())["steps"]
    os.environ["MINARI_DATASETS_PATH"] = str(out.resolve())
    try:
        dataset = minari.load_dataset("namm-bench/hopper/sac-v0")
        assert dataset.total_steps == sac_steps and dataset.spec.env_spec.id == "Hopper-v5"
        score = minari.get_normalized_score(dataset, np.array([1000.0]))[0]
        assert score == pytest.approx(normalised_score("hopper", 1000.0) / 100)
    finally:
        del os.environ["MINARI_DATASETS_PATH"]
    assert main(args) == 0 and "kept namm-bench/hopper/sac-v0" in capsys.readouterr().out  # a rerun keeps them


def test_bad_input_is_one_clear_error(tmp_path, capsys):
    assert main(["rl-datasets", "--out", str(tmp_path), "--envs", "ant", "--sb3-dir", str(tmp_path)]) == 2
    assert "unknown environment 'ant'" in capsys.readouterr().err
    assert main(["rl-datasets", "--out", str(tmp_path), "--envs", "hopper", "--sb3-dir", str(tmp_path)]) == 2
    assert "behaviour policy" in capsys.readouterr().err
    with pytest.raises(ValueError, match="generate it with"):
        load_episodes(tmp_path, "walker2d", "sac")


@pytest.mark.skipif(not SHARED_SB3.is_dir(), reason=f"SB3 agents not found at {SHARED_SB3}")
def test_shared_hopper_agent_hops():
    """The real SAC actor on Hopper-v5: about 1100 per episode (../shared/data/README.md)."""
    from namm_bench.adapters.decision_transformer import make_env
    from namm_bench.suites.rl_datasets import sac_zip

    actor, env = SacActor(sac_zip("hopper", SHARED_SB3)), make_env("Hopper-v5")
    obs, _ = env.reset(seed=0)
    total, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(actor(obs).astype(np.float32))
        total, done = total + reward, terminated or truncated
    assert total > 900
