"""Decision Transformer adapter on a tiny random model: cache layout, keep-all equivalence, rollouts, errors."""

import numpy as np
import pytest
import torch
from conftest import ACT, STATE

from namm_bench.adapters.decision_transformer import (
    AgentError,
    DecisionTransformerAdapter,
    make_env,
    rollout,
)
from namm_bench.budget import Budget
from namm_bench.controller import ControllerConfig
from namm_bench.policies import H2O, NAMM, FullCache, MemoryPolicy
from namm_bench.policies.base import top_k_chronological


def trajectory(steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(steps, STATE)), np.tanh(rng.normal(size=(steps, ACT))), rng.random(steps)


def stock_actions(adapter, states, actions, rtgs, t0=0):
    """The stock forward over timesteps t0, t0 + 1, ...: the action read at every state."""
    a = adapter
    n = len(states)
    out = a.model(
        states=a.normalise(states)[None].float(),
        actions=torch.tensor(actions, dtype=torch.float32)[None],
        returns_to_go=torch.tensor(rtgs / a.agent.return_scale, dtype=torch.float32)[None, :, None],
        timesteps=torch.arange(t0, t0 + n)[None],
        attention_mask=torch.ones(1, n, dtype=torch.long),
    )
    return out.action_preds[0].detach().numpy()


def act_through(actor, states, actions, rtgs):
    predicted = []
    for t in range(len(states)):
        predicted.append(actor.act(states[t], float(rtgs[t]), t))
        actor.record(actions[t])
    return np.stack(predicted)


def test_keep_all_policy_gives_the_stock_forward_and_three_entries_per_timestep(tiny_dt):
    adapter = DecisionTransformerAdapter(tiny_dt)
    states, actions, rtgs = trajectory(40)
    with adapter.actor("cached", FullCache(), ControllerConfig(interval=16)) as actor:
        predicted = act_through(actor, states, actions, rtgs)
        # the last step's action has not entered the cache yet: 3 entries per timestep, minus it
        assert actor.controller.tokens_seen == 3 * 40 - 1
        assert actor.controller.retained_per_layer() == [3 * 40 - 1] * 2
        assert actor.timestep_tokens == [t for t in range(40) for _ in range(3)][:-1]
        assert actor.cache_fraction() == 1.0
    reference = stock_actions(adapter, states, actions, rtgs)
    np.testing.assert_allclose(predicted, reference, atol=1e-5)


def test_eager_and_sdpa_attention_act_alike(tiny_dt):
    """H2O at a budget above the episode keeps everything but runs eager attention."""
    adapter = DecisionTransformerAdapter(tiny_dt)
    states, actions, rtgs = trajectory(20)
    with adapter.actor("cached", H2O(budget=Budget(tokens=1000)), ControllerConfig(interval=16)) as actor:
        eager = act_through(actor, states, actions, rtgs)
    with adapter.actor("cached", FullCache()) as actor:
        sdpa = act_through(actor, states, actions, rtgs)
    np.testing.assert_allclose(eager, sdpa, atol=1e-5)


class KeepNewest(MemoryPolicy):
    """Keeps only the newest ``k`` entries: the harshest eviction that still leaves the step's own."""

    name = "keep-newest"

    def __init__(self, k: int) -> None:
        self.k = k

    def select(self, layer, keys, values, positions, tokens_seen):
        return top_k_chronological(positions.float(), min(self.k, positions.shape[-1]))


def test_eviction_comes_after_the_step_reads_its_own_tokens(tiny_dt):
    """A policy call after every step keeping the newest 2 entries (R_{t-1}, s_{t-1}).

    Step t then feeds [a_{t-1}, R_t, s_t] on top, so its action must be the stock forward's on
    timesteps t-1 and t: the step's own tokens are read before any eviction touches them.
    """
    adapter = DecisionTransformerAdapter(tiny_dt)
    states, actions, rtgs = trajectory(6)
    with adapter.actor("cached", KeepNewest(2), ControllerConfig(interval=1)) as actor:
        predicted = act_through(actor, states, actions, rtgs)
        assert actor.controller.retained_per_layer() == [2, 2]
        assert all(call["retained"] == [[2, 2], [2, 2]] for call in actor.controller.stats.calls)
    np.testing.assert_allclose(predicted[0], stock_actions(adapter, states[:1], actions[:1], rtgs[:1])[0], atol=1e-5)
    for t in range(1, 6):
        pair = slice(t - 1, t + 1)
        expected = stock_actions(adapter, states[pair], actions[pair], rtgs[pair], t0=t - 1)[-1]
        np.testing.assert_allclose(predicted[t], expected, atol=1e-5)
    assert not np.allclose(predicted[2:], stock_actions(adapter, states, actions, rtgs)[2:], atol=1e-4)


def test_window_regime_is_the_stock_forward_on_the_last_k_timesteps(tiny_dt):
    adapter = DecisionTransformerAdapter(tiny_dt)
    k = adapter.agent.context
    states, actions, rtgs = trajectory(k + 5)
    predicted = act_through(adapter.actor("window"), states, actions, rtgs)
    # the first K steps: left-padded windows give what the stock forward gives on the history so far
    np.testing.assert_allclose(predicted[:k], stock_actions(adapter, states[:k], actions[:k], rtgs[:k]), atol=1e-5)
    for t in range(k, k + 5):  # then the last K timesteps only
        window = slice(t - k + 1, t + 1)
        expected = stock_actions(adapter, states[window], actions[window], rtgs[window], t0=t - k + 1)[-1]
        np.testing.assert_allclose(predicted[t], expected, atol=1e-5)


def test_rollouts_are_reproducible_for_a_seed(tiny_dt):
    pytest.importorskip("mujoco", reason="the rl extra (gymnasium[mujoco]) is not installed")
    adapter = DecisionTransformerAdapter(tiny_dt)
    env = make_env("Hopper-v5")
    runs = [
        rollout(adapter, env, adapter.actor("cached", NAMM(), ControllerConfig(interval=30)), seed=3, max_steps=60)
        for _ in range(2)
    ]
    assert runs[0] == runs[1] and runs[0].length >= 1
    other = rollout(adapter, env, adapter.actor("window"), seed=4, max_steps=60)
    assert other.cache_fraction == 1.0 and other.episode_return != runs[0].episode_return


def test_bad_input_is_one_clear_error(tiny_dt, tmp_path):
    pytest.importorskip("mujoco", reason="the rl extra (gymnasium[mujoco]) is not installed")
    with pytest.raises(AgentError, match="unknown environment 'Hoper-v5'"):
        make_env("Hoper-v5")
    adapter = DecisionTransformerAdapter(tiny_dt)
    with pytest.raises(AgentError, match=r"states of size 11 .* Walker2d-v5 has \(17,\)"):
        rollout(adapter, make_env("Walker2d-v5"), adapter.actor("window"), seed=0)
    with pytest.raises(AgentError, match="agent.json not found"):
        DecisionTransformerAdapter(tmp_path)
    with pytest.raises(AgentError, match="not found"):
        DecisionTransformerAdapter(tmp_path / "nowhere")
