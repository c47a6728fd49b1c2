"""Synthetic long-context retrieval tasks, generated offline from a seed.

Three kinds of task, each at six context lengths (1k, 2k, 4k, 8k, 16k and 32k tokens; 16k and 32k
for long-context models such as Gemma 3):

``passkey``
    Passkey retrieval (Mohtashami & Jaggi 2023, "Landmark Attention: Random-Access Infinite
    Context Length for Transformers"): one 5-digit pass key hidden at a depth in a repeated
    filler ("The grass is green. The sky is blue. ...").
``needle``
    Multi-key needle in a haystack (RULER, Hsieh et al. 2024, "RULER: What's the Real Context
    Size of Your Long-Context Language Models?"): several "special magic number" needles with
    distinct word keys in a varied filler; the question asks for one of them.
``kv``
    Key-value retrieval over UUID pairs (Liu et al. 2023, "Lost in the Middle: How Language
    Models Use Long Contexts"): a few ``key -> value`` UUID pairs stated in the filler; the
    question asks for the value of one key.

Every example is a deterministic function of ``(seed, task, index)``, so ``limit`` selects a
prefix of the same list and example ids are stable across runs. The prompt (``context +
question``) is sized with the model's own token counter to about ``min(task length,
max_prompt_tokens)`` tokens, never above.
"""

from __future__ import annotations

import logging
import math
import random
import re
import uuid
from collections.abc import Callable
from typing import Any

from .base import Outcome, TextExample, TokenCounter, prediction_text

log = logging.getLogger(__name__)

KINDS = ("passkey", "needle", "kv")
LENGTHS = {"1k": 1024, "2k": 2048, "4k": 4096, "8k": 8192, "16k": 16384, "32k": 32768}
DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
"""Depth of the asked needle, as a fraction of the filler; example ``i`` uses ``DEPTHS[i % 5]``."""
DEFAULT_EXAMPLES = 50
"""Examples per task when ``limit`` is None."""
NUM_NEEDLES = 4
"""Needles in a ``needle`` example: the asked one and ``NUM_NEEDLES - 1`` distractors."""
NUM_KV_PAIRS = 4
"""Key-value pairs in a ``kv`` example: the asked one and ``NUM_KV_PAIRS - 1`` distractors."""
MAX_NEW_TOKENS = {"passkey": 16, "needle": 32, "kv": 96}
LENGTH_TOLERANCE = 0.02
"""A prompt lands in ``[target * (1 - LENGTH_TOLERANCE), target]`` tokens."""

PASSKEY_INSTRUCTION = (
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
    "I will quiz you about the important information there."
)
PASSKEY_FILLER = (
    "The grass is green.",
    "The sky is blue.",
    "The sun is yellow.",
    "Here we go.",
    "There and back again.",
)
PASSKEY_NEEDLE = "The pass key is {answer}. Remember it. {answer} is the pass key."
PASSKEY_QUESTION = "\n\nWhat is the pass key? Answer with the number only."

NEEDLE_INSTRUCTION = (
    "Some special magic numbers are hidden within the following text. Make sure to memorize them. "
    "I will quiz you about one of the numbers afterwards."
)
NEEDLE_SENTENCE = "The special magic number for {key} is: {answer}."
NEEDLE_QUESTION = (
    "\n\nWhat is the special magic number for {key} mentioned in the provided text? Answer with the number only."
)
NEEDLE_ADJECTIVES = (
    "amber", "brave", "calm", "dusty", "eager", "fuzzy", "gentle", "hollow", "icy", "jolly",
    "lucky", "misty", "noble", "olive", "quiet", "rusty", "silver", "tidy", "velvet", "witty",
)  # fmt: skip
NEEDLE_NOUNS = (
    "anchor", "badger", "candle", "dragon", "falcon", "garden", "harbor", "island", "jacket",
    "kettle", "lantern", "meadow", "needle", "orchard", "pepper", "quilt", "river", "saddle",
    "tulip", "violin",
)  # fmt: skip

KV_INSTRUCTION = (
    "Some keys and their values are hidden within the following text. Each key and each value is "
    "a UUID. Make sure to memorize them. I will ask you for the value of one of the keys afterwards."
)
KV_SENTENCE = 'The value of key "{key}" is "{value}".'
KV_QUESTION = '\n\nWhat is the value of key "{key}"? Answer with the value only.'

