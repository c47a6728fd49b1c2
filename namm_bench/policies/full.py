"""Full cache: the reference every other policy is compared with."""

from __future__ import annotations

from dataclasses import dataclass

from .base import MemoryPolicy


@dataclass
class FullCache(MemoryPolicy):
    """Keep every KV-cache entry (no eviction)."""

    name = "full"
