"""Crash-safe file writes shared by reports, checkpoints and evolution runs."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    """namm-bench's user cache: ``$NAMM_BENCH_CACHE``, else ``$XDG_CACHE_HOME/namm-bench`` (``~/.cache``)."""
    if os.environ.get("NAMM_BENCH_CACHE"):
        return Path(os.environ["NAMM_BENCH_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "namm-bench"


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``path`` through a synced temp file in the same directory, then ``os.replace`` it.

    A reader sees the old file or the new one, never a torn one; text is written as UTF-8.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp makes it owner-only; results are meant to be shared
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def refuse_overwrite(directory: Path, names: tuple[str, ...], what: str, force: bool) -> None:
    """Raise ``ValueError`` when ``directory`` already holds any of ``names`` and ``force`` is off."""
    existing = [name for name in names if (Path(directory) / name).exists()]
    if existing and not force:
        raise ValueError(f"{directory} already holds {what} ({', '.join(existing)}): pass --force to replace it")


def write_figure(fig, path: Path) -> None:
    """Save a matplotlib figure as a PNG through ``write_atomic``, then close it."""
    import matplotlib.pyplot as plt

    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    write_atomic(path, png.getvalue())
