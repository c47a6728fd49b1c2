"""KeyDiff: keep the keys least similar to the mean key direction (Park et al., 2025)."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .scorer import ScorerPolicy


@dataclass
class KeyDiff(ScorerPolicy):
    """Keep, per KV head, the keys whose direction differs most from the average key's.

    Park et al., "KeyDiff: Key Similarity-Based KV Cache Eviction for Long-Context LLM Inference
    in Resource-Constrained Environments", 2025: keys that point away from the others' mean
    direction draw distinctive attention. Score = minus the cosine similarity between a key and
    the mean of the head's unit-normalised keys. Reads no attention.

    Parameters
    ----------
    budget
        Entries kept per KV head: a token count or a ratio of tokens seen.
    """

    name = "keydiff"

    def score(self, layer, keys, values, positions, tokens_seen):
        keys = keys.float()
        anchor = F.normalize(keys, p=2, dim=-1).mean(dim=2, keepdim=True)
        return -F.cosine_similarity(keys, anchor, dim=-1)
