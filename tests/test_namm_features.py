"""The incremental spectrogram against a buffered torch.stft computation (namm-reference.md 2.1-2.3)."""

import math

import torch

from namm_bench.namm.features import (
    HOP,
    N_FFT,
    AttentionSpectrogram,
    RunningStats,
    SpectrogramState,
    token_features,
)


def buffered_reference(attn: torch.Tensor, calls: list[int], gamma: float = 0.99) -> torch.Tensor:
    """The reference's per-call computation: buffer each call's queries, STFT with left context, EMA.

    ``attn`` (B, H, T, N): causal attention of T queries over N tokens (token j arrives with query j).
    ``calls``: query counts at which the NAMM runs (multiples of 16); no eviction in between.
    """
    b, h = attn.shape[:2]
    lam = gamma**HOP
    bins = N_FFT // 2 + 1
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64)
    ema = torch.zeros(b, h, 0, bins, dtype=torch.float64)
    prev = None
    start = 0
    for end in calls:
        x = attn[:, :, start:end, :end].transpose(2, 3).double()  # (B, H, N = end, q) buffered map
        q = end - start
        prefix = torch.zeros(b, h, end, N_FFT - HOP, dtype=torch.float64)
        if prev is not None:  # old tokens: the previous call's last 16 query columns; new ones: zeros
            prefix[:, :, :start] = prev[..., -(N_FFT - HOP) :]
        signal = torch.cat([prefix, x], dim=3).reshape(-1, q + N_FFT - HOP)
        spec = torch.stft(signal, N_FFT, HOP, window=window, center=False, return_complex=True).abs()
        spec = spec.reshape(b, h, end, bins, -1)  # (B, H, N, bins, frames)
        frames = spec.shape[-1]
        weights = (1 - lam) * lam ** torch.arange(frames - 1, -1, -1, dtype=torch.float64)
        block = (torch.arange(end) - start).clamp_min(0) // HOP  # a new token counts frames from its block
        mask = (torch.arange(frames)[None, :] >= block[:, None]).double()
        new_ema = torch.einsum("bhnkf,f,nf->bhnk", spec, weights, mask)
        new_ema[:, :, :start] += gamma**q * ema
        ema, prev, start = new_ema, x, end
    return ema.float()


def causal_attention(b=1, h=2, t=96, seed=0):
    torch.manual_seed(seed)
    logits = torch.randn(b, h, t, t)
    logits = logits.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
    return logits.softmax(-1)


def test_incremental_equals_buffered_stft():
    attn = causal_attention(t=96)
    expected = buffered_reference(attn, calls=[32, 64, 96])
    spectrogram = AttentionSpectrogram()
    state = SpectrogramState.empty(1, 2, torch.device("cpu"))
    # feed in uneven pieces (a 24-query chunk, then single decode steps, then a 40-query chunk)
    for start, end in [(0, 24), *[(i, i + 1) for i in range(24, 56)], (56, 96)]:
        state.grow(end - state.length)
        spectrogram.update(state, attn[:, :, start:end, :end])
    assert state.ema.shape == expected.shape
    torch.testing.assert_close(state.ema, expected, atol=1e-5, rtol=0)
    assert state.ema.abs().max() > 1e-3  # the comparison is not between zeros


def test_partial_frame_waits_for_sixteen_queries():
    attn = causal_attention(t=40)
    spectrogram = AttentionSpectrogram()
    state = SpectrogramState.empty(1, 2, torch.device("cpu"))
    state.grow(8)
    spectrogram.update(state, attn[:, :, :8, :8])
    assert state.ema.abs().max() == 0 and state.pending.shape[-1] == 8
    state.grow(8)
    spectrogram.update(state, attn[:, :, 8:16, :16])
    assert state.pending.shape[-1] == 0 and state.ema.abs().max() > 0


def test_running_stats_match_pooled_moments():
    torch.manual_seed(1)
    chunks = [torch.randn(1, 3, n, 17) * 2 + 1 for n in (5, 40, 13)]
    stats = RunningStats.pooled(chunks)
    pooled = torch.cat([c.reshape(-1, 17) for c in chunks])
    torch.testing.assert_close(stats.mean, pooled.mean(0), atol=1e-5, rtol=0)
    torch.testing.assert_close(stats.var, pooled.var(0, unbiased=False), atol=1e-5, rtol=0)
    assert stats.count == 3 * 58  # rows pooled over heads and tokens


def test_token_age_counts_back_from_the_newest_cached_entry():
    """Pins the recency feature (reference 2.5-2.6): age_j = pos_newest - pos_j, so the newest entry has age 0
    (sin parts 0, cos parts 1), with gaps in the positions (as after evictions) carried into the ages.

    Features are [sin(a w_k), cos(a w_k)] for w_k = 50000^(-k/4), k = 0..3, then the normalised EMA.
    """
    positions = torch.tensor([[[0, 3, 7, 20, 21]]])  # the newest entry is position 21
    ages = [21, 18, 14, 1, 0]
    ema = torch.rand(1, 1, 5, 17)
    stats = RunningStats(mean=torch.zeros(17), var=torch.ones(17))  # identity normalisation
    feats = token_features(ema, positions, stats, recency_dims=8, max_freq=50000.0)
    assert feats.shape == (1, 1, 5, 25)
    torch.testing.assert_close(feats[0, 0, -1, :8], torch.tensor([0.0] * 4 + [1.0] * 4))
    omegas = [50000.0 ** (-k / 4) for k in range(4)]
    expected = torch.tensor([[math.sin(a * w) for w in omegas] + [math.cos(a * w) for w in omegas] for a in ages])
    torch.testing.assert_close(feats[0, 0, :, :8], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(feats[..., 8:], ema)
