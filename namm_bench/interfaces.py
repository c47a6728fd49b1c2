"""What suites, adapters and policies declare: the types the run loop moves between them.

A suite is data plus a metric (the lm-evaluation-harness idea): it lists tasks, builds examples
and scores outcomes. An adapter connects one model family: it loads a model and runs one
example under a memory policy, through a ``MemoryController``. A memory policy
(``namm_bench.policies.base.MemoryPolicy``) only returns what to keep. The run loop
(``namm_bench.runner``) joins them and writes one row per (example, policy, budget, protocol).
Suites and adapters are found by name in ``namm_bench.registry``; neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from .policies.base import MemoryPolicy

if TYPE_CHECKING:
    import numpy as np
    import torch

    from .controller import ControllerConfig, MemoryController

__all__ = [
    "Adapter",
    "DataError",
    "EpisodeExample",
    "ExampleError",
    "MemoryPolicy",
    "Outcome",
    "RunOptions",
    "Suite",
    "TextExample",
    "TokenCounter",
    "VideoExample",
    "prediction_text",
]

TokenCounter = Callable[[str], int]
"""Counts the tokens of a text with the model's tokenizer (no special tokens)."""


class DataError(ValueError):
    """Data files that are missing or malformed, named with where they were looked for."""


class ExampleError(ValueError):
    """One example cannot be run (an undecodable video, ...): the run records an error row and goes on."""


# ----------------------------------------------------------------------------- examples
@dataclass(frozen=True)
class TextExample:
    """One prompt and its gold answer.

    The user message is ``context + question``. Suites put the task instruction and the long
    document in ``context`` and the final question in ``question``, so a protocol can compress
    the context alone and append the question afterwards. ``chat=False`` feeds the text as is
    (tokenizer's special tokens only) instead of wrapping it in the chat template; generation
    ends at the first of the ``stop`` strings, which is cut off. ``answer_prefix`` starts the
    model's answer (after the chat template's assistant turn), as RULER and kvpress prompt; it is
    part of the question span and not of the prediction.
    """

    task: str
    example_id: str
    context: str
    question: str
    answer: str
    max_new_tokens: int
    meta: dict[str, Any] = field(default_factory=dict)
    chat: bool = True
    stop: tuple[str, ...] = ()
    answer_prefix: str = ""

    modality: ClassVar[str] = "text"


@dataclass(frozen=True)
class VideoExample:
    """One multiple-choice question about one video.

    The frames are decoded from the file ``video`` by the adapter, or produced by ``load_frames``
    (a suite's generated videos: (T, H, W, 3) uint8). ``answer`` indexes ``candidates``.
    """

    task: str
    example_id: str
    question: str
    candidates: tuple[str, ...]
    answer: int
    video: str | None = None
    seed: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    load_frames: Callable[[], np.ndarray] | None = field(default=None, compare=False, repr=False)

    modality: ClassVar[str] = "video"


@dataclass(frozen=True)
class EpisodeExample:
    """One seeded episode of an agent acting in its environment (the agent is the task)."""

    task: str
    example_id: str
    seed: int
    answer: None = None
    meta: dict[str, Any] = field(default_factory=dict)

    modality: ClassVar[str] = "rl"


# ----------------------------------------------------------------------------- outcomes
@dataclass(frozen=True)
class RunOptions:
    """How the run loop asks an adapter to run one example.

    Parameters
    ----------
    protocol
        The row's protocol: the controller's (``streaming``, ``post-prefill`` ...) or one a suite
        declares (the RL suite's ``window`` and ``cached`` regimes).
    long_inputs
        Prompts longer than the model's context: ``truncate`` (middle) or ``stream`` (fed whole).
    """

    protocol: str = "streaming"
    long_inputs: str = "truncate"


@dataclass
class Outcome:
    """What running one example produced: the answer and how the cache was used.

    Parameters
    ----------
    prediction
        The model's answer as text (a chosen option, a generated string, an episode's return).
    tokens
        Tokens (cache entries per layer and head, before eviction) the sequence processed.
    controller
        The controller that managed the cache; None when the run kept no cache of its own (the
        RL window regime), in which case ``cache_fraction`` and ``peak_kv_bytes`` are given.
    new_tokens, truncated_tokens
        Generated tokens, and prompt tokens cut to fit the model's context.
    seconds
        The run's time, where the run loop's own clock would misplace it (a shared prefill's
        share); None: the loop times the call.
    fields
        Adapter-specific row fields (frames, returns, per-frame retention ...).
    """

    prediction: str
    tokens: int
    controller: MemoryController | None = None
    new_tokens: int = 0
    truncated_tokens: int = 0
    cache_fraction: float | None = None
    peak_kv_bytes: int | None = None
    seconds: float | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    def row_fields(self) -> dict[str, Any]:
        """The core row fields every suite's rows hold, from this outcome."""
        c = self.controller
        stats = c.stats if c is not None else None
        return {
            "cache_fraction": stats.cache_fraction if stats is not None else self.cache_fraction,
            "cache_fraction_prompt": stats.prompt_fraction if stats is not None else self.cache_fraction,
            "peak_kv_bytes": stats.peak_kv_bytes if stats is not None else self.peak_kv_bytes,
            "tokens": self.tokens,
            "truncated_tokens": self.truncated_tokens,
            "new_tokens": self.new_tokens,
            "policy_seconds": round(stats.policy_seconds, 3) if stats is not None else 0.0,
            "policy_calls": len(stats.calls) if stats is not None else 0,
            "retained_per_layer": c.retained_per_layer() if c is not None else None,
            "prediction": self.prediction,
        }


