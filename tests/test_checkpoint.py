"""NAMM checkpoints: the project's format and the evo-memory ckpt.pt layout."""

import json
import pickle
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from namm_bench.cli import main
from namm_bench.namm.checkpoint import CheckpointError, NammCheckpoint, load_checkpoint, save_checkpoint
from namm_bench.namm.features import RunningStats
from namm_bench.policies import make_policy
from namm_bench.results import ResultsStore


def sample_checkpoint() -> NammCheckpoint:
    torch.manual_seed(0)
    stats = RunningStats(mean=torch.rand(17), var=torch.rand(17) + 0.1, count=1234)
    return NammCheckpoint(torch.randn(4172), stats, provenance={"tasks": ["passkey_2k"], "generations": 3})


def test_own_format_round_trip(tmp_path):
    ckpt = sample_checkpoint()
    save_checkpoint(ckpt, tmp_path / "namm")
    loaded = load_checkpoint(tmp_path / "namm")
    torch.testing.assert_close(loaded.params, ckpt.params)
    torch.testing.assert_close(loaded.stats.var, ckpt.stats.var)
    assert loaded.stats.count == 1234 and loaded.provenance["generations"] == 3
    assert load_checkpoint(tmp_path / "namm" / "namm.json").params.shape == (4172,)
    assert not list((tmp_path / "namm").glob("*.tmp"))


def write_evo_memory(path, mean, out_num=5000, best_val_loss=None):
    """A ckpt.pt as evo-memory's trainer writes it: torch.save of ``{evolution_state, iter_num,
    best_val_loss}``, the state's entries Parameters, ``best_val_loss`` a numpy scalar (the mean
    of a numpy array of scores there)."""
    p = lambda t: nn.Parameter(t, requires_grad=False)  # noqa: E731
    prefix = "stored_buffers_to_save.token_embedding_0_"
    state = {
        "mean": p(mean),
        "sigma": p(torch.tensor(0.065)),
        "best_member": p(torch.zeros_like(mean)),
        prefix + "output_mean": p(torch.full((1, 1, 1, 17), 0.5)),
        prefix + "output_var": p(torch.full((1, 1, 1, 17), 2.0)),
        prefix + "output_num": p(
            torch.full((1, 1, 1, 17), out_num, dtype=torch.int64),
        ),
        prefix + "online_new_output_mean": p(torch.zeros(1, 1, 1, 17)),
        prefix + "online_new_output_var": p(torch.zeros(1, 1, 1, 17)),
        prefix + "online_new_output_num": p(torch.zeros(1, 1, 1, 17, dtype=torch.int64)),
    }
    if best_val_loss is None:
        best_val_loss = np.mean(np.array([1.01, 1.05]))
    torch.save({"evolution_state": state, "iter_num": 42, "best_val_loss": best_val_loss}, path)


