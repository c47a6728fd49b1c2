"""RL suite on tiny random Decision Transformers: rows per regime and policy, match, rerun, bad input."""

import json

import pytest

pytest.importorskip("mujoco", reason="the rl extra (gymnasium[mujoco]) is not installed")

from conftest import save_tiny_dt  # noqa: E402

from namm_bench.cli import main  # noqa: E402
from namm_bench.suites.rl_datasets import D4RL_REFERENCE, normalised_score  # noqa: E402


def run_rl(agents, out, *extra):
    argv = ["run", "rl", "--model", str(agents), "--out", str(out), "--limit", "2", "--interval", "24", *extra]
    return main(argv)


def test_episodes_under_each_regime_and_policy_then_a_rerun_adds_nothing(tmp_path, tiny_dt):
    out = tmp_path / "run"
    policies = ["--policies", "full,h2o,l2,namm", "--budget", "0.25,match"]
    assert run_rl(tiny_dt, out, *policies) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    cells = {(r["protocol"], r["policy"], r["budget"]) for r in rows}
    expected = {("window", "full", "none"), ("cached", "full", "none"), ("cached", "namm", "none")}
    assert cells == expected | {("cached", p, b) for p in ("h2o", "l2") for b in ("0.25", "match")}
    assert len(rows) == 2 * len(cells) and {r["example_id"] for r in rows} == {"episode-0", "episode-1"}
    for r in rows:
        assert r["score"] == pytest.approx(normalised_score("hopper", r["episode_return"]) / 100)
        if r["protocol"] == "cached":
            assert r["tokens"] == 3 * r["length"] - 1 and len(r["kept_timesteps"]) == 2  # layers
    by = {(r["example_id"], r["protocol"], r["policy"], r["budget"]): r for r in rows}
    for ep in ("episode-0", "episode-1"):
        assert by[(ep, "cached", "full", "none")]["cache_fraction"] == 1.0
        assert by[(ep, "cached", "l2", "0.25")]["policy_config"]["skip_layers"] == []  # every layer pruned
        # match: H2O runs at the ratio of the NAMM's cache fraction on the same episode seed
        assert by[(ep, "cached", "h2o", "match")]["budget_ratio"] == pytest.approx(
            by[(ep, "cached", "namm", "none")]["cache_fraction"]
        )
    size = (out / "results.jsonl").stat().st_size
    assert run_rl(tiny_dt, out, *policies) == 0
    assert (out / "results.jsonl").stat().st_size == size
    # NAMM rows of another checkpoint are refused, not taken for this one's
    other = [
        {**r, "policy_config": {**r["policy_config"], "stats_count": -1}} if r["policy"] == "namm" else r for r in rows
    ]
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in other))
    assert run_rl(tiny_dt, out, *policies) == 2
    assert len((out / "results.jsonl").read_text().splitlines()) == len(rows)
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["report", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "rl (cached)" in md and "rl (window)" in md
    assert "(report-rl-return.png)" in md and (out / "report-rl-timesteps.png").stat().st_size > 0


def test_bad_input_is_one_clear_error(tmp_path, capsys):
    assert run_rl(tmp_path / "nowhere", tmp_path / "out") == 2
    assert "agent directory" in capsys.readouterr().err
    save_tiny_dt(tmp_path / "walker", env_id="Walker2d-v5")  # a Hopper-sized model for Walker2d
    assert run_rl(tmp_path / "walker", tmp_path / "out") == 2
    assert "states of size 11" in capsys.readouterr().err
    save_tiny_dt(tmp_path / "typo", env_id="Hoper-v5")
    assert run_rl(tmp_path / "typo", tmp_path / "out") == 2
    assert "unknown environment 'Hoper-v5'" in capsys.readouterr().err
    assert run_rl(tmp_path / "typo", tmp_path / "out", "--tasks", "ant") == 2
    assert "unknown task(s) ant in suite rl; known: typo" in capsys.readouterr().err
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_a_hub_checkpoint_without_agent_json_runs_with_the_spec_of_its_d4rl_data(tmp_path, monkeypatch, capsys):
    import sys
    import types

    import numpy as np
    from transformers import DecisionTransformerModel

    from namm_bench.adapters.decision_transformer import DecisionTransformerAdapter

    local = save_tiny_dt(tmp_path / "hub-copy")
    (local / "agent.json").unlink()  # as on the hub: weights and config only
    hub_id = "edbeeching/decision-transformer-gym-hopper-medium"
    loaded = DecisionTransformerModel.from_pretrained
    monkeypatch.setattr(
        DecisionTransformerModel,
        "from_pretrained",
        classmethod(lambda cls, name, **kw: loaded(local if name == hub_id else name, **kw)),
    )
    rng = np.random.default_rng(0)
    episodes = [rng.normal(size=(n, 11)).tolist() for n in (5, 7)]
    asked = []
    data = types.SimpleNamespace(
        load_dataset=lambda name, config, split: asked.append((name, config, split)) or {"observations": episodes}
    )
    monkeypatch.setitem(sys.modules, "datasets", data)

    adapter = DecisionTransformerAdapter(hub_id)
    states = np.concatenate([np.asarray(e) for e in episodes])
    assert asked == [("edbeeching/decision_transformer_gym_replay", "hopper-medium-v2", "train")]
    assert adapter.agent.env_id == "Hopper-v5" and adapter.agent.target_return == 3600.0
    assert adapter.agent.context == 20 and adapter.model_name == "decision-transformer-gym-hopper-medium"
    assert np.allclose(adapter.agent.state_mean, states.mean(0)) and np.allclose(adapter.agent.state_std, states.std(0))

    assert run_rl(hub_id, tmp_path / "out", "--limit", "1", "--policies", "full") == 0
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert {(r["task"], r["protocol"]) for r in rows} == {
        ("decision-transformer-gym-hopper-medium", "window"),
        ("decision-transformer-gym-hopper-medium", "cached"),
    }

    assert run_rl("edbeeching/decision-transformer-gym-ant-medium", tmp_path / "bad") == 2
    assert "does not say the environment" in capsys.readouterr().err

    def offline(name, config, split):
        raise ConnectionError("offline")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=offline))
    assert run_rl(hub_id, tmp_path / "bad") == 2
    assert "pip install datasets" in capsys.readouterr().err
    assert not (tmp_path / "bad" / "results.jsonl").exists()


def test_d4rl_reference_returns_are_the_published_ones():
    # D4RL's infos.py (Fu et al. 2020), the same for every dataset of an environment:
    # REF_MIN_SCORE (random policy) and REF_MAX_SCORE (expert) of hopper and walker2d.
    assert D4RL_REFERENCE == {"hopper": (-20.272305, 3234.3), "walker2d": (1.629008, 4592.3)}
    # 100 * (return - min) / (max - min), by hand:
    # hopper 1000: 100 * 1020.272305 / 3254.572305 = 31.34889...
    assert normalised_score("hopper", 1000.0) == pytest.approx(31.34889, abs=1e-5)
    # walker2d 2297.0: 100 * 2295.370992 / 4590.670992 = 50.00077...
    assert normalised_score("walker2d", 2297.0) == pytest.approx(50.00077, abs=1e-5)
    assert normalised_score("hopper", -20.272305) == 0.0 and normalised_score("walker2d", 4592.3) == 100.0
