"""Conformance kit: what every adapter of a language model (text, or video whose visual tokens enter the
language model's cache) must hold, checked on a (tiny) model it has loaded.

Outside packages call ``check_text_adapter(adapter)`` from their own tests; it runs every
property and raises one ``ConformanceError`` naming each property that failed. The adapter must
provide, beside the ``Adapter`` protocol (``namm_bench.interfaces``): ``model`` (a Hugging Face
causal LM), ``new_cache()`` and ``forward_tokens(cache, ids, start, end, last_only)``, the
forward its ``run`` uses.

Properties (``PROPERTIES``):

- keep-all: under a policy that keeps everything, chunked prefill and decoding through the
  controller give the stock model's logits;
- pruned = masked: after evicting fixed tokens, logits equal one stock forward whose mask hides
  those keys from the later queries, at the true positions (new tokens continue at their
  absolute positions, not at the cache length);
- kept positions: the controller's positions of the kept keys are the original ones;
- accounting: cache fraction and peak KV bytes as documented (full cache: fraction 1 and
  ``2 x layers x kv_heads x tokens x head_dim x bytes``; a budget of k: k / prompt tokens after
  the prompt and a smaller peak);
- retention: every layer is managed (but sliding-window ones, which keep their own window) and
  reported, one count per KV head;
- bad input: an example that cannot run (an answer longer than the context; a video example
  without a video) is one ``ValueError`` naming it, not a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .budget import Budget
from .controller import ControllerConfig, MemoryController
from .interfaces import RunOptions, TextExample, VideoExample
from .policies.base import MemoryPolicy
from .policies.full import FullCache
from .policies.h2o import H2O

PROPERTIES = {
    "keep-all": "a keep-all policy gives the stock model's logits",
    "pruned = masked": "a pruned run equals a masked full forward, new tokens at their true positions",
    "kept positions": "kept keys keep their positions",
    "accounting": "cache % and peak KV bytes are counted as documented",
    "retention": "retention is reported for every layer and KV head",
    "bad input": "bad input is one clear error",
}


class ConformanceError(AssertionError):
    """An adapter breaks one or more properties of the kit (each named in the message)."""


@dataclass
class EvictAtFirstCall(MemoryPolicy):
    """Evicts the tokens at ``evict`` (absolute positions) from every layer and head at the first call."""

    evict: tuple[int, ...] = ()
    name = "evict-at-first-call"

    def select(self, layer, keys, values, positions, tokens_seen):
        keep = [j for j in range(keys.shape[2]) if int(positions[0, 0, j]) not in self.evict]
        if len(keep) == keys.shape[2]:
            return None
        return torch.tensor(keep, device=keys.device).expand(keys.shape[0], keys.shape[1], len(keep))


def run_controlled(adapter: Any, ids: torch.Tensor, policy: MemoryPolicy, prompt_len: int, config: ControllerConfig):
    """Prefill ``ids[:, :prompt_len]`` through the adapter's forward, then teacher-force the rest one token
    at a time; every position's logits (float32, CPU) and the controller."""
    cache = adapter.new_cache()
    controller = MemoryController(policy, config)
    outs: list[torch.Tensor] = []

    def forward(start: int, end: int) -> torch.Tensor:
        logits = adapter.forward_tokens(cache, ids[:, start:end], start, end, last_only=False)
        outs.append(logits[0].float().cpu())
        return logits[:, -1]

    with torch.inference_mode(), controller.attach(adapter.model, cache, adapter.attention_modules()):
        controller.prefill(forward, prompt_len)
        for _ in range(prompt_len, ids.shape[1]):
            controller.step(forward)
    return torch.cat(outs), controller


def _text_config(model: Any) -> Any:
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def managed_layers(text_config: Any) -> list[int]:
    """The layers memory policies manage: all but sliding-window ones (``layer_types``, as Gemma 3's)."""
    types = getattr(text_config, "layer_types", None) or ["full_attention"] * text_config.num_hidden_layers
    return [i for i, kind in enumerate(types) if kind != "sliding_attention"]


def _memoised(run: Callable[[MemoryPolicy], Any], evict: tuple[int, ...], budget: int):
    """``run`` of the kit's policies (keep-all, evict ``evict`` at the first call, H2O at ``budget``
    tokens), each done once on first use: several properties read the same run."""
    policies: dict[str, Callable[[], MemoryPolicy]] = {
        "full": FullCache,
        "evict": lambda: EvictAtFirstCall(evict=evict),
        "h2o": lambda: H2O(budget=Budget(tokens=budget)),
    }
    done: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in done:
            done[name] = run(policies[name]())
        return done[name]

    return get


def _run_checks(adapter: Any, checks: list[Callable[[], None]]) -> list[str]:
    """Run one check per property (in ``PROPERTIES`` order); raise one error naming every failure."""
    failures = []
    for name, check in zip(PROPERTIES, checks, strict=True):
        try:
            check()
        except Exception as err:  # every failure is reported with its property, whatever raised it
            failures.append(f"{name} ({PROPERTIES[name]}): {type(err).__name__}: {err}")
    if failures:
        raise ConformanceError(f"{type(adapter).__name__} fails the conformance kit:\n- " + "\n- ".join(failures))
    return list(PROPERTIES)


