"""RULER (Hsieh et al. 2024, "RULER: What's the Real Context Size of Your Long-Context Language
Models?"): 13 synthetic tasks at a chosen length, generated from a seed with the model's tokenizer.

Tasks are ``<task>_<length>``, e.g. ``niah_single_1_4k``: the 13 tasks of the paper
(``niah_single_1-3``, ``niah_multikey_1-3``, ``niah_multivalue``, ``niah_multiquery``, ``vt``,
``cwe``, ``fwe``, ``qa_1``, ``qa_2``) at 2k, 4k, 8k, 16k, 32k, 64k or 128k tokens (2k is below
RULER's own lengths: for small models and for evolving on cheap examples; cwe's template does not
fit in 2k). As RULER, the length counts the prompt and the answer: a prompt takes ``[0.98, 1] x
(length - max_new_tokens)`` tokens of the model's tokenizer. The templates, answer prefixes, needle
formats and complexity settings are RULER's (``synthetic.yaml``); ``answer_prefix`` starts the
model's answer. Metrics: ``string_match_all`` (share of the answers found in the prediction,
case-insensitive) for all but ``qa_1`` / ``qa_2``, which use ``string_match_part`` (1 if any answer
is found).

Data (``--data-dir`` or ``$NAMM_BENCH_RULER``):

- ``PaulGrahamEssays.json`` (``{"text": ...}``, made by RULER's ``download_paulgraham_essay.py``) or
  ``essays/*.txt`` for the essay haystacks; ``squad.json`` (SQuAD 2.0 dev) and ``hotpotqa.json``
  (HotpotQA dev, distractor) for ``qa_1`` and ``qa_2``, else the hub through ``datasets``. The other six
  tasks need nothing and run by default.
- Pre-generated files, used instead of generating: RULER's JSONL (``input``, ``outputs``, ``length``;
  ``{length}/data/{task}/validation.jsonl``, ``{length}/{task}/validation.jsonl`` or
  ``{length}/{task}.jsonl``) or kvpress's schema (``context``, ``question``, ``answer_prefix``,
  ``answer``, ``max_new_tokens``, ``task``; ``{length}.jsonl`` holding every task).
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

from . import ruler_generate as gen
from .base import DataError, Outcome, TextExample, TokenCounter, data_dir_from, prediction_text
from .metrics import string_match_all, string_match_part

log = logging.getLogger(__name__)

NIAH = {  # RULER's synthetic.yaml: haystack, key type, value type, keys, values per key, keys asked
    "niah_single_1": ("repeat", "words", "numbers", 1, 1, 1),
    "niah_single_2": ("essay", "words", "numbers", 1, 1, 1),
    "niah_single_3": ("essay", "words", "uuids", 1, 1, 1),
    "niah_multikey_1": ("essay", "words", "numbers", 4, 1, 1),
    "niah_multikey_2": ("needle", "words", "numbers", 1, 1, 1),
    "niah_multikey_3": ("needle", "uuids", "uuids", 1, 1, 1),
    "niah_multivalue": ("essay", "words", "numbers", 1, 4, 1),
    "niah_multiquery": ("essay", "words", "numbers", 4, 1, 4),
}
BASE_TASKS = (*NIAH, "vt", "cwe", "fwe", "qa_1", "qa_2")
LENGTHS = {"2k": 2048, "4k": 4096, "8k": 8192, "16k": 16384, "32k": 32768, "64k": 65536, "128k": 131072}
MAX_NEW_TOKENS = {"niah": 128, "vt": 30, "cwe": 120, "fwe": 50, "qa": 32}
DEFAULT_EXAMPLES = 50
LENGTH_TOLERANCE = 0.02
"""A prompt takes ``[1 - LENGTH_TOLERANCE, 1] x (length - max_new_tokens)`` tokens."""
ESSAY_JSON = "PaulGrahamEssays.json"
ENV_DIR = "NAMM_BENCH_RULER"
QA_FILES = {"qa_1": "squad.json", "qa_2": "hotpotqa.json"}
QA_HUB = {"qa_1": ("rajpurkar/squad_v2", None), "qa_2": ("hotpotqa/hotpot_qa", "distractor")}
QUESTION_MARKERS = ("\nWhat are all the special magic", "\nWhat is the special magic", "\nQuestion:")
"""Where a pre-generated RULER input's question starts (the last one found; qa: its repeated instruction)."""


