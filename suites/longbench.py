"""LongBench (Bai et al. 2024, "LongBench: A Bilingual, Multitask Benchmark for Long Context
Understanding", ACL 2024): the 21 tasks and the 13 LongBench-E variants, run as the official
``pred.py`` / ``eval.py`` do.

- Prompts: the official templates (``config/dataset2prompt.json``) filled from each row's
  ``context`` and ``input``; the text up to the end of the context is the example's context, the
  rest its question. Chat template, except for the few-shot and code tasks the official code
  leaves raw (``RAW_TASKS``).
- Answer lengths: ``config/dataset2maxlen.json``. samsum stops at the first newline.
- Truncation: the adapter middle-truncates a prompt longer than the model's context minus the
  answer length (first and last halves, decoded and re-joined); the row records by how much.
- Scoring: trec, triviaqa, samsum and lsht keep the prediction's first line; the task's metric
  (``METRIC``) against every gold answer, the best kept; a report's task score is 100 x mean.
  LongBench-E rows carry their length bucket (0-4k, 4-8k, 8k+ words, as ``eval.py``).

Data: a directory of the official files, ``DIR/data/TASK.jsonl`` (or ``DIR/TASK.jsonl``) and
``DIR/config/*.json``, from ``--data-dir`` or ``$NAMM_BENCH_LONGBENCH``; with neither, the hub
dataset ``THUDM/LongBench`` (its ``data.zip``) and the configs from the official repository
are fetched once into ``$NAMM_BENCH_CACHE/longbench``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .base import DataError, Outcome, TextExample, TokenCounter, data_dir_from, prediction_text, read_jsonl
from .metrics import best_over_answers

METRIC = {
    "narrativeqa": "qa_f1",
    "qasper": "qa_f1",
    "multifieldqa_en": "qa_f1",
    "multifieldqa_zh": "qa_f1_zh",
    "hotpotqa": "qa_f1",
    "2wikimqa": "qa_f1",
    "musique": "qa_f1",
    "dureader": "rouge_zh",
    "gov_report": "rouge",
    "qmsum": "rouge",
    "multi_news": "rouge",
    "vcsum": "rouge_zh",
    "trec": "classification",
    "triviaqa": "qa_f1",
    "samsum": "rouge",
    "lsht": "classification",
    "passage_retrieval_en": "retrieval",
    "passage_count": "count",
    "passage_retrieval_zh": "retrieval_zh",
    "lcc": "code_sim",
    "repobench-p": "code_sim",
}
"""The official metric of each task (LongBench ``eval.py``)."""
E_TASKS = (
    "qasper", "multifieldqa_en", "hotpotqa", "2wikimqa", "gov_report", "multi_news", "trec",
    "triviaqa", "samsum", "passage_count", "passage_retrieval_en", "lcc", "repobench-p",
)  # fmt: skip
"""Tasks with a LongBench-E variant (``TASK_e``: the same task, evenly spread over lengths)."""
RAW_TASKS = frozenset({"trec", "triviaqa", "samsum", "lsht", "lcc", "repobench-p"})
"""Tasks whose prompt the official code feeds without the chat template."""
FIRST_LINE_TASKS = frozenset({"trec", "triviaqa", "samsum", "lsht"})
"""Tasks scored on the prediction's first line (after leading newlines)."""
HUB_DATASET = "THUDM/LongBench"
CONFIG_URL = "https://raw.githubusercontent.com/THUDM/LongBench/main/LongBench/config/{name}"
ENV_DIR = "NAMM_BENCH_LONGBENCH"


def base_task(task: str) -> str:
    """``qasper_e`` -> ``qasper``."""
    return task[:-2] if task.endswith("_e") else task


def length_bucket(length: int) -> str:
    """LongBench-E's bucket of a row's ``length`` field (words, or characters in Chinese)."""
    return "0-4k" if length < 4000 else "4-8k" if length < 8000 else "8k+"


def score_prediction(task: str, prediction: str, answers: list[str], all_classes: list[str] | None = None) -> float:
    """The official score of one prediction, in [0, 1]."""
    task = base_task(task)
    if task in FIRST_LINE_TASKS:
        prediction = prediction.lstrip("\n").split("\n")[0]
    return best_over_answers(METRIC[task], prediction, answers, all_classes=all_classes or [])


ROW_TYPES: dict[str, type] = {"context": str, "input": str, "answers": list}
"""The fields of a row in LongBench's layout (ChouBun's too) and their types."""


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a task file in LongBench's layout; a row lacking a field of :data:`ROW_TYPES`
    or holding another type (``answers`` a string) is a ``DataError`` naming the file and line."""
    return read_jsonl(path, required=tuple(ROW_TYPES), types=ROW_TYPES)


def example_from_row(task: str, index: int, row: dict[str, Any], template: str, max_new_tokens: int) -> TextExample:
    """A row in LongBench's layout (``input, context, answers[, all_classes, length, _id]``) as an example."""
    context, question = split_template(template, row)
    answers = [str(a) for a in row["answers"]]
    base = base_task(task)
    return TextExample(
        task=task,
        example_id=f"{task}-{row.get('_id', index)}",
        context=context,
        question=question,
        answer=answers[0] if answers else "",
        max_new_tokens=max_new_tokens,
        meta={"answers": answers, "all_classes": row.get("all_classes") or [], "length": row.get("length")},
        chat=base not in RAW_TASKS,
        stop=("\n",) if base == "samsum" else (),
    )


