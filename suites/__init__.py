"""Benchmark suites, one module each (installed as ``namm_bench.suites``).

Each suite class is registered as an entry point of group ``namm_bench.suites`` in
``pyproject.toml``; the core finds it through ``namm_bench.registry.SUITES`` and never imports
this package.
"""

from __future__ import annotations

from namm_bench.interfaces import DataError, Suite, TextExample, TokenCounter
from namm_bench.models import make_suite

__all__ = ["DataError", "Suite", "TextExample", "TokenCounter", "get_suite"]


def get_suite(name: str, data_dir: str | None = None) -> Suite:
    """Build the suite registered as ``name`` (kept for code written before the registries)."""
    return make_suite(name, data_dir)