def family(task: str) -> str:
    return "niah" if task.startswith("niah") else task.split("_")[0]


def needs(task: str) -> str | None:
    """The data a base task needs: ``essays``, ``qa_1`` / ``qa_2``, or None."""
    if task in NIAH and NIAH[task][0] == "essay":
        return "essays"
    return task if task in QA_FILES else None


TOO_SHORT = {("cwe", "2k")}
"""(task, length) pairs RULER's template cannot fit: cwe's few-shot example alone takes about 3k tokens."""


def parse_task(task: str) -> tuple[str, int]:
    base, _, suffix = task.rpartition("_")
    if base not in BASE_TASKS or suffix not in LENGTHS:
        raise ValueError(
            f"unknown RULER task {task!r}: expected <task>_<length> with a task of {', '.join(BASE_TASKS)}"
        )
    if (base, suffix) in TOO_SHORT:
        raise ValueError(f"RULER task {task}: its template alone takes more than {suffix} tokens (cwe starts at 4k)")
    return base, LENGTHS[suffix]


class RulerSuite:
    """RULER's 13 tasks, generated at the model's tokenizer, or read from pre-generated files.

    Parameters
    ----------
    data_dir
        Directory with essays, SQuAD / HotpotQA files or pre-generated RULER files (see the module
        docstring); None reads ``$NAMM_BENCH_RULER``, and with neither the six tasks that need no
        data run, and the QA tasks try the hub.
    """

    name = "ruler"
    modality = "text"
    default_adapter = "llama"

    def __init__(self, data_dir: str | Path | None = None) -> None:
        self.data_dir = data_dir_from(data_dir, ENV_DIR)
        self._essay: list[str] | None = None
        self._qa: dict[str, gen.QaSet] = {}

    def tasks(self) -> list[str]:
        return [f"{t}_{s}" for s in LENGTHS for t in BASE_TASKS if (t, s) not in TOO_SHORT]

    def default_tasks(self) -> list[str]:
        """The 4k tasks whose data is here (all six generated ones always)."""
        return [f"{t}_4k" for t in BASE_TASKS if self._available(t, 4096)]

    def check(self, tasks: list[str]) -> None:
        """Raise ``DataError`` for a task whose essays or pre-generated file is missing (QA may use the hub)."""
        for task in tasks:
            base, length = parse_task(task)
            if needs(base) == "essays" and self._pregenerated(base, length) is None:
                self.essay_words()

    def _available(self, base: str, length: int) -> bool:
        need = needs(base)
        if need is None or self._pregenerated(base, length) is not None:
            return True
        if self.data_dir is None:
            return False
        if need == "essays":
            return bool(self._essay_files())
        return (self.data_dir / QA_FILES[need]).is_file()

    def _essay_files(self) -> list[Path]:
        """``PaulGrahamEssays.json`` if there, else ``essays/*.txt`` (none without a data directory)."""
        if self.data_dir is None:
            return []
        pg = self.data_dir / ESSAY_JSON
        return [pg] if pg.is_file() else sorted(self.data_dir.glob("essays/*.txt"))

    # ----------------------------------------------------------------- examples
    def examples(
        self, task: str, count_tokens: TokenCounter, max_prompt_tokens: int, seed: int, limit: int | None
    ) -> list[TextExample]:
        base, length = parse_task(task)
        count = DEFAULT_EXAMPLES if limit is None else limit
        if count < 1:
            raise ValueError(f"limit must be at least 1 (or None for {DEFAULT_EXAMPLES}), got {limit}")
        path = self._pregenerated(base, length)
        if path is not None:
            return read_file(path, base, task, length)[:count]
        max_new = MAX_NEW_TOKENS[family(base)]
        target = min(length - max_new, max_prompt_tokens)
        if target < length - max_new:
            log.warning("%s does not fit the model: its prompts take about %d tokens, not %d", task, target, length)
        out, guess = [], None
        for i in range(count):
            build, high = self._builder(base, random.Random(f"{seed}:{task}:{i}"), i)
            guess = guess or gen.guess_units(build, count_tokens, target)
            made, guess, tokens = gen.fit(build, count_tokens, target, guess, high)
            # The gap below one more unit, where a unit is long: filled with the first words of one more
            # document (QA), or noise sentences after the distractor needles (a needle haystack).
            fills = (base in QA_FILES and guess < high) or NIAH.get(base, ("",))[0] == "needle"
            if fills and tokens < (1 - LENGTH_TOLERANCE) * target:
                cut = gen.largest(lambda w: count_tokens(build(guess, w).text()) <= target, 8, low=0)  # noqa: B023
                made = build(guess, cut)
                tokens = count_tokens(made.text())
            meta = {"kind": base, "length": length, "tokens": tokens, "outputs": list(made.outputs), **made.meta}
            out.append(
                _example(
                    task,
                    f"{task}-{i:04d}",
                    made.context,
                    made.question,
                    made.answer_prefix,
                    made.outputs,
                    max_new,
                    meta,
                )
            )
        return out

    def _builder(self, base: str, rng: random.Random, index: int):
        if base in NIAH:
            haystack, k, v, nk, nv, nq = NIAH[base]
            words = self.essay_words() if haystack == "essay" else ()
            return gen.niah(rng, index, haystack, k, v, nk, nv, nq, words), None
        if base == "vt":
            return gen.variable_tracking(rng), None
        if base == "cwe":
            return gen.common_words(rng), None
        if base == "fwe":
            return gen.frequent_words(rng), None
        qa = self.qa_set(base)
        return gen.question_answering(rng, qa, index), len(qa.documents)

    # ----------------------------------------------------------------- metric
    def score(self, example: TextExample, outcome: Outcome | str) -> float:
        refs = example.meta["outputs"]
        metric = string_match_part if example.meta["kind"] in QA_FILES else string_match_all
        return metric(prediction_text(outcome), refs)

    # ----------------------------------------------------------------- data
    def essay_words(self) -> list[str]:
        if self._essay is None:
            files, text = self._essay_files(), None
            if files and files[0].name == ESSAY_JSON:
                try:
                    text = json.loads(files[0].read_text(encoding="utf-8"))["text"]
                except (json.JSONDecodeError, KeyError, TypeError) as err:
                    raise DataError(f'{files[0]}: expected {{"text": ...}} ({err})') from err
            elif files:
                text = "\n".join(f.read_text(encoding="utf-8") for f in files)
            if not text:
                where = self.data_dir or f"--data-dir / ${ENV_DIR}"
                raise DataError(
                    f"RULER's essay haystacks need essays: put PaulGrahamEssays.json (RULER's "
                    f"download_paulgraham_essay.py) or essays/*.txt in {where}, or run the generated tasks "
                    "(niah_single_1, niah_multikey_2, niah_multikey_3, vt, cwe, fwe)"
                )
            self._essay = text.split()
        return self._essay

    def qa_set(self, base: str) -> gen.QaSet:
        if base not in self._qa:
            path = self.data_dir / QA_FILES[base] if self.data_dir is not None else None
            if path is not None and path.is_file():
                try:
                    data = json.loads(path.read_text(encoding="utf-8"))
                    self._qa[base] = read_squad(data) if base == "qa_1" else read_hotpotqa(data)
                except (json.JSONDecodeError, KeyError, TypeError, IndexError) as err:
                    raise DataError(
                        f"{path}: not a {'SQuAD' if base == 'qa_1' else 'HotpotQA'} JSON file ({err})"
                    ) from err
            else:
                self._qa[base] = _hub_qa(base)
        return self._qa[base]

    def _pregenerated(self, base: str, length: int) -> Path | None:
        if self.data_dir is None:
            return None
        d = self.data_dir / str(length)
        for path in (d / "data" / base / "validation.jsonl", d / base / "validation.jsonl", d / f"{base}.jsonl"):
            if path.is_file():
                return path
        whole = self.data_dir / f"{length}.jsonl"
        return whole if whole.is_file() else None


