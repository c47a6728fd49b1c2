"""Memory policies, one file each, found by name."""

from __future__ import annotations

from ..budget import Budget
from .base import MemoryPolicy
from .full import FullCache
from .h2o import H2O
from .l2 import L2Norm
from .namm import NAMM

POLICIES: dict[str, type[MemoryPolicy]] = {"full": FullCache, "h2o": H2O, "l2": L2Norm, "namm": NAMM}
BUDGETED = frozenset({"h2o", "l2"})
"""Policies that take a budget; the others have none (full) or an emergent one (namm)."""

__all__ = ["BUDGETED", "FullCache", "H2O", "L2Norm", "MemoryPolicy", "NAMM", "POLICIES", "make_policy"]


def make_policy(name: str, budget: Budget | None = None, **options) -> MemoryPolicy:
    """Build the policy registered as ``name``; budgeted policies need a ``budget``."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; known policies: {', '.join(POLICIES)}")
    if name in BUDGETED:
        if budget is None:
            raise ValueError(f"policy {name!r} needs a budget (a ratio such as 0.25 or a token count)")
        return POLICIES[name](budget=budget, **options)
    return POLICIES[name](**options)
