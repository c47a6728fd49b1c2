"""Crash-safe, resumable store for ``DIR/results.jsonl``: one JSON object per line, one row per key.

A run appends each finished row with a single write followed by ``fsync``, so a SIGKILL can at
most leave one partial last line. On resume that torn line is dropped (with a warning) before the
first append; anything else that does not parse is treated as a corrupt file and left untouched.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: one writer per file
    fcntl = None

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.jsonl"

KEY_FIELDS: tuple[str, ...] = (
    "model",
    "suite",
    "task",
    "example_id",
    "policy",
    "budget",
    "protocol",
    "long_inputs",
    # every setting that changes a result, so a rerun with another one computes new rows
    "chunk_size",
    "interval",
    "prompt_end_call",
    "seed",
    "preset",
    "dtype",
    "rope_scaling",
    "max_context",
    "model_sha256",
    "example_hash",
)
"""Fields that identify a row; a results file holds at most one row per key."""
KEY_DEFAULTS: dict[str, Any] = {
    "long_inputs": "truncate",
    "chunk_size": 128,
    "interval": 512,
    "prompt_end_call": True,
    "seed": 0,
    "preset": "default",
    "dtype": "float32",
    "rope_scaling": None,
    "max_context": None,
    "model_sha256": None,
    "example_hash": None,
}
"""Key fields added later, and the value rows written before them have (hashes: unknown)."""
CONTENT_HASHES: tuple[str, ...] = ("model_sha256", "example_hash")
"""Key fields that hash content; a row written before they were kept (None) matches any value."""

RowKey = tuple[Any, ...]


class ResultsFileError(ValueError):
    """A results file is corrupt: an unparseable line, a row without key fields, or a duplicate key."""


def row_key(row: dict[str, Any]) -> RowKey:
    """Return the key of ``row``: the values of :data:`KEY_FIELDS` (defaults for older rows).

    Parameters
    ----------
    row
        A result row.

    Returns
    -------
    tuple
        The values of :data:`KEY_FIELDS`, in that order.

    Raises
    ------
    ValueError
        If a key field is missing or its value is not a JSON scalar (so not hashable).
    """
    missing = [name for name in KEY_FIELDS if name not in row and name not in KEY_DEFAULTS]
    if missing:
        raise ValueError(f"row is missing key field(s) {', '.join(missing)}")
    key = tuple(row.get(name, KEY_DEFAULTS.get(name)) for name in KEY_FIELDS)
    for name, value in zip(KEY_FIELDS, key, strict=True):
        if value is not None and not isinstance(value, str | int | float | bool):
            raise ValueError(f"key field {name!r} must be a string or number, got {type(value).__name__}")
    return key


def legacy_key(key: RowKey) -> RowKey:
    """``key`` with its content hashes unknown: the key a row written before hashes were kept has."""
    hashed = {KEY_FIELDS.index(name) for name in CONTENT_HASHES}
    return tuple(None if i in hashed else value for i, value in enumerate(key))


@dataclass
class _Scan:
    """What reading the file found, and how to repair its tail before appending."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    keys: set[RowKey] = field(default_factory=set)
    truncate_at: int | None = None  # byte offset to cut a torn last line back to
    needs_newline: bool = False  # last line is a complete row that lacks its newline