def _example(task, example_id, context, question, prefix, outputs, max_new, meta) -> TextExample:
    return TextExample(
        task=task, example_id=example_id, context=context, question=question, answer=" | ".join(outputs),
        max_new_tokens=max_new, meta=meta, answer_prefix=prefix,
    )  # fmt: skip


def read_squad(data: dict) -> gen.QaSet:
    """SQuAD 2.0's JSON as RULER reads it: every paragraph a document, answerable questions only."""
    docs: dict[str, int] = {}
    questions = []
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            doc = docs.setdefault(paragraph["context"], len(docs))
            for qa in paragraph["qas"]:
                if not qa.get("is_impossible") and qa["answers"]:
                    answers = tuple(dict.fromkeys(a["text"] for a in qa["answers"]))
                    questions.append((qa["question"], answers, (doc,)))
    return gen.QaSet(list(docs), questions)


def read_hotpotqa(data: list) -> gen.QaSet:
    """HotpotQA's dev JSON as RULER reads it: each paragraph ``title\\nsentences`` a document, a
    question's ten paragraphs its own."""
    docs: dict[str, int] = {}
    questions = []
    for item in data:
        own = tuple(docs.setdefault(f"{title}\n{''.join(sents)}", len(docs)) for title, sents in item["context"])
        questions.append((item["question"], (item["answer"],), own))
    return gen.QaSet(list(docs), questions)


