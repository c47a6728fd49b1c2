"""Content hashes that tie a result row to the model files and the example it ran on.

Row keys name settings, not content: a model replaced at the same path, or an example generated
from another seed under the same id, would otherwise pass as the row already there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .files import cache_dir, write_atomic

MODEL_FILES = ("config.json", "*.safetensors", "*.bin", "*.pt", "*.gguf")


def model_fingerprint(directory: Path | None) -> str | None:
    """sha256 over a local model's config and weight files; None for a hub model (no directory).

    Hashing an 8B model's 16 GB takes a minute, so the digest is cached in the user cache with
    each file's size and modification time, and recomputed when any of them changes.
    """
    if directory is None:
        return None
    directory = Path(directory).resolve()
    files = sorted({p for pattern in MODEL_FILES for p in directory.rglob(pattern) if p.is_file()})
    stamp = [[p.relative_to(directory).as_posix(), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    store = cache_dir() / "model-fingerprints.json"
    try:
        known = json.loads(store.read_text())
    except (OSError, ValueError):
        known = {}
    entry = known.get(str(directory)) if isinstance(known, dict) else None
    if isinstance(entry, dict) and entry.get("files") == stamp:
        return entry["sha256"]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(directory).as_posix().encode())
        with open(path, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    sha = digest.hexdigest()
    known = known if isinstance(known, dict) else {}
    known[str(directory)] = {"files": stamp, "sha256": sha}
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(store, json.dumps(known))
    except OSError:  # a read-only cache only costs the next run another hash
        pass
    return sha


LATER_FIELDS = {"answer_prefix": ""}
"""Example fields added after results were committed, with their defaults: they count only when set,
so the rows written before them keep their fingerprints."""


def example_fingerprint(example: Any) -> str:
    """First 16 hex digits of the sha256 of an example's content (its data fields, not callables).

    A generated video's frames come from its seed, which is a field; a video file is named by its
    path, with its size and modification time.
    """
    fields = {}
    for f in dataclasses.fields(example):
        value = getattr(example, f.name)
        if callable(value) or (f.name in LATER_FIELDS and value == LATER_FIELDS[f.name]):
            continue
        fields[f.name] = value
    video = fields.get("video")
    if isinstance(video, str) and os.path.isfile(video):
        stat = os.stat(video)
        fields["video_file"] = [stat.st_size, stat.st_mtime_ns]
    blob = json.dumps(fields, sort_keys=True, default=repr, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
