"""Named run settings: ``--preset paper`` runs what the NAMM paper's code runs.

Cetin et al., "An Evolved Universal Transformer Memory", ICLR 2025, and its code (evo-memory;
``namm-reference.md`` sections 1 and 6): prompts in 128-token chunks, the memory policy called
whenever the tokens processed reach a multiple of 512, in prefill and decoding alike, and no call
at the end of the prompt (its last ``L mod 512`` tokens stay unpruned until the next multiple);
prompts without a chat template; prompts middle-truncated to the model's context minus the
task's answer length (the run's ``max_prompt_tokens`` rule, 32768 - max_gen for the paper's
Llama 3 8B at 32k).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the controller imports torch; presets stay light for config parsing
    from .controller import ControllerConfig


@dataclass(frozen=True)
class Preset:
    """Settings a preset fixes; ``chat=None`` leaves the chat template to each suite."""

    chunk_size: int = 128
    interval: int = 512
    prompt_end_call: bool = True
    chat: bool | None = None

    def controller(self, protocol: str) -> ControllerConfig:
        """The ``ControllerConfig`` of these settings under ``protocol``."""
        from .controller import ControllerConfig

        return ControllerConfig(
            chunk_size=self.chunk_size, interval=self.interval, protocol=protocol, prompt_end_call=self.prompt_end_call
        )


PRESETS: dict[str, Preset] = {
    "default": Preset(),
    "paper": Preset(prompt_end_call=False, chat=False),
}


def resolve_preset(name: str, **given: object) -> Preset:
    """The preset ``name`` with the settings given on the command line (None: not given).

    The default preset takes any value given; the paper preset refuses one that differs from the
    paper's, since its rows would be labelled ``paper`` while not being run as the paper ran.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    preset = PRESETS[name]
    values = {}
    for key, value in given.items():
        fixed = getattr(preset, key)
        if value is None:
            values[key] = fixed
        elif name != "default" and value != fixed:
            flag = "--" + key.replace("_", "-")
            raise ValueError(f"--preset {name} runs with {flag} {fixed}, not {value}: drop one of them")
        else:
            values[key] = value
    return Preset(**{**preset.__dict__, **values})
