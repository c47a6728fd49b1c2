"""An attention implementation that hands policies the probabilities they read, without eager attention.

Policies such as H2O and the NAMM read the new queries' attention probabilities, averaged over
each GQA group. Transformers' eager attention returns them, but repeats every key and value
head ``groups`` times, adds the mask over the whole (q, N) block and casts the probabilities to
the weights' dtype. This implementation, registered with transformers' ``AttentionInterface``
as :data:`IMPLEMENTATION`, computes each layer once:

- the logits of a KV group's query heads as one matmul against that group's keys (no copies),
  the scale applied to the queries;
- the causal mask on the last q columns only (the controller's layers see their whole cache);
- the softmax in float32, which the policy reads whatever the weights' dtype;
- the output as the probabilities times the values, grouped the same way.

Layers without an observer (a hybrid model's sliding-window layers, or outside a controller)
run transformers' SDPA. Query rows are taken in blocks so that a block's probabilities stay
under :data:`BLOCK_ELEMENTS` floats at long contexts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

IMPLEMENTATION = "namm_bench_reading"
"""The name models are switched to (``model.set_attn_implementation``) while a policy reads attention."""
OBSERVER = "_namm_bench_observe"
"""Attribute of an attention module holding the callable that receives its (B, kv_heads, q, N) probabilities."""
QUERIES = "_namm_bench_queries"
"""Attribute of an attention module holding the callable that receives its (B, heads, q, d) queries."""
PADDING = "_namm_bench_padding"
"""Attribute of an attention module holding a (B, kv_heads, past) bool of the cached entries that are
padding (heads of a layer holding different numbers of entries), or None."""
BLOCK_ELEMENTS = 1 << 26
"""Float32 probabilities one block of query rows may hold (256 MiB)."""


def grouped_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    scaling: float,
    softcap: float | None = None,
    padding: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal attention of q new queries over a cache whose last q entries are theirs.

    Parameters
    ----------
    query
        (B, H, q, d), RoPE applied; H a multiple of the KV heads, grouped as ``repeat_kv`` does
        (query head h reads KV head h // groups).
    key, value
        (B, kv_heads, N, d) with N >= q: every cached entry is visible, the last q causally.
    padding
        (B, kv_heads, N - q) bool: cached entries no query sees (a head's padding), or None.

    Returns
    -------
    output, probabilities
        (B, q, H, d) as attention functions return it, and (B, kv_heads, q, N) float32
        probabilities averaged over each group's query heads.
    """
    b, heads, q, d = query.shape
    kv_heads, n = key.shape[1], key.shape[2]
    groups = heads // kv_heads
    past = n - q
    grouped = (query * scaling).reshape(b, kv_heads, groups, q, d)  # scaled here: q x d numbers, not q x N
    rows = max(1, BLOCK_ELEMENTS // max(1, b * heads * n))
    outputs, means = [], []
    for start in range(0, q, rows):
        end = min(q, start + rows)
        logits = torch.matmul(grouped[:, :, :, start:end].reshape(b, kv_heads, -1, d), key.transpose(2, 3))
        logits = logits.float().view(b, kv_heads, groups, end - start, n)
        if softcap is not None:
            logits = torch.tanh(logits.div_(softcap)).mul_(softcap)
        if q > 1:  # query i sees the cache up to entry past + i
            hidden = torch.ones(end - start, q, dtype=torch.bool, device=query.device).triu(diagonal=start + 1)
            logits[..., past:].masked_fill_(hidden, float("-inf"))
        if padding is not None:
            logits[..., :past].masked_fill_(padding[:, :, None, None, :], float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        out = torch.matmul(probs.view(b, kv_heads, -1, n).to(value.dtype), value)
        outputs.append(out.view(b, kv_heads, groups, end - start, d))
        means.append(probs.mean(dim=2))
    output = torch.cat(outputs, dim=3).reshape(b, heads, q, d).transpose(1, 2).contiguous()
    return output, torch.cat(means, dim=2)


def reading_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """A transformers attention function: :func:`grouped_attention` where the module has an observer, else
    SDPA; the queries go to the module's query observer first, where it has one."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    queries: Callable[[torch.Tensor], None] | None = getattr(module, QUERIES, None)
    if queries is not None:
        queries(query)
    observe: Callable[[torch.Tensor], None] | None = getattr(module, OBSERVER, None)
    if observe is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    if kwargs.get("s_aux") is not None:
        raise ValueError("attention sinks (s_aux) are not supported by policies that read attention")
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    output, probs = grouped_attention(query, key, value, scale, kwargs.get("softcap"), getattr(module, PADDING, None))
    observe(probs)
    return output, None


def register() -> str:
    """Register :data:`IMPLEMENTATION` with transformers (idempotent) and return its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(IMPLEMENTATION, reading_attention)
    AttentionMaskInterface.register(IMPLEMENTATION, sdpa_mask)  # the layers it leaves to SDPA take SDPA's masks
    return IMPLEMENTATION
