"""Shared fixtures: a tiny random Llama with its own byte-level tokenizer, saved as a local model."""

from __future__ import annotations

import pytest
import torch

# Tiny models run fastest on one thread, and CI has two cores for everything.
torch.set_num_threads(1)

TINY = dict(
    vocab_size=320,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=4096,
)


def tiny_llama(**overrides):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**{**TINY, **overrides})).eval()


@pytest.fixture
def model():
    return tiny_llama()


@pytest.fixture
def make_tiny_llama():
    """``tiny_llama`` itself, for tests that need other shapes."""
    return tiny_llama


def save_tiny_tokenizer(directory) -> None:
    """A byte-level BPE tokenizer (<s> = 0, </s> = 1) with a chat template, saved in ``directory``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["The grass is green. The sky is blue. What is the pass key? 0123456789"] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    fast.chat_template = "{% for m in messages %}<s>{{ m['content'] }}</s>{% endfor %}<s>"
    fast.save_pretrained(directory)


TEXT_FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "phi3", "gemma3_text")


def save_tiny_family(kind: str, directory):
    """A tiny random causal LM of family ``kind`` (TINY's shape, 512-token context) with the tiny tokenizer."""
    import transformers

    config_cls, model_cls = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
        "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
        "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM),
        "phi3": (transformers.Phi3Config, transformers.Phi3ForCausalLM),
        "gemma3_text": (transformers.Gemma3TextConfig, transformers.Gemma3ForCausalLM),
    }[kind]
    torch.manual_seed(0)
    # Gemma 3's layout: sliding-window layers (a 16-token window here) beside one global layer
    hybrid = {"sliding_window": 16, "layer_types": ["sliding_attention"] * 2 + ["full_attention"]}
    config = config_cls(
        **(hybrid if kind == "gemma3_text" else {}),
        **{**TINY, "max_position_embeddings": 512, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
    )
    model_cls(config).save_pretrained(directory)
    save_tiny_tokenizer(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A local model directory (config, weights, tokenizer, chat template) with a 512-token context."""
    directory = tmp_path_factory.mktemp("tiny-llama")
    model = tiny_llama(max_position_embeddings=512, bos_token_id=0, eos_token_id=1)
    model.save_pretrained(directory)
    save_tiny_tokenizer(directory)
    return directory


STATE, ACT = 11, 3  # Hopper's sizes


def save_tiny_dt(path, env_id: str = "Hopper-v5", state_dim: int = STATE):
    """A tiny random Decision Transformer checkpoint (model files + agent.json) in ``path``."""
    import numpy as np
    from transformers import DecisionTransformerConfig, DecisionTransformerModel

    from namm_bench.adapters.decision_transformer import AgentSpec

    torch.manual_seed(0)
    cfg = DecisionTransformerConfig(
        state_dim=state_dim, act_dim=ACT, hidden_size=32, n_layer=2, n_head=2, max_ep_len=1000, n_positions=64
    )
    DecisionTransformerModel(cfg).save_pretrained(path)
    rng = np.random.default_rng(0)
    AgentSpec(env_id, rng.normal(size=state_dim).tolist(), (1 + rng.random(state_dim)).tolist(), 3600.0).save(path)
    return path


@pytest.fixture(scope="session")
def tiny_dt(tmp_path_factory):
    return save_tiny_dt(tmp_path_factory.mktemp("tiny-dt"))


@pytest.fixture(scope="session")
def tiny_video_dir(tmp_path_factory):
    """A tiny random LlavaNextVideo checkpoint (32 px frames: 4 visual tokens each) with a BPE tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaNextVideoConfig,
        LlavaNextVideoForConditionalGeneration,
        PreTrainedTokenizerFast,
    )

    from namm_bench.suites.video_generated import COLOURS, SHAPES

    words = " ".join([*COLOURS, *SHAPES, "gray What colour was the shape object Which appeared first USER ASSISTANT"])
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>", "<video>"])
    tok.train_from_iterator([words] * 50, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    text = LlamaConfig(
        vocab_size=320,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
    )
    vision = CLIPVisionConfig(
        image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2
    )
    config = LlavaNextVideoConfig(
        vision_config=vision,
        text_config=text,
        vision_feature_layer=-1,
        video_token_id=fast.convert_tokens_to_ids("<video>"),
        image_token_id=fast.convert_tokens_to_ids("<video>"),
        spatial_pool_stride=2,
    )
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny-llava-next-video")
    LlavaNextVideoForConditionalGeneration(config).save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory
