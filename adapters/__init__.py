"""Model adapters, one module per model family (installed as ``namm_bench.adapters``).

Each adapter class is registered as an entry point of group ``namm_bench.adapters`` in
``pyproject.toml`` and declares the ``config.model_type`` values it serves; the core finds it
through ``namm_bench.registry.ADAPTERS`` and never imports this package.
"""

from __future__ import annotations

from typing import Any

from namm_bench.models import is_hub_id, make_adapter

__all__ = ["get_adapter", "is_hub_id"]


def get_adapter(name: str, model: str | None = None, **kwargs: Any):
    """Build the adapter registered as ``name`` (kept for code written before the registries)."""
    return make_adapter(name, model, **kwargs)
