"""A memory policy on a Hugging Face model's own ``forward``, ``generate()`` and ``pipeline()``.

::

    from namm_bench import memory

    with memory(model, "snapkv", budget=0.25, protocol="post-prefill") as m:
        out = model.generate(**inputs, max_new_tokens=32)
    print(m.cache_fraction)

Inside the ``with`` block every forward of the model is run as ``namm-bench run`` runs a
prompt: the first call of a sequence (an empty or absent cache) is its prompt, fed in chunks
through a ``MemoryController`` that calls the policy as the protocol says (``streaming``: every
``interval`` tokens, and at the prompt's end; ``post-prefill``: once at the prompt's end;
``post-prefill-context``: once at ``question_start``), and every later call on the same cache
is a decoding step (``streaming``: a policy call on interval multiples). New tokens take their
true absolute positions, whatever the cache holds, so the greedy tokens and kept entries are the
ones ``namm-bench run`` gets on the same prompt ids. One sequence at a time (batch size 1, no
padding), as the controller runs; what it cannot run is one ``ValueError`` line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .budget import MATCH, Budget, parse_budget
from .controller import CacheStats, ControllerConfig, MemoryController
from .policies import make_policy, policy_class
from .policies.base import MemoryPolicy, check_protocol

__all__ = ["Memory", "build_policy", "forward_at", "managed_attention_modules", "memory"]


def managed_attention_modules(model: nn.Module) -> list[nn.Module]:
    """The attention modules a policy manages: every decoder layer's (a module with ``layer_idx`` and
    ``num_key_value_groups``), except sliding-window ones (Gemma 3's), which keep their own window."""
    return [
        m
        for m in model.modules()
        if hasattr(m, "layer_idx") and hasattr(m, "num_key_value_groups") and not getattr(m, "is_sliding", False)
    ]


def forward_at(forward: Any, cache: Any, ids: torch.Tensor, start: int, end: int, logits_to_keep: int = 1) -> Any:
    """``forward`` (a causal LM's) on ``ids`` (1, end - start) at absolute positions start..end-1, appended to
    ``cache``: positions come from the token count, not from the cache length, which eviction shortens."""
    return forward(
        input_ids=ids,
        position_ids=torch.arange(start, end, device=ids.device)[None],
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=logits_to_keep,
        return_dict=True,
    )


def _budget(value: float | int | str | Budget | None) -> Budget | None:
    if value is None or isinstance(value, Budget):
        return value
    if isinstance(value, bool):
        raise ValueError(f"budget must be a ratio, a token count or a Budget, got {value!r}")
    if isinstance(value, float):
        return Budget(ratio=value)
    if isinstance(value, int):
        return Budget(tokens=value)
    parsed = parse_budget(str(value))
    if parsed == MATCH:
        raise ValueError("budget='match' needs the NAMM's row of the same example: use `namm-bench run --budget match`")
    return parsed


def build_policy(
    policy: str | MemoryPolicy,
    budget: float | int | str | Budget | None = None,
    namm_checkpoint: str | None = None,
    **options: Any,
) -> MemoryPolicy:
    """A policy by registry name (``namm-bench list``), built as ``namm-bench run`` builds it, or ``policy``
    itself when it is one. ``namm`` loads ``namm_checkpoint`` (default: the shipped NAMM)."""
    if isinstance(policy, MemoryPolicy):
        if budget is not None or namm_checkpoint is not None or options:
            raise ValueError("a policy instance is used as built: pass budget and options to its constructor")
        return policy
    cls = policy_class(policy)  # an unknown name lists the known ones
    if policy == "namm":
        from .namm.checkpoint import load_checkpoint, load_shipped

        if budget is not None:
            raise ValueError("policy 'namm' takes no budget: its cache is what it keeps")
        ckpt = load_checkpoint(namm_checkpoint) if namm_checkpoint is not None else load_shipped()
        return make_policy("namm", checkpoint=ckpt, **options)
    if namm_checkpoint is not None:
        raise ValueError(f"namm_checkpoint is for policy 'namm', not {policy!r}")
    if not cls.takes_budget and budget is not None:
        raise ValueError(f"policy {policy!r} takes no budget")
    return make_policy(policy, _budget(budget), **options)


class Memory:
    """A memory policy managing ``model``'s KV cache while the object is entered (see the module doc).

    Parameters
    ----------
    model
        A Hugging Face causal LM on the ``Cache`` API whose ``config.model_type`` a registered text
        adapter serves (``namm-bench list``: Llama, Mistral, Qwen2, Qwen3, Phi3, Gemma 3).
    policy
        A registered policy name (``full``, ``namm``, ``h2o``, ``snapkv``, ``adakv:snapkv`` ...) or a
        ``MemoryPolicy`` instance.
    budget
        For policies that take one: a ratio of the tokens seen (``0.25``), a token count per KV head
        (``512``), their string forms, or a ``Budget``.
    protocol, interval, chunk_size, prompt_end_call
        As ``namm-bench run``'s ``--protocol``, ``--interval``, ``--chunk-size`` and
        ``--[no-]prompt-end-call`` (``ControllerConfig``).
    question_start
        ``post-prefill-context`` only: the index of the prompt's first question token (the policy
        is called on the tokens before it). May be set between sequences.
    namm_checkpoint
        ``namm`` only: a checkpoint directory or evo-memory ``ckpt.pt`` (default: the shipped NAMM).
    **options
        The policy's own settings (``window=``, ``alpha=`` ...).

    After a sequence, ``cache_fraction``, ``stats`` and ``retained_per_layer()`` describe it
    (``namm-bench run``'s row fields); ``history`` holds the stats of every sequence of the block.
    """

    def __init__(
        self,
        model: nn.Module,
        policy: str | MemoryPolicy = "full",
        budget: float | int | str | Budget | None = None,
        protocol: str = "streaming",
        *,
        interval: int = 512,
        chunk_size: int = 128,
        prompt_end_call: bool = True,
        question_start: int | None = None,
        namm_checkpoint: str | None = None,
        **options: Any,
    ) -> None:
        self.model = model
        self.modules = _check_model(model)
        self.config = ControllerConfig(chunk_size, interval, protocol, prompt_end_call)
        self.policy = build_policy(policy, budget, namm_checkpoint, **options)
        check_protocol(self.policy, protocol)
        self.question_start = question_start
        self.controller: MemoryController | None = None
        self.history: list[CacheStats] = []
        self._cache: Any = None
        self._sequence = contextlib.ExitStack()
        self._forward: Any = None
        self._saved: tuple[bool, Any] | None = None

    # ----------------------------------------------------------------- the block
    def __enter__(self) -> Memory:
        if self._saved is not None:
            raise ValueError("this memory() block is already entered")
        own = self.model.__dict__
        self._saved = ("forward" in own, own.get("forward"))
        self._forward = self.model.forward
        self.model.forward = self._managed_forward
        return self

    def __exit__(self, *exc: object) -> None:
        self._end_sequence()
        had, previous = self._saved
        if had:
            self.model.forward = previous
        else:
            del self.model.forward
        self._saved = None

    # ----------------------------------------------------------------- results
    @property
    def stats(self) -> CacheStats:
        """The last sequence's ``CacheStats`` (policy calls, cache-fraction samples, peak KV bytes)."""
        if self.controller is None:
            raise ValueError("no sequence has run under this memory() yet")
        return self.controller.stats

    @property
    def cache_fraction(self) -> float:
        """The last sequence's retained KV entries / (managed layers x KV heads x tokens), averaged over
        the end of the prompt and every decoding step (``namm-bench run``'s ``cache_fraction``)."""
        return self.stats.cache_fraction

    def retained_per_layer(self) -> list[float]:
        """Entries per KV head now in each managed layer's cache (the row field of the same name)."""
        if self.controller is None:
            raise ValueError("no sequence has run under this memory() yet")
        return self.controller.retained_per_layer()

    # ----------------------------------------------------------------- the forward
    def _managed_forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        past_key_values: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **ignored: Any,  # position_ids, cache_position, return_dict ...: the controller sets positions
    ) -> Any:
        if inputs_embeds is not None or input_ids is None:
            raise ValueError("memory() runs token ids: call the model with input_ids, not inputs_embeds")
        if use_cache is False:
            raise ValueError("memory() manages the KV cache: call the model with use_cache=True")
        if input_ids.shape[0] != 1:
            raise ValueError(f"memory() runs one sequence at a time (batch size 1), not {input_ids.shape[0]}")
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError(
                "memory() runs unpadded sequences, but the attention mask hides some tokens "
                "(generate() masks pad tokens: pass attention_mask=torch.ones_like(input_ids) if the prompt has one)"
            )
        if not isinstance(logits_to_keep, int):
            raise ValueError("memory() takes logits_to_keep as an int")
        if past_key_values is None or past_key_values is not self._cache:
            if past_key_values is not None and past_key_values.get_seq_length() > 0:
                raise ValueError("memory() was given a cache filled outside it: start sequences with an empty cache")
            return self._prompt(input_ids, past_key_values, logits_to_keep)
        return self._step(input_ids, logits_to_keep)

    def _prompt(self, ids: torch.Tensor, cache: Any, logits_to_keep: int) -> Any:
        """The first call of a sequence: its prompt, chunked as the protocol says."""
        from transformers import DynamicCache

        self._end_sequence()
        cache = DynamicCache(config=self.model.config) if cache is None else cache
        self._cache = cache
        self.controller = MemoryController(self.policy, self.config)
        self._sequence.enter_context(self.controller.attach(self.model, cache, self.modules))
        length = ids.shape[1]
        question_start = self.question_start
        if self.config.protocol == "post-prefill-context" and not (question_start and 0 < question_start <= length):
            raise ValueError(
                f"protocol post-prefill-context needs question_start in 1..{length} (the question's first token), "
                f"got {question_start}"
            )
        pieces: list[torch.Tensor] = []
        last: list[Any] = []

        def run(start: int, end: int) -> torch.Tensor:
            # the logits the caller asked for: every position (0), or the prompt's last logits_to_keep
            wanted = end - start if logits_to_keep == 0 else min(end - start, max(0, logits_to_keep - (length - end)))
            out = forward_at(self._forward, cache, ids[:, start:end], start, end, max(wanted, 1))
            if wanted:
                pieces.append(out.logits[:, -wanted:])
            last[:] = [out]
            return out.logits[:, -1]

        self.controller.prefill(run, length, question_start)
        return self._output(last[0], torch.cat(pieces, dim=1), cache)

    def _step(self, ids: torch.Tensor, logits_to_keep: int) -> Any:
        """A later call on the sequence's cache: decoding (``n`` tokens in one forward)."""
        cache, n = self._cache, ids.shape[1]
        keep = n if logits_to_keep == 0 else min(n, logits_to_keep)
        outs: list[Any] = []
        self.controller.step(lambda s, e: outs.append(forward_at(self._forward, cache, ids, s, e, keep)), n)
        return self._output(outs[0], outs[0].logits, cache)

    @staticmethod
    def _output(out: Any, logits: torch.Tensor, cache: Any) -> Any:
        out.logits = logits
        out.past_key_values = cache
        return out

    def _end_sequence(self) -> None:
        if self.controller is not None and self._cache is not None:
            self.history.append(self.controller.stats)
        self._sequence.close()
        self._cache = None


