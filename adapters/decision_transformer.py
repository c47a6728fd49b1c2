"""Decision Transformer adapter: the stock ``DecisionTransformerModel`` acting in Gymnasium MuJoCo.

Chen et al., "Decision Transformer: Reinforcement Learning via Sequence Modeling", NeurIPS 2021.
A trajectory is the token sequence (R_1, s_1, a_1, R_2, s_2, a_2, ...): return-to-go, state and
action, each embedded by its own linear layer plus the timestep's embedding. The action a_t is
read from the output at s_t.

Two context regimes, named in every result row:

- ``window`` (the reference, Chen et al.): at every step the stock ``forward`` runs on the last
  ``K`` timesteps from scratch, left-padded and masked as in the original evaluation code.
- ``cached``: the whole episode so far lives in the KV cache of the GPT-2 encoder. Every step
  appends ``[a_{t-1}, R_t, s_t]`` (3 entries per timestep; the first step has no previous action),
  and the memory controller of ``namm_bench`` manages that cache exactly as for text: the same
  policies and a policy call every ``interval`` tokens. A policy call comes after the forward
  that reads the step's tokens, so eviction never removes them before they are used.

The stock model's ``forward`` does not take a cache, so the cached actor feeds the encoder
(``model.encoder``) the embeddings the stock ``forward`` would build, with its own embedding
layers and the same all-zero ``position_ids``; with a keep-all policy it gives the stock
``forward``'s actions (tested).

A checkpoint is a directory: ``save_pretrained`` files plus ``agent.json`` (``AgentSpec``: the
environment, the state normalisation, the target return, the return scale and ``K``). The public
hub checkpoints ``edbeeching/decision-transformer-gym-{hopper,walker2d}-{medium,expert,
medium-replay}`` have no ``agent.json``: when online, their spec comes from the name and from the
D4RL data they were trained on (``hub_agent_spec``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from namm_bench.controller import ControllerConfig, MemoryController
from namm_bench.interfaces import EpisodeExample, Outcome, RunOptions
from namm_bench.models import is_hub_id
from namm_bench.policies.base import MemoryPolicy

REGIMES = ("window", "cached")
AGENT_FILE = "agent.json"


class AgentError(ValueError):
    """A checkpoint or environment that cannot act together, named with what does not fit."""


@dataclass
class AgentSpec:
    """What a trained Decision Transformer needs besides its weights to act in its environment."""

    env_id: str
    state_mean: list[float]
    state_std: list[float]
    target_return: float
    return_scale: float = 1000.0  # Chen et al.'s scale for MuJoCo returns-to-go
    context: int = 20  # K, the timesteps the model was trained on
    dataset: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # training provenance

    @classmethod
    def load(cls, directory: str | Path) -> AgentSpec:
        path = Path(directory) / AGENT_FILE
        if not path.is_file():
            raise AgentError(f"{path} not found: a Decision Transformer checkpoint needs its {AGENT_FILE}")
        try:
            return cls(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as err:
            raise AgentError(f"{path} is not a valid {AGENT_FILE}: {err}") from err

    def save(self, directory: str | Path) -> None:
        from namm_bench.files import write_atomic

        write_atomic(Path(directory) / AGENT_FILE, json.dumps(asdict(self), indent=2) + "\n")


HUB_DATA = "edbeeching/decision_transformer_gym_replay"
"""The D4RL trajectories the public hub checkpoints were trained on (configs ``{env}-{quality}-v2``)."""
HUB_ENVS = {"hopper": ("Hopper-v5", 3600.0), "walker2d": ("Walker2d-v5", 5000.0)}
"""Environment and Chen et al.'s conditioning return per environment named in a hub id."""
HUB_QUALITIES = ("medium-replay", "medium-expert", "medium", "expert")


