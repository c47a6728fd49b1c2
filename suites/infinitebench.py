"""InfiniteBench (Zhang et al. 2024, "InfiniteBench: Extending Long Context Evaluation Beyond 100K
Tokens", ACL 2024): seven of its tasks with the official prompts, answer lengths and scoring.

- Prompts: the official GPT-4 templates (``src/prompt.py``, the ones written for chat models),
  sent as the user message of the model's chat template, without the official system message.
  Two official inconsistencies are resolved the way the templates need: code_debug fills its
  four options, and math_find's ``{prompt}`` gets the sentence the official code builds for it
  ("What is the largest number in the following list?").
- Answer lengths: the official ``DATA_NAME_TO_MAX_NEW_TOKENS``.
- Inputs longer than the model: ``--long-inputs truncate`` cuts the middle as the official
  ``truncate_input`` (up to one token less: the project keeps ``max // 2`` tokens at each end);
  ``--long-inputs stream`` feeds the whole input and leaves the cache to the memory policy.
- Scoring: the official ``get_score_one_*`` rules (first integer, word match, option letter or
  text after an answer prefix, QA F1, first number), as ``score_prediction``.

Data: ``DIR/TASK.jsonl`` or ``DIR/TASK.jsonl.gz`` from ``--data-dir`` or
``$NAMM_BENCH_INFINITEBENCH`` (rows ``context, input, answer[, options]`` as on the hub; rows
that name a ``document`` read it from ``DIR/longbook_eng/`` or ``DIR/code_debug/``), otherwise the
hub dataset ``xinrongzhang2022/InfiniteBench``. A file named ``TASK_SUFFIX`` (for example
``passkey_16384.jsonl.gz``, the passkey rows of one length) is the task ``TASK_SUFFIX``, scored as
``TASK``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .base import DataError, Outcome, TextExample, TokenCounter, data_dir_from, prediction_text, read_jsonl
from .metrics import qa_f1

TEMPLATES = {
    "passkey": (
        "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
        "I will quiz you about the important information there.\n\n{context}\n\n{input}"
    ),
    "number_string": (
        "There is an important info hidden inside a lot of irrelevant text. Find it. "
        "I will quiz you about the important information there.\n\n{context}\n\n{input}"
    ),
    "kv_retrieval": (
        "Extract the value corresponding to the specified key in the JSON object below.\n\n{context}\n\n{input}"
    ),
    "longbook_qa_eng": (
        "Read the book below and answer a question.\n\n{context}\n\nQuestion: {input}\n\nBe very concise."
    ),
    "longbook_choice_eng": (
        "Read the book and answer the question.\n\n{context}\n\nQuestion: {input}\n\nOnly one of the following "
        "options is correct, tell me the answer using one single letter (A, B, C, or D). Don't say anything else.\n"
        "A. {OPTION_A}\nB. {OPTION_B}\nC. {OPTION_C}\nD. {OPTION_D}"
    ),
    "code_debug": (
        "There is ONLY ONE function in the large project that is deliberately made to include an obvious error. "
        "Please find the function that contains the most obvious errors. I will give you four options to narrow "
        "your scope. You can inspect through the options and think. Eventually, tell me the answer using one "
        "single letter (A, B, C, or D).\n\n{context}\n\nWhich funtion has deliberate error?\nA. {OPTION_A}\n"
        "B. {OPTION_B}\nC. {OPTION_C}\nD. {OPTION_D}\n\nYou should first find the functions in the options. "
        "Repeat their content, inspect through code, and at last give me your answer for the function that has "
        "the deliberate and obvious error in A, B, C, or D."
    ),
    "math_find": "{prompt}\n\n{context}\n\n{input}",
}
"""The official GPT-4 templates (InfiniteBench ``src/prompt.py``), verbatim: they are the benchmark's prompts."""
MAX_NEW_TOKENS = {
    "passkey": 6,
    "number_string": 12,
    "kv_retrieval": 50,
    "longbook_qa_eng": 40,
    "longbook_choice_eng": 40,
    "code_debug": 5,
    "math_find": 3,
}
DOCUMENT_DIRS = {"longbook_qa_eng": "longbook_eng", "longbook_choice_eng": "longbook_eng", "code_debug": "code_debug"}
CHOICE_TASKS = frozenset({"longbook_choice_eng", "code_debug"})
HUB_DATASET = "xinrongzhang2022/InfiniteBench"
ENV_DIR = "NAMM_BENCH_INFINITEBENCH"


