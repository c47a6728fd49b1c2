"""``namm-bench paper``: the paper's experiments from one configuration file and one NAMM.

The configuration (``configs/paper.toml``) lists tables, each one ``namm-bench run`` of a suite
(tasks, policies, budgets, protocol, examples, seeds), and the paper's claims, each decided from
a table's rows (``namm_bench.claims``). Every table runs into ``OUT/<table>/results.jsonl``
with the same NAMM checkpoint (the run loop refuses NAMM rows of another one), so a rerun skips
finished rows; then each table gets its report and ``OUT`` gets ``claims.md``, ``claims.csv``
and ``README.md`` (the index). A table whose data directory is absent is left out and said so;
its claims are "not measured".
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from .budget import parse_budget
from .claims import Claim, Verdict, check, ledger_csv, ledger_markdown
from .files import write_atomic
from .presets import resolve_preset
from .results import RESULTS_FILE, ResultsStore
from .typed import check_field_types

logger = logging.getLogger(__name__)

_TABLE_KEYS = {
    "name", "title", "suite", "tasks", "policies", "budgets", "protocol", "limit", "seeds", "model",
    "data_dir", "long_inputs", "chunk_size", "interval", "max_context",
}  # fmt: skip


@dataclass(frozen=True)
class Table:
    """One table of the paper: a suite run under several policies."""

    name: str
    title: str
    suite: str
    tasks: list[str] | None = None
    policies: list[str] = field(default_factory=lambda: ["full", "namm", "h2o", "l2"])
    budgets: list[str] = field(default_factory=lambda: ["match"])
    protocol: str = "streaming"
    limit: int | None = None
    seeds: list[int] = field(default_factory=lambda: [0])
    model: str | None = None
    data_dir: str | None = None
    long_inputs: str = "truncate"
    chunk_size: int | None = None
    interval: int | None = None
    max_context: int | None = None


@dataclass(frozen=True)
class PaperConfig:
    tables: list[Table]
    claims: list[Claim]
    preset: str = "default"
    namm_checkpoint: str | None = None


def load_paper_config(path: str | Path) -> PaperConfig:
    """Read and check a paper configuration (see ``configs/paper.toml``).

    Raises
    ------
    ValueError
        On a missing file, bad TOML, an unknown key, a duplicate table or a claim on no table.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such paper configuration (the project's is configs/paper.toml)") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML: {err}") from None
    unknown = set(raw) - {"tables", "claims", "preset", "namm_checkpoint"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    tables = []
    for i, entry in enumerate(raw.get("tables", [])):
        bad = set(entry) - _TABLE_KEYS
        if bad or not {"name", "suite"} <= set(entry):
            what = f"unknown keys {sorted(bad)}" if bad else "needs name and suite"
            raise ValueError(f"{path}: table {entry.get('name', i)!r}: {what}")
        values = {k: v for k, v in entry.items() if v != "" or k == "name"}  # "" = the default (embedded model)
        where = f"{path}: table {entry['name']!r}"
        try:
            check_field_types(Table, values, where)
        except TypeError as err:
            raise ValueError(str(err)) from None
        lists = {
            "tasks": (str, "names"),
            "policies": (str, "names"),
            "budgets": (str, "names"),
            "seeds": (int, "integers"),
        }
        for key, (kind, what) in lists.items():
            value = values.get(key)
            if key in values and not (isinstance(value, list) and value and all(isinstance(v, kind) for v in value)):
                raise ValueError(f"{where}: {key} must be a list of {what}, got {value!r}")
        if not values["name"]:
            raise ValueError(f"{path}: a table has an empty name")
        table = Table(**{"title": entry["name"], **values})
        try:
            resolve_preset(raw.get("preset", "default"), chunk_size=table.chunk_size, interval=table.interval)
        except ValueError as err:
            raise ValueError(f"{where}: its settings conflict with preset {raw.get('preset')!r}: {err}") from None
        tables.append(table)
    names = [t.name for t in tables]
    if not tables or len(set(names)) != len(names):
        raise ValueError(f"{path}: needs [[tables]] with distinct names, got {names}")
    try:
        claims = [Claim.from_dict(c) for c in raw.get("claims", [])]
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None
    for claim in claims:
        if claim.table not in names:
            raise ValueError(f"{path}: claim {claim.id!r} is on table {claim.table!r}, not one of {names}")
    return PaperConfig(tables, claims, raw.get("preset", "default"), raw.get("namm_checkpoint") or None)


def _spec(table: Table, seed: int, out: Path, config: PaperConfig, device: str, limit: int | None):
    from .runner import RunSpec

    preset = resolve_preset(config.preset, chunk_size=table.chunk_size, interval=table.interval, prompt_end_call=None)
    return RunSpec(
        suite=table.suite,
        out=out,
        model=table.model,
        policies=table.policies,
        budgets=[parse_budget(b) for b in table.budgets],
        controller=preset.controller(table.protocol),
        preset=config.preset,
        chat=preset.chat,
        tasks=table.tasks,
        limit=limit if limit is not None else table.limit,
        seed=seed,
        namm_checkpoint=config.namm_checkpoint,
        device=device,
        data_dir=table.data_dir,
        long_inputs=table.long_inputs,
        max_context=table.max_context,
    )


def run_paper(
    config_path: str | Path,
    out: Path,
    *,
    device: str = "cpu",
    limit: int | None = None,
    only: list[str] | None = None,
    report_only: bool = False,
) -> tuple[Path, list[str]]:
    """Run every table of the configuration (or those named in ``only``), then write the reports.

    A table that fails (bad data, a model that will not load) is reported and the others still
    run. Returns the output directory and one line per failed table.

    Parameters
    ----------
    limit
        Examples per task for every table, instead of each table's own ``limit``.
    report_only
        Write the reports and the ledger from the rows already in ``out`` (no model runs).
    """
    from .report import write_report

    config = load_paper_config(config_path)
    unknown = sorted(set(only or []) - {t.name for t in config.tables})
    if unknown:
        raise ValueError(f"--tables: no table {unknown} in {config_path}; it has {[t.name for t in config.tables]}")
    # Tables without data, chosen or not (the index and ledger cover every table): claims not measured
    skipped = {
        t.name: f"not run: its data directory {t.data_dir} is absent"
        for t in config.tables
        if t.data_dir is not None and not Path(t.data_dir).is_dir()
    }
    failed: dict[str, str] = {}  # tables that failed: their claims say so
    for table in config.tables:
        if only and table.name not in only:
            continue
        if table.name in skipped:
            logger.warning("%s: %s", table.name, skipped[table.name])
            continue
        if report_only:
            continue
        from .runner import run_suite

        try:
            for seed in table.seeds:
                logger.info("paper: table %s, seed %d", table.name, seed)
                run_suite(_spec(table, seed, out / table.name, config, device, limit))
        except Exception as err:  # noqa: BLE001 - the other tables still run; this one's rows so far are kept
            failed[table.name] = f"failed ({type(err).__name__}): {err}"
            logger.error("%s: %s", table.name, failed[table.name])
    rows: dict[str, list[dict[str, Any]]] = {}
    for table in config.tables:
        if (out / table.name / RESULTS_FILE).exists():
            rows[table.name] = ResultsStore(out / table.name).rows()
            if rows[table.name]:
                write_report(out / table.name)
    verdicts = []
    for claim in config.claims:
        verdict = check(claim, [] if claim.table in skipped else rows.get(claim.table, []))
        if claim.table in failed:
            verdict = dataclasses.replace(verdict, why="; ".join(filter(None, ["its table failed", verdict.why])))
        verdicts.append(verdict)
    write_atomic(out / "claims.csv", ledger_csv(verdicts))
    write_atomic(out / "claims.md", "# Claims ledger\n\n" + _ledger_intro() + ledger_markdown(verdicts))
    write_atomic(out / "README.md", _index(config, rows, {**skipped, **failed}, verdicts, config_path))
    return out, [f"{name}: {why}" for name, why in failed.items()]


def _shown(path: str | Path) -> str:
    """``path`` relative to the current directory when it lies inside it (tox passes absolute paths)."""
    path = Path(path).resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def _ledger_intro() -> str:
    return (
        "Each claim's margin is the difference of normalised scores (x100 of the full cache on the\n"
        "same examples, mean over tasks) with a paired bootstrap 95% interval over examples\n"
        "(`namm_bench.bootstrap`). A claim holds when the interval is above its margin (and the cache\n"
        "is below its bound where the claim is about a smaller cache). Written by `namm-bench paper`\n"
        "from the rows beside it; never edited by hand.\n\n"
    )


def _index(
    config: PaperConfig,
    rows: dict[str, list[dict[str, Any]]],
    skipped: dict[str, str],
    verdicts: list[Verdict],
    config_path: str | Path,
) -> str:
    lines = [
        "# The paper's tables",
        "",
        f"Written by `namm-bench paper {_shown(config_path)}`; each table's rows, report and plots are in its",
        "directory. Rerunning the command skips the rows already there.",
        "",
        "| table | suite | tasks | examples | NAMM checkpoint | report |",
        "|---|---|---|---|---|---|",
    ]
    for table in config.tables:
        table_rows = rows.get(table.name, [])
        if not table_rows or table.name in skipped:
            why = skipped.get(table.name, "not run yet")
            lines.append(f"| {table.title} | {table.suite} | {', '.join(table.tasks or ['(default)'])} | {why} | | |")
            continue
        tasks = sorted({r["task"] for r in table_rows})
        examples = len({(r["task"], r["example_id"], r.get("seed")) for r in table_rows})
        lines.append(
            f"| {table.title} | {table.suite} | {', '.join(tasks)} | {examples} | {_checkpoints(table_rows)} "
            f"| [report]({table.name}/report.md) |"
        )
    lines += ["", "## Claims", "", _ledger_intro() + ledger_markdown(verdicts)]
    return "\n".join(lines)


@cache
def _shipped_provenance() -> str:
    from .namm.checkpoint import SHIPPED as SHIPPED_NAMM

    return json.dumps(json.loads((SHIPPED_NAMM / "namm.json").read_text()).get("provenance"), sort_keys=True)


def namm_label(provenance: dict[str, Any] | None) -> str:
    """Name a NAMM by its provenance: ``shipped`` when it is the package's own checkpoint's."""
    if json.dumps(provenance, sort_keys=True) == _shipped_provenance():
        return "shipped (namm-smollm2)"
    provenance = provenance or {}
    return f"{'+'.join(provenance.get('tasks', ['?']))}, {provenance.get('generations', '?')} generations"


def _checkpoints(rows: list[dict[str, Any]]) -> str:
    """The NAMM checkpoint(s) behind a table's rows (one, since the run loop refuses a second)."""
    labels = {namm_label((r.get("policy_config") or {}).get("provenance")) for r in rows if r["policy"] == "namm"}
    return "; ".join(sorted(labels)) or "(no NAMM rows)"
