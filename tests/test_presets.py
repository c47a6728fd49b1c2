"""``preset = "paper"`` in an evolution config fixes the paper's streaming settings, as ``--preset paper`` does."""

from __future__ import annotations

import pytest

from namm_bench.evolution.config import ConfigError, config_from_dict
from namm_bench.evolution.fitness import FITNESS
from namm_bench.presets import PRESETS, resolve_preset

STAGES = {"stages": [{"tasks": ["passkey_1k"], "generations": 1}]}


def test_the_paper_preset_is_the_papers_code():
    # namm-reference.md: 128-token chunks, a call at every multiple of 512, none at the prompt end,
    # no chat template (build_chat_interface=False)
    paper = PRESETS["paper"]
    assert (paper.chunk_size, paper.interval, paper.prompt_end_call, paper.chat) == (128, 512, False, False)
    assert resolve_preset("default", chunk_size=None, interval=64, prompt_end_call=None).interval == 64
    with pytest.raises(ValueError, match="unknown preset 'papr'; known: default, paper"):
        resolve_preset("papr")


def test_an_evolution_config_with_the_paper_preset():
    config = config_from_dict({**STAGES, "preset": "paper"})
    assert (config.chunk_size, config.interval, config.prompt_end_call) == (128, 512, False)
    assert config_from_dict(config.to_dict()) == config  # as a run directory's config.json reads back
    with pytest.raises(ConfigError, match="--preset paper runs with --interval 512, not 256"):
        config_from_dict({**STAGES, "preset": "paper", "interval": 256})
    assert config_from_dict(STAGES).prompt_end_call is True


@pytest.mark.parametrize("preset", ["paper", "default"])
def test_paper_fitness_streams_with_the_configs_prompt_end_call(preset):
    config = config_from_dict({**STAGES, "preset": preset, "fitness": "paper"})
    fitness = FITNESS["paper"](None, None, config)
    assert fitness._controller.prompt_end_call is (preset == "default")
