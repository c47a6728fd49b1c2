"""lm-evaluation-harness model ``namm-hf``: lm-eval's Hugging Face model with a namm-bench memory policy.

Importing this module registers ``namm-hf`` in lm-eval's model registry (lm-eval finds models
only by import). From Python::

    import lm_eval
    import namm_bench.lm_eval_model  # noqa: F401 - registers namm-hf

    lm_eval.simple_evaluate(model="namm-hf", model_args="pretrained=DIR,policy=snapkv,budget=0.25,"
                            "protocol=post-prefill", tasks=[...])

From the shell, ``namm-bench-lm-eval`` (or ``python -m namm_bench.lm_eval_model``) is lm-eval's own
CLI with ``namm-hf`` registered: ``namm-bench-lm-eval run --model namm-hf --model_args ... --tasks ...``.

Every ``generate()`` lm-eval makes (generate-until tasks) runs under ``namm_bench.memory``, and so
does every scoring forward (loglikelihood tasks: under ``streaming`` the policy evicts while the
request is read; the post-prefill protocols call it after the last token, which changes no
logit). Batch size 1, as the memory controller runs. The mean cache fraction is in
``results["config"]["namm_bench"]`` beside the policy's settings.
"""

from __future__ import annotations

import sys
from typing import Any

import torch

try:
    from lm_eval.api.registry import register_model
    from lm_eval.models.huggingface import HFLM
except ImportError as err:  # an optional extra
    raise ImportError(f"namm-hf needs lm-eval: pip install 'namm-bench[lm-eval]' ({err})") from err

from .budget import Budget
from .hf_memory import Memory

NAME = "namm-hf"


@register_model(NAME)
class NammHFLM(HFLM):
    """``hf`` (lm-eval's ``HFLM``) whose forwards and generations run under a namm-bench memory policy.

    Parameters
    ----------
    policy, budget, protocol
        As ``namm_bench.memory``: a policy of ``namm-bench list`` (default ``full``), a ratio
        (``0.25``) or token count (``512``) for the policies that take one, and ``streaming``,
        ``post-prefill`` or ``post-prefill-context`` (whose ``question_start`` is not known to
        lm-eval: refused).
    interval, chunk_size, prompt_end_call, namm_checkpoint
        ``namm-bench run``'s ``--interval``, ``--chunk-size``, ``--[no-]prompt-end-call`` and
        ``--namm-checkpoint``.
    **kwargs
        lm-eval's ``hf`` model arguments (``pretrained``, ``device``, ``dtype`` ...); ``batch_size``
        must be 1.
    """

    def __init__(
        self,
        policy: str = "full",
        budget: float | int | str | None = None,
        protocol: str = "streaming",
        interval: int = 512,
        chunk_size: int = 128,
        prompt_end_call: bool = True,
        namm_checkpoint: str | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("batch_size") not in (None, 1, "1"):
            raise ValueError(f"{NAME} runs batch size 1 (the memory controller's), not {kwargs['batch_size']}")
        if protocol == "post-prefill-context":
            raise ValueError(f"{NAME}: lm-eval gives whole prompts, so post-prefill-context has no question to split")
        super().__init__(**kwargs)
        budget = Budget(ratio=budget) if isinstance(budget, float) else budget  # model_args parse 0.25 as a float
        settings = {"interval": interval, "chunk_size": chunk_size, "prompt_end_call": prompt_end_call}
        if namm_checkpoint is not None:
            settings["namm_checkpoint"] = namm_checkpoint
        self.memory = Memory(self.model, policy, budget, protocol, **settings)
        self.settings = {"policy": policy, "budget": None if budget is None else str(budget), "protocol": protocol}
        self.settings.update(settings)

    @property
    def cache_fractions(self) -> list[float]:
        """Each sequence's cache fraction (one per generation or scoring forward), in order."""
        return [stats.cache_fraction for stats in self.memory.history]

    def _model_call(self, inps: torch.Tensor, attn_mask: torch.Tensor | None = None, labels: Any = None) -> Any:
        with self.memory:
            return super()._model_call(inps, attn_mask, labels)

    def _model_generate(self, context: torch.Tensor, max_length: int, stop: list[str], **generation_kwargs: Any):
        # lm-eval passes no mask, and generate() would mask any pad token of the prompt (often its eos)
        generation_kwargs.setdefault("attention_mask", torch.ones_like(context))
        with self.memory:
            return super()._model_generate(context, max_length, stop, **generation_kwargs)

    def get_model_info(self) -> dict:
        fractions = self.cache_fractions
        mean = sum(fractions) / len(fractions) if fractions else None
        info = {**self.settings, "cache_fraction": mean, "sequences": len(fractions)}
        return {**super().get_model_info(), "namm_bench": info}


def main() -> None:
    """lm-eval's command line, with ``namm-hf`` registered."""
    from lm_eval.__main__ import cli_evaluate

    sys.argv[0] = "lm-eval"
    cli_evaluate()


if __name__ == "__main__":
    main()