def memory(
    model: nn.Module,
    policy: str | MemoryPolicy = "full",
    budget: float | int | str | Budget | None = None,
    protocol: str = "streaming",
    **settings: Any,
) -> Memory:
    """``Memory(model, policy, budget, protocol, **settings)``, for use as ``with memory(...) as m:``."""
    return Memory(model, policy, budget, protocol, **settings)


def _check_model(model: nn.Module) -> Sequence[nn.Module]:
    """The model's managed attention modules, or one line saying why ``memory()`` cannot run it."""
    from .models import adapter_for_model_type
    from .registry import ADAPTERS

    config = getattr(model, "config", None)
    kind = getattr(config, "model_type", None)
    adapter = adapter_for_model_type(kind) if kind else None
    if adapter is None or ADAPTERS.get(adapter).modality != "text":
        served = sorted({t for _, c in ADAPTERS.items() if c.modality == "text" for t in c.model_types})
        raise ValueError(
            f"memory() runs Hugging Face causal LMs of the text adapters' model types ({', '.join(served)}); "
            f"got {type(model).__name__} (model_type {kind!r})"
        )
    if not hasattr(model, "set_attn_implementation"):
        raise ValueError(f"{type(model).__name__} is not a Hugging Face PreTrainedModel")
    modules = managed_attention_modules(model)
    if not modules:
        raise ValueError(f"{type(model).__name__} has no attention modules on the Cache API (layer_idx) to manage")
    return modules
