"""ChouBun (Sakana AI, introduced with NAMMs in Cetin et al. 2025, "An Evolved Universal
Transformer Memory"): Japanese long-document extractive QA (wiki_qa, edinet_qa, corp_sec_qa) and
summarisation (corp_sec_sum).

- Prompts: the benchmark's templates (``ChouBun/config/dataset2prompt.json``), the text up to the
  end of the document as the example's context; chat template as for LongBench's chat tasks.
- Answer lengths: 64 new tokens for the QA tasks, 128 for corp_sec_sum (``namm-reference.md``).
- Metrics: F1 (QA) and Rouge-L (summary) on MeCab words, the best over the gold answers
  (``suites/metrics.py``); truncation as LongBench's (the adapter's middle truncation).

Data: rows ``input, context, answers`` (LongBench's layout) in ``DIR/TASK.jsonl`` or
``DIR/data/TASK.jsonl`` from ``--data-dir`` or ``$NAMM_BENCH_CHOUBUN``; otherwise the hub dataset
``SakanaAI/ChouBun`` (test split) through ``datasets``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import DataError, Outcome, TextExample, TokenCounter, data_dir_from, prediction_text
from .longbench import example_from_row, read_rows
from .metrics import best_over_answers

_QA = (
    "以下の文書を注意深く読み、続く質問に答えてください。"
    "回答は必ず文書内の連続した文字列（テキストスパン）から抽出してください。"
)
TEMPLATES = {
    "wiki_qa": _QA + "\n### 文書 ###\n{context}\n### 質問 ###\n{input}\n### 回答 ###\n",
    "edinet_qa": _QA + "\n### 文書 ###\n{context}\n### 質問 ###\n{input}\n### 回答 ###\n",
    "corp_sec_qa": _QA + "### 文書 ###\n{context}\n### 質問 ###\n{input}\n### 回答 ###\n",  # no newline: as published
    "corp_sec_sum": (
        "以下の文書を要約してください。要約は短く簡潔にしてください。また、文書の全体的な考え方、傾向、洞察を反映させてください。"
        "\n### 文書 ###\n{context}\n### 要約 ###\n"
    ),
}
"""The benchmark's prompt templates, verbatim."""
MAX_NEW_TOKENS = {"wiki_qa": 64, "edinet_qa": 64, "corp_sec_qa": 64, "corp_sec_sum": 128}
METRIC = {"wiki_qa": "qa_f1_ja", "edinet_qa": "qa_f1_ja", "corp_sec_qa": "qa_f1_ja", "corp_sec_sum": "rouge_ja"}
HUB_DATASET = "SakanaAI/ChouBun"
ENV_DIR = "NAMM_BENCH_CHOUBUN"


class ChouBunSuite:
    """ChouBun's four tasks from local JSONL files or the hub.

    Parameters
    ----------
    data_dir
        Directory of ``TASK.jsonl`` files; None reads ``$NAMM_BENCH_CHOUBUN``, and failing that the hub.
    """

    name = "choubun"
    modality = "text"
    default_adapter = "llama"

    def __init__(self, data_dir: str | Path | None = None) -> None:
        self.data_dir = data_dir_from(data_dir, ENV_DIR)

    def tasks(self) -> list[str]:
        return list(TEMPLATES)

    def check(self, tasks: list[str]) -> None:
        """Raise ``DataError`` unless every task's local file is there and reads (the hub is read later)."""
        if self.data_dir is not None:
            for task in tasks:
                self.rows(task)

    def _task_file(self, task: str) -> Path:
        candidates = [self.data_dir / f"{task}.jsonl", self.data_dir / "data" / f"{task}.jsonl"]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise DataError(
                f"ChouBun task file {task}.jsonl not found in {self.data_dir} (or its data/): export the test split "
                f"of the hub dataset {HUB_DATASET} as JSONL there, or run online without --data-dir"
            )
        return path

    def rows(self, task: str) -> list[dict[str, Any]]:
        if task not in TEMPLATES:
            raise DataError(f"unknown ChouBun task {task!r}; known: {', '.join(TEMPLATES)}")
        if self.data_dir is None:
            return _hub_rows(task)
        return read_rows(self._task_file(task))

    def examples(
        self, task: str, count_tokens: TokenCounter, max_prompt_tokens: int, seed: int, limit: int | None
    ) -> list[TextExample]:
        """The task's first ``limit`` rows (``seed`` unused; the adapter middle-truncates long prompts)."""
        return [
            example_from_row(task, i, row, TEMPLATES[task], MAX_NEW_TOKENS[task])
            for i, row in enumerate(self.rows(task)[:limit])
        ]

    def score(self, example: TextExample, outcome: Outcome | str) -> float:
        prediction = prediction_text(outcome)
        return best_over_answers(METRIC[example.task], prediction, example.meta["answers"])


def _hub_rows(task: str) -> list[dict[str, Any]]:
    try:
        from datasets import load_dataset

        return [dict(r) for r in load_dataset(HUB_DATASET, task, split="test")]
    except Exception as err:  # no datasets package, offline, or the hub layout changed
        raise DataError(
            f"no ChouBun data for {task}: pass --data-dir DIR (or set ${ENV_DIR}) holding {task}.jsonl; loading "
            f"{HUB_DATASET} from the hub (needs `pip install datasets`) failed: {err}"
        ) from err