def base_task(task: str) -> str:
    """``passkey_16384`` -> ``passkey``; an official name is its own base."""
    if task in TEMPLATES:
        return task
    for base in sorted(TEMPLATES, key=len, reverse=True):
        if task.startswith(base + "_"):
            return base
    raise DataError(f"unknown InfiniteBench task {task!r}; known: {', '.join(TEMPLATES)} (or TASK_SUFFIX files)")


# ----------------------------------------------------------------------------- scoring
def _first_integer(text: str) -> str:
    return next((part for part in re.split("[^0-9]", text) if part), "")


def _replace(text: str, chars: str | list[str]) -> str:
    for c in chars:
        text = text.replace(c, " ")
    return text


def _squeeze(text: str) -> str:
    while "  " in text:
        text = text.replace("  ", " ")
    return text


def _after_prefix(pred: str, prefixes: tuple[str, ...], accepted: list[str]) -> bool | None:
    """Whether the text after the first answer prefix found starts with an accepted answer; None if no prefix."""
    for prefix in prefixes:
        idx = pred.find(prefix)
        if idx == -1:
            continue
        if len(pred) < idx + len(prefix) + 1:  # the prediction ends with the prefix
            return False
        after = pred[idx + len(prefix) + 1 :]
        return any(after.startswith(s) for s in accepted)
    return None


def _choice(pred: str, label: list[str]) -> bool:
    """longbook_choice_eng: a leading letter, else what follows an answer prefix, else the first letter word."""
    if not pred:
        return False
    if pred[0] in "ABCD":
        return pred[0] in label
    pred = _squeeze(_replace(pred, "\n\"'.,?!{}"))
    found = _after_prefix(pred, ("answer is:", "answer:", "answer is", "option is"), label)
    if found is not None:
        return found
    word = next((w for w in pred.split() if w in "ABCD"), None)
    return word is not None and word in label


def _code_debug(pred: str, label: list[str]) -> bool:
    """code_debug: ``B.``/``B:`` first, else the letter or function name after an answer prefix."""
    name, letter = label[0], label[1]
    if pred[:2] in (f"{letter}.", f"{letter}:"):
        return True
    pred = _squeeze(_replace(pred.strip(), ["\n", "`", "'", '"', "-", "*", "Option", "option"]))
    return bool(_after_prefix(pred, ("answer is:", "is:", "answer:"), [letter, name]))


def _math_find(pred: str, label: int | float) -> bool:
    found = re.search(r"\d+\.\d+|\d+", pred)
    if found is None:
        return False
    try:
        return (int(found.group(0)) if isinstance(label, int) else float(found.group(0))) == label
    except ValueError:  # a decimal where the gold answer is an integer
        return False


def score_prediction(task: str, prediction: str, label: Any) -> float:
    """The official score of one prediction, in [0, 1]; ``label`` as ``gold_label`` builds it."""
    task = base_task(task)
    if task in ("passkey", "number_string"):
        return float(_first_integer(prediction) == str(label[0]))
    if task == "kv_retrieval":
        return float(label[0] in _replace(prediction, "\n:\"'.,?!{}").split())
    if task == "longbook_qa_eng":
        return max((qa_f1(prediction, a) for a in label), default=0.0)
    if task == "longbook_choice_eng":
        return float(_choice(prediction, label))
    if task == "code_debug":
        return float(_code_debug(prediction, label))
    return float(_math_find(prediction, label[0]))


def gold_label(task: str, row: dict[str, Any]) -> list[Any]:
    """The answer as the official scorer takes it: a list; for choice tasks ``[option text, letter]``."""
    answer = row["answer"] if isinstance(row["answer"], list) else [row["answer"]]
    if base_task(task) in CHOICE_TASKS:
        if len(answer) == 2 and answer[1] in ("A", "B", "C", "D"):
            return list(answer)
        options = row.get("options") or []
        if answer[0] not in options:
            raise DataError(f"{task} row {row.get('id')}: answer {answer[0]!r} is not one of its options")
        return [answer[0], "ABCD"[options.index(answer[0])]]
    return answer