def hub_agent_spec(hub_id: str) -> AgentSpec:
    """``AgentSpec`` of a hub checkpoint without ``agent.json``.

    For example ``edbeeching/decision-transformer-gym-hopper-medium``. The environment and the
    D4RL dataset come from the name; the state normalisation is the mean and standard deviation
    of that dataset's observations (``HUB_DATA``, as the Hugging Face training tutorial computes them),
    the target return Chen et al.'s, K = 20.
    """
    name = hub_id.split("/")[-1].lower()
    env = next((e for e in HUB_ENVS if f"-{e}-" in f"-{name}-"), None)
    quality = next((q for q in HUB_QUALITIES if name.endswith(f"-{q}")), None)
    if env is None or quality is None:
        raise AgentError(
            f"{hub_id} has no {AGENT_FILE}, and its name does not say the environment ({', '.join(HUB_ENVS)}) "
            f"and D4RL dataset ({', '.join(HUB_QUALITIES)}) it was trained on"
        )
    config = f"{env}-{quality}-v2"
    try:
        from datasets import load_dataset

        data = load_dataset(HUB_DATA, config, split="train")
        states = np.concatenate([np.asarray(obs, dtype=np.float64) for obs in data["observations"]])
    except Exception as err:  # no datasets package, offline, or the hub layout changed
        raise AgentError(
            f"{hub_id}: its state normalisation comes from {HUB_DATA} ({config}), which could not be loaded "
            f"(needs `pip install datasets` and a network): {err}"
        ) from err
    env_id, target = HUB_ENVS[env]
    return AgentSpec(
        env_id=env_id,
        state_mean=states.mean(0).tolist(),
        state_std=(states.std(0) + 1e-6).tolist(),
        target_return=target,
        dataset=f"{HUB_DATA}/{config}",
        extra={"hub_id": hub_id},
    )


def make_env(env_id: str, **kwargs: Any):
    """A Gymnasium environment, or one clear error naming what is known."""
    try:
        import gymnasium as gym
    except ImportError as err:
        raise AgentError("the rl suite needs gymnasium[mujoco]: pip install 'namm-bench[rl]'") from err
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as err:
        mujoco = sorted(k for k in gym.registry if k.startswith(("Hopper", "Walker2d")))
        raise AgentError(f"unknown environment {env_id!r} ({err}); MuJoCo ones here: {', '.join(mujoco)}") from err


class DecisionTransformerAdapter:
    """A trained Decision Transformer (a local checkpoint directory) and the actors that run it.

    Parameters
    ----------
    model
        Directory holding the model and its ``agent.json``, or a hub id (see ``hub_agent_spec``).
    device
        Torch device.
    """

    name = "decision_transformer"
    modality = "rl"
    model_types = ("decision_transformer",)
    default_model = None
    dtypes = ("float32",)
    """A 1M-parameter agent gains nothing from half precision, and its state statistics are float32."""

    def __init__(self, model: str | Path | None, device: str = "cpu", dtype: torch.dtype | None = None) -> None:
        from transformers import DecisionTransformerModel

        if model is None:
            raise AgentError("the decision_transformer adapter needs --model: a checkpoint directory")
        if dtype not in (None, torch.float32):
            raise AgentError("Decision Transformers run in float32 (their state statistics are float32)")
        path = Path(model)
        if path.is_dir():
            self.agent = AgentSpec.load(path)
            self.model = DecisionTransformerModel.from_pretrained(path).to(device).eval()
        elif is_hub_id(model):
            self.agent = hub_agent_spec(str(model))  # first: a name it cannot read fails without the network
            try:
                self.model = DecisionTransformerModel.from_pretrained(str(model)).to(device).eval()
            except OSError as err:
                raise AgentError(f"cannot load {model} from the hub (offline, or no such model): {err}") from err
        else:
            raise AgentError(
                f"Decision Transformer checkpoint {model} not found (a directory with {AGENT_FILE}, or a hub id)"
            )
        self.device = torch.device(device)
        self.model_name = path.name
        cfg = self.model.config
        for name, values in (("state_mean", self.agent.state_mean), ("state_std", self.agent.state_std)):
            if len(values) != cfg.state_dim:
                raise AgentError(f"{path}: {name} has {len(values)} entries, the model's state_dim is {cfg.state_dim}")
        self._mean = torch.tensor(self.agent.state_mean, dtype=torch.float32, device=self.device)
        self._std = torch.tensor(self.agent.state_std, dtype=torch.float32, device=self.device)
        self._env: Any = None

    def check_env(self, env) -> None:
        """Raise ``AgentError`` unless the environment's spaces fit the model."""
        cfg = self.model.config
        obs, act = env.observation_space.shape, env.action_space.shape
        if obs != (cfg.state_dim,) or act != (cfg.act_dim,):
            raise AgentError(
                f"checkpoint {self.model_name} takes states of size {cfg.state_dim} and actions of size "
                f"{cfg.act_dim}; {env.spec.id if env.spec else env} has {obs} and {act}"
            )

    def attention_modules(self) -> list[torch.nn.Module]:
        return [block.attn for block in self.model.encoder.h]

    def normalise(self, state: np.ndarray) -> torch.Tensor:
        s = torch.as_tensor(np.asarray(state), dtype=torch.float32, device=self.device)
        return (s - self._mean) / self._std

    def actor(self, regime: str, policy: MemoryPolicy | None = None, controller: ControllerConfig | None = None):
        """An actor for one episode: ``window`` (no policy) or ``cached`` (a memory policy)."""
        if regime == "window":
            if policy is not None:
                raise ValueError("the window regime keeps the last K timesteps itself: it takes no memory policy")
            return WindowActor(self)
        if regime == "cached":
            if policy is None:
                raise ValueError("the cached regime needs a memory policy (full keeps everything)")
            return CachedActor(self, policy, controller or ControllerConfig())
        raise ValueError(f"unknown regime {regime!r}; known: {', '.join(REGIMES)}")

    def run(
        self, example: EpisodeExample, policy: MemoryPolicy, config: ControllerConfig, options: RunOptions
    ) -> Outcome:
        """One episode, seeded by the example: ``options.protocol`` is the regime (``window`` or ``cached``)."""
        if options.protocol not in REGIMES:
            raise ValueError(f"unknown regime {options.protocol!r}; known: {', '.join(REGIMES)}")
        if options.protocol == "window":
            if policy.name != "full":
                raise ValueError("the window regime keeps the last K timesteps itself: it runs with full cache only")
            actor = self.actor("window")
        else:
            actor = self.actor("cached", policy, config)
        if self._env is None:
            self._env = make_env(self.agent.env_id)
        episode = rollout(self, self._env, actor, example.seed)
        cached = options.protocol == "cached"
        return Outcome(
            prediction=f"{episode.episode_return:.3f}",
            tokens=3 * episode.length - 1 if cached else 3 * min(episode.length, self.agent.context),
            controller=actor.controller if cached else None,
            cache_fraction=episode.cache_fraction,
            peak_kv_bytes=actor.peak_kv_bytes(),
            fields={
                "env_id": self.agent.env_id,
                "episode_return": episode.episode_return,
                "length": episode.length,
                "kept_timesteps": episode.kept_timesteps,
                "target_return": self.agent.target_return,
            },
        )


