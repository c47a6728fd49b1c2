"""What every suite provides: examples as data, and a metric.

A suite is data loading + prompt text + a metric + the name of the adapter that runs it
(the lm-evaluation-harness idea: tasks are data plus a metric, found by name).
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
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


class DataError(ValueError):
    """Data files that are missing or malformed, named with where they were looked for."""


def data_dir_from(data_dir: str | Path | None, env: str) -> Path | None:
    """``data_dir``, else the directory in environment variable ``env``, else None."""
    chosen = data_dir or os.environ.get(env)
    return Path(chosen) if chosen else None


def read_jsonl(path: Path, required: Iterable[str] = (), limit: int | None = None) -> list[dict[str, Any]]:
    """The first ``limit`` rows of a JSONL file (``.gz`` too); blank lines skipped.

    A line that is not JSON, or a row without one of the ``required`` fields, is a ``DataError``
    naming the file and line.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    required = set(required)
    rows: list[dict[str, Any]] = []
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if limit is not None and len(rows) == limit:
                break
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{n}: not JSON ({err})") from err
            missing = required - set(row) if isinstance(row, dict) else required or {"an object"}
            if missing:
                raise DataError(f"{path}:{n}: row lacks {', '.join(sorted(missing))}")
            rows.append(row)
    return rows
