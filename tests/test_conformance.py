"""The conformance kit (``namm_bench.testing``) on tiny random models of every text family, and on a
fixture adapter with one property broken."""

from __future__ import annotations

import pytest
import torch
from conftest import TEXT_FAMILIES, save_tiny_family

from namm_bench.adapters.llama import LlamaAdapter
from namm_bench.testing import PROPERTIES, ConformanceError, check_text_adapter


@pytest.fixture(scope="module", params=TEXT_FAMILIES)
def family_adapter(request, tmp_path_factory):
    directory = save_tiny_family(request.param, tmp_path_factory.mktemp(request.param))
    adapter = LlamaAdapter(str(directory))
    assert adapter.model.config.model_type == request.param
    return adapter


def test_every_text_family_passes_the_kit(family_adapter):
    assert check_text_adapter(family_adapter) == list(PROPERTIES)


def test_llava_next_video_passes_the_kit(tiny_video_dir):
    from namm_bench.adapters.llava_next_video import LlavaNextVideoAdapter

    assert check_text_adapter(LlavaNextVideoAdapter(str(tiny_video_dir))) == list(PROPERTIES)


class PositionsFromCacheLength(LlamaAdapter):
    """A common bug: new tokens placed at the cache's length instead of their absolute position."""

    def forward_tokens(self, cache, ids, start, end, last_only=True):
        held = cache.layers[0].keys.shape[2] if cache.layers and cache.layers[0].keys is not None else 0
        out = self.model(
            input_ids=ids,
            position_ids=torch.arange(held, held + ids.shape[1], device=self.device)[None],
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1 if last_only else 0,
        )
        return out.logits


def test_a_broken_adapter_fails_naming_its_property(tiny_model_dir):
    with pytest.raises(ConformanceError) as failed:
        check_text_adapter(PositionsFromCacheLength(str(tiny_model_dir)))
    message = str(failed.value)
    assert "pruned = masked (a pruned run equals a masked full forward, new tokens at their true positions)" in message
    # only that property breaks: with nothing evicted the cache length is the position
    assert message.count("\n- ") == 1


def test_the_decision_transformer_passes_the_kit(tiny_dt):
    from namm_bench.adapters.decision_transformer import DecisionTransformerAdapter
    from namm_bench.testing import check_decision_transformer_adapter

    assert check_decision_transformer_adapter(DecisionTransformerAdapter(str(tiny_dt))) == list(PROPERTIES)
