"""Resumable training run directories, shared by the trainers (Decision Transformer, video model).

A run directory holds ``config.json`` (what was asked), ``state.pt`` (everything needed to go on,
replaced atomically at each checkpoint) and ``log.jsonl`` (one row per logged step).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .files import write_atomic


@dataclass(frozen=True)
class RunFiles:
    config: Path
    state: Path
    log: Path


def check_run(out: Path, config: dict[str, Any], resume: bool) -> RunFiles:
    """The files of run ``out``, checked: on resume, a state exists and was started with ``config``;
    otherwise, no run is there yet."""
    out = Path(out)
    files = RunFiles(out / "config.json", out / "state.pt", out / "log.jsonl")
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
    """Drop the log rows after ``step``, the checkpoint a resumed run goes on from (those steps run again)."""
    rows = [r for r in files.log.read_text().splitlines() if r and json.loads(r)["step"] <= step]
    write_atomic(files.log, "".join(r + "\n" for r in rows))


def save_state(files: RunFiles, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    write_atomic(files.state, buf.getvalue())
