"""RULER's task generators (Hsieh et al. 2024, "RULER: What's the Real Context Size of Your
Long-Context Language Models?"), written from the paper and the recipe's published settings.

Each generator builds one example from a seeded ``random.Random`` and a size ``n`` (haystack
units, words or documents); :func:`fit` finds the largest ``n`` whose prompt fits the target in
the model's tokenizer. Everything drawn before the haystack (keys, values, the asked needle's
depth) does not depend on ``n``, so the fitted example asks the same question as the first try.
"""

from __future__ import annotations

import functools
import random
import re
import string
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .ruler_words import ADJECTIVES, NOUNS, WORDS

NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
NEEDLE = "One of the special magic {type_v} for {key} is: {value}."
NIAH_INTRO = (
    "Some special magic {type_v} are hidden within the following text. Make sure to memorize it. "
    "I will quiz you about the {type_v} afterwards."
)
NIAH_QUESTION = "What are all the special magic {type_v} for {query} mentioned in the provided text?"
NIAH_PREFIX = " The special magic {type_v} for {query} mentioned in the provided text are"
VT_INTRO = "Memorize and track the chain(s) of variable assignment hidden in the following text."
VT_QUESTION = "Question: Find all variables that are assigned the value {query} in the text above."
VT_PREFIX = (  # "assgined" is RULER's spelling; kept so prompts equal the published ones
    " Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables are "
    "assgined the value {query}, they are: "
)
CWE_INTRO = (
    "Below is a numbered list of words. In these words, some appear more often than others. "
    "Memorize the ones that appear most often."
)
CWE_QUESTION = "Question: What are the 10 most common words in the above list?"
CWE_PREFIX = " Answer: The top 10 words that appear most often in the list are:"
FWE_INTRO = (
    "Read the following coded text and track the frequency of each coded word. "
    "Find the three most frequently appeared coded words."
)
FWE_QUESTION = (
    "Question: Do not provide any explanation. Please ignore the dots '....'. "
    "What are the three most frequently appeared words in the above coded text?"
)
FWE_PREFIX = " Answer: According to the coded text above, the three most frequently appeared words are:"
QA_INSTRUCTION = (
    "Answer the question based on the given documents. Only give me the answer and do not output any other words."
)
QA_INTRO = QA_INSTRUCTION + "\n\nThe following are given documents."
QA_QUESTION = QA_INSTRUCTION + "\n\nQuestion: {query}"
QA_PREFIX = " Answer:"
DOCUMENT = "Document {i}:\n{document}"

ESSAY_DEPTHS = tuple(round(100 * i / 39) / 100 for i in range(40))
"""RULER's 40 insertion depths for essay haystacks (0 to 100% evenly, whole percents)."""
HEATMAP_DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
"""The asked needle's depth in example ``i`` (``i % 5``): every depth of the heat map gets examples."""
VT_DEMO_NOISE = 15
"""Noise units in the variable-tracking demonstration (RULER's: a ~500-token example)."""


@dataclass(frozen=True)
class Generated:
    """One generated prompt: ``context`` (what a policy may compress), ``question``, the answer's start."""

    context: str
    question: str
    answer_prefix: str
    outputs: tuple[str, ...]
    meta: dict = field(default_factory=dict)

    def text(self) -> str:
        return self.context + self.question + self.answer_prefix


# ----------------------------------------------------------------------------- needles
def random_value(rng: random.Random, kind: str) -> str:
    """A key or value of RULER's types: a 7-digit number, an adjective-noun word, a UUID."""
    if kind == "numbers":
        return str(rng.randint(10**6, 10**7 - 1))
    if kind == "words":
        return f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}"
    if kind == "uuids":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    raise ValueError(f"unknown needle type {kind!r}")


