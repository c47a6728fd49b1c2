"""Answer metrics of the long-context benchmarks, each a function ``(prediction, answer, **kw) -> [0, 1]``.

LongBench (Bai et al. 2024, "LongBench: A Bilingual, Multitask Benchmark for Long Context
Understanding") scores a prediction against each gold answer and keeps the best; these functions
reproduce its official ``metrics.py`` rule for rule, and ``tests/test_metrics.py`` checks them on
the official metric's own scores (``../shared/data/longbench/metric_cases.jsonl``).

ChouBun (Sakana AI's Japanese benchmark, introduced with NAMMs) scores F1 and Rouge-L the same
way on MeCab words (``fugashi`` with the ``unidic-lite`` dictionary).

Libraries: Rouge-L is the ``rouge`` package (1.0.1) the official code calls; Chinese words come
from ``jieba`` as there. The code-similarity ratio is ``difflib.SequenceMatcher`` rounded to a
whole percent, which is what the official ``fuzzywuzzy.fuzz.ratio`` computes without
python-Levenshtein; ``rapidfuzz.fuzz.ratio`` measures an edit distance instead and is not rounded
(0.8649 against 0.86 on one official case), so it is not used.
"""

from __future__ import annotations

import difflib
import re
import string
from collections import Counter
from collections.abc import Callable
from functools import cache

ZH_PUNCTUATION = (
    "！？｡。＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､、〃》「」"
    "『』【】〔〕〖〗〘〙〚〛〜〝〞〟〰〾〿–—‘’‛“”„‟…‧﹏."
)
"""Punctuation removed from Chinese answers, besides ``string.punctuation`` (LongBench's set)."""


# ----------------------------------------------------------------------------- normalisation
def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def normalize_zh_answer(text: str) -> str:
    """Lower case, no Chinese or ASCII punctuation, no whitespace at all."""
    drop = set(string.punctuation + ZH_PUNCTUATION)
    return "".join(ch for ch in "".join(text.lower().split()) if ch not in drop)


def _jieba_words(text: str) -> list[str]:
    import jieba

    jieba.setLogLevel(60)  # its dictionary-loading notices are not warnings
    return list(jieba.cut(text, cut_all=False))


@cache
def _mecab():
    from fugashi import Tagger

    return Tagger()  # the unidic-lite dictionary


def _mecab_words(text: str) -> list[str]:
    return [word.surface for word in _mecab()(text)]


# ----------------------------------------------------------------------------- token F1
def token_f1(prediction: list[str], reference: list[str]) -> float:
    """F1 of the multiset overlap of two token lists (0 when nothing is shared)."""
    same = sum((Counter(prediction) & Counter(reference)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(prediction), same / len(reference)
    return 2 * precision * recall / (precision + recall)


def qa_f1(prediction: str, answer: str, **_) -> float:
    return token_f1(normalize_answer(prediction).split(), normalize_answer(answer).split())


def _normalised_words(text: str, split: Callable[[str], list[str]]) -> list[str]:
    return [w for w in (normalize_zh_answer(t) for t in split(text)) if w]


def qa_f1_zh(prediction: str, answer: str, **_) -> float:
    return token_f1(_normalised_words(prediction, _jieba_words), _normalised_words(answer, _jieba_words))


def qa_f1_ja(prediction: str, answer: str, **_) -> float:
    """ChouBun's F1: MeCab words, each normalised as LongBench's Chinese ones (no punctuation or spaces)."""
    return token_f1(_normalised_words(prediction, _mecab_words), _normalised_words(answer, _mecab_words))


# ----------------------------------------------------------------------------- Rouge-L
def rouge_l(prediction: str, answer: str, **_) -> float:
    """Rouge-L F of the ``rouge`` package; 0 where it refuses the input (an empty text)."""
    from rouge import Rouge

    try:
        return float(Rouge().get_scores([prediction], [answer], avg=True)["rouge-l"]["f"])
    except (ValueError, RecursionError):  # empty hypothesis or reference; very long texts
        return 0.0


def rouge_l_zh(prediction: str, answer: str, **_) -> float:
    return rouge_l(" ".join(_jieba_words(prediction)), " ".join(_jieba_words(answer)))


def rouge_l_ja(prediction: str, answer: str, **_) -> float:
    """ChouBun's Rouge-L: the ``rouge`` package on MeCab words joined by spaces."""
    return rouge_l(" ".join(_mecab_words(prediction)), " ".join(_mecab_words(answer)))


# ----------------------------------------------------------------------------- the rest
def classification(prediction: str, answer: str, all_classes: list[str] = (), **_) -> float:
    """1 / #classes named in the prediction if the gold one is among them.

    Classes that are proper substrings of the gold class do not count as named.
    """
    named = [c for c in all_classes if c in prediction]
    named = [c for c in named if not (c in answer and c != answer)]
    return 1.0 / len(named) if answer in named else 0.0


def _share_equal(prediction: str, target: str) -> float:
    numbers = re.findall(r"\d+", prediction)
    return sum(n == target for n in numbers) / len(numbers) if numbers else 0.0


def count(prediction: str, answer: str, **_) -> float:
    """Share of the numbers in the prediction that equal the gold count."""
    return _share_equal(prediction, str(answer))


def retrieval(prediction: str, answer: str, **_) -> float:
    """Share of the numbers in the prediction that equal the gold ``Paragraph N``."""
    return _share_equal(prediction, re.findall(r"Paragraph (\d+)", answer)[0])


def retrieval_zh(prediction: str, answer: str, **_) -> float:
    return _share_equal(prediction, re.findall(r"段落(\d+)", answer)[0])


def code_sim(prediction: str, answer: str, **_) -> float:
    """Similarity ratio of the first generated line that is not a comment or a code fence."""
    lines = prediction.lstrip("\n").split("\n")
    line = next((x for x in lines if "`" not in x and "#" not in x and "//" not in x), "")
    if line == answer:
        return 1.0
    if not line or not answer:
        return 0.0
    return round(100 * difflib.SequenceMatcher(None, line, answer).ratio()) / 100


METRICS: dict[str, Callable[..., float]] = {
    "qa_f1": qa_f1,
    "qa_f1_zh": qa_f1_zh,
    "qa_f1_ja": qa_f1_ja,
    "rouge": rouge_l,
    "rouge_zh": rouge_l_zh,
    "rouge_ja": rouge_l_ja,
    "classification": classification,
    "count": count,
    "retrieval": retrieval,
    "retrieval_zh": retrieval_zh,
    "code_sim": code_sim,
}


def best_over_answers(metric: str, prediction: str, answers: list[str], **kwargs) -> float:
    """The metric against every gold answer, the best kept (LongBench's rule)."""
    fn = METRICS[metric]
    return max((fn(prediction, a, **kwargs) for a in answers), default=0.0)


def string_match_all(prediction: str, references: list[str]) -> float:
    """RULER's metric: the share of references found in the prediction (case-insensitive)."""
    text = prediction.lower()
    return sum(r.lower() in text for r in references) / len(references)


def string_match_part(prediction: str, references: list[str]) -> float:
    """RULER's QA metric: 1 if any reference is found in the prediction (case-insensitive), else 0."""
    text = prediction.lower()
    return float(any(r.lower() in text for r in references))
