"""One prefill for several policies under the post-prefill protocols.

Nothing is evicted before a post-prefill protocol's single policy call (at the end of the prompt,
or of the context), so the forward passes up to it are the same for every policy. They run once
while every policy observes them; each policy then compresses its own copy of the cache and
continues alone. Policies that read attention probabilities and those that do not get separate
prefills, because their attention is computed differently (the reading implementation's grouped
matmuls or SDPA): each branch then computes exactly what its policy's own run computes, so a row
does not depend on which other policies ran beside it.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .controller import ControllerConfig, MemoryController
from .policies.base import POST_PREFILL, MemoryPolicy

Forward = Callable[[Any, int, int], torch.Tensor]
"""Runs the model on the tokens [start, end) appended to the given cache; returns the last logits."""


@dataclass
class PolicyGroup(MemoryPolicy):
    """Several policies observing one prefix: every call goes to each of them; nothing is evicted."""

    members: tuple[MemoryPolicy, ...] = ()

    name = "group"

    def __post_init__(self) -> None:
        self.needs_attention = any(p.needs_attention for p in self.members)
        self.needs_queries = any(getattr(p, "needs_queries", False) for p in self.members)

    def reset(self, num_layers: int) -> None:
        for p in self.members:
            p.reset(num_layers)

    def set_layers(self, model_layers: Sequence[int]) -> None:
        for p in self.members:
            p.set_layers(model_layers)

    def observe(self, layer: int, attention: torch.Tensor) -> None:
        for p in self.members:
            if p.needs_attention:
                p.observe(layer, attention)

    def observe_queries(self, layer: int, queries: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> None:
        for p in self.members:
            if getattr(p, "needs_queries", False):
                p.observe_queries(layer, queries, cos, sin)


@dataclass
class Branch:
    """One policy's continuation of a shared prefix: its controller is attached to ``cache`` while
    the branch is current, holding the prompt; ``logits`` are the prompt's last token's."""

    policy: MemoryPolicy
    controller: MemoryController
    cache: Any
    logits: torch.Tensor
    prefill_seconds: float
    """The shared prefill's time, divided among the policies that shared it."""


def compress_point(protocol: str, length: int, question_start: int | None) -> int:
    """Tokens before the protocol's one policy call: the prompt, or its context."""
    if protocol not in POST_PREFILL:
        raise ValueError(f"a shared prefill needs a post-prefill protocol, not {protocol!r}")
    if protocol == "post-prefill-context":
        if not (question_start and 0 < question_start <= length):
            raise ValueError("protocol post-prefill-context needs the prompt split into context and question")
        return question_start
    return length


def branches(
    policies: Sequence[MemoryPolicy],
    config: ControllerConfig,
    model: nn.Module,
    modules: Sequence[nn.Module],
    new_cache: Callable[[], Any],
    forward: Forward,
    length: int,
    question_start: int | None = None,
) -> Iterator[Branch]:
    """Yield, policy by policy in the given order, a ``Branch`` whose prompt ran as
    ``MemoryController.prefill`` runs it under ``config`` (a post-prefill protocol).

    The caller decodes inside each iteration: the branch's controller stays attached until the next.
    """
    at = compress_point(config.protocol, length, question_start)
    kinds = {needs: [p for p in policies if p.needs_attention == needs] for needs in (False, True)}
    prefixes = {}
    for needs, members in kinds.items():
        if members:
            began = time.perf_counter()
            cache = new_cache()
            prefix = MemoryController(PolicyGroup(tuple(members)), dataclasses.replace(config, protocol="post-prefill"))
            with prefix.attach(model, cache, modules):
                logits = prefix.prefill(lambda s, e, c=cache: forward(c, s, e), at)
            prefixes[needs] = (cache, logits, (time.perf_counter() - began) / len(members))
    for policy in policies:
        shared, logits, seconds = prefixes[policy.needs_attention]
        cache = copy.deepcopy(shared)
        controller = MemoryController(policy, config)
        with controller.attach(model, cache, modules, reset_policy=False):
            controller.resume_at_call(at)  # the protocol's policy call, on what the policy observed
            out = controller.prefill(lambda s, e, c=cache: forward(c, s, e), length, question_start)
            yield Branch(policy, controller, cache, logits if out is None else out, seconds)