# ----------------------------------------------------------------------------- prompts
def fill(task: str, row: dict[str, Any]) -> tuple[str, str]:
    """The filled official template cut after the context: (instruction + context, question)."""
    base = base_task(task)
    fields = {"context": row["context"], "input": row.get("input", "")}
    options = row.get("options") or []
    if base in CHOICE_TASKS:
        if len(options) != 4:
            raise DataError(f"{task} row {row.get('id')}: needs 4 options, has {len(options)}")
        fields |= {f"OPTION_{k}": o for k, o in zip("ABCD", options, strict=True)}
    if base == "math_find":
        target = re.findall(r"The \w+ number", fields["input"])
        if not target:
            raise DataError(f"{task} row {row.get('id')}: no 'The ... number' in its input")
        fields["prompt"] = f"What is {target[0].lower()} in the following list?"
    template = TEMPLATES[base]
    cut = template.index("{context}") + len("{context}")
    return template[:cut].format(**fields), template[cut:].format(**fields)


class InfiniteBenchSuite:
    """InfiniteBench tasks from local files or the hub.

    Parameters
    ----------
    data_dir
        Directory of task files (see the module docstring); None reads ``$NAMM_BENCH_INFINITEBENCH``,
        and failing that the hub.
    """

    name = "infinitebench"
    modality = "text"
    default_adapter = "llama"

    def __init__(self, data_dir: str | Path | None = None) -> None:
        self.data_dir = data_dir_from(data_dir, ENV_DIR)

    def tasks(self) -> list[str]:
        """The official tasks, then the ``TASK_SUFFIX`` files found in the data directory."""
        found = []
        if self.data_dir is not None and self.data_dir.is_dir():
            for path in sorted(self.data_dir.glob("*.jsonl*")):
                name = path.name.split(".jsonl")[0]
                if name not in TEMPLATES and any(name.startswith(b + "_") for b in TEMPLATES):
                    found.append(name)
        return [*TEMPLATES, *dict.fromkeys(found)]

    def check(self, tasks: list[str]) -> None:
        """Raise ``DataError`` unless every task's file is there and reads (before the model loads)."""
        for task in tasks:
            self.rows(task)

    def _task_file(self, task: str) -> Path:
        base_task(task)
        if self.data_dir is None:
            return _download(task)
        candidates = [self.data_dir / f"{task}.jsonl", self.data_dir / f"{task}.jsonl.gz"]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise DataError(
                f"InfiniteBench task file {task}.jsonl[.gz] not found in {self.data_dir}: download it from the "
                f"hub dataset {HUB_DATASET}, or run online without --data-dir"
            )
        return path

    def rows(self, task: str, limit: int | None = None) -> list[dict[str, Any]]:
        path = self._task_file(task)
        rows = read_jsonl(path, required=("answer",), limit=limit)
        for n, row in enumerate(rows, 1):
            if "context" not in row:
                if "document" not in row:
                    raise DataError(f"{path}: row {n} has neither context nor document")
                row["context"] = self._document(task, row["document"], path)
        return rows

    def _document(self, task: str, name: str, source: Path) -> str:
        path = source.parent / DOCUMENT_DIRS.get(base_task(task), "") / name
        if not path.is_file():
            raise DataError(f"{source}: the document {name} of a row is not at {path}")
        return path.read_text(encoding="utf-8")

    def examples(
        self, task: str, count_tokens: TokenCounter, max_prompt_tokens: int, seed: int, limit: int | None
    ) -> list[TextExample]:
        """The task's first ``limit`` rows in file order (``seed`` is unused; the adapter fits long inputs)."""
        base = base_task(task)
        out = []
        for i, row in enumerate(self.rows(task, limit)):
            context, question = fill(task, row)
            label = gold_label(task, row)
            out.append(
                TextExample(
                    task=task,
                    example_id=f"{task}-{row.get('id', i)}",
                    context=context,
                    question=question,
                    answer=str(label[0]),
                    max_new_tokens=MAX_NEW_TOKENS[base],
                    meta={"label": label, "length": row.get("len") or row.get("length")},
                )
            )
        return out

    def score(self, example: TextExample, outcome: Outcome | str) -> float:
        prediction = prediction_text(outcome)
        return score_prediction(example.task, prediction, example.meta["label"])


def _download(task: str) -> Path:
    """The hub's file of an official task (cached by huggingface_hub)."""
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(HUB_DATASET, f"{task}.jsonl", repo_type="dataset"))
    except Exception as err:  # offline, or no such file on the hub
        raise DataError(
            f"no InfiniteBench data for {task}: pass --data-dir DIR (or set ${ENV_DIR}) holding {task}.jsonl[.gz]; "
            f"fetching it from {HUB_DATASET} failed: {err}"
        ) from err
