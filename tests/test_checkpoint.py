"""NAMM checkpoints: the project's format and the evo-memory ckpt.pt layout."""

import json

import pytest
import torch
from torch import nn

from namm_bench.namm.checkpoint import CheckpointError, NammCheckpoint, load_checkpoint, save_checkpoint
from namm_bench.namm.features import RunningStats
from namm_bench.policies import make_policy


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


def write_evo_memory(path, mean, out_num=5000):
    """A ckpt.pt shaped like evo-memory's (torch.save of CMA_ES.state_dict() entries as Parameters)."""
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
    torch.save({"evolution_state": state, "iter_num": 42, "best_val_loss": 1.03}, path)


def test_evo_memory_ckpt_loads_mean_and_stored_statistics(tmp_path):
    mean = torch.randn(4172)
    write_evo_memory(tmp_path / "ckpt.pt", mean)
    ckpt = load_checkpoint(tmp_path / "ckpt.pt")
    torch.testing.assert_close(ckpt.params, mean)
    assert torch.allclose(ckpt.stats.mean, torch.full((17,), 0.5)) and ckpt.stats.count == 5000
    assert ckpt.provenance["iter_num"] == 42
    make_policy("namm", checkpoint=ckpt)  # usable as a policy


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