def _distinct(rng: random.Random, kind: str, count: int, taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < count:
        value = random_value(rng, kind)
        if value not in taken:
            taken.add(value)
            out.append(value)
    return out


def niah(
    rng: random.Random,
    index: int,
    haystack: str,
    type_k: str,
    type_v: str,
    num_k: int = 1,
    num_v: int = 1,
    num_q: int = 1,
    essay_words: Sequence[str] = (),
) -> Callable[[int], Generated]:
    """Needle in a haystack: ``num_k`` keys with ``num_v`` values each; ``num_q`` keys asked.

    ``haystack`` is ``repeat`` (the noise sentences), ``essay`` (``n`` words of ``essay_words``,
    needles between sentences) or ``needle`` (``n`` distractor needles of other keys, then ``fill``
    noise sentences: a UUID needle is longer than the length tolerance, so the gap below one more
    needle is filled with shorter units).
    """
    num_k = max(num_k, num_q)
    taken: set[str] = set()
    keys = _distinct(rng, type_k, num_k, taken)
    values = [_distinct(rng, type_v, num_v, taken) for _ in keys]
    asked = rng.sample(range(num_k), num_q)
    needles = [(k, v) for k, vs in zip(keys, values, strict=True) for v in vs]
    rng.shuffle(needles)
    # The first asked needle sits at the heat map's depth of this example; the others anywhere.
    first = needles.index((keys[asked[0]], values[asked[0]][0]))
    if haystack == "essay":
        depths = rng.sample(ESSAY_DEPTHS, len(needles))
    else:
        depths = [rng.random() for _ in needles]
    depths[first] = HEATMAP_DEPTHS[index % len(HEATMAP_DEPTHS)]
    single = num_q * num_v == 1
    type_word = type_v[:-1] if single else type_v
    texts = [NEEDLE.format(type_v=type_v, key=k, value=v) for k, v in needles]  # plural, as RULER's needles
    queries = [keys[i] for i in asked]
    query = ", ".join(queries[:-1]) + ", and " + queries[-1] if len(queries) > 1 else queries[0]
    intro, question, prefix = NIAH_INTRO, NIAH_QUESTION, NIAH_PREFIX
    if single:  # RULER's singular wording for one answer
        intro = intro.replace("Some", "A").replace("are", "is")
        question = question.replace("are all", "is")
        prefix = prefix.replace("are", "is")
    intro, question = intro.format(type_v=type_word), question.format(type_v=type_word, query=query)
    prefix = prefix.format(type_v=type_word, query=query)
    outputs = tuple(v for i in asked for v in values[i])
    seed = rng.getrandbits(64)

    def build(n: int, fill: int = 0) -> Generated:
        if haystack == "essay":
            words = [essay_words[i % len(essay_words)] for i in range(n)]
            sentences = split_sentences(" ".join(words))
            joiner = " "
        elif haystack == "repeat":
            sentences, joiner = [NOISE] * n, "\n"
        else:  # distractor needles, drawn in order so that n + 1 extends n
            local = random.Random(seed)
            dkeys = _distinct(local, type_k, n, set(keys) | {v for vs in values for v in vs})
            sentences = [NEEDLE.format(type_v=type_v, key=k, value=random_value(local, type_v)) for k in dkeys]
            sentences += [NOISE] * fill
            joiner = "\n"
        parts = _insert(sentences, texts, depths)
        return Generated(intro + "\n" + joiner.join(parts), "\n" + question, prefix, outputs, {"depth": depths[first]})

    return build


def _insert(units: list[str], needles: list[str], depths: list[float]) -> list[str]:
    """``units`` with each needle placed before unit ``int(depth * len(units))`` (after all at depth 1)."""
    slots: dict[int, list[str]] = {}
    for needle, depth in sorted(zip(needles, depths, strict=True), key=lambda p: p[1]):
        slots.setdefault(int(depth * len(units)), []).append(needle)
    out: list[str] = []
    for i in range(len(units) + 1):
        out.extend(slots.get(i, ()))
        if i < len(units):
            out.append(units[i])
    return out


def split_sentences(text: str) -> list[str]:
    """Sentences of a text: split after ``.``, ``!`` or ``?`` followed by white space."""
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


# ----------------------------------------------------------------------------- variable tracking
def variable_tracking(rng: random.Random, num_chains: int = 1, num_hops: int = 4) -> Callable[[int], Generated]:
    """Chains ``VAR A = 12345``, ``VAR B = VAR A`` ... in noise; asks which variables hold the value.

    A demonstration with 3-letter names and a short haystack comes first, as RULER's one-shot prompt.
    """

    def chains(letters: int) -> tuple[list[list[str]], list[list[str]]]:
        names = _distinct_names(rng, letters, num_chains * (num_hops + 1))
        groups = [names[i : i + num_hops + 1] for i in range(0, len(names), num_hops + 1)]
        statements = []
        for g in groups:
            value = rng.randint(10000, 99999)
            statements.append([f"VAR {g[0]} = {value}"] + [f"VAR {g[j + 1]} = VAR {g[j]}" for j in range(num_hops)])
        return groups, statements

    def prompt(statements: list[list[str]], noise: int, positions: list[list[float]]) -> tuple[str, str, str]:
        units = [NOISE] * noise
        for chain, where in zip(statements, positions, strict=True):
            units = _insert(units, chain, sorted(where))
        value = statements[0][0].split("=")[-1].strip()
        context = VT_INTRO + "\n\n" + "\n".join(units)
        return context, "\n" + VT_QUESTION.format(query=value), VT_PREFIX.format(num_v=num_hops + 1, query=value)

    demo_groups, demo_statements = chains(3)
    demo_where = [[rng.random() for _ in chain] for chain in demo_statements]
    c, q, p = prompt(demo_statements, VT_DEMO_NOISE, demo_where)
    demo = c + q + p + " ".join(demo_groups[0]) + "\n\n"
    groups, statements = chains(5)
    where = [[rng.random() for _ in chain] for chain in statements]

    def build(n: int) -> Generated:
        context, question, prefix = prompt(statements, n, where)
        return Generated(demo + context, question, prefix, tuple(groups[0]))

    return build


def _distinct_names(rng: random.Random, letters: int, count: int) -> list[str]:
    names: list[str] = []
    while len(names) < count:
        name = "".join(rng.choices(string.ascii_uppercase, k=letters))
        if name not in names:
            names.append(name)
    return names


# ----------------------------------------------------------------------------- aggregation
def common_words(
    rng: random.Random, num_cw: int = 10, freq_cw: int = 30, freq_ucw: int = 3
) -> Callable[[int], Generated]:
    """A numbered list of ``n`` distinct words: ``num_cw`` of them ``freq_cw`` times, the rest
    ``freq_ucw`` times; asks for the common ones. One demonstration (40 words, 10 and 3 times) first."""
    pool = list(WORDS)
    seed = rng.getrandbits(64)

    def listing(local: random.Random, n: int, cw: int, ucw: int) -> tuple[str, list[str]]:
        words = local.sample(_word_pool(pool, n), n)
        common = words[:num_cw]
        entries = common * cw + words[num_cw:] * ucw
        local.shuffle(entries)
        return " ".join(f"{i + 1}. {w}" for i, w in enumerate(entries)), common

    demo_text, demo_answer = listing(random.Random(seed), 40, 10, 3)
    demo = (
        CWE_INTRO + "\n" + demo_text + "\n" + CWE_QUESTION + CWE_PREFIX + " "
        + " ".join(f"{i + 1}. {w}" for i, w in enumerate(demo_answer)) + "\n"
    )  # fmt: skip

    def build(n: int) -> Generated:
        text, answer = listing(random.Random(seed + 1), max(n, num_cw + 1), freq_cw, freq_ucw)
        return Generated(demo + CWE_INTRO + "\n" + text, "\n" + CWE_QUESTION, CWE_PREFIX, tuple(answer))

    return build


def _word_pool(pool: list[str], n: int) -> list[str]:
    """At least ``n`` distinct words: the single words, then adjective-noun compounds."""
    if n <= len(pool):
        return pool
    extra = (f"{a}{b}" for b in NOUNS for a in ADJECTIVES)
    return pool + [w for w, _ in zip(extra, range(n - len(pool)), strict=False)]


def frequent_words(rng: random.Random, alpha: float = 2.0, vocab_size: int = 2000, word_len: int = 6):
    """``n`` coded words drawn with Zipf(``alpha``) counts over a random vocabulary whose top word is
    the noise ``...``; asks for the next three most frequent."""
    vocab: list[str] = []
    while len(vocab) < vocab_size:
        word = "".join(rng.choices(string.ascii_lowercase, k=word_len))
        if word not in vocab:
            vocab.append(word)
    vocab[0] = "..."
    zeta = _zeta(alpha)
    seed = rng.getrandbits(64)

    def build(n: int) -> Generated:
        counts = [int(n * (k**-alpha) / zeta) for k in range(1, vocab_size + 1)]
        words = [w for w, c in zip(vocab, counts, strict=True) for _ in range(c)]
        random.Random(seed).shuffle(words)
        return Generated(FWE_INTRO + " " + " ".join(words), "\n" + FWE_QUESTION, FWE_PREFIX, tuple(vocab[1:4]))

    return build


@functools.cache
def _zeta(alpha: float) -> float:
    """Riemann zeta(alpha), summed once per alpha (RULER's Zipf normaliser)."""
    return sum(k**-alpha for k in range(1, 100_000))


# ----------------------------------------------------------------------------- question answering
@dataclass(frozen=True)
class QaSet:
    """Documents and questions (SQuAD or HotpotQA, as RULER reads them): each question names its
    gold documents by index into ``documents``."""

    documents: list[str]
    questions: list[tuple[str, tuple[str, ...], tuple[int, ...]]]  # (question, answers, gold documents)


def question_answering(rng: random.Random, qa: QaSet, index: int) -> Callable[[int], Generated]:
    """Question ``index`` over its gold documents and ``n`` documents in all (distractors drawn from
    the other questions'), shuffled and numbered; the last distractor may be cut to fill the length."""
    question, answers, gold = qa.questions[index % len(qa.questions)]
    others = [i for i in range(len(qa.documents)) if i not in set(gold)]
    rng.shuffle(others)
    seed = rng.getrandbits(64)

    def build(n: int, cut: int | None = None) -> Generated:
        chosen = list(gold) + others[: max(0, n - len(gold))]
        docs = [qa.documents[i] for i in chosen]
        if cut is not None:  # words of one more distractor
            docs.append(" ".join(qa.documents[others[max(0, n - len(gold))]].split()[:cut]))
        random.Random(seed).shuffle(docs)
        context = "\n\n".join(DOCUMENT.format(i=i + 1, document=d) for i, d in enumerate(docs))
        return Generated(
            QA_INTRO + "\n\n" + context, "\n\n" + QA_QUESTION.format(query=question), QA_PREFIX, tuple(answers)
        )

    return build


# ----------------------------------------------------------------------------- sizing
def largest(fits: Callable[[int], bool], guess: int, low: int = 1, high: int | None = None) -> int:
    """The largest ``n >= low`` with ``fits(n)`` (``fits`` true up to some n, false after), found by
    galloping from ``guess`` then bisecting; ``low - 1`` when even ``low`` does not fit."""
    guess = max(low, guess if high is None else min(guess, high))
    if fits(guess):
        good, step = guess, 1
        while high is None or good < high:
            probe = good + step if high is None else min(good + step, high)
            if not fits(probe):
                bad = probe
                break
            good, step = probe, step * 2
        else:
            return good
    else:
        bad, step = guess, 1
        while True:
            probe = bad - step
            if probe < low:
                if not fits(low):
                    return low - 1
                good = low
                break
            if fits(probe):
                good = probe
                break
            bad, step = probe, step * 2
    while bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if fits(mid) else (good, mid)
    return good


def fit(
    build: Callable[[int], Generated], count: Callable[[str], int], target: int, guess: int, high: int | None = None
) -> tuple[Generated, int, int]:
    """The example at the largest size whose prompt takes at most ``target`` tokens: (example, size, tokens)."""
    tokens: dict[int, int] = {}

    def fits(n: int) -> bool:
        if n not in tokens:
            tokens[n] = count(build(n).text())
        return tokens[n] <= target

    n = largest(fits, guess, high=high)
    if n < 1:
        raise ValueError(f"a target of {target} tokens is too small: the smallest prompt takes {tokens[1]} tokens")
    return build(n), n, tokens[n]


def guess_units(build: Callable[[int], Generated], count: Callable[[str], int], target: int) -> int:
    """A first size: the target over the tokens per unit measured at 64 units."""
    base, more = count(build(1).text()), count(build(65).text())
    per_unit = max((more - base) / 64, 1e-3)
    return max(1, int((target - base) / per_unit))
