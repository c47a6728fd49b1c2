"""Per-example member scores for the two fitness modes.

``fast``: each example's context is prefilled once with the full cache (SDPA-free: the NAMM's
spectrogram needs attention probabilities), keeping its KV cache and the parameter-free part of the
NAMM's features (the EMA spectrogram). A member's BAM scores select, per layer, what stays; the
kept entries are gathered per member, the members are stacked into one batch (padding masked), and
the question plus the gold answer run teacher-forced on top. The score is the geometric mean
probability of the gold answer tokens (with ``teacher_forced = "reply"``, of the full cache's own
greedy reply up to the end of the gold answer in it). One eviction at the end of the
context (``fast_evictions = "end"``) or one at each ``interval`` call and at the end, from the
full-cache spectrogram of that moment (``"interval"``), stands in for the streaming calls, so it is
an approximation of ``paper``; the docs report how well the two rank members alike. Both keep the
full cache's keys and values, which were computed while every token was still there, so they miss
what a member's evictions take from the tokens that follow them (``docs/decisions.md`` measures how
much). ``"streaming"`` removes that: each member prefills the whole prompt under the streaming
protocol with its own cache, as ``namm-bench run`` does, and the gold answer runs teacher-forced on
that cache; members run one at a time, at about the cost of a prefill each less the part before the
first policy call, which is the same for all and computed once.

``paper``: the paper's fitness, ``namm-reference.md`` section 5.2: each member runs the streaming
protocol (a NAMM call every ``interval`` tokens) and its greedy answer is scored by the task
metric.

Both return, per member, a score in [0, 1] and the retained-cache fraction, and compute the
full-cache score of every example once.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..controller import ControllerConfig, MemoryController
from ..namm.features import LayerSpectrograms, RunningStats, token_features
from ..namm.scorer import BamWeights, NammConfig, bam_scores, binary_selection
from ..policies.base import MemoryPolicy, gather_tokens
from ..policies.full import FullCache
from ..policies.namm import NAMM
from .streamed import SharedPrefix, StreamedAnswer, member_checkpoint, reply_forcing, stream_answer

__all__ = [
    "FITNESS",
    "FastFitness",
    "PaperFitness",
    "SharedPrefix",
    "StreamedAnswer",
    "member_checkpoint",
    "reply_forcing",
    "stream_answer",
]


class SpectrogramRecorder(MemoryPolicy):
    """Keeps every token and records the NAMM's EMA spectrogram of the attention they received.

    ``calls`` holds, for every policy call, the tokens seen and each layer's EMA at that moment;
    with ``keep_prefix``, ``prefix`` holds the run up to the first call (``SharedPrefix``).
    """

    name = "spectrogram-recorder"
    needs_attention = True

    def __init__(self, ema_coeff: float, keep_prefix: bool = False) -> None:
        self.spectra = LayerSpectrograms(ema_coeff)
        self.calls: list[tuple[int, list[torch.Tensor]]] = []
        self.keep_prefix = keep_prefix
        self.prefix: SharedPrefix | None = None

    def reset(self, num_layers: int) -> None:
        self.spectra.reset(num_layers)
        self.calls = []
        self.prefix = None

    def observe(self, layer: int, attention: torch.Tensor) -> None:
        self.spectra.observe(layer, attention)

    def select(self, layer, keys, values, positions, tokens_seen):
        if layer == 0:
            self.calls.append((tokens_seen, []))
            if self.keep_prefix and self.prefix is None:
                self.prefix = SharedPrefix(tokens_seen, spectra=copy.deepcopy(self.spectra.states))
        self.calls[-1][1].append(self.spectra.states[layer].ema.clone())
        if self.prefix is not None and self.prefix.tokens_seen == tokens_seen:
            self.prefix.keys.append(keys.clone())
            self.prefix.values.append(values.clone())
        return None

    def ema(self) -> torch.Tensor:
        """(L, H, N, 17): every layer's raw EMA now."""
        return torch.cat([s.ema for s in self.spectra.states])


@dataclass
class Prefilled:
    """One example's full-cache context, ready for any number of members."""

    keys: list[torch.Tensor]  # per layer (1, H, N, d)
    values: list[torch.Tensor]
    ema: torch.Tensor  # (L, H, N, 17) raw EMA spectrogram at the end of the context
    tail: torch.Tensor  # (1, T) question, chat suffix, gold answer
    answer_from: int  # index in ``tail`` of the first gold answer token
    full_score: float = 0.0
    calls: list[tuple[int, torch.Tensor]] = field(default_factory=list)  # (tokens seen, EMA) at interval calls
    prompt: object = None  # fast_evictions = "streaming": the whole prompt and the forced ids (answer or reply)
    answer: list[int] = field(default_factory=list)
    prefix: SharedPrefix | None = None  # and the run up to the members' first call, the same for all

    @property
    def length(self) -> int:
        return self.ema.shape[2]


