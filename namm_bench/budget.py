"""Cache budgets: a token count per KV head, or a ratio of the tokens seen so far."""

from __future__ import annotations

from dataclasses import dataclass

MATCH = "match"
"""Budget string meaning: run a baseline at the cache fraction the NAMM reached on the same example."""


@dataclass(frozen=True)
class Budget:
    """How many cache entries a budgeted policy may keep per layer and KV head.

    Exactly one of ``ratio`` (of tokens seen, in (0, 1]) or ``tokens`` (>= 1) is set.
    """

    ratio: float | None = None
    tokens: int | None = None

    def __post_init__(self) -> None:
        if (self.ratio is None) == (self.tokens is None):
            raise ValueError("a budget is either a ratio or a token count")
        if self.ratio is not None and not 0.0 < self.ratio <= 1.0:
            raise ValueError(f"budget ratio must be in (0, 1], got {self.ratio}")
        if self.tokens is not None and self.tokens < 1:
            raise ValueError(f"budget token count must be >= 1, got {self.tokens}")

    def keep(self, tokens_seen: int, cache_length: int) -> int:
        """Entries to keep per KV head after ``tokens_seen`` tokens, for a cache of ``cache_length``.

        Ratios round down, as kvpress keeps ``int(n * (1 - compression_ratio))``; at least one
        entry is kept, and never more than the cache holds.
        """
        wanted = self.tokens if self.tokens is not None else int(tokens_seen * self.ratio)
        return max(1, min(cache_length, wanted))

    def __str__(self) -> str:
        return f"{self.ratio:g}" if self.ratio is not None else str(self.tokens)


def parse_budget(text: str) -> Budget | str:
    """Parse ``RATIO`` (``0.25``), ``TOKENS`` (``512``) or ``match``.

    A value with a decimal point is a ratio in (0, 1]; a plain integer is a token count.
    """
    text = text.strip()
    if text == MATCH:
        return MATCH
    try:
        if any(c in text for c in ".eE"):
            return Budget(ratio=float(text))
        return Budget(tokens=int(text))
    except ValueError as err:
        raise ValueError(
            f"bad budget {text!r}: expected a ratio in (0, 1] such as 0.25, a token count such as 512, "
            f"or 'match' ({err})"
        ) from None
