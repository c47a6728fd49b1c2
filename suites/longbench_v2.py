"""LongBench v2 (Bai et al. 2025, "LongBench v2: Towards Deeper Understanding and Reasoning on
Realistic Long-context Multitasks"): 503 four-way multiple-choice questions over 8k-2M-word
contexts, as the official ``pred.py`` asks and scores them without chain of thought.

- Tasks: the benchmark's length classes ``short``, ``medium`` and ``long`` (its report's split),
  and ``easy`` / ``hard`` (its difficulty split); every question is in one of each.
- Prompt: the official zero-shot template (``prompts/0shot.txt``): the text inside ``<text>``
  tags, then the question, the four choices and "Format your response as follows: "The correct
  answer is (insert answer here)"". The text up to ``</text>`` is the example's context.
- Answers: 128 new tokens; the choice is read as ``pred.py``'s ``extract_answer`` does ("The
  correct answer is (X)", else "The correct answer is X", asterisks removed first); score 1 when
  it is the gold letter, else 0 (no letter found scores 0).

Data: the hub dataset ``THUDM/LongBench-v2`` (``data.json``, a JSON list; or a JSONL export) in
``--data-dir`` or ``$NAMM_BENCH_LONGBENCH_V2``; with neither, the hub through ``datasets``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .base import DataError, Outcome, TextExample, TokenCounter, data_dir_from, prediction_text, read_jsonl

TASKS = ("short", "medium", "long", "easy", "hard")
QUESTION_FIELDS = ("question", "choice_A", "choice_B", "choice_C", "choice_D")
FIELDS = ("_id", *QUESTION_FIELDS, "answer", "context", "length")
CONTEXT_TEMPLATE = "Please read the following text and answer the question below.\n\n<text>\n{context}\n</text>\n\n"
QUESTION_TEMPLATE = (
    "What is the correct answer to this question: {question}\n"
    "Choices:\n(A) {choice_A}\n(B) {choice_B}\n(C) {choice_C}\n(D) {choice_D}\n\n"
    'Format your response as follows: "The correct answer is (insert answer here)".'
)
MAX_NEW_TOKENS = 128
HUB_DATASET = "THUDM/LongBench-v2"
ENV_DIR = "NAMM_BENCH_LONGBENCH_V2"
FILES = ("data.json", "data.jsonl", "longbench_v2.json", "longbench_v2.jsonl")


def extract_answer(response: str) -> str | None:
    """The letter a response gives, as the official ``pred.py`` reads it (None if none)."""
    response = response.replace("*", "")
    match = re.search(r"The correct answer is \(([A-D])\)", response) or re.search(
        r"The correct answer is ([A-D])", response
    )
    return match.group(1) if match else None


def read_rows(path: Path) -> list[dict[str, Any]]:
    """LongBench v2 rows from a JSON list or JSONL file; a row without a field of :data:`FIELDS` or
    with an answer other than A-D is a ``DataError`` naming the file (and line, for JSONL)."""
    if path.suffix == ".jsonl":
        rows = read_jsonl(path, required=FIELDS)
        where = [f"{path}:{n}" for n in range(1, len(rows) + 1)]  # read_jsonl checked the fields
    else:
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: not JSON ({err})") from err
        if not isinstance(rows, list):
            raise DataError(f"{path}: expected a JSON list of questions, got {type(rows).__name__}")
        where = [f"{path} item {n}" for n in range(len(rows))]
        for place, row in zip(where, rows, strict=True):
            missing = [f for f in FIELDS if not isinstance(row, dict) or f not in row]
            if missing:
                raise DataError(f"{place}: lacks {', '.join(missing)}")
    for place, row in zip(where, rows, strict=True):
        if row["answer"] not in ("A", "B", "C", "D"):
            raise DataError(f"{place}: answer must be one of A-D, got {row['answer']!r}")
    return rows


class LongBenchV2Suite:
    """LongBench v2's questions, by length class and by difficulty.

    Parameters
    ----------
    data_dir
        Directory holding ``data.json`` (or a JSONL export); None reads ``$NAMM_BENCH_LONGBENCH_V2``,
        and failing that the hub.
    """

    name = "longbench_v2"
    modality = "text"
    default_adapter = "llama"

    def __init__(self, data_dir: str | Path | None = None) -> None:
        self.data_dir = data_dir_from(data_dir, ENV_DIR)
        self._rows: list[dict[str, Any]] | None = None

    def tasks(self) -> list[str]:
        return list(TASKS)

    def check(self, tasks: list[str]) -> None:
        """Raise ``DataError`` unless the local file is there and reads (the hub is read later)."""
        if self.data_dir is not None:
            self.rows()

    def rows(self) -> list[dict[str, Any]]:
        if self._rows is None:
            self._rows = _hub_rows() if self.data_dir is None else read_rows(self._file())
        return self._rows

    def _file(self) -> Path:
        path = next((self.data_dir / f for f in FILES if (self.data_dir / f).is_file()), None)
        if path is None:
            raise DataError(
                f"LongBench v2 data not found in {self.data_dir} (looked for {', '.join(FILES)}): download data.json "
                f"of the hub dataset {HUB_DATASET} there, or run online without --data-dir"
            )
        return path

    def examples(
        self, task: str, count_tokens: TokenCounter, max_prompt_tokens: int, seed: int, limit: int | None
    ) -> list[TextExample]:
        """The first ``limit`` questions of the class (``seed`` unused; the adapter middle-truncates)."""
        key = "difficulty" if task in ("easy", "hard") else "length"
        chosen = [r for r in self.rows() if str(r.get(key, "")).lower() == task][:limit]
        return [
            TextExample(
                task=task,
                example_id=f"{task}-{row['_id']}",
                context=CONTEXT_TEMPLATE.format(context=row["context"].strip()),
                question=QUESTION_TEMPLATE.format(**{k: str(row[k]).strip() for k in QUESTION_FIELDS}),
                answer=row["answer"],
                max_new_tokens=MAX_NEW_TOKENS,
                meta={"domain": row.get("domain"), "difficulty": row.get("difficulty"), "length_class": row["length"]},
            )
            for row in chosen
        ]

    def score(self, example: TextExample, outcome: Outcome | str) -> float:
        return float(extract_answer(prediction_text(outcome)) == example.answer)

    def record(self, example: TextExample, outcome: Outcome) -> dict[str, Any]:
        return {"choice": extract_answer(prediction_text(outcome))}


def _hub_rows() -> list[dict[str, Any]]:
    try:
        from datasets import load_dataset

        return [dict(r) for r in load_dataset(HUB_DATASET, split="train")]
    except Exception as err:  # no datasets package, offline, or the hub layout changed
        raise DataError(
            f"no LongBench v2 data: pass --data-dir DIR (or set ${ENV_DIR}) holding data.json; loading {HUB_DATASET} "
            f"from the hub (needs `pip install datasets`) failed: {err}"
        ) from err