def record_context(adapter, config, example, keep_prefix: bool = False):
    """Prefill ``example``'s context with the full cache under the streaming protocol's chunks and calls.

    Returns the prompt, the context length, the cache and the ``SpectrogramRecorder`` (its EMA
    now, its calls, and with ``keep_prefix`` the run up to the first call).
    """
    from transformers import DynamicCache

    prompt = adapter.build_prompt(example)
    context = prompt.question_start
    cache = DynamicCache(config=adapter.model.config)
    recorder = SpectrogramRecorder(config.namm.ema_coeff, keep_prefix)
    controller = MemoryController(recorder, ControllerConfig(config.chunk_size, config.interval, "streaming", False))

    def forward(start: int, end: int) -> None:
        adapter.model(
            input_ids=prompt.ids[:, start:end],
            position_ids=torch.arange(start, end, device=adapter.device)[None],
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )

    with controller.attach(adapter.model, cache, adapter.attention_modules()):
        controller.prefill(forward, context)
    return prompt, context, cache, recorder


def _interval_selections(ex: Prefilled, params: torch.Tensor, stats: RunningStats, cfg: NammConfig) -> list[list]:
    """As ``_selections``, evicting at every interval call and at the end of the context.

    At each call a member scores the tokens it still holds plus those that arrived since, from
    the full-cache spectrogram of that moment, as the streaming protocol would.
    """
    steps = [*ex.calls, (ex.length, ex.ema)]
    heads, device = ex.ema.shape[1], ex.ema.device
    out = []
    for p in params:
        w = BamWeights.unflatten(p, cfg).to(device)
        layers = []
        for layer in range(ex.ema.shape[0]):
            kept, seen = torch.empty(1, heads, 0, dtype=torch.long, device=device), 0
            for n, ema in steps:
                candidates = torch.cat([kept, torch.arange(seen, n, device=device).expand(1, heads, -1)], dim=-1)
                spectra = ema[layer : layer + 1].gather(2, candidates[..., None].expand(-1, -1, -1, ema.shape[-1]))
                features = token_features(spectra, candidates, stats, cfg.recency_dims, cfg.recency_max_freq)
                idx = binary_selection(bam_scores(features, w))
                kept, seen = (candidates if idx is None else candidates.gather(-1, idx)), n
            layers.append(None if kept.shape[-1] == ex.length else kept)
        out.append(layers)
    return out


def _selections(ex: Prefilled, params: torch.Tensor, stats: RunningStats, cfg: NammConfig) -> list[list]:
    """Per member, per layer: indices to keep (1, H, K) or None (keep all), evicting once at the end."""
    num_layers, heads, n = ex.ema.shape[:3]
    positions = torch.arange(n, device=ex.ema.device).expand(num_layers, heads, n)
    features = token_features(ex.ema, positions, stats, cfg.recency_dims, cfg.recency_max_freq)
    out = []
    for p in params:
        scores = bam_scores(features, BamWeights.unflatten(p, cfg).to(features.device))  # (L, H, N)
        out.append([binary_selection(scores[i : i + 1]) for i in range(num_layers)])
    return out


