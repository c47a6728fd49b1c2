"""Model adapters, one module per model family (installed as ``namm_bench.adapters``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["ADAPTERS", "get_adapter", "is_hub_id"]


def is_hub_id(model: str | Path) -> bool:
    """Whether ``--model`` names a hub repository (``org/name``) rather than a local path."""
    text = str(model)
    return not Path(text).exists() and text.count("/") == 1 and not text.startswith((".", "/", "~"))


def _llama(model: str | None, **kwargs: Any):
    from .llama import LlamaAdapter

    return LlamaAdapter(model, **kwargs)


def _decision_transformer(model: str | None, **kwargs: Any):
    from .decision_transformer import DecisionTransformerAdapter

    if model is None:
        raise ValueError("the decision_transformer adapter needs --model: a checkpoint directory")
    return DecisionTransformerAdapter(model, **kwargs)


def _llava_next_video(model: str | None, **kwargs: Any):
    from .llava_next_video import LlavaNextVideoAdapter

    return LlavaNextVideoAdapter(model, **kwargs)


ADAPTERS = {
    "llama": _llama,
    "decision_transformer": _decision_transformer,
    "llava_next_video": _llava_next_video,
}
"""Adapter name -> factory(model, **options). Imports stay lazy so the CLI starts fast."""


def get_adapter(name: str, model: str | None = None, **kwargs: Any):
    if name not in ADAPTERS:
        raise ValueError(f"unknown adapter {name!r}; known adapters: {', '.join(sorted(ADAPTERS))}")
    return ADAPTERS[name](model, **kwargs)
