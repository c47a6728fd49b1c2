"""Benchmark suites, found by name (installed as ``namm_bench.suites``)."""

from __future__ import annotations

from .base import Suite, TextExample, TokenCounter

__all__ = ["SUITES", "Suite", "TextExample", "TokenCounter", "get_suite"]


def _synthetic() -> Suite:
    from .synthetic import SyntheticSuite

    return SyntheticSuite()


SUITES = {"synthetic": _synthetic}


def get_suite(name: str) -> Suite:
    """Build the suite registered as ``name``; unknown names get one clear error."""
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; known suites: {', '.join(sorted(SUITES))}")
    return SUITES[name]()
