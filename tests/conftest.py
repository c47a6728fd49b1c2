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


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A local model directory (config, weights, tokenizer, chat template) with a 512-token context."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["The grass is green. The sky is blue. What is the pass key? 0123456789"] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    fast.chat_template = "{% for m in messages %}<s>{{ m['content'] }}</s>{% endfor %}<s>"
    directory = tmp_path_factory.mktemp("tiny-llama")
    model = tiny_llama(max_position_embeddings=512, bos_token_id=0, eos_token_id=1)
    model.save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory
