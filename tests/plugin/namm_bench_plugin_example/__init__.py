"""An outside package's policy, adapter and suite (docs/extending.md's "Adding ..." examples, installed by a test)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from namm_bench.adapters.llama import LlamaAdapter
from namm_bench.interfaces import Outcome, TextExample, prediction_text
from namm_bench.policies import ScorerPolicy


@dataclass
class RecentWindow(ScorerPolicy):
    """Keep the most recent tokens (a sliding window): the score is the token's position."""

    name = "recent"

    def score(self, layer, keys, values, positions, tokens_seen):
        return positions.float()


class PlainPromptAdapter(LlamaAdapter):
    """The text adapter, feeding every prompt without the chat template."""

    name = "plain_prompt"
    model_types = ()  # chosen with --adapter plain_prompt only

    def run(self, example, policy, config, options):
        return super().run(dataclasses.replace(example, chat=False), policy, config, options)


class CountingSuite:
    """Count the words of a short list: exact match on the first number in the answer."""

    name = "counting"
    modality = "text"
    default_adapter = "llama"

    def __init__(self, data_dir: str | None = None) -> None:
        self.data_dir = data_dir

    def tasks(self) -> list[str]:
        return ["count_words"]

    def examples(self, task, count_tokens, max_prompt_tokens, seed, limit):
        out = []
        for i in range(limit or 3):
            words = ["green", "blue", "sky", "grass"][: 1 + (seed + i) % 4]
            out.append(
                TextExample(task, f"{task}-{seed + i}", " ".join(words) + "\n", "How many words?", str(len(words)), 4)
            )
        return out

    def score(self, example: TextExample, outcome: Outcome | str) -> float:
        digits = "".join(c for c in prediction_text(outcome) if c.isdigit())
        return float(digits[:1] == example.answer)