def as_numpy1(path):
    """Rewrite a ckpt.pt written under numpy 2 with the names numpy 1.x pickles scalars under."""
    with zipfile.ZipFile(path) as zin:
        entries = [(info.filename, zin.read(info.filename)) for info in zin.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zout:
        for name, data in entries:
            if name.endswith("data.pkl"):
                assert b"numpy._core.multiarray\nscalar" in data  # what numpy 2 wrote
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            zout.writestr(name, data)


def test_evo_memory_ckpt_loads_mean_and_stored_statistics(tmp_path):
    mean = torch.randn(4172)
    write_evo_memory(tmp_path / "ckpt.pt", mean)
    ckpt = load_checkpoint(tmp_path / "ckpt.pt")
    torch.testing.assert_close(ckpt.params, mean)
    assert torch.allclose(ckpt.stats.mean, torch.full((17,), 0.5)) and ckpt.stats.count == 5000
    assert ckpt.provenance["iter_num"] == 42 and ckpt.provenance["best_val_loss"] == pytest.approx(1.03)
    make_policy("namm", checkpoint=ckpt)  # usable as a policy


@pytest.mark.parametrize("numpy_names", ["numpy 2.x", "numpy 1.x"])
@pytest.mark.parametrize("scalar", [np.float64(1.5), np.float32(1.5), np.int64(3)], ids=["f64", "f32", "i64"])
def test_a_trainer_written_ckpt_with_numpy_scalars_loads(tmp_path, numpy_names, scalar):
    write_evo_memory(tmp_path / "ckpt.pt", torch.randn(4172), best_val_loss=scalar)
    if numpy_names == "numpy 1.x":
        as_numpy1(tmp_path / "ckpt.pt")
    # plain weights_only refuses it: the allowlist is what makes it load
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert load_checkpoint(tmp_path / "ckpt.pt").provenance["best_val_loss"] == float(scalar)


class NotAllowed:
    def __init__(self, value):
        self.value = value


@pytest.mark.parametrize("intruder", [NotAllowed(1.0), np.array([1.0]), print], ids=["class", "ndarray", "function"])
def test_a_ckpt_with_any_other_global_is_refused(tmp_path, intruder):
    write_evo_memory(tmp_path / "ckpt.pt", torch.randn(4172), best_val_loss=intruder)
    with pytest.raises(CheckpointError, match="holds more than tensors and numpy scalars .*refused"):
        load_checkpoint(tmp_path / "ckpt.pt")


def test_wrong_shape_is_refused(tmp_path):
    write_evo_memory(tmp_path / "ckpt.pt", torch.randn(2026))
    with pytest.raises(CheckpointError, match=r"shape \(2026,\), expected \(4172,\)"):
        load_checkpoint(tmp_path / "ckpt.pt")


def test_nan_is_refused(tmp_path):
    ckpt = sample_checkpoint()
    save_checkpoint(ckpt, tmp_path / "namm")
    meta = json.loads((tmp_path / "namm" / "namm.json").read_text())
    meta["normalization"]["mean"][3] = float("nan")
    (tmp_path / "namm" / "namm.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="NaN"):
        load_checkpoint(tmp_path / "namm")
    bad = sample_checkpoint()
    bad.params[7] = float("nan")
    with pytest.raises(CheckpointError, match="NaN"):
        save_checkpoint(bad, tmp_path / "other")
    mean = torch.randn(4172)
    mean[0] = float("nan")
    write_evo_memory(tmp_path / "ckpt.pt", mean)
    with pytest.raises(CheckpointError, match="NaN"):
        load_checkpoint(tmp_path / "ckpt.pt")


def test_missing_and_malformed_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "junk.pt").write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match="not an evo-memory checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="has no namm.json"):
        load_checkpoint(tmp_path / "empty")
    save_checkpoint(NammCheckpoint.zeros(), tmp_path / "typed")
    meta = json.loads((tmp_path / "typed" / "namm.json").read_text())
    meta["config"]["hidden_dim"] = "32"
    (tmp_path / "typed" / "namm.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="hidden_dim must be an integer, got '32'"):
        load_checkpoint(tmp_path / "typed")


def test_a_parameter_file_from_another_write_is_refused(tmp_path):
    """namm.json records the parameter file's sha256, so an export killed between its two files is caught."""
    save_checkpoint(NammCheckpoint.zeros(), tmp_path / "a")
    ones = NammCheckpoint.zeros()
    ones.params += 1
    save_checkpoint(ones, tmp_path / "b")
    (tmp_path / "a" / "namm.safetensors").write_bytes((tmp_path / "b" / "namm.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="does not match the params_sha256"):
        load_checkpoint(tmp_path / "a")
    assert torch.equal(load_checkpoint(tmp_path / "b").params, ones.params)


def test_a_trainer_written_ckpt_runs_with_namm_checkpoint(tmp_path, tiny_model_dir):
    write_evo_memory(tmp_path / "ckpt.pt", torch.randn(4172) * 0.05)
    as_numpy1(tmp_path / "ckpt.pt")
    out = tmp_path / "out"
    args = ["run", "synthetic", "--model", str(tiny_model_dir), "--tasks", "passkey_1k", "--limit", "1"]
    assert main([*args, "--policies", "namm", "--namm-checkpoint", str(tmp_path / "ckpt.pt"), "--out", str(out)]) == 0
    (row,) = ResultsStore(out).rows()
    assert row["error"] is None and row["policy_calls"] > 0
    assert row["policy_config"]["provenance"]["format"] == "evo-memory ckpt.pt"
