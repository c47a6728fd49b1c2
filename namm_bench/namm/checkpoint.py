"""NAMM checkpoints: the project's own format and the original evo-memory ``ckpt.pt``.

Own format: a directory with ``namm.safetensors`` (the flat parameter vector ``params``) and
``namm.json`` (format tag, architecture, normalisation statistics, provenance).
evo-memory: ``torch.save`` of ``{'evolution_state': CMA_ES.state_dict(), ...}`` whose ``mean`` is
the evaluated NAMM and whose ``stored_buffers_to_save.token_embedding_0_*`` hold the
normalisation statistics (``namm-reference.md`` sections 5.4, 8.3); read with
``torch.load(weights_only=True)`` and an allowlist of numpy's scalar types only, since the
trainer's ``best_val_loss`` is a numpy scalar (pickled as ``numpy.core.multiarray.scalar`` under
numpy 1.x, ``numpy._core.multiarray.scalar`` under 2.x, with its ``dtype``).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from ..files import write_atomic
from .features import N_BINS, RunningStats
from .scorer import NammConfig

FORMAT = "namm-bench/namm-v1"
PARAMS_FILE = "namm.safetensors"
CONFIG_FILE = "namm.json"
_EVO_BUFFERS = "stored_buffers_to_save.token_embedding_0_"


class CheckpointError(ValueError):
    """A NAMM checkpoint that is missing, malformed, of the wrong shape or not finite."""


@dataclass
class NammCheckpoint:
    params: torch.Tensor
    stats: RunningStats
    config: NammConfig = field(default_factory=NammConfig)
    provenance: dict[str, Any] = field(default_factory=dict)
    stats_frozen: bool | None = None
    """Whether the statistics are fixed; by default, when they hold data at creation."""

    def __post_init__(self) -> None:
        if self.stats_frozen is None:
            self.stats_frozen = self.stats.count > 0

    def validate(self, source: str) -> None:
        n = self.config.num_params
        if self.params.ndim != 1 or self.params.numel() != n:
            raise CheckpointError(f"{source}: parameter vector of shape {tuple(self.params.shape)}, expected ({n},)")
        if not torch.isfinite(self.params).all():
            raise CheckpointError(f"{source}: parameter vector holds NaN or infinite values")
        for name in ("mean", "var"):
            t = getattr(self.stats, name)
            if t.shape != (N_BINS,):
                raise CheckpointError(f"{source}: normalisation {name} of shape {tuple(t.shape)}, expected ({N_BINS},)")
            if not torch.isfinite(t).all():
                raise CheckpointError(f"{source}: normalisation {name} holds NaN or infinite values")
        if (self.stats.var < 0).any() or self.stats.count < 0:
            raise CheckpointError(f"{source}: negative normalisation variance or count")

    @classmethod
    def zeros(cls, config: NammConfig | None = None) -> NammCheckpoint:
        """The NAMM's initialisation: every score is 0, so every token is kept."""
        config = config or NammConfig()
        return cls(params=torch.zeros(config.num_params), stats=RunningStats.empty(), config=config)


def save_checkpoint(ckpt: NammCheckpoint, directory: str | Path) -> Path:
    """Write ``namm.safetensors`` and ``namm.json`` into ``directory``, each atomically.

    ``namm.json`` holds the sha256 of the parameter file and is written second, so a write
    interrupted between the two leaves a pair that ``load_checkpoint`` refuses.
    """
    ckpt.validate(str(directory))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    params = save({"params": ckpt.params.float().contiguous()})
    meta = {
        "format": FORMAT,
        "params_sha256": hashlib.sha256(params).hexdigest(),
        "config": ckpt.config.to_dict(),
        "normalization": {
            "mean": ckpt.stats.mean.tolist(),
            "var": ckpt.stats.var.tolist(),
            "count": int(ckpt.stats.count),
        },
        "provenance": ckpt.provenance,
    }
    write_atomic(directory / PARAMS_FILE, params)
    write_atomic(directory / CONFIG_FILE, json.dumps(meta, indent=2))
    return directory


SHIPPED = Path(__file__).parent.parent / "checkpoints" / "namm-smollm2"
"""The NAMM evolved for the embedded SmolLM2 (``configs/evolution/smollm2.toml``), used by default."""