class ResultsStore:
    """Rows of ``out_dir/results.jsonl``, with crash-safe appends for resumable runs.

    Reads never modify the file (a report may read while a run is writing); the torn last line a
    crash can leave is dropped only when a store appends. Processes may share the file: each
    append holds an exclusive lock (``fcntl.flock`` on ``.results.jsonl.lock``) around reading
    what others appended, checking the key and writing, so a row another process wrote meanwhile
    is not written again.

    Parameters
    ----------
    out_dir
        Run output directory; created if missing.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.out_dir / RESULTS_FILE
        # Keys known to be in the file and the file's size when they were read (under the lock).
        self._keys: set[RowKey] | None = None
        self._size = -1
        # Keys the caller has seen (its last read, or the first append's): appending one is an error.
        self._seen: set[RowKey] | None = None

    def done_keys(self) -> set[RowKey]:
        """Return the keys of all rows in the file (see :func:`row_key`).

        Raises
        ------
        ResultsFileError
            If the file is corrupt.
        """
        scan = self._scan()
        self._seen = set(scan.keys)
        return scan.keys

    def rows(self) -> list[dict[str, Any]]:
        """Return all rows in file order, without a torn last line.

        Raises
        ------
        ResultsFileError
            If the file is corrupt.
        """
        scan = self._scan()
        self._seen = set(scan.keys)
        return scan.rows

    def append(self, row: dict[str, Any]) -> bool:
        """Append ``row`` as one line, durably (single write, flush, ``fsync``).

        Parameters
        ----------
        row
            A JSON-serialisable result row with all :data:`KEY_FIELDS`.

        Returns
        -------
        bool
            False when another process sharing the file wrote a row with this key meanwhile
            (nothing is written), True otherwise.

        Raises
        ------
        ValueError
            If the row's key was in the file when the caller last read it (``rows``,
            ``done_keys``, or this store's first append) or was appended by it, or a key field is
            missing.
        ResultsFileError
            If the existing file is corrupt.
        """
        key = row_key(row)
        with self._lock():
            size = self.path.stat().st_size if self.path.exists() else 0
            if self._keys is None or size != self._size:  # the first append, or another process wrote since
                scan = self._scan()
                self._repair(scan)
                self._keys = scan.keys
                if self._seen is None:
                    self._seen = set(scan.keys)
            if key in self._seen:
                raise ValueError(f"{self.path}: a row with key {key} is already present")
            if key in self._keys:
                logger.info("%s: another process wrote the row %s meanwhile; not written again", self.path, key)
                self._size = self.path.stat().st_size
                return False
            # ensure_ascii=False leaves U+2028 and friends unescaped; lines are split on b"\n" only.
            data = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
            created = not self.path.exists()
            with open(self.path, "ab") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if created:
                _fsync_dir(self.out_dir)
            self._keys.add(key)
            self._seen.add(key)
            self._size = self.path.stat().st_size
        return True

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """Hold the results file's lock (exclusive between processes; a no-op where ``fcntl`` is missing)."""
        if fcntl is None:
            yield
            return
        with open(self.out_dir / f".{RESULTS_FILE}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _scan(self) -> _Scan:
        """Parse the file, validating every complete line and classifying an unterminated tail."""
        scan = _Scan()
        if not self.path.exists():
            return scan
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        # After the final newline comes either b"" or an unterminated (possibly torn) last line.
        tail = lines.pop()
        first_line_of_key: dict[RowKey, int] = {}

        def add(row: dict[str, Any], lineno: int) -> None:
            try:
                key = row_key(row)
            except ValueError as err:
                raise ResultsFileError(f"{self.path}, line {lineno}: corrupt results file: {err}") from None
            if key in first_line_of_key:
                raise ResultsFileError(
                    f"{self.path}, line {lineno}: corrupt results file: duplicate key {key} "
                    f"(first on line {first_line_of_key[key]})"
                )
            first_line_of_key[key] = lineno
            scan.rows.append(row)
            scan.keys.add(key)

        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            row = _parse(line)
            if row is None:
                raise ResultsFileError(f"{self.path}, line {lineno}: corrupt results file: line is not a JSON object")
            add(row, lineno)

        if tail.strip():
            lineno = len(lines) + 1
            row = _parse(tail)
            if row is None:
                logger.warning(
                    "%s, line %d: last line is incomplete (%d bytes, no newline), probably from an "
                    "interrupted run; ignoring it, and it will be dropped before the next append",
                    self.path,
                    lineno,
                    len(tail),
                )
                scan.truncate_at = len(data) - len(tail)
            else:
                # A JSON object cannot parse until its closing brace, so this row is whole.
                add(row, lineno)
                scan.needs_newline = True
        return scan

    def _repair(self, scan: _Scan) -> None:
        """Make the file end at a line boundary so the next append starts a fresh line."""
        if scan.truncate_at is not None:
            logger.warning("%s: dropping the incomplete last line before appending", self.path)
            with open(self.path, "r+b") as f:
                f.truncate(scan.truncate_at)
                f.flush()
                os.fsync(f.fileno())
        elif scan.needs_newline:
            with open(self.path, "ab") as f:
                f.write(b"\n")
                f.flush()
                os.fsync(f.fileno())


def _parse(line: bytes) -> dict[str, Any] | None:
    """Return the JSON object on ``line``, or ``None`` if it is not one (bad UTF-8 included)."""
    try:
        value = json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        return None
    return value if isinstance(value, dict) else None


def _fsync_dir(path: Path) -> None:
    """Persist a new directory entry; best effort, since not every platform can fsync a directory."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


SETTING_FIELDS: tuple[str, ...] = (
    "preset",
    "chunk_size",
    "interval",
    "prompt_end_call",
    "dtype",
    "rope_scaling",
    "max_context",
    "model_sha256",
)
"""Key fields that are run settings: rows that differ in one are reported apart."""


def label_settings(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows whose settings differ within the file get them in their ``protocol``, so each
    combination is a section of its own (and is normalised by the full cache run with it).

    A file run with one combination, the usual case, is returned as it is.
    """

    def value(row: dict[str, Any], name: str) -> Any:
        return row.get(name, KEY_DEFAULTS.get(name))

    def differs(name: str) -> bool:
        """Whether one suite's rows of one model differ in ``name`` (models differ in their files)."""
        groups: dict[tuple, set] = {}
        for r in rows:
            groups.setdefault((r.get("suite"), r.get("model")), set()).add(value(r, name))
        # a row written before model hashes were kept (None) is taken to be of the same model
        return any(len(v - {None} if name == "model_sha256" else v) > 1 for v in groups.values())

    varying = [name for name in SETTING_FIELDS if differs(name)]
    if not varying:
        return rows

    def label(row: dict[str, Any]) -> str:
        parts = []
        for name in varying:
            v = value(row, name)
            parts.append(f"model {(v or 'unknown')[:8]}" if name == "model_sha256" else f"{name.replace('_', ' ')} {v}")
        return f"{row['protocol']}; {', '.join(parts)}"

    return [{**r, "protocol": label(r)} for r in rows]
