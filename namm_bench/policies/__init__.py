"""Memory policies, one file each, found by name in ``namm_bench.registry.POLICIES``.

Each is an entry point of group ``namm_bench.policies`` (namm-bench's own in its
``pyproject.toml``): a ``MemoryPolicy`` subclass that sets ``takes_budget`` if it is built with a
``budget``.
"""

from __future__ import annotations

from ..budget import Budget
from ..registry import POLICIES
from .base import MemoryPolicy
from .full import FullCache
from .h2o import H2O
from .l2 import L2Norm
from .namm import NAMM
from .scorer import ScorerPolicy

__all__ = ["FullCache", "H2O", "L2Norm", "MemoryPolicy", "NAMM", "POLICIES", "ScorerPolicy", "make_policy"]


def policy_class(name: str) -> type[MemoryPolicy]:
    """The class registered as ``name``, checked to be a ``MemoryPolicy``.

    ``WRAPPER:INNER`` names a policy that wraps another (``adakv:snapkv``): the wrapper's class
    over ``INNER``'s; a wrapper named alone wraps its default (``scorer_name``).
    """
    base, _, inner = name.partition(":")
    cls = POLICIES.get(base)
    if not (isinstance(cls, type) and issubclass(cls, MemoryPolicy)):
        raise ValueError(f"policy {base!r} is registered as {cls!r}, which is not a MemoryPolicy subclass")
    if hasattr(cls, "wrapping"):
        return cls.wrapping(policy_class(inner or cls.scorer_name))
    if inner:
        raise ValueError(f"policy {base!r} wraps no other policy, so {name!r} means nothing")
    return cls


def make_policy(name: str, budget: Budget | None = None, **options) -> MemoryPolicy:
    """Build the policy registered as ``name``; policies that take a budget need one."""
    cls = policy_class(name)
    if cls.takes_budget:
        if budget is None:
            raise ValueError(f"policy {name!r} needs a budget (a ratio such as 0.25 or a token count)")
        return cls(budget=budget, **options)
    return cls(**options)
