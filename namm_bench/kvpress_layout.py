"""kvpress's evaluation layout, both ways: namm-bench rows written as kvpress writes its results, and
kvpress's result directories read back for a report beside namm-bench's rows.

kvpress 0.5.x's ``evaluation/evaluate.py`` writes one directory per run under its ``output_dir``,
named ``dataset__data_dir__model__press_name__compression_ratio`` (``/`` in the model name as
``--``, ``:.2f`` ratio; ``__max_context{N}`` and ``__query_aware`` appended when set; a numbered
subdirectory when the name is taken), holding ``predictions.csv`` (the dataset's columns but the
context, plus ``predicted_answer`` and ``compression_ratio``), ``metrics.json`` (its dataset's
scorer's output: RULER ``{task: {"string_match": x}}``, LongBench one number per task directory)
and ``config.yaml`` (its ``EvaluationConfig``; ``no_press`` is the full cache at ratio 0).

Mapping of namm-bench rows: RULER tasks ``niah_single_1_4k`` -> data dir ``4096``, task
``niah_single_1``; any other suite's task is its own data dir. Policies keep their names (equal to
kvpress's where the method is the same), ``full`` is ``no_press``, ``adakv:snapkv`` is
``adakv_snapkv``; ``post-prefill`` (the question compressed with the context) is kvpress's
``query_aware``, ``post-prefill-context`` its default, and ``streaming`` (no kvpress protocol)
adds ``_streaming`` to the press name; ``match`` budgets add ``_match``, token budgets
``_{tokens}``. The ratio is ``1 - budget`` for ratio budgets, else the measured ``1 - cache %``.
Scores are x100 as kvpress's scorers give them.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

RULER_LENGTHS = {"2k": 2048, "4k": 4096, "8k": 8192, "16k": 16384, "32k": 32768, "64k": 65536, "128k": 131072}
CONFIG_FILE, METRICS_FILE, PREDICTIONS_FILE = "config.yaml", "metrics.json", "predictions.csv"


@dataclass
class KvpressRun:
    """One kvpress result directory: its configuration and its scores (x100) by namm-bench task name."""

    directory: Path
    config: dict[str, Any]
    scores: dict[str, float] = field(default_factory=dict)
    cache_pct: float | None = None
    """100 x (1 - the mean of ``predictions.csv``'s per-example ``compression_ratio``), where it has one."""

    @property
    def label(self) -> str:
        """The column this run gets in a report: ``press ratio [query-aware] @cache% (kvpress)``."""
        aware = " query-aware" if self.config.get("query_aware") else ""
        cache = f" @{self.cache_pct:.0f}%" if self.cache_pct is not None else ""
        return f"{self.config['press_name']} {float(self.config['compression_ratio']):.2f}{aware}{cache} (kvpress)"


def results_dir_name(
    dataset: str,
    data_dir: str | None,
    model: str,
    press_name: str,
    compression_ratio: float,
    max_context_length: int | None = None,
    query_aware: bool = False,
) -> str:
    """The directory name kvpress's ``EvaluationConfig.get_results_dir`` gives these settings."""
    parts = [dataset, data_dir or "", model.replace("/", "--"), press_name, f"{compression_ratio:.2f}"]
    if max_context_length is not None:
        parts.append(f"max_context{max_context_length}")
    if query_aware:
        parts.append("query_aware")
    return "__".join(p for p in parts if p)


def kvpress_task(suite: str, task: str) -> tuple[str | None, str]:
    """(data dir, task) of a namm-bench task in kvpress's layout."""
    if suite == "ruler":
        base, _, length = task.rpartition("_")
        if length in RULER_LENGTHS:
            return str(RULER_LENGTHS[length]), base
    return task, task


def namm_bench_task(dataset: str, data_dir: str | None, task: str) -> str:
    """The namm-bench task of a kvpress (dataset, data dir, task)."""
    if dataset == "ruler" and data_dir and data_dir.isdigit():
        suffix = {v: k for k, v in RULER_LENGTHS.items()}.get(int(data_dir), f"{int(data_dir) // 1024}k")
        return f"{task}_{suffix}"
    return task


# ----------------------------------------------------------------------------- writing
def _press(row: dict[str, Any]) -> tuple[str, bool]:
    """(press name, query_aware) of a row."""
    policy = str(row["policy"])
    name = "no_press" if policy == "full" else policy.replace(":", "_")
    budget = str(row.get("budget"))
    if budget == "match":
        name += "_match"
    elif budget.isdigit():
        name += f"_{budget}"
    protocol = row.get("protocol")
    if protocol == "streaming" and policy != "full":
        name += "_streaming"
    return name, protocol == "post-prefill" and policy != "full"


def _ratio(rows: list[dict[str, Any]]) -> float:
    first = rows[0]
    if first["policy"] == "full":
        return 0.0
    if first.get("budget_ratio") is not None and str(first.get("budget")) not in ("match", "none"):
        return 1.0 - float(first["budget_ratio"])
    return 1.0 - sum(float(r["cache_fraction"]) for r in rows) / len(rows)


def _answers(row: dict[str, Any]) -> Any:
    """The gold answer as kvpress's datasets hold it (RULER: the list of outputs), for ``predictions.csv``."""
    outputs = (row.get("meta") or {}).get("outputs")
    if isinstance(outputs, list):
        # kvpress's datasets load answers as numpy arrays, which pandas writes as numpy prints them
        return "[" + " ".join(repr(str(o)) for o in outputs) + "]"
    return row.get("answer")


def write_kvpress(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """Write ``rows`` (namm-bench result rows) as kvpress result directories under ``out``; their paths.

    One directory per (suite, data dir, model, press, ratio, protocol, context, seed); error rows are left out.
    """
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row.get("error") or row.get("score") is None:
            continue
        data_dir, _ = kvpress_task(row["suite"], row["task"])
        press, aware = _press(row)
        key = (row["suite"], data_dir, row["model"], press, aware, row.get("budget"), row.get("max_context"))
        groups[(*key, row.get("seed", 0))].append(row)
    written: list[Path] = []
    for (dataset, data_dir, model, press, aware, _budget, context, seed), members in groups.items():
        ratio = _ratio(members)
        base = out / results_dir_name(dataset, data_dir, model, press, ratio, context, aware)
        directory, i = base, 1
        while directory in written:  # another seed of the same settings: kvpress numbers it
            directory, i = base / str(i), i + 1
        directory.mkdir(parents=True, exist_ok=True)
        _write_run(directory, dataset, data_dir, model, press, ratio, context, aware, seed, members, out)
        written.append(directory)
    return written


def _write_run(directory, dataset, data_dir, model, press, ratio, context, aware, seed, members, out) -> None:
    import yaml

    records = [
        {
            "task": kvpress_task(dataset, r["task"])[1],
            "question": (r.get("meta") or {}).get("question", ""),
            "answer_prefix": "",
            "answer": _answers(r),
            "max_new_tokens": r.get("new_tokens"),
            "predicted_answer": r.get("prediction", ""),
            "compression_ratio": 0.0 if press == "no_press" else round(1.0 - float(r["cache_fraction"]), 6),
            "example_id": r["example_id"],
            "example_hash": r.get("example_hash"),
            "score": r["score"],
        }
        for r in members
    ]
    pd.DataFrame(records).to_csv(directory / PREDICTIONS_FILE, index=False)
    by_task: dict[str, list[float]] = defaultdict(list)
    for record in records:
        by_task[record["task"]].append(float(record["score"]))
    means = {t: round(100 * sum(s) / len(s), 2) for t, s in by_task.items()}
    if dataset == "ruler":
        metrics: Any = {t: {"string_match": v} for t, v in means.items()}
    elif len(means) == 1:  # LongBench and the other one-task-per-directory datasets: the number itself
        metrics = next(iter(means.values()))
    else:
        metrics = {t: {"score": v} for t, v in means.items()}
    (directory / METRICS_FILE).write_text(json.dumps(metrics, indent=4))
    first = members[0]
    describe = json.dumps(first.get("policy_config"), sort_keys=True, default=str)
    settings = f"protocol={first.get('protocol')}, interval={first.get('interval')}, chunk={first.get('chunk_size')}"
    config = {  # kvpress 0.5.x's EvaluationConfig, in its field order, as its save_config writes it
        "dataset": dataset,
        "data_dir": data_dir,
        "model": model,
        "device": None,
        "press_name": press,
        "compression_ratio": round(ratio, 6),
        "key_channel_compression_ratio": None,
        "fraction": 1.0,
        "max_new_tokens": None,
        "max_context_length": context,
        "query_aware": aware,
        "needle_depth": None,
        "compression_interval": None,
        "target_size": None,
        "hidden_states_buffer_size": None,
        "output_dir": str(out),
        "log_level": "INFO",
        "model_kwargs": {},
        "trust_remote_code": False,
        "press_init_command": f"namm-bench {first['policy']} {describe} ({settings})",
        "seed": seed,
        "fp8": False,
    }
    with open(directory / CONFIG_FILE, "w") as f:
        yaml.dump(config, f, default_flow_style=False, indent=2, sort_keys=False)


# ----------------------------------------------------------------------------- reading
def read_kvpress(directory: Path) -> list[KvpressRun]:
    """Every kvpress result directory under ``directory`` (itself included): those holding ``config.yaml``
    and ``metrics.json``. A malformed one is a ``ValueError`` naming its file."""
    import yaml

    runs = []
    for config_path in sorted(Path(directory).rglob(CONFIG_FILE)):
        run_dir = config_path.parent
        metrics_path = run_dir / METRICS_FILE
        if not metrics_path.is_file():
            continue
        try:
            config = yaml.safe_load(config_path.read_text()) or {}
            metrics = json.loads(metrics_path.read_text())
        except (yaml.YAMLError, json.JSONDecodeError) as err:
            raise ValueError(f"{run_dir}: not a kvpress result directory ({err})") from None
        missing = [k for k in ("dataset", "model", "press_name") if k not in config]
        if missing:
            raise ValueError(f"{config_path}: no {', '.join(missing)}: not a kvpress config.yaml")
        config.setdefault("compression_ratio", 0.0)
        runs.append(KvpressRun(run_dir, config, _scores(config, metrics, metrics_path), _cache_pct(run_dir)))
    return runs


def _cache_pct(run_dir: Path) -> float | None:
    path = run_dir / PREDICTIONS_FILE
    if not path.is_file():
        return None
    ratios = pd.read_csv(path, usecols=lambda c: c == "compression_ratio").get("compression_ratio")
    if ratios is None or ratios.dropna().empty:
        return None
    return 100 * (1 - float(ratios.dropna().mean()))


def _scores(config: dict[str, Any], metrics: Any, path: Path) -> dict[str, float]:
    """{namm-bench task: score x100} from a ``metrics.json``."""
    dataset, data_dir = str(config["dataset"]), config.get("data_dir")
    data_dir = None if data_dir is None else str(data_dir)
    if isinstance(metrics, (int, float)):
        return {namm_bench_task(dataset, data_dir, data_dir or dataset): float(metrics)}
    if not isinstance(metrics, dict):
        raise ValueError(f"{path}: expected a number or an object of scores, got {type(metrics).__name__}")
    scores = {}
    for task, value in metrics.items():
        if isinstance(value, dict):  # {metric: value}: the first number (RULER's string_match)
            value = next((v for v in value.values() if isinstance(v, (int, float))), None)
        if isinstance(value, (int, float)) and not math.isnan(value):
            scores[namm_bench_task(dataset, data_dir, str(task))] = float(value)
    return scores


def parse_answers(text: str) -> list[str]:
    """The answers of a ``predictions.csv`` cell written from a numpy array of strings (``['a' 'b']``)."""
    found = re.findall(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"", text)
    return [a or b for a, b in found] if found else [text]


# ----------------------------------------------------------------------------- reporting
def side_by_side(summary: pd.DataFrame, runs: list[KvpressRun]) -> str:
    """Markdown: per task (rows), namm-bench's score x100 per (policy, budget, protocol) (``report.summary_frame``)
    and each kvpress run's score as a column of its own, on the tasks both have; "" when they share none."""
    if summary.empty or not runs:
        return ""
    several = summary["protocol"].nunique() > 1
    keys = ["policy", "budget", "protocol"]
    cache = summary.groupby(keys, sort=False)["cache_pct"].transform("mean")  # a column's mean over its tasks
    labels = summary.assign(_cache=cache).apply(
        lambda r: " ".join(
            [str(r["policy"])]
            + ([str(r["budget"])] if r["budget"] != "none" else [])
            + ([str(r["protocol"])] if several else [])
            + [f"@{r['_cache']:.0f}%"]
        ),
        axis=1,
    )
    ours = summary.assign(column=labels).pivot_table(index="task", columns="column", values="score", aggfunc="first")
    ours = ours[list(dict.fromkeys(labels))]
    theirs = pd.DataFrame({run.label: pd.Series(run.scores, dtype=float) for run in runs})
    tasks = [t for t in ours.index if t in theirs.index]
    if not tasks:
        return ""
    table = pd.concat([ours.loc[tasks], theirs.loc[tasks]], axis=1)
    lines = ["| task | " + " | ".join(str(c) for c in table.columns) + " |", "|" + "---|" * (len(table.columns) + 1)]
    for task, values in table.iterrows():
        lines.append(f"| {task} | " + " | ".join("" if pd.isna(v) else f"{v:.1f}" for v in values) + " |")
    return "\n".join(lines)


def kvpress_section(summary: pd.DataFrame, directories: list[Path]) -> str:
    """The report's section of kvpress's own results beside namm-bench's, on the tasks both ran."""
    runs = [run for directory in directories for run in read_kvpress(directory)]
    if directories and not runs:
        raise ValueError(f"no kvpress results (config.yaml + metrics.json) under {', '.join(map(str, directories))}")
    table = side_by_side(summary, runs)
    if not table:
        return "\n## Beside kvpress's results\n\nNo task of these rows is among the kvpress runs'.\n" if runs else ""
    return (
        "\n## Beside kvpress's results\n\n"
        "Score x100 per task: namm-bench's rows (policy, budget) and, as columns of their own, the kvpress "
        "result directories read (press, compression ratio = 1 - kept fraction; their metrics.json as "
        "kvpress's scorer wrote it).\n\n" + table + "\n"
    )
