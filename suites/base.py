"""Helpers every file-reading suite shares; the example types and the ``Suite`` protocol live in
``namm_bench.interfaces`` (re-exported here for suites written against this module)."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from namm_bench.interfaces import DataError, Outcome, Suite, TextExample, TokenCounter, prediction_text

__all__ = [
    "DataError",
    "Outcome",
    "Suite",
    "TextExample",
    "TokenCounter",
    "data_dir_from",
    "prediction_text",
    "read_jsonl",
]


def data_dir_from(data_dir: str | Path | None, env: str) -> Path | None:
    """``data_dir``, else the directory in environment variable ``env``, else None."""
    chosen = data_dir or os.environ.get(env)
    return Path(chosen) if chosen else None


def read_jsonl(
    path: Path, required: Iterable[str] = (), limit: int | None = None, types: dict[str, type] | None = None
) -> list[dict[str, Any]]:
    """The first ``limit`` rows of a JSONL file (``.gz`` too); blank lines skipped.

    A line that is not JSON, a row without one of the ``required`` fields, or a field whose value
    is not of its type in ``types`` (``answers`` a string instead of a list) is a ``DataError``
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
            for name, kind in (types or {}).items():
                if name in row and not isinstance(row[name], kind):
                    got = f"{type(row[name]).__name__} {repr(row[name])[:60]}"
                    raise DataError(f"{path}:{n}: {name} must be a {kind.__name__}, got {got}")
            rows.append(row)
    return rows