class FastFitness:
    """Teacher-forced gold-answer likelihood under each member's one-shot eviction."""

    mode = "fast"

    def __init__(self, adapter, suite, config) -> None:
        self.adapter, self.suite, self.config = adapter, suite, config
        self._prefilled: dict[str, Prefilled] = {}
        self._masks: list[torch.Tensor] = []

    @torch.inference_mode()
    def prepare(self, example) -> tuple[torch.Tensor, float]:
        """Prefill ``example`` (once); return its raw EMA features and its full-cache score."""
        if example.example_id not in self._prefilled:
            self._prefilled[example.example_id] = self._prefill(example)
        ex = self._prefilled[example.example_id]
        return ex.ema, ex.full_score

    def _prefill(self, example) -> Prefilled:
        adapter = self.adapter
        streaming = self.config.fast_evictions == "streaming"
        prompt, context, cache, recorder = record_context(adapter, self.config, example, keep_prefix=streaming)
        answer = adapter.tokenizer.encode(example.answer, add_special_tokens=False)
        if not answer:
            raise ValueError(f"{example.example_id}: fast fitness needs a gold answer, and this example has none")
        if self.config.teacher_forced == "reply":
            reply = adapter.generate(example, FullCache(), self._streaming).text
            answer = reply_forcing(adapter.tokenizer, reply, example.answer) or answer
        tail = torch.cat([prompt.ids[:, context:], torch.tensor([answer], device=adapter.device)], dim=1)
        ex = Prefilled(
            keys=[layer.keys for layer in cache.layers],
            values=[layer.values for layer in cache.layers],
            ema=recorder.ema(),
            tail=tail,
            answer_from=tail.shape[1] - len(answer),
        )
        if self.config.fast_evictions == "interval":
            # A call at the very end of the context would not be one in the whole prompt's run.
            ex.calls = [(n, torch.cat(emas)) for n, emas in recorder.calls if n < context]
        if streaming:  # the members' own prefills replace the shared one, up to their first call
            ex.keys, ex.values, ex.prompt, ex.answer = [], [], prompt, answer
            if recorder.prefix is not None and recorder.prefix.tokens_seen < context:
                ex.prefix = recorder.prefix
            ex.full_score = stream_answer(adapter, FullCache(), self._streaming, prompt, answer).probability
        else:
            ex.full_score = float(self._forward(ex, [[None] * len(ex.keys)])[0][0])
        return ex

    @property
    def _streaming(self) -> ControllerConfig:
        return ControllerConfig(self.config.chunk_size, self.config.interval, "streaming", self.config.prompt_end_call)

    @torch.inference_mode()
    def members(self, example, params: torch.Tensor, stats: RunningStats) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and cache fractions (M,) of the members ``params`` (M, P), in one batch."""
        ex = self._prefilled[example.example_id]
        if self.config.fast_evictions == "streaming":
            policies = [NAMM(checkpoint=member_checkpoint(p, stats, self.config.namm)) for p in params]
            runs = [
                stream_answer(self.adapter, policy, self._streaming, ex.prompt, ex.answer, ex.prefix)
                for policy in policies
            ]
            return torch.tensor([r.probability for r in runs]), torch.tensor([r.cache_fraction for r in runs])
        select = _interval_selections if self.config.fast_evictions == "interval" else _selections
        return self._forward(ex, select(ex, params, stats, self.config.namm))

    def _forward(self, ex: Prefilled, selections: list[list]) -> tuple[torch.Tensor, torch.Tensor]:
        from transformers import DynamicCache

        model, device = self.adapter.model, self.adapter.device
        m, n, t = len(selections), ex.length, ex.tail.shape[1]
        cache = DynamicCache(config=model.config)
        self._masks, kept = [], torch.zeros(m)
        for layer, (keys, values) in enumerate(zip(ex.keys, ex.values, strict=True)):
            heads = keys.shape[1]
            lengths = [n if sel[layer] is None else sel[layer].shape[-1] for sel in selections]
            width = max(lengths)
            idx = torch.zeros(m, heads, width, dtype=torch.long, device=device)
            mask = torch.zeros(m, 1, t, width + t, dtype=model.dtype, device=device)
            for i, sel in enumerate(selections):
                idx[i, :, : lengths[i]] = torch.arange(n, device=device) if sel[layer] is None else sel[layer][0]
                mask[i, :, :, lengths[i] : width] = torch.finfo(mask.dtype).min  # padding
                kept[i] += lengths[i]
            causal = torch.ones(t, t, dtype=torch.bool, device=device).triu(1)
            mask[..., width:].masked_fill_(causal, torch.finfo(mask.dtype).min)
            self._masks.append(mask)
            cache.update(
                gather_tokens(keys.expand(m, -1, -1, -1), idx), gather_tokens(values.expand(m, -1, -1, -1), idx), layer
            )
        previous = model.config._attn_implementation
        model.set_attn_implementation("sdpa")
        hooks = [
            a.register_forward_pre_hook(self._mask_hook, with_kwargs=True) for a in self.adapter.attention_modules()
        ]
        try:
            logits = model(
                input_ids=ex.tail.expand(m, t),
                position_ids=torch.arange(n, n + t, device=device).expand(m, t),
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=t - ex.answer_from + 1,
            ).logits[:, :-1]
        finally:
            for h in hooks:
                h.remove()
            model.set_attn_implementation(previous)
        answer = ex.tail[:, ex.answer_from :].expand(m, -1)
        logp = F.log_softmax(logits.float(), dim=-1).gather(-1, answer[..., None]).squeeze(-1)
        return logp.mean(dim=1).exp().cpu(), kept / (len(ex.keys) * n)

    def _mask_hook(self, module, args, kwargs):
        kwargs["attention_mask"] = self._masks[module.layer_idx]
        return args, kwargs


class PaperFitness:
    """The paper's fitness: streaming protocol, generated answers, the task metric."""

    mode = "paper"

    def __init__(self, adapter, suite, config) -> None:
        self.adapter, self.suite, self.config = adapter, suite, config
        self._prepared: dict[str, tuple[torch.Tensor, float]] = {}
        self._controller = ControllerConfig(config.chunk_size, config.interval, "streaming", config.prompt_end_call)

    @torch.inference_mode()
    def prepare(self, example) -> tuple[torch.Tensor, float]:
        """Full-cache answer score, and the context's raw EMA features (for the statistics)."""
        if example.example_id not in self._prepared:
            gen = self.adapter.generate(example, FullCache(), self._controller)
            ema = record_context(self.adapter, self.config, example)[3].ema()
            self._prepared[example.example_id] = (ema, self.suite.score(example, gen.text))
        return self._prepared[example.example_id]

    @torch.inference_mode()
    def members(self, example, params: torch.Tensor, stats: RunningStats) -> tuple[torch.Tensor, torch.Tensor]:
        scores, fractions = [], []
        for p in params:
            gen = self.adapter.generate(
                example, NAMM(checkpoint=member_checkpoint(p, stats, self.config.namm)), self._controller
            )
            scores.append(self.suite.score(example, gen.text))
            fractions.append(gen.controller.stats.cache_fraction)
        return torch.tensor(scores), torch.tensor(fractions)


FITNESS = {"fast": FastFitness, "paper": PaperFitness}