def _check_eviction_mattered(masked: torch.Tensor, full: torch.Tensor, atol: float) -> None:
    """The masked reference must differ from the full one, or the pruned check could not fail."""
    if (masked - full).abs().max() <= 5 * atol:
        raise AssertionError("evicting the tokens changed no output: this model cannot tell a pruned run")


def _additive(allowed: torch.Tensor) -> torch.Tensor:
    return torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)[None, None]


def check_text_adapter(
    adapter: Any, length: int = 96, prompt_len: int = 64, atol: float = 2e-5, seed: int = 0
) -> list[str]:
    """Check every property on ``adapter``; return their names, or raise ``ConformanceError`` naming each failure.

    ``length`` tokens (``prompt_len`` of them prompt) of random ids run with 16-token chunks and a
    policy call every 32 tokens; ``atol`` bounds logit differences (float32 models).
    """
    config = ControllerConfig(chunk_size=16, interval=32)
    text = _text_config(adapter.model)
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, text.vocab_size, (1, length), generator=generator).to(adapter.device)
    with torch.inference_mode():
        stock = adapter.model(ids).logits[0].float().cpu()

    evict = tuple(range(3, config.interval - 2, 3))
    budget = 8
    runs = _memoised(lambda policy: run_controlled(adapter, ids, policy, prompt_len, config), evict, budget)

    def keep_all() -> None:
        torch.testing.assert_close(runs("full")[0], stock, atol=atol, rtol=1e-4)

    def pruned_equals_masked() -> None:
        logits, _ = runs("evict")
        causal = torch.ones(length, length, dtype=torch.bool).tril()
        allowed = causal.clone()
        allowed[config.interval :, list(evict)] = False
        mask: Any = _additive(allowed).to(adapter.device, adapter.model.dtype)
        if len(managed) < text.num_hidden_layers:  # sliding-window layers see their window, nothing evicted
            window = causal & ~causal.tril(-text.sliding_window)
            sliding = _additive(window).to(adapter.device, adapter.model.dtype)
            mask = {"full_attention": mask, "sliding_attention": sliding}
        with torch.inference_mode():
            reference = adapter.model(
                ids, attention_mask=mask, position_ids=torch.arange(length, device=adapter.device)[None]
            ).logits[0]
        torch.testing.assert_close(logits, reference.float().cpu(), atol=atol, rtol=1e-4)
        _check_eviction_mattered(reference.float().cpu(), stock, atol)

    def kept_positions() -> None:
        _, controller = runs("evict")
        for layer in range(len(controller.retained_per_layer())):
            kept = controller.positions(layer)[0].tolist()
            want = [p for p in range(length) if p not in evict]
            if any(head != want for head in kept):
                raise AssertionError(f"layer {layer} keeps positions {kept[0][:12]}..., expected {want[:12]}...")

    managed = managed_layers(text)
    kv_heads = text.num_key_value_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads

    def accounting() -> None:
        _, full = runs("full")
        element = adapter.model.dtype.itemsize
        expected = 2 * len(managed) * kv_heads * length * head_dim * element
        if full.stats.cache_fraction != 1.0 or full.stats.peak_kv_bytes != expected:
            raise AssertionError(
                f"full cache: fraction {full.stats.cache_fraction}, peak {full.stats.peak_kv_bytes} bytes; "
                f"expected 1.0 and {expected}"
            )
        _, h2o = runs("h2o")
        if abs(h2o.stats.prompt_fraction - budget / prompt_len) > 1e-9:
            raise AssertionError(f"budget {budget}: fraction {h2o.stats.prompt_fraction} after {prompt_len} tokens")
        if not h2o.stats.peak_kv_bytes < expected / 2:
            raise AssertionError(f"budget {budget}: peak {h2o.stats.peak_kv_bytes} bytes, full cache {expected}")

    def retention() -> None:
        modules = adapter.attention_modules()
        if [m.layer_idx for m in modules] != managed:
            raise AssertionError(f"attention modules of layers {[m.layer_idx for m in modules]}")
        _, h2o = runs("h2o")
        retained = h2o.stats.calls[-1]["retained"]
        if retained != [[budget] * kv_heads] * len(managed):
            raise AssertionError(f"retained per layer and head {retained}")
        if h2o.retained_per_layer() != [budget + length % config.interval] * len(managed):
            raise AssertionError(f"entries now per layer {h2o.retained_per_layer()}")

    def bad_input() -> None:
        if getattr(adapter, "modality", "text") == "video":  # a video example with no video
            bad: Any = VideoExample("conformance", "no-video", "?", ("a", "b"), 0)
        else:  # an answer longer than the model's context
            bad = TextExample("conformance", "too-long", "x", "?", "", max_new_tokens=10**7)
        try:
            adapter.run(bad, FullCache(), config, RunOptions())
        except ValueError as err:
            if bad.example_id not in str(err):
                raise AssertionError(f"the error does not name the example: {err}") from err
        else:
            raise AssertionError(f"{bad} ran")

    return _run_checks(adapter, [keep_all, pruned_equals_masked, kept_positions, accounting, retention, bad_input])