HAYSTACK_SENTENCES = (
    "The morning train left the station a few minutes after the bell rang.",
    "A small boat drifted slowly along the edge of the lake.",
    "The library opens its doors early on weekdays and closes late in summer.",
    "Farmers in the valley usually plant their crops after the last frost.",
    "The old bridge was repainted in a pale shade of grey.",
    "Children played in the park while their parents talked on the benches.",
    "The recipe calls for flour, butter, sugar and a pinch of salt.",
    "A gentle wind moved the curtains in the open window.",
    "The museum added a new room for paintings of the coast.",
    "Most of the town gathered in the square for the evening market.",
    "The path through the forest is marked with small wooden signs.",
    "Rain fell steadily through the night and stopped before dawn.",
    "The teacher wrote the day's lesson on the board in neat letters.",
    "Bees moved from flower to flower in the warm afternoon light.",
    "The shop on the corner sells fresh bread and strong coffee.",
    "A long line of clouds crossed the hills toward the sea.",
    "The committee agreed to meet again at the end of the month.",
    "Fresh snow covered the roofs and the quiet streets.",
    "The river widens as it reaches the plain near the city.",
    "Several birds rested on the wire above the road.",
    "The workers finished the new roof just before the storm.",
    "A cat slept in the sun on the steps of the post office.",
    "The choir practiced the same song until every voice was in tune.",
    "Lanterns were hung along the harbor wall for the festival.",
    "The hikers stopped at the top of the ridge to look at the view.",
    "The kitchen smelled of onions, garlic and roasting vegetables.",
    "An old map of the region hangs in the hall of the town library.",
    "The ferry crosses the bay twice a day when the weather is calm.",
    "The gardener trimmed the hedges and swept the fallen leaves.",
    "Students filled the reading room during the week before the exams.",
)
"""Neutral filler for ``needle`` and ``kv``: no digits, no key words, no quotes."""

_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
_NUMBER_RE = re.compile(r"\d+")


class SyntheticSuite:
    """Passkey, multi-key needle and UUID key-value retrieval at 1k to 8k tokens.

    Sources: passkey retrieval after Mohtashami & Jaggi 2023 ("Landmark Attention"); the
    multi-key needle after RULER (Hsieh et al. 2024); key-value retrieval after Liu et al.
    2023 ("Lost in the Middle"). Tasks are named ``<kind>_<length>``, e.g. ``passkey_2k``.

    The metric is exact match on the first answer-shaped string in the prediction: the first
    run of digits for ``passkey`` and ``needle``, the first UUID (case-insensitive) for ``kv``,
    skipping the asked key, which models tend to restate before the value. ``max_new_tokens``
    leaves room for such a restatement ("The value of key "<k>" is "<v>"." is ~77 tokens in
    SmolLM2's tokenizer).
    """

    name = "synthetic"
    modality = "text"
    default_adapter = "llama"

    def __init__(self, data_dir: str | None = None) -> None:
        if data_dir is not None:
            raise ValueError("suite synthetic generates its examples: --data-dir does not apply")

    def tasks(self) -> list[str]:
        return [f"{kind}_{suffix}" for kind in KINDS for suffix in LENGTHS]

    def examples(
        self,
        task: str,
        count_tokens: TokenCounter,
        max_prompt_tokens: int,
        seed: int,
        limit: int | None,
    ) -> list[TextExample]:
        kind, length = _parse_task(task)
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be at least 1 (or None for {DEFAULT_EXAMPLES}), got {limit}")
        if max_prompt_tokens < 1:
            raise ValueError(f"max_prompt_tokens must be positive, got {max_prompt_tokens}")
        target = min(length, max_prompt_tokens)
        if target < length:
            log.warning(
                "%s does not fit the model's context: its prompts are about %d tokens, not %d "
                "(rows record the shortfall as truncated_tokens)",
                task,
                target,
                length,
            )
        count = DEFAULT_EXAMPLES if limit is None else limit
        counter = _CachedCounter(count_tokens)
        return [self._example(task, kind, target, counter, seed, i) for i in range(count)]

    def score(self, example: TextExample, outcome: Outcome | str) -> float:
        prediction = prediction_text(outcome)
        kind = example.meta.get("kind") or _parse_task(example.task)[0]
        if kind == "kv":
            # A model that restates the question ("The value of key <k> is <v>") is not wrong:
            # the asked key is skipped, and the first other UUID must be the value.
            asked = {key.lower() for key in _UUID_RE.findall(example.question)}
            for match in _UUID_RE.finditer(prediction):
                if match.group(0).lower() not in asked:
                    return float(match.group(0).lower() == example.answer.lower())
            return 0.0
        match = _NUMBER_RE.search(prediction)
        return float(match is not None and match.group(0) == example.answer)

    def record(self, example: TextExample, outcome: Outcome) -> dict[str, Any]:
        """A prompt shorter than the task's length (the model's context is smaller) counts as truncated."""
        shortfall = max(0, _parse_task(example.task)[1] - example.meta["length"])
        return {"truncated_tokens": max(outcome.truncated_tokens, shortfall)} if shortfall else {}

    def _example(
        self, task: str, kind: str, target: int, counter: _CachedCounter, seed: int, index: int
    ) -> TextExample:
        rng = random.Random(f"{seed}:{task}:{index}")
        depth = DEPTHS[index % len(DEPTHS)]
        # The needles come first from the RNG, so the answer does not depend on the tokenizer.
        if kind == "passkey":
            answer = str(rng.randint(10_000, 99_999))
            needles = [(depth, PASSKEY_NEEDLE.format(answer=answer))]
            instruction, question = PASSKEY_INSTRUCTION, PASSKEY_QUESTION
        elif kind == "needle":
            adjectives = rng.sample(NEEDLE_ADJECTIVES, NUM_NEEDLES)
            nouns = rng.sample(NEEDLE_NOUNS, NUM_NEEDLES)
            keys = [f"{a}-{n}" for a, n in zip(adjectives, nouns, strict=True)]
            numbers = rng.sample(range(1_000_000, 10_000_000), NUM_NEEDLES)
            answer = str(numbers[0])
            needles = [(depth, NEEDLE_SENTENCE.format(key=keys[0], answer=answer))]
            needles += [
                (rng.random(), NEEDLE_SENTENCE.format(key=k, answer=n))
                for k, n in zip(keys[1:], numbers[1:], strict=True)
            ]
            instruction, question = NEEDLE_INSTRUCTION, NEEDLE_QUESTION.format(key=keys[0])
        else:
            pairs = [(_uuid(rng), _uuid(rng)) for _ in range(NUM_KV_PAIRS)]  # distinct: 122 random bits
            key, answer = pairs[0]
            needles = [(depth, KV_SENTENCE.format(key=key, value=answer))]
            needles += [(rng.random(), KV_SENTENCE.format(key=k, value=v)) for k, v in pairs[1:]]
            instruction, question = KV_INSTRUCTION, KV_QUESTION.format(key=key)

        if kind == "passkey":

            def filler(n: int) -> str:
                return PASSKEY_FILLER[n % len(PASSKEY_FILLER)]
        else:
            drawn: list[str] = []

            def filler(n: int) -> str:
                while len(drawn) <= n:
                    drawn.append(rng.choice(HAYSTACK_SENTENCES))
                return drawn[n]

        context, tokens = _fit(instruction, needles, question, filler, target, counter)
        return TextExample(
            task=task,
            example_id=f"{task}-{index:04d}",
            context=context,
            question=question,
            answer=answer,
            max_new_tokens=MAX_NEW_TOKENS[kind],
            meta={"depth": depth, "length": target, "kind": kind, "tokens": tokens},
        )


