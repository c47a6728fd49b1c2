"""Context extension: RoPE scaling and a longer context, set on a model's config before it loads.

The paper ran Llama 3 8B (8k context) at 32k tokens with a static NTK-aware change of the RoPE
base (Cetin et al., ICLR 2025; evo-memory ``llama3-8b-rope-x4NTK.yaml``: factor 4, alpha 2):
``theta' = theta * (alpha * factor - (alpha - 1)) ** (d / (d - 2))`` with ``d`` the rotary
dimension, 500000 -> ~3.61e6. ``--rope-scaling ntk:4:2 --max-context 32768`` reproduces it; the
other kinds are the rope types transformers implements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KINDS = ("linear", "dynamic", "yarn", "llama3", "ntk", "theta")
"""``--rope-scaling`` kinds: transformers' rope types with a factor, the paper's static NTK base
change (``ntk:FACTOR:ALPHA``) and a RoPE base set directly (``theta:BASE``)."""


@dataclass(frozen=True)
class RopeScaling:
    """One ``--rope-scaling`` value.

    Parameters
    ----------
    kind
        One of :data:`KINDS`.
    value
        The scaling factor (the new base for ``theta``).
    alpha
        ``ntk`` only: the NTK alpha (the paper: 2).
    """

    kind: str
    value: float
    alpha: float = 1.0

    @property
    def label(self) -> str:
        """The value as rows record it (``ntk:4:2``), the form :func:`parse_rope_scaling` reads."""
        parts = [self.kind, f"{self.value:g}"] + ([f"{self.alpha:g}"] if self.kind == "ntk" else [])
        return ":".join(parts)


def parse_rope_scaling(text: str) -> RopeScaling:
    """Read ``KIND:FACTOR`` (``linear``, ``dynamic``, ``yarn``, ``llama3``), ``ntk:FACTOR:ALPHA`` or ``theta:BASE``.

    Raises
    ------
    ValueError
        On an unknown kind, a missing or non-positive number, or an NTK alpha below 1.
    """
    kind, _, rest = text.strip().partition(":")
    numbers = rest.split(":") if rest else []
    want = 2 if kind == "ntk" else 1
    if kind not in KINDS or len(numbers) != want:
        raise ValueError(
            f"--rope-scaling {text!r}: give KIND:FACTOR with KIND one of linear, dynamic, yarn, llama3 "
            "(e.g. dynamic:4), ntk:FACTOR:ALPHA (the paper's Llama 3 setting: ntk:4:2) or theta:BASE"
        )
    try:
        values = [float(n) for n in numbers]
    except ValueError:
        raise ValueError(f"--rope-scaling {text!r}: {rest!r} is not a number") from None
    if any(v <= 0 for v in values) or (kind != "theta" and values[0] < 1) or (kind == "ntk" and values[1] < 1):
        raise ValueError(f"--rope-scaling {text!r}: factors and alpha must be >= 1, a base > 0")
    return RopeScaling(kind, *values)


def apply_context(config: Any, rope: RopeScaling | None, max_context: int | None) -> int:
    """Set ``rope`` and ``max_context`` on a transformers ``config`` (in place) before the model is built.

    The text model's RoPE parameters change; a model with per-layer-type parameters (Gemma 3)
    changes those of its global (``full_attention``) layers only, since its sliding-window layers
    never see long distances. ``max_position_embeddings`` becomes ``max_context``, except under
    ``dynamic``, which scales past ``max_position_embeddings`` and so keeps it as its reference.

    Returns
    -------
    int
        The context the model now has (what prompts are truncated to).
    """
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    original = int(getattr(text, "max_position_embeddings", 0) or 0)
    if max_context is not None and max_context < 1:
        raise ValueError(f"--max-context must be >= 1, got {max_context}")
    if rope is not None:
        params = getattr(text, "rope_parameters", None)
        if not isinstance(params, dict):
            raise ValueError(f"the model's config has no RoPE parameters to scale ({type(text).__name__})")
        nested = all(isinstance(v, dict) for v in params.values())
        targets = [params]
        if nested:
            targets = [params["full_attention"]] if "full_attention" in params else list(params.values())
        for target in targets:
            _scale(target, rope, original, _rotary_dim(text))
    if max_context is not None and (rope is None or rope.kind != "dynamic"):
        text.max_position_embeddings = max_context
    return max_context or original


def _rotary_dim(text: Any) -> int:
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    return int(head_dim * getattr(text, "partial_rotary_factor", 1.0))


def _scale(params: dict[str, Any], rope: RopeScaling, original: int, dim: int) -> None:
    theta = float(params.get("rope_theta", 10000.0))
    if rope.kind == "ntk":  # static: a new base at every position, positions unscaled
        base = theta * (rope.alpha * rope.value - (rope.alpha - 1)) ** (dim / (dim - 2))
        params.update(rope_type="default", rope_theta=base)
    elif rope.kind == "theta":
        params.update(rope_type="default", rope_theta=rope.value)
    else:
        params.update(rope_type=rope.kind, factor=rope.value)
        if rope.kind in ("yarn", "llama3"):
            params["original_max_position_embeddings"] = original
        if rope.kind == "llama3":  # Llama 3.1's frequency bands
            params.setdefault("low_freq_factor", 1.0)
            params.setdefault("high_freq_factor", 4.0)
