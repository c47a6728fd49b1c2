"""Benchmark suites, found by name (installed as ``namm_bench.suites``)."""

from __future__ import annotations

from .base import DataError, Suite, TextExample, TokenCounter

__all__ = ["SUITES", "DataError", "Suite", "TextExample", "TokenCounter", "get_suite"]


def _synthetic(data_dir: str | None = None) -> Suite:
    from .synthetic import SyntheticSuite

    if data_dir is not None:
        raise ValueError("suite synthetic generates its examples: --data-dir does not apply")
    return SyntheticSuite()


def _longbench(data_dir: str | None = None) -> Suite:
    from .longbench import LongBenchSuite

    return LongBenchSuite(data_dir)


def _infinitebench(data_dir: str | None = None) -> Suite:
    from .infinitebench import InfiniteBenchSuite

    return InfiniteBenchSuite(data_dir)


def _lost_in_the_middle(data_dir: str | None = None) -> Suite:
    from .lost_in_the_middle import LostInTheMiddleSuite

    return LostInTheMiddleSuite(data_dir)


def _choubun(data_dir: str | None = None) -> Suite:
    from .choubun import ChouBunSuite

    return ChouBunSuite(data_dir)


def _rl(data_dir: str | None = None):
    from .rl import RlSuite

    if data_dir is not None:
        raise ValueError("suite rl runs trained agents: pass them with --model DIR (--data-dir does not apply)")
    return RlSuite()


def _video(data_dir: str | None = None):
    from .video import VideoSuite

    return VideoSuite(data_dir)


SUITES = {
    "synthetic": _synthetic,
    "longbench": _longbench,
    "infinitebench": _infinitebench,
    "lost_in_the_middle": _lost_in_the_middle,
    "choubun": _choubun,
    "rl": _rl,
    "video": _video,
}
"""Suite name -> factory(data_dir); imports stay lazy so the CLI starts fast."""


def get_suite(name: str, data_dir: str | None = None) -> Suite:
    """Build the suite registered as ``name`` (reading ``data_dir`` where it has data files)."""
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; known suites: {', '.join(sorted(SUITES))}")
    return SUITES[name](data_dir)