def _parse_task(task: str) -> tuple[str, int]:
    kind, _, suffix = task.partition("_")
    if kind not in KINDS or suffix not in LENGTHS:
        known = ", ".join(f"{k}_{s}" for k in KINDS for s in LENGTHS)
        raise ValueError(f"unknown synthetic task {task!r}; known tasks: {known}")
    return kind, LENGTHS[suffix]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class _CachedCounter:
    """The model's token counter, with a cache for the (repeated) filler sentences."""

    def __init__(self, count_tokens: TokenCounter) -> None:
        self.count = count_tokens
        self._cache: dict[str, int] = {}

    def sentence(self, text: str) -> int:
        if text not in self._cache:
            self._cache[text] = self.count(text)
        return self._cache[text]


def _assemble(instruction: str, needles: list[tuple[float, str]], sentences: list[str]) -> str:
    """The context: the instruction, then the filler with each needle at its depth."""
    n = len(sentences)
    slots: dict[int, list[str]] = {}
    for depth, needle in needles:
        slots.setdefault(round(depth * n), []).append(needle)
    parts: list[str] = []
    for i in range(n + 1):
        parts.extend(slots.get(i, ()))
        if i < n:
            parts.append(sentences[i])
    return instruction + "\n\n" + " ".join(parts)


def _fit(
    instruction: str,
    needles: list[tuple[float, str]],
    question: str,
    filler: Callable[[int], str],
    target: int,
    counter: _CachedCounter,
) -> tuple[str, int]:
    """The longest context (by filler sentences) whose prompt stays within ``target`` tokens.

    The filler is estimated from the cached per-sentence counts, then the whole prompt is
    measured and sentences are dropped or added until it lands in
    ``[target * (1 - LENGTH_TOLERANCE), target]``. Returns the context and the prompt's tokens.
    """

    def measure(n: int) -> tuple[str, int]:
        context = _assemble(instruction, needles, [filler(i) for i in range(n)])
        return context, counter.count(context + question)

    context, tokens = measure(0)
    if tokens > target:
        raise ValueError(
            f"max_prompt_tokens={target} is too small: the instruction, needles and question alone take {tokens} tokens"
        )
    # Estimate: add filler until the cached sentence counts fill the gap.
    n, budget = 0, target - tokens
    while budget - counter.sentence(filler(n)) >= 0:
        budget -= counter.sentence(filler(n))
        n += 1
    best_n, best = 0, (context, tokens)
    low = math.ceil(target * (1 - LENGTH_TOLERANCE))
    tried: set[int] = {0}
    # Correct: a few measurements, dropping or adding whole sentences.
    while n not in tried:
        tried.add(n)
        context, tokens = measure(n)
        if tokens > target:
            excess, drop = tokens - target, 0
            while excess > 0 and drop < n:
                drop += 1
                excess -= counter.sentence(filler(n - drop))
            n -= drop
            continue
        if n > best_n:
            best_n, best = n, (context, tokens)
        gap, add = target - tokens, 0
        while gap - counter.sentence(filler(n + add)) >= 0:
            gap -= counter.sentence(filler(n + add))
            add += 1
        if add == 0:
            if tokens >= low:
                break
            add = 1  # short of the tolerance: try one sentence more, in case joining saves tokens
        n += add
    return best
