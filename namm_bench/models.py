"""Which adapter runs a model, and building adapters and suites by name from the registries."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from .registry import ADAPTERS, SUITES


def is_hub_id(model: str | Path) -> bool:
    """Whether ``--model`` names a hub repository (``org/name``) rather than a local path."""
    text = str(model)
    return not Path(text).exists() and text.count("/") == 1 and not text.startswith((".", "/", "~"))


def model_type(model: str | Path) -> str | None:
    """``config.model_type`` of a local model directory or hub id; None when it has none to read.

    A hub id is read through ``transformers.AutoConfig`` (online, or from the Hugging Face cache).
    """
    path = Path(model)
    if path.is_dir():
        config = path / "config.json"
        if not config.is_file():
            return None
        try:
            return json.loads(config.read_text()).get("model_type")
        except (json.JSONDecodeError, AttributeError) as err:
            raise ValueError(f"{config} is not a JSON object: {err}") from err
    if is_hub_id(model):
        try:
            from transformers import AutoConfig

            return AutoConfig.from_pretrained(str(model)).model_type
        except (OSError, ValueError):
            return None
    return None


def adapter_for_model_type(kind: str) -> str | None:
    """The registered adapter whose ``model_types`` holds ``kind`` (None if none does)."""
    for name, cls in ADAPTERS.items():
        if kind in getattr(cls, "model_types", ()):
            return name
    return None


def choose_adapter(model: str | None, requested: str | None = None, default: str | None = None) -> str:
    """The adapter's registry name: ``requested`` (``--adapter``), else by the model's
    ``config.model_type``, else ``default`` (the suite's adapter for its default model)."""
    if requested is not None:
        ADAPTERS.get(requested)  # an unknown name is an error listing the known ones
        return requested
    if model is not None:
        kind = model_type(model)
        if kind is not None:
            name = adapter_for_model_type(kind)
            if name is None:
                served = {n: list(getattr(c, "model_types", ())) for n, c in ADAPTERS.items()}
                raise ValueError(
                    f"no adapter serves model type {kind!r} of {model}; adapters and their model types: {served}. "
                    "Pass --adapter NAME to choose one"
                )
            return name
    if default is None:
        raise ValueError(f"cannot tell which adapter runs {model}: it has no config.json; pass --adapter NAME")
    return default


def suite_adapter(suite: Any, model: str | None, requested: str | None = None) -> str:
    """``choose_adapter`` for ``model`` on ``suite``: its ``default_adapter`` serves the default model."""
    return choose_adapter(model, requested, getattr(suite, "default_adapter", None))


DTYPES = ("auto", "float32", "bfloat16", "float16")
"""``--dtype`` values: ``auto`` is bfloat16 on CUDA and float32 elsewhere."""


def resolve_dtype(requested: str, device: str, adapter_cls: Any) -> str:
    """The weights' dtype an adapter runs in: ``requested``, or for ``auto`` bfloat16 on CUDA, else float32.

    An adapter may declare the dtypes it runs in (``dtypes``, default all three): ``auto`` falls
    back to float32 where bfloat16 is not among them, and asking for one outside them is an error.
    """
    if requested not in DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {requested!r}")
    supported = getattr(adapter_cls, "dtypes", DTYPES[1:])
    if requested == "auto":
        return "bfloat16" if device.startswith("cuda") and "bfloat16" in supported else "float32"
    if requested not in supported:
        name = getattr(adapter_cls, "name", adapter_cls.__name__)
        raise ValueError(f"adapter {name} runs in {', '.join(supported)}, not {requested}")
    return requested


def make_adapter(name: str, model: str | None = None, **options: Any) -> Any:
    """Build the adapter registered as ``name`` on ``model``; options it does not take are an error."""
    cls = ADAPTERS.get(name)
    accepted = inspect.signature(cls).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        unknown = sorted(k for k in options if k not in accepted)
        if unknown:
            raise ValueError(f"adapter {name} takes no option {', '.join(unknown)}")
    return cls(model, **options)


def make_suite(name: str, data_dir: str | None = None, model: str | None = None) -> Any:
    """Build the suite registered as ``name``; ``model`` goes to suites whose tasks depend on it.

    ``a+b`` builds a :class:`~namm_bench.suite_mix.SuiteMix` of suites ``a`` and ``b``.
    """
    if "+" in name:
        from .suite_mix import SuiteMix

        parts = name.split("+")
        if len(set(parts)) < len(parts):
            raise ValueError(f"suite mix {name} names a suite twice")
        return SuiteMix({part: make_suite(part, data_dir, model) for part in parts})
    factory = SUITES.get(name)
    kwargs: dict[str, Any] = {"data_dir": data_dir}
    if "model" in inspect.signature(factory).parameters:
        kwargs["model"] = model
    return factory(**kwargs)
