"""Lost in the middle (Liu et al. 2024, "Lost in the Middle: How Language Models Use Long Contexts",
TACL): key-value retrieval over UUID pairs with the gold pair moved to a chosen position.

Each data file ``kv-retrieval-N_keys.jsonl[.gz]`` (rows ``ordered_kv_records, key, value``) gives
three tasks, ``kvN_start``, ``kvN_middle`` and ``kvN_end``: the gold pair is taken out of the
records and put back at index 0, N // 2 or N - 1, as the official scripts' ``--gold-index`` does,
so a report's rows are the accuracy per position. The prompt is the official one (the JSON
object written one pair per line, then ``Key: "..."`` and ``Corresponding value:``), sent as the
chat template's user message; answers get the official 100 new tokens; accuracy is whether the
gold value appears in the answer, ignoring case.

Data: ``--data-dir`` or ``$NAMM_BENCH_LOST_IN_THE_MIDDLE``, a directory of such files, e.g.
``../shared/data/lost_in_the_middle`` (the official repository's ``kv_retrieval_data/``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .base import DataError, Outcome, TextExample, TokenCounter, data_dir_from, prediction_text, read_jsonl

INSTRUCTION = "Extract the value corresponding to the specified key in the JSON object below.\n\n"
POSITIONS = ("start", "middle", "end")
MAX_NEW_TOKENS = 100
ENV_DIR = "NAMM_BENCH_LOST_IN_THE_MIDDLE"
FILE_PATTERN = re.compile(r"kv-retrieval-(\d+)_keys\.jsonl(\.gz)?$")


def gold_index(position: str, num_keys: int) -> int:
    return {"start": 0, "middle": num_keys // 2, "end": num_keys - 1}[position]


def format_records(records: list[tuple[str, str]]) -> str:
    """The official JSON layout: ``{"k1": "v1",`` / `` "k2": "v2",`` / ... / `` "kN": "vN"}``."""
    lines = [f'"{k}": "{v}"' for k, v in records]
    return "{" + ",\n ".join(lines) + "}"


def build(row: dict[str, Any], position: str) -> tuple[str, str]:
    """(instruction + JSON data, question) with the gold pair moved to ``position``."""
    records = [tuple(r) for r in row["ordered_kv_records"]]
    gold = (row["key"], row["value"])
    if gold not in records:
        raise DataError(f"key {row['key']} with its value is not among the row's records")
    records.remove(gold)
    records.insert(gold_index(position, len(records) + 1), gold)
    return INSTRUCTION + "JSON data:\n" + format_records(records), f'\n\nKey: "{row["key"]}"\nCorresponding value:'


class LostInTheMiddleSuite:
    """Key-value retrieval by gold position, from local files.

    Parameters
    ----------
    data_dir
        Directory of ``kv-retrieval-N_keys.jsonl[.gz]`` files; None reads ``$NAMM_BENCH_LOST_IN_THE_MIDDLE``.
    """

    name = "lost_in_the_middle"
    modality = "text"
    default_adapter = "llama"

    def __init__(self, data_dir: str | Path | None = None) -> None:
        self.data_dir = data_dir_from(data_dir, ENV_DIR)

    def _files(self) -> dict[int, Path]:
        if self.data_dir is None or not self.data_dir.is_dir():
            return {}
        found = {}
        for path in sorted(self.data_dir.iterdir()):
            match = FILE_PATTERN.match(path.name)
            if match:
                found.setdefault(int(match.group(1)), path)
        return found

    def tasks(self) -> list[str]:
        """``kvN_POSITION`` for every file found; the shared 75-key file's tasks when there is none."""
        sizes = sorted(self._files()) or [75]
        return [f"kv{n}_{p}" for n in sizes for p in POSITIONS]

    def check(self, tasks: list[str]) -> None:
        """Raise ``DataError`` unless every task's file is there and reads (before the model loads)."""
        for task in tasks:
            self.rows(task)

    def rows(self, task: str, limit: int | None = None) -> list[dict[str, Any]]:
        return read_jsonl(self._file(task), ("ordered_kv_records", "key", "value"), limit)

    def _file(self, task: str) -> Path:
        match = re.fullmatch(r"kv(\d+)_(start|middle|end)", task)
        if match is None:
            raise DataError(f"unknown lost-in-the-middle task {task!r}; tasks are kvN_start, kvN_middle, kvN_end")
        if self.data_dir is None:
            raise DataError(
                f"lost_in_the_middle reads local files: pass --data-dir DIR (or set ${ENV_DIR}) holding "
                f"kv-retrieval-{match.group(1)}_keys.jsonl.gz from github.com/nelson-liu/lost-in-the-middle"
            )
        path = self._files().get(int(match.group(1)))
        if path is None:
            raise DataError(
                f"kv-retrieval-{match.group(1)}_keys.jsonl[.gz] not found in {self.data_dir}: get it from "
                f"kv_retrieval_data/ of github.com/nelson-liu/lost-in-the-middle"
            )
        return path

    def examples(
        self, task: str, count_tokens: TokenCounter, max_prompt_tokens: int, seed: int, limit: int | None
    ) -> list[TextExample]:
        """The file's first ``limit`` rows with the gold pair at the task's position (``seed`` unused)."""
        path = self._file(task)
        position = task.rsplit("_", 1)[1]
        out = []
        for n, row in enumerate(self.rows(task, limit)):
            try:
                context, question = build(row, position)
            except (TypeError, ValueError) as err:
                raise DataError(f"{path}: row {n + 1} is not a key-value row ({err})") from err
            out.append(
                TextExample(
                    task=task,
                    example_id=f"{task}-{n}",
                    context=context,
                    question=question,
                    answer=row["value"],
                    max_new_tokens=MAX_NEW_TOKENS,
                    meta={"gold_index": gold_index(position, len(row["ordered_kv_records"]))},
                )
            )
        return out

    def score(self, example: TextExample, outcome: Outcome | str) -> float:
        prediction = prediction_text(outcome)
        return float(example.answer.lower() in prediction.lower())
