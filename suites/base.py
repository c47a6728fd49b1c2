"""What every suite provides: examples as data, and a metric.

A suite is data loading + prompt text + a metric + the name of the adapter that runs it
(the lm-evaluation-harness idea: tasks are data plus a metric, found by name).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

TokenCounter = Callable[[str], int]
"""Counts the tokens of a text with the model's tokenizer (no special tokens)."""


@dataclass(frozen=True)
class TextExample:
    """One prompt and its gold answer.

    The user message is ``context + question``. Suites put the task instruction and the long
    document in ``context`` and the final question in ``question``, so a protocol can compress
    the context alone and append the question afterwards. ``chat=False`` feeds the text as is
    (tokenizer's special tokens only) instead of wrapping it in the chat template; generation
    ends at the first of the ``stop`` strings, which is cut off.
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


class Suite(Protocol):
    name: str
    adapter: str
    """Registry name of the adapter that runs this suite's examples."""

    def tasks(self) -> list[str]:
        """All task names, in display order."""
        ...

    def examples(
        self, task: str, count_tokens: TokenCounter, max_prompt_tokens: int, seed: int, limit: int | None
    ) -> list[TextExample]:
        """The task's examples; ``max_prompt_tokens`` is what fits the model beside the answer."""
        ...

    def score(self, example: TextExample, prediction: str) -> float:
        """The metric, in [0, 1]."""
        ...
