"""Type checks for dataclasses built from TOML or JSON, so a wrong type is one message naming the key."""

from __future__ import annotations

import math
import typing
from typing import Any


def check_field_types(cls: type, values: dict[str, Any], source: str) -> None:
    """Raise ``TypeError`` naming ``source`` and the key for a value of the wrong type.

    Checks the fields annotated ``int``, ``float``, ``str`` or ``str | None``: an int is a real
    integer (not a bool, not 1.5), a float any finite number, a string a string. Keys that are not
    fields, and fields of other types, are left to the constructor.
    """
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        expected = hints.get(key)
        if expected is int:
            ok, what = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif expected is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            what = "a finite number"
        elif expected is str:
            ok, what = isinstance(value, str), "a string"
        elif expected == str | None:
            ok, what = value is None or isinstance(value, str), "a string"
        else:
            continue
        if not ok:
            raise TypeError(f"{source}: {key} must be {what}, got {value!r}")
