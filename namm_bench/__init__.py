"""namm-bench: benchmark learned KV-cache memory (NAMMs) against full cache, H2O and L2.

The core (this package) is torch only: memory policies, the NAMM, and the memory controller
that attaches them to any Hugging Face model on the ``Cache`` API through forward hooks.

The stable Python API, on a model of your own::

    from namm_bench import memory
    with memory(model, "snapkv", budget=0.25, protocol="post-prefill") as m:
        out = model.generate(**inputs, max_new_tokens=32)
    print(m.cache_fraction)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# Stable names, imported on first use so that `import namm_bench` stays cheap.
_EXPORTS = {
    "memory": "hf_memory",
    "Memory": "hf_memory",
    "Budget": "budget",
    "ControllerConfig": "controller",
    "CacheStats": "controller",
    "MemoryPolicy": "policies.base",
    "make_policy": "policies",
    "load_checkpoint": "namm.checkpoint",
    "load_shipped": "namm.checkpoint",
    "POLICIES": "registry",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'namm_bench' has no attribute {name!r}")