class WindowActor:
    """Chen et al.'s evaluation: the stock ``forward`` on the last ``K`` timesteps, left-padded."""

    def __init__(self, adapter: DecisionTransformerAdapter) -> None:
        self.a = adapter
        cfg = adapter.model.config
        self.states = torch.zeros(0, cfg.state_dim, device=adapter.device)
        self.actions = torch.zeros(0, cfg.act_dim, device=adapter.device)
        self.returns = torch.zeros(0, 1, device=adapter.device)
        self.timesteps = torch.zeros(0, dtype=torch.long, device=adapter.device)

    @torch.inference_mode()
    def act(self, state: np.ndarray, return_to_go: float, t: int) -> np.ndarray:
        a, k = self.a, self.a.agent.context
        self.states = torch.cat([self.states, a.normalise(state)[None]])[-k:]
        self.returns = torch.cat([self.returns, self.returns.new_tensor([[return_to_go / a.agent.return_scale]])])[-k:]
        self.timesteps = torch.cat([self.timesteps, self.timesteps.new_tensor([t])])[-k:]
        self.actions = torch.cat([self.actions, self.actions.new_zeros(1, self.actions.shape[1])])[-k:]
        n, pad = self.states.shape[0], k - self.states.shape[0]

        def padded(x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x.new_zeros(pad, *x.shape[1:]), x])[None]

        mask = torch.cat([torch.zeros(pad), torch.ones(n)]).to(device=a.device, dtype=torch.long)[None]
        out = a.model(
            states=padded(self.states),
            actions=padded(self.actions),
            returns_to_go=padded(self.returns),
            timesteps=padded(self.timesteps),
            attention_mask=mask,
        )
        return out.action_preds[0, -1].cpu().numpy()

    def record(self, action: np.ndarray) -> None:
        """The action taken: it replaces the current step's zero placeholder."""
        taken = torch.as_tensor(np.asarray(action), dtype=torch.float32, device=self.a.device)
        self.actions = torch.cat([self.actions[:-1], taken[None]])

    def cache_fraction(self) -> float:
        return 1.0

    def peak_kv_bytes(self) -> int:
        """Keys and values one stock forward computes over the window: 3 tokens per timestep, every layer."""
        cfg = self.a.model.config
        return 2 * cfg.n_layer * 3 * self.a.agent.context * cfg.hidden_size * self.states.element_size()


