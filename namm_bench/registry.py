"""Registries: policies, adapters and suites found by name through entry points.

namm-bench's own adapters and suites are registered as entry points in its ``pyproject.toml``
(groups ``namm_bench.policies``, ``namm_bench.adapters``, ``namm_bench.suites`` and
``namm_bench.commands``), the same way an outside package adds one, so the core never imports
them. An entry point is loaded only when its name is asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

POLICY_GROUP = "namm_bench.policies"
ADAPTER_GROUP = "namm_bench.adapters"
SUITE_GROUP = "namm_bench.suites"
COMMAND_GROUP = "namm_bench.commands"


class Registry(Generic[T]):
    """Name -> object (a class or factory), from the entry points of ``group``.

    Parameters
    ----------
    kind
        What the registry holds, for messages ("policy", "adapter", ...).
    group
        Entry-point group, read on first use; each entry point is loaded when its name is asked for.
    """

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._loaded: dict[str, T] = {}
        self._entry_points: dict[str, EntryPoint] | None = None

    def _points(self) -> dict[str, EntryPoint]:
        if self._entry_points is None:
            found: dict[str, EntryPoint] = {}
            for point in entry_points(group=self.group):
                other = found.get(point.name)
                if other is not None and other.value != point.value:
                    raise ValueError(
                        f"two packages register the {self.kind} {point.name!r}: {other.value} and {point.value}"
                    )
                found[point.name] = point
            self._entry_points = found
        return self._entry_points

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._points())

    def __contains__(self, name: object) -> bool:
        return name in self._points()

    def get(self, name: str) -> T:
        """The object registered as ``name``; an unknown name is a ``ValueError`` listing the known ones."""
        if name in self._loaded:
            return self._loaded[name]
        point = self._points().get(name)
        if point is None:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names()) or '(none)'}")
        try:
            obj = point.load()
        except Exception as err:  # a broken plugin names itself instead of crashing the CLI
            raise ValueError(f"{self.kind} {name!r} ({point.value}) failed to load: {err}") from err
        self._loaded[name] = obj
        return obj

    __getitem__ = get

    def items(self) -> list[tuple[str, T]]:
        return [(name, self.get(name)) for name in self.names()]


Factory = Callable[..., Any]

POLICIES: Registry[type] = Registry("policy", POLICY_GROUP)
"""Memory-policy classes (subclasses of ``namm_bench.policies.base.MemoryPolicy``)."""
ADAPTERS: Registry[type] = Registry("adapter", ADAPTER_GROUP)
"""Adapter classes (``namm_bench.interfaces.Adapter``), built as ``cls(model, device=..., dtype=...)``."""
SUITES: Registry[Factory] = Registry("suite", SUITE_GROUP)
"""Suite classes or factories (``namm_bench.interfaces.Suite``), built as ``factory(data_dir=...)``."""
COMMANDS: Registry[Factory] = Registry("command", COMMAND_GROUP)
"""Extra ``namm-bench`` subcommands: ``add(subparsers)`` functions that set ``handler`` on their parser."""