def load_shipped() -> NammCheckpoint:
    """The NAMM shipped in the package (what ``namm`` runs unless another checkpoint is named)."""
    if not (SHIPPED / CONFIG_FILE).is_file():
        raise CheckpointError(
            "no trained NAMM ships with this install: pass a checkpoint "
            "(a namm-bench checkpoint directory or an evo-memory ckpt.pt)"
        )
    return load_checkpoint(SHIPPED)


def load_checkpoint(path: str | Path) -> NammCheckpoint:
    """Load either format: a directory (or its ``namm.json``/``namm.safetensors``) or a ``.pt`` file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"NAMM checkpoint {path} does not exist")
    if path.suffix == ".pt":
        ckpt = _load_evo_memory(path)
    else:
        ckpt = _load_own(path.parent if path.is_file() else path)
    ckpt.validate(str(path))
    return ckpt


def _load_own(directory: Path) -> NammCheckpoint:
    meta_path, params_path = directory / CONFIG_FILE, directory / PARAMS_FILE
    for p in (meta_path, params_path):
        if not p.is_file():
            raise CheckpointError(f"NAMM checkpoint directory {directory} has no {p.name}")
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT!r}")
        config = NammConfig.from_dict(meta["config"], f"{meta_path} config")
        norm = meta["normalization"]
        stats = RunningStats(
            mean=torch.tensor(norm["mean"], dtype=torch.float32),
            var=torch.tensor(norm["var"], dtype=torch.float32),
            count=int(norm["count"]),
        )
        expected = meta.get("params_sha256")  # absent in checkpoints written before it was added
        if expected and hashlib.sha256(params_path.read_bytes()).hexdigest() != expected:
            raise CheckpointError(
                f"{params_path} does not match the params_sha256 in {meta_path} "
                "(an interrupted write, or files from two checkpoints)"
            )
        params = load_file(str(params_path))["params"]
    except CheckpointError:
        raise
    except Exception as err:  # malformed JSON or safetensors: one message naming the file
        raise CheckpointError(f"NAMM checkpoint {directory} is malformed: {err}") from err
    return NammCheckpoint(params=params, stats=stats, config=config, provenance=meta.get("provenance", {}))


def _numpy_scalar_globals() -> list:
    """What unpickling a numpy scalar of a plain numeric dtype needs, under either numpy's names."""
    import numpy as np

    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    dtypes = {type(np.dtype(code)) for code in "?bhilqBHILQefdg"}  # bool, ints, uints, floats
    return [
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        np.dtype,
        *sorted(dtypes, key=lambda t: t.__name__),
    ]


def _load_evo_memory(path: Path) -> NammCheckpoint:
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            blob = torch.load(path, map_location="cpu", weights_only=True)
        state = blob["evolution_state"]
        params = torch.as_tensor(state["mean"]).detach().float().reshape(-1)
    except Exception as err:
        refused = re.search(r"but got <class '([^']+)'>|GLOBAL (\S+) was not", str(err))
        if isinstance(err, pickle.UnpicklingError) and refused:
            raise CheckpointError(
                f"{path} holds more than tensors and numpy scalars ({refused.group(1) or refused.group(2)}); "
                "refused, since unpickling it could run code"
            ) from err
        first = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)  # torch.load explains at length
        raise CheckpointError(f"{path} is not an evo-memory checkpoint with evolution_state.mean: {first}") from err

    def buffer(name: str) -> torch.Tensor | None:
        t = state.get(_EVO_BUFFERS + name)
        return None if t is None else torch.as_tensor(t).detach().reshape(-1)

    # The consolidated ("output") statistics are used once they hold data, else the running "new" ones.
    stats = RunningStats.empty()
    for prefix in ("output", "online_new_output"):
        mean, var, num = buffer(f"{prefix}_mean"), buffer(f"{prefix}_var"), buffer(f"{prefix}_num")
        if mean is not None and var is not None and num is not None and int(num.max()) > 0:
            stats = RunningStats(mean=mean.float(), var=var.float(), count=int(num.max()))
            break
    provenance = {"source": str(path), "format": "evo-memory ckpt.pt", "iter_num": _plain(blob.get("iter_num"))}
    if "best_val_loss" in blob:
        provenance["best_val_loss"] = _plain(blob["best_val_loss"])
    return NammCheckpoint(params=params, stats=stats, provenance=provenance)


def _plain(value: Any) -> Any:
    """A numpy or tensor scalar as the Python number it holds (provenance is written as JSON)."""
    return value.item() if hasattr(value, "item") else value
