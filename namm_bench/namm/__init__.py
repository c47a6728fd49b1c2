"""The Neural Attention Memory Model (Cetin et al., ICLR 2025), model-independent parts.

``features``: attention spectrogram (STFT + EMA), online normalisation, recency embedding.
``scorer``: the BAM scoring network and binary selection.
``checkpoint``: the project's safetensors + JSON format and the evo-memory ``ckpt.pt`` layout.
"""

from .checkpoint import NammCheckpoint, load_checkpoint, save_checkpoint
from .scorer import NammConfig

__all__ = ["NammCheckpoint", "NammConfig", "load_checkpoint", "save_checkpoint"]