def _hub_qa(base: str) -> gen.QaSet:
    name, config = QA_HUB[base]
    try:
        from datasets import load_dataset

        rows = load_dataset(name, config, split="validation")
    except Exception as err:  # no datasets package, offline, or the hub layout changed
        raise DataError(
            f"no data for {base}: put {QA_FILES[base]} in --data-dir (or ${ENV_DIR}); loading {name} from the hub "
            f"(needs `pip install datasets`) failed: {err}"
        ) from err
    if base == "qa_1":
        data = {
            "data": [
                {
                    "paragraphs": [
                        {
                            "context": r["context"],
                            "qas": [
                                {"question": r["question"], "answers": [{"text": t} for t in r["answers"]["text"]]}
                            ],
                        }
                    ]
                }
                for r in rows
            ]
        }
        return read_squad(data)  # fmt: skip
    return read_hotpotqa([
        {"question": r["question"], "answer": r["answer"],
         "context": list(zip(r["context"]["title"], r["context"]["sentences"], strict=True))} for r in rows
    ])  # fmt: skip


def read_file(path: Path, base: str, task: str, length: int) -> list[TextExample]:
    """Examples of ``base`` from a pre-generated RULER JSONL (``input``, ``outputs``) or kvpress file
    (``context``, ``question``, ``answer``, rows of every task); a bad line is a ``DataError`` naming file:line."""
    out = []
    max_new = MAX_NEW_TOKENS[family(base)]
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{where}: not JSON ({err})") from err
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected an object, got {type(row).__name__}")
            if "input" in row:
                context, question, prefix, outputs = _split_ruler(row, where)
            elif {"context", "question", "answer"} <= set(row):
                if row.get("task", base) != base:
                    continue
                context, question, prefix = row["context"], row["question"], row.get("answer_prefix", "")
                outputs = row["answer"]
                max_new = int(row.get("max_new_tokens", max_new))
            else:
                raise DataError(f"{where}: neither RULER's input/outputs nor kvpress's context/question/answer")
            if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs) or not outputs:
                raise DataError(f"{where}: the answers must be a non-empty list of strings, got {outputs!r:.60}")
            meta = {"kind": base, "length": length, "outputs": outputs, "source": str(path)}
            ident = row.get("index", len(out))
            out.append(_example(task, f"{task}-{ident}", context, question, prefix, tuple(outputs), max_new, meta))
    if not out:
        raise DataError(f"{path}: no rows of task {base}")
    return out


def _split_ruler(row: dict, where: str) -> tuple[str, str, str, Any]:
    text, prefix = row["input"], row.get("answer_prefix", "")
    if not isinstance(text, str):
        raise DataError(f"{where}: input must be a string")
    if prefix and text.endswith(prefix):
        text = text[: -len(prefix)]
    cut = max(text.rfind(m) for m in (*QUESTION_MARKERS, "\n\n" + gen.QA_INSTRUCTION))
    if cut <= 0:
        raise DataError(f"{where}: cannot tell where the question starts in the input")
    return text[:cut], text[cut:], prefix, row.get("outputs")
