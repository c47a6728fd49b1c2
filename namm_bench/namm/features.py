"""Token features of the NAMM: attention spectrogram, EMA, normalisation, recency.

Follows ``namm-reference.md`` sections 2.1-2.6 (evo-memory ``AttentionSpectrogram`` and
``RecencyEmbeddingWrapper``). The reference buffers the 512 x N attention map between NAMM
calls; here the spectrogram is computed frame by frame as queries arrive, keeping only the
last 16 query rows of left context and the current partial frame, so a layer's state is
O(cache length). ``tests/test_namm_features.py`` checks it against a buffered ``torch.stft``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

N_FFT = 32
HOP = 16
N_BINS = N_FFT // 2 + 1  # 17 one-sided frequency bins


def dft_basis(n_fft: int = N_FFT) -> tuple[torch.Tensor, torch.Tensor]:
    """Real and imaginary one-sided DFT bases with the periodic Hann window folded in.

    ``x @ re`` and ``x @ im`` give the real and imaginary STFT coefficients of a frame ``x``,
    the same as ``torch.stft(..., window=hann_window(n_fft, periodic=True), center=False)``.
    """
    t = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    angle = 2 * math.pi * t[:, None] * k[None, :] / n_fft
    re = window[:, None] * torch.cos(angle)
    im = -window[:, None] * torch.sin(angle)
    return re.float(), im.float()


@dataclass
class SpectrogramState:
    """Per-layer running spectrogram of the attention each cached token received.

    Shapes use B (batch), H (KV heads), N (cached tokens):
    ``ema`` (B, H, N, 17) un-normalised EMA of spectrogram magnitudes;
    ``context`` (B, H, N, 16) the previous frame's 16 query rows (STFT left context);
    ``pending`` (B, H, N, p < 16) query rows of the frame being filled.
    """

    ema: torch.Tensor
    context: torch.Tensor
    pending: torch.Tensor

    @classmethod
    def empty(cls, batch: int, heads: int, device: torch.device) -> SpectrogramState:
        z = torch.zeros(batch, heads, 0, N_BINS, device=device)
        return cls(ema=z, context=z.new_zeros(batch, heads, 0, HOP), pending=z.new_zeros(batch, heads, 0, 0))

    @property
    def length(self) -> int:
        return self.ema.shape[2]

    def grow(self, n: int) -> None:
        """Add ``n`` new tokens with zero history (they received no attention before arriving)."""
        if n <= 0:
            return
        self.ema = _pad_tokens(self.ema, n)
        self.context = _pad_tokens(self.context, n)
        self.pending = _pad_tokens(self.pending, n)

    def gather(self, idx: torch.Tensor) -> None:
        """Keep the tokens ``idx`` (B, H, K), as the cache does at eviction."""
        self.ema = _gather_tokens(self.ema, idx)
        self.context = _gather_tokens(self.context, idx)
        self.pending = _gather_tokens(self.pending, idx)


def _pad_tokens(x: torch.Tensor, n: int) -> torch.Tensor:
    return torch.cat([x, x.new_zeros(*x.shape[:2], n, x.shape[3])], dim=2)


def _gather_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return x.gather(2, idx[..., None].expand(*idx.shape, x.shape[3]))


class AttentionSpectrogram:
    """Incremental STFT (n_fft 32, hop 16, periodic Hann, magnitudes) and EMA over query frames.

    Within a call the reference forms E_j = sum_f (1 - lam) lam^(T-1-f) S_fj with lam = gamma^16
    and adds gamma^(16 T) E_j^prev across calls; updating E <- lam E + (1 - lam) S_f at every
    completed frame gives the same sum. Frames align to multiples of 16 queries from the start
    of the sequence, which is where the reference's frames fall since calls come every 512.
    """

    def __init__(self, ema_coeff: float = 0.99, device: torch.device | str = "cpu") -> None:
        self.frame_decay = ema_coeff**HOP
        self.basis = torch.cat(dft_basis(), dim=1).to(device)

    def update(self, state: SpectrogramState, attention: torch.Tensor) -> None:
        """Fold the attention rows of new queries into ``state``.

        ``attention``: (B, H, q, N) probabilities of q new queries over the N cached tokens,
        N = ``state.length`` after ``state.grow`` for the tokens these queries brought.
        """
        rows = torch.cat([state.pending, attention.transpose(2, 3).float()], dim=3)
        frames = rows.shape[3] // HOP
        if frames == 0:
            state.pending = rows
            return
        used = frames * HOP
        signal = torch.cat([state.context, rows[..., :used]], dim=3)
        # contiguous: matmul on unfold's overlapping strides is ~200x slower on CPU
        windows = signal.unfold(3, N_FFT, HOP).contiguous()  # (B, H, N, frames, 32)
        coeffs = windows @ self.basis  # (B, H, N, frames, 34): real parts, then imaginary parts
        mag = torch.sqrt(coeffs[..., :N_BINS] ** 2 + coeffs[..., N_BINS:] ** 2)  # (B, H, N, frames, 17)
        lam = self.frame_decay
        weights = (1 - lam) * lam ** torch.arange(frames - 1, -1, -1, device=mag.device, dtype=mag.dtype)
        state.ema = lam**frames * state.ema + torch.einsum("bhnfk,f->bhnk", mag, weights)
        state.context = rows[..., used - HOP : used]
        state.pending = rows[..., used:]


class LayerSpectrograms:
    """One ``SpectrogramState`` per layer, fed with the attention the controller observes."""

    def __init__(self, ema_coeff: float) -> None:
        self.ema_coeff = ema_coeff
        self.spectrogram = AttentionSpectrogram(ema_coeff)
        self.states: list[SpectrogramState | None] = []

    def reset(self, num_layers: int) -> None:
        self.states = [None] * num_layers

    def observe(self, layer: int, attention: torch.Tensor) -> None:
        """Fold new queries' attention (B, H, q, N) into ``layer``'s state, adding its new tokens."""
        state = self.states[layer]
        if state is None:
            state = self.states[layer] = SpectrogramState.empty(*attention.shape[:2], attention.device)
        if self.spectrogram.basis.device != attention.device:  # states restored from a prefix skip the branch above
            self.spectrogram = AttentionSpectrogram(self.ema_coeff, attention.device)
        state.grow(attention.shape[-1] - state.length)
        self.spectrogram.update(state, attention)


@dataclass
class RunningStats:
    """Per-bin mean and population variance, pooled with Chan et al.'s parallel merge."""

    mean: torch.Tensor
    var: torch.Tensor
    count: int = 0

    @classmethod
    def empty(cls, dim: int = N_BINS) -> RunningStats:
        return cls(mean=torch.zeros(dim), var=torch.zeros(dim), count=0)

    @classmethod
    def pooled(cls, batches: Iterable[torch.Tensor], dim: int = N_BINS) -> RunningStats:
        """Statistics pooled over every row of every tensor in ``batches``."""
        stats = cls.empty(dim)
        for values in batches:
            stats.merge(values)
        return stats

    def merge(self, values: torch.Tensor) -> None:
        """Pool the rows of ``values`` (..., dim, on any device) into the statistics (kept on theirs)."""
        flat = values.reshape(-1, values.shape[-1]).to(self.mean.device).double()
        n = flat.shape[0]
        if n == 0:
            return
        mean_b = flat.mean(0)
        var_b = flat.var(0, unbiased=False)
        total = self.count + n
        delta = mean_b - self.mean.double()
        mean = self.mean.double() + delta * n / total
        m2 = self.var.double() * self.count + var_b * n + delta**2 * self.count * n / total
        self.mean, self.var, self.count = mean.float(), (m2 / total).float(), total

    def normalise(self, values: torch.Tensor) -> torch.Tensor:
        """z = (x - mean) / max(sqrt(var), 1e-7), as the reference's ``norm_base``."""
        mean = self.mean.to(values.device)
        std = self.var.to(values.device).sqrt().clamp_min(1e-7)
        return (values - mean) / std


def recency_embedding(age: torch.Tensor, dims: int = 8, max_freq: float = 50000.0) -> torch.Tensor:
    """Sinusoidal embedding of token age: [sin(a w_0..w_{d/2-1}), cos(...)], w_k = max_freq^(-2k/d)."""
    half = dims // 2
    freqs = max_freq ** (-torch.arange(half, device=age.device, dtype=torch.float32) / half)
    angles = age.float()[..., None] * freqs
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


def token_features(
    ema: torch.Tensor, positions: torch.Tensor, stats: RunningStats, recency_dims: int, max_freq: float
) -> torch.Tensor:
    """The NAMM's per-token input (reference section 2.6): [recency embedding, normalised EMA].

    ``ema`` (..., N, 17) and ``positions`` (..., N); a token's age counts from the newest entry.
    """
    age = positions[..., -1:] - positions
    return torch.cat([recency_embedding(age, recency_dims, max_freq), stats.normalise(ema)], dim=-1)