class CachedActor:
    """The whole episode in the encoder's KV cache, managed by a memory policy."""

    def __init__(self, adapter: DecisionTransformerAdapter, policy: MemoryPolicy, config: ControllerConfig) -> None:
        from transformers import DynamicCache

        if config.protocol != "streaming":
            raise ValueError("acting appends tokens step by step: only the streaming protocol applies")
        self.a = adapter
        self.cache = DynamicCache(config=adapter.model.config)
        self.controller = MemoryController(policy, config)
        self._attached = self.controller.attach(adapter.model, self.cache, adapter.attention_modules())
        self._attached.__enter__()
        self._pending: torch.Tensor | None = None  # the embedded previous action, fed with the next step
        self.timestep_tokens: list[int] = []  # per cache entry in order of arrival: its timestep

    def close(self) -> None:
        """Remove the hooks (the cache and its statistics stay readable); closing twice is harmless."""
        if self._attached is not None:
            self._attached.__exit__(None, None, None)
            self._attached = None

    def __enter__(self) -> CachedActor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _embed(self, kind: str, value: torch.Tensor, t: int) -> torch.Tensor:
        m = self.a.model
        layer = {"return": m.embed_return, "state": m.embed_state, "action": m.embed_action}[kind]
        time = m.embed_timestep(torch.tensor([t], device=self.a.device))
        return layer(value[None]) + time

    @torch.inference_mode()
    def act(self, state: np.ndarray, return_to_go: float, t: int) -> np.ndarray:
        a = self.a
        tokens = [] if self._pending is None else [self._pending]
        rtg = torch.tensor([return_to_go / a.agent.return_scale], dtype=torch.float32, device=a.device)
        tokens += [self._embed("return", rtg, t), self._embed("state", a.normalise(state), t)]
        x = a.model.embed_ln(torch.cat(tokens)[None])
        n = x.shape[1]

        def forward(start: int, end: int) -> torch.Tensor:
            return a.model.encoder(
                inputs_embeds=x,
                past_key_values=self.cache,
                position_ids=torch.zeros(1, n, dtype=torch.long, device=a.device),
                use_cache=True,
            ).last_hidden_state

        hidden = self.controller.step(forward, n)
        self.timestep_tokens += [t] * n if self._pending is None else [t - 1] + [t] * (n - 1)
        self._pending, self._t = None, t
        return a.model.predict_action(hidden[0, -1]).cpu().numpy()

    def record(self, action: np.ndarray) -> None:
        """The action taken: it enters the cache with the next step's return and state."""
        taken = torch.as_tensor(np.asarray(action), dtype=torch.float32, device=self.a.device)
        self._pending = self._embed("action", taken, self._t)

    def cache_fraction(self) -> float:
        return self.controller.stats.cache_fraction

    def peak_kv_bytes(self) -> int:
        return self.controller.stats.peak_kv_bytes


@dataclass
class Episode:
    """One rollout: its return, length, the cache it kept, and which timesteps each layer kept at the end."""

    seed: int
    episode_return: float
    length: int
    cache_fraction: float
    kept_timesteps: list[list[int]] = field(default_factory=list)  # per layer, head 0


def rollout(adapter: DecisionTransformerAdapter, env, actor, seed: int, max_steps: int = 1000) -> Episode:
    """Run one episode with ``actor``; the target return is the checkpoint's."""
    adapter.check_env(env)
    state, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    rtg, total, t = adapter.agent.target_return, 0.0, 0
    low, high = env.action_space.low, env.action_space.high
    kept: list[list[int]] = []
    try:
        for t in range(max_steps):
            action = np.clip(actor.act(state, rtg, t), low, high)
            state, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            rtg -= float(reward)
            actor.record(action)
            if terminated or truncated:
                break
        if isinstance(actor, CachedActor):
            for layer in range(len(adapter.attention_modules())):
                positions = actor.controller.positions(layer)[0, 0].tolist()
                kept.append(sorted({actor.timestep_tokens[p] for p in positions}))
    finally:
        if isinstance(actor, CachedActor):
            actor.close()  # the model's hooks go, whatever happened
    return Episode(seed, total, t + 1, actor.cache_fraction(), kept)