def prediction_text(outcome: Outcome | str) -> str:
    """The prediction of an outcome (a string is taken as the prediction itself)."""
    return outcome if isinstance(outcome, str) else outcome.prediction


# ----------------------------------------------------------------------------- protocols
@runtime_checkable
class Suite(Protocol):
    """A benchmark: tasks, their examples, and a metric.

    Required: ``name``, ``modality`` (``text``, ``video`` or ``rl``: the examples it makes),
    ``tasks``, ``examples`` and ``score``. Optional hooks, each with a default in the run loop:

    - ``default_tasks() -> list[str]``: what runs without ``--tasks`` (default: ``tasks()``);
    - ``check(tasks)``: raise a ``DataError`` naming what is missing before any model loads;
    - ``default_adapter: str``: the adapter for the default model (no ``--model``);
    - ``model_for(task, model) -> str | None``: the model a task runs on (the RL suite: its agent);
    - ``plan(variants, protocol) -> list[(protocol, variant)]``: the (row protocol, variant)
      pairs to run (default: every variant under the controller's protocol);
    - ``policy_options: dict[str, dict]``: keyword options per policy name, for policies built
      for this suite (the RL suite prunes every layer with L2);
    - ``record(example, outcome) -> dict``: extra row fields from an outcome;
    - ``write_plots(rows, out_dir) -> [(path, caption)]``: the suite's own report figures.

    A suite whose tasks depend on ``--model`` takes a ``model`` keyword when built.
    """

    name: str
    modality: str

    def tasks(self) -> list[str]:
        """All task names, in display order."""
        ...

    def examples(
        self, task: str, count_tokens: TokenCounter | None, max_prompt_tokens: int | None, seed: int, limit: int | None
    ) -> list[Any]:
        """The task's examples. Text suites size prompts with ``count_tokens`` and ``max_prompt_tokens``
        (what fits the model beside the answer); the others get None for both."""
        ...

    def score(self, example: Any, outcome: Outcome | str) -> float:
        """The metric, in [0, 1] (a string is taken as the prediction)."""
        ...


@runtime_checkable
class Adapter(Protocol):
    """Connects one model family to the run loop.

    Built as ``cls(model, device=..., dtype=..., **options)``: ``model`` a hub id, a local
    directory or None for the adapter's embedded default. Class attributes: ``name``,
    ``modality`` (the examples it runs) and ``model_types`` (the ``config.model_type`` values it
    serves, which pick it when ``--adapter`` is not given) and ``default_model`` (the name rows
    record for ``model=None``, or None if the adapter needs a model); optionally ``dtypes``, the
    weights' dtypes it runs in (default float32, bfloat16, float16; ``--dtype auto`` takes
    bfloat16 on CUDA where it is among them, else float32). Instances hold
    ``model_name`` (as rows record it). Text adapters also provide ``count_tokens(text)``,
    ``max_prompt_tokens(max_new_tokens)`` and ``model_directory(model)`` (where the weights are,
    for the fingerprint an evolution run keeps).
    """

    name: ClassVar[str]
    modality: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]
    default_model: ClassVar[str | None]
    model_name: str

    def attention_modules(self) -> list[torch.nn.Module]:
        """The attention modules, one per layer, in layer order (each has ``layer_idx``)."""
        ...

    def run(self, example: Any, policy: MemoryPolicy, config: ControllerConfig, options: RunOptions) -> Outcome:
        """Run one example with ``policy`` managing the cache through a ``MemoryController``.

        Raises ``ExampleError`` for an example that cannot run (the loop records an error row).
        An adapter may also provide ``run_shared(example, policies, config, options)``, yielding
        ``run``'s outcome for each policy in turn from one shared prefill; the loop uses it under
        the post-prefill protocols (``namm_bench.shared_prefill``).
        """
        ...