def check_decision_transformer_adapter(adapter: Any, steps: int = 20, atol: float = 2e-5, seed: int = 0) -> list[str]:
    """The kit's properties for an adapter whose model acts step by step (``actor("cached", policy, config)``
    with ``act``/``record``, as the Decision Transformer's): a scripted episode of ``steps`` timesteps,
    3 cache entries each, against the stock model over the whole history."""
    model, agent = adapter.model, adapter.agent
    cfg = model.config
    config = ControllerConfig(chunk_size=16, interval=12)
    rng = torch.Generator().manual_seed(seed)
    states = torch.randn(steps, cfg.state_dim, generator=rng)
    actions = torch.rand(steps, cfg.act_dim, generator=rng) * 2 - 1
    rtg = torch.linspace(agent.target_return, agent.target_return / 2, steps)
    tokens = 3 * steps - 1  # the last action never enters the cache

    def act(policy: MemoryPolicy):
        actor = adapter.actor("cached", policy, config)
        try:
            preds = []
            for t in range(steps):
                preds.append(torch.as_tensor(actor.act(states[t].numpy(), float(rtg[t]), t)))
                actor.record(actions[t].numpy())
        finally:
            actor.close()
        return torch.stack(preds).float(), actor.controller

    def inputs():
        s = adapter.normalise(states.numpy())[None]
        r = (rtg / agent.return_scale)[None, :, None].to(adapter.device)
        return s, actions[None].to(adapter.device), r, torch.arange(steps, device=adapter.device)[None]

    s, a, r, t = inputs()
    with torch.inference_mode():
        stock = model(states=s, actions=a, returns_to_go=r, timesteps=t).action_preds[0].float().cpu()
    evict = tuple(range(3, config.interval - 2))
    budget = 6
    runs = _memoised(act, evict, budget)

    def keep_all() -> None:
        torch.testing.assert_close(runs("full")[0], stock, atol=atol, rtol=1e-4)

    def pruned_equals_masked() -> None:
        preds, controller = runs("evict")
        first = controller.stats.calls[0]["tokens_seen"]
        with torch.inference_mode():
            time = model.embed_timestep(t)
            parts = (model.embed_return(r) + time, model.embed_state(s) + time, model.embed_action(a) + time)
            stacked = model.embed_ln(torch.stack(parts, dim=2).reshape(1, 3 * steps, cfg.hidden_size))
            allowed = torch.ones(3 * steps, 3 * steps, dtype=torch.bool).tril()
            allowed[first:, list(evict)] = False
            hidden = model.encoder(
                inputs_embeds=stacked,
                attention_mask=_additive(allowed).to(adapter.device),
                position_ids=torch.zeros(1, 3 * steps, dtype=torch.long, device=adapter.device),
            ).last_hidden_state
            reference = model.predict_action(hidden[0, 1::3]).float().cpu()
        torch.testing.assert_close(preds, reference, atol=atol, rtol=1e-4)
        _check_eviction_mattered(reference, stock, atol)

    def kept_positions() -> None:
        _, controller = runs("evict")
        want = [p for p in range(tokens) if p not in evict]
        for layer in range(len(controller.retained_per_layer())):
            if any(head != want for head in controller.positions(layer)[0].tolist()):
                raise AssertionError(f"layer {layer} keeps other positions than {want[:12]}...")

    def accounting() -> None:
        _, full = runs("full")
        expected = 2 * cfg.n_layer * tokens * cfg.hidden_size * 4  # float32 keys and values, every head
        if full.stats.cache_fraction != 1.0 or full.stats.peak_kv_bytes != expected:
            raise AssertionError(f"full cache: fraction {full.stats.cache_fraction}, peak {full.stats.peak_kv_bytes}")
        _, h2o = runs("h2o")
        if not (h2o.stats.cache_fraction < 0.5 and h2o.stats.peak_kv_bytes < expected / 2):
            raise AssertionError(
                f"budget {budget}: fraction {h2o.stats.cache_fraction}, peak {h2o.stats.peak_kv_bytes}"
            )

    def retention() -> None:
        if [m.layer_idx for m in adapter.attention_modules()] != list(range(cfg.n_layer)):
            raise AssertionError(f"attention modules of layers {[m.layer_idx for m in adapter.attention_modules()]}")
        _, h2o = runs("h2o")
        if h2o.stats.calls[-1]["retained"] != [[budget] * cfg.n_head] * cfg.n_layer:
            raise AssertionError(f"retained per layer and head {h2o.stats.calls[-1]['retained']}")

    def bad_input() -> None:
        try:  # the window regime recomputes the last K timesteps: no memory policy applies
            adapter.actor("window", H2O(budget=Budget(tokens=budget)))
        except ValueError:
            return
        raise AssertionError("a memory policy was accepted by the window regime")

    return _run_checks(adapter, [keep_all, pruned_equals_masked, kept_positions, accounting, retention, bad_input])
