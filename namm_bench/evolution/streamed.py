"""What both fitness modes share: a prompt run under a policy with the gold answer teacher-forced
(streaming protocol), the prefix every member shares, and one member's checkpoint."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..controller import ControllerConfig, MemoryController
from ..namm.checkpoint import NammCheckpoint
from ..namm.features import RunningStats
from ..namm.scorer import NammConfig
from ..policies.base import MemoryPolicy


@dataclass
class StreamedAnswer:
    """The gold answer teacher-forced after a prompt that ran under a policy (streaming protocol)."""

    logprobs: torch.Tensor  # (answer tokens,)
    exact: bool  # every answer token was the argmax: greedy decoding would have produced the answer
    cache_fraction: float  # at the end of the prompt

    @property
    def probability(self) -> float:
        """Geometric-mean probability of the answer tokens, the fast fitness score."""
        return float(self.logprobs.mean().exp())


@dataclass
class SharedPrefix:
    """A streaming prefill up to its first policy call: the cache and the attention history then.

    Nothing is evicted before the first call, so this part is the same for every NAMM member
    (the features are parameter-free) and is computed once per example.
    """

    tokens_seen: int
    keys: list[torch.Tensor] = field(default_factory=list)  # per layer (1, H, tokens_seen, d)
    values: list[torch.Tensor] = field(default_factory=list)
    spectra: list = field(default_factory=list)  # per layer SpectrogramState


def stream_answer(
    adapter,
    policy: MemoryPolicy,
    controller: ControllerConfig,
    prompt,
    answer: list[int],
    prefix: SharedPrefix | None = None,
):
    """Run ``prompt`` under ``policy`` as ``adapter.generate`` does, then ``answer`` teacher-forced in one step.

    A NAMM ``policy`` may start from ``prefix``, the same prompt's run up to its first policy call.
    """
    model, device = adapter.model, adapter.device
    ids = torch.cat([prompt.ids, torch.tensor([answer], device=device)], dim=1)
    cache = adapter.new_cache()
    memory = MemoryController(policy, controller)

    def forward(start: int, end: int, last_only: bool = True) -> torch.Tensor:
        return adapter.forward_tokens(cache, ids[:, start:end], start, end, last_only)[0]

    with memory.attach(model, cache, adapter.attention_modules()):
        if prefix is not None:
            for layer, (keys, values) in enumerate(zip(prefix.keys, prefix.values, strict=True)):
                cache.update(keys.clone(), values.clone(), layer)
            policy.spectra.states = copy.deepcopy(prefix.spectra)
            memory.resume_at_call(prefix.tokens_seen)
        logits = [memory.prefill(lambda s, e: forward(s, e)[-1:], prompt.ids.shape[1])]
        if len(answer) > 1:  # answer[i] is predicted at answer[i - 1]: feed all but the last
            logits.append(memory.step(lambda s, e: forward(s, e, last_only=False), len(answer) - 1))
    logits = torch.cat(logits).float()
    gold = torch.tensor(answer, device=device)
    logprobs = F.log_softmax(logits, dim=-1).gather(-1, gold[:, None]).squeeze(-1).cpu()
    return StreamedAnswer(logprobs, bool((logits.argmax(-1) == gold).all()), memory.stats.prompt_fraction)


def reply_forcing(tokenizer, reply: str, answer: str) -> list[int] | None:
    """Token ids of ``reply`` up to the end of ``answer`` in it.

    None when ``reply`` does not contain ``answer`` (case ignored, as the suites' metrics do).
    """
    start = reply.lower().find(answer.lower())
    if start < 0 or not answer:
        return None
    return tokenizer.encode(reply[: start + len(answer)], add_special_tokens=False)


def member_checkpoint(params: torch.Tensor, stats: RunningStats, config: NammConfig) -> NammCheckpoint:
    """One member's parameters as a NAMM with the run's frozen normalisation statistics."""
    return NammCheckpoint(params=params.float().cpu(), stats=stats, config=config, stats_frozen=True)