def split_template(template: str, row: dict[str, Any]) -> tuple[str, str]:
    """The filled template cut after the context: (instruction + context, the rest)."""
    cut = template.find("{context}")
    if cut < 0:
        raise DataError(f"prompt template has no {{context}}: {template[:80]!r}")
    cut += len("{context}")
    return template[:cut].format(**row), template[cut:].format(**row)


class LongBenchSuite:
    """LongBench and LongBench-E from the official files.

    Parameters
    ----------
    data_dir
        Directory of the official JSONL files and configs (see the module docstring); None reads
        ``$NAMM_BENCH_LONGBENCH``, and failing that the hub.
    """

    name = "longbench"
    modality = "text"
    default_adapter = "llama"

    def __init__(self, data_dir: str | Path | None = None) -> None:
        self.data_dir = data_dir_from(data_dir, ENV_DIR)
        self._config: dict[str, dict[str, Any]] | None = None

    def tasks(self) -> list[str]:
        return [*METRIC, *(f"{t}_e" for t in E_TASKS)]

    def default_tasks(self) -> list[str]:
        """What a run without ``--tasks`` does: the tasks whose files a data directory holds, else all."""
        if self.data_dir is None or not self.data_dir.is_dir():
            return self.tasks()
        present = [t for t in self.tasks() if any(p.is_file() for p in self._candidates(t))]
        return present or self.tasks()

    # ------------------------------------------------------------------ data
    def _root(self) -> Path:
        if self.data_dir is not None:
            if not self.data_dir.is_dir():
                raise DataError(f"LongBench data directory {self.data_dir} does not exist")
            return self.data_dir
        return _download_from_hub()

    def config(self) -> dict[str, dict[str, Any]]:
        """``{"prompt": dataset2prompt, "maxlen": dataset2maxlen}`` from ``ROOT/config``."""
        if self._config is None:
            root = self._root()
            out = {}
            for key, name in (("prompt", "dataset2prompt.json"), ("maxlen", "dataset2maxlen.json")):
                path = next((p for p in (root / "config" / name, root / name) if p.is_file()), None)
                if path is None:
                    raise DataError(
                        f"LongBench config {name} not found in {root / 'config'} or {root}: copy LongBench/config/ "
                        f"from https://github.com/THUDM/LongBench next to the data"
                    )
                out[key] = _read_json(path)
            self._config = out
        return self._config

    def check(self, tasks: list[str]) -> None:
        """Raise ``DataError`` unless the configs are there and every task's file is there and reads."""
        self.config()
        for task in tasks:
            self.rows(task)

    def _candidates(self, task: str) -> list[Path]:
        root = self._root()
        return [root / "data" / f"{task}.jsonl", root / f"{task}.jsonl"]

    def _task_file(self, task: str) -> Path:
        candidates = self._candidates(task)
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise DataError(
                f"LongBench task file {task}.jsonl not found (looked in {candidates[0].parent} and "
                f"{candidates[1].parent}): unzip data.zip of the hub dataset {HUB_DATASET} there, or run "
                f"online without --data-dir"
            )
        return path

    def rows(self, task: str) -> list[dict[str, Any]]:
        return read_rows(self._task_file(task))

    def examples(
        self, task: str, count_tokens: TokenCounter, max_prompt_tokens: int, seed: int, limit: int | None
    ) -> list[TextExample]:
        """The task's first ``limit`` rows in file order (the benchmark fixes its examples; ``seed`` is unused).

        Prompts are not sized here: the adapter middle-truncates what does not fit its model.
        """
        base = base_task(task)
        if base not in METRIC or (task.endswith("_e") and base not in E_TASKS):
            raise DataError(f"unknown LongBench task {task!r}")
        config = self.config()
        template, maxlen = config["prompt"].get(base), config["maxlen"].get(base)
        if template is None or maxlen is None:
            raise DataError(f"LongBench config has no prompt or answer length for {base}")
        rows = self.rows(task)[:limit]
        out = [example_from_row(task, i, row, template, int(maxlen)) for i, row in enumerate(rows)]
        if task.endswith("_e"):
            for ex in out:
                if ex.meta["length"] is not None:
                    ex.meta["length_bucket"] = length_bucket(int(ex.meta["length"]))
        return out

    def score(self, example: TextExample, outcome: Outcome | str) -> float:
        prediction = prediction_text(outcome)
        return score_prediction(example.task, prediction, example.meta["answers"], example.meta["all_classes"])


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not valid JSON: {err}") from err


def _download_from_hub() -> Path:
    """Fetch ``data.zip`` of the hub dataset and the official configs once; the local copy's root."""
    import shutil
    import tempfile
    import urllib.request
    import zipfile

    from namm_bench.files import cache_dir

    root = cache_dir() / "longbench"
    if (root / "data").is_dir() and (root / "config" / "dataset2maxlen.json").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=".longbench-"))
    try:
        from huggingface_hub import hf_hub_download

        archive = hf_hub_download(HUB_DATASET, "data.zip", repo_type="dataset")
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp)
        (tmp / "config").mkdir()
        for name in ("dataset2prompt.json", "dataset2maxlen.json"):
            with urllib.request.urlopen(CONFIG_URL.format(name=name), timeout=60) as r:
                (tmp / "config" / name).write_bytes(r.read())
        shutil.rmtree(root, ignore_errors=True)
        os.replace(tmp, root)  # all or nothing: a failed download leaves no partial copy
    except Exception as err:  # offline, or the hub layout changed: say where to put the files instead
        raise DataError(
            f"no LongBench data: pass --data-dir DIR (or set ${ENV_DIR}) with the official files, "
            f"DIR/data/TASK.jsonl and DIR/config/*.json; fetching {HUB_DATASET} failed: {err}"
        ) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
