"""Resumable training run directories, shared by the trainers (Decision Transformer, video model).

A run directory holds ``config.json`` (what was asked), ``state.pt`` (everything needed to go on,
replaced atomically at each checkpoint) and ``log.jsonl`` (one row per logged step).
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .files import write_atomic

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunFiles:
    config: Path
    state: Path
    log: Path


def run_files(out: Path) -> RunFiles:
    """The files of run directory ``out``."""
    out = Path(out)
    return RunFiles(out / "config.json", out / "state.pt", out / "log.jsonl")


def check_run(out: Path, config: dict[str, Any], resume: bool) -> RunFiles:
    """The files of run ``out``, checked: on resume, a state exists and was started with ``config``;
    otherwise, no run is there yet."""
    files = run_files(out)
    if resume:
        if not files.state.is_file():
            raise ValueError(f"nothing to resume in {out}: no state.pt")
        saved = json.loads(files.config.read_text())
        if saved != config:
            diff = {k: (saved.get(k), v) for k, v in config.items() if saved.get(k) != v}
            raise ValueError(f"{out} was started with another config (saved, asked): {diff}")
    elif files.config.exists():
        raise ValueError(f"{out} already holds a training run: pass --resume to continue it, or another --out")
    return files


def start_run(files: RunFiles, config: dict[str, Any]) -> None:
    """Create the run directory with its config and an empty log."""
    files.config.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(files.config, json.dumps(config, indent=2) + "\n")
    write_atomic(files.log, "")


def rewind_log(files: RunFiles, step: int) -> None:
    """Drop the log rows after ``step``, the checkpoint a resumed run goes on from (those steps run again).

    A last line cut by a kill mid-write is dropped too, as ``results.jsonl``'s is; an unreadable
    line before it means the log is corrupt, and is one error naming the line.
    """
    lines = [line for line in files.log.read_text(errors="replace").splitlines() if line.strip()]
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                raise ValueError("not a log row with a step")
        except ValueError as err:
            if number == len(lines):
                logger.warning("%s: dropping its torn last line (%s)", files.log, err)
                break
            raise ValueError(f"{files.log}, line {number}: corrupt training log ({err})") from None
        rows.append(row)
    write_atomic(files.log, "".join(json.dumps(r) + "\n" for r in rows if r["step"] <= step))


def load_state(files: RunFiles, keys: tuple[str, ...], what: str) -> dict[str, Any]:
    """The run's ``state.pt``, or one clear error when it is unreadable or another tool's.

    Read with ``weights_only=True``: the trainers' states hold tensors, numbers, lists and dicts
    only, so a foreign pickle that would run code is refused instead of executed.
    """
    try:
        state = torch.load(files.state, map_location="cpu", weights_only=True)
    except Exception as err:  # torch explains at length; its first line says what went wrong
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"{files.state} is not a readable {what} training state (corrupt or foreign): {first}"
        ) from None
    missing = [k for k in keys if k not in state] if isinstance(state, dict) else list(keys)
    if missing:
        raise ValueError(f"{files.state} is not a {what} training state: it has no {', '.join(missing)}")
    return state


def save_state(files: RunFiles, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    write_atomic(files.state, buf.getvalue())
