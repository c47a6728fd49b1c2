"""``--model DIR`` picks its adapter from ``config.model_type``; ``--adapter`` overrides."""

from __future__ import annotations

import json

import pytest
from conftest import save_tiny_family

from namm_bench.cli import main
from namm_bench.models import choose_adapter
from namm_bench.results import ResultsStore


@pytest.mark.parametrize("kind", ["qwen2", "mistral", "gemma3_text"])
def test_run_picks_the_text_adapter_from_the_model_type(kind, tmp_path):
    model = save_tiny_family(kind, tmp_path / kind)
    out = tmp_path / "out"
    args = ["run", "synthetic", "--model", str(model), "--tasks", "passkey_1k", "--limit", "1", "--policies", "full"]
    assert main([*args, "--out", str(out)]) == 0
    (row,) = ResultsStore(out).rows()
    assert row["adapter"] == "llama" and row["model"] == str(model) and row["error"] is None
    # Gemma 3's sliding-window layers keep their own window: cache % counts the global layer only
    assert (row["managed_layers"], row["layers"]) == ((1, 3) if kind == "gemma3_text" else (3, 3))


def test_l2_skips_model_layers_not_positions_among_the_managed_ones(tmp_path):
    # the tiny Gemma's global layer is model layer 2: L2's default skip_layers=(0, 1) names two
    # sliding-window layers, so the one managed layer is pruned to the budget (it was never pruned
    # when the skip applied to its position 0)
    model = save_tiny_family("gemma3_text", tmp_path / "gemma")
    out = tmp_path / "out"
    args = ["run", "synthetic", "--model", str(model), "--tasks", "passkey_1k", "--limit", "1"]
    assert main([*args, "--policies", "l2", "--budget", "0.25", "--out", str(out)]) == 0
    (row,) = ResultsStore(out).rows()
    assert row["error"] is None and row["policy_config"]["skip_layers"] == [0, 1]
    assert row["cache_fraction"] < 0.3


def test_model_type_without_an_adapter_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert main(["run", "synthetic", "--model", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no adapter serves model type 'bert'" in err and "--adapter" in err


def test_adapter_flag_overrides_and_unknown_names_are_refused(tiny_model_dir, tiny_dt):
    assert choose_adapter(str(tiny_model_dir)) == "llama"
    assert choose_adapter(str(tiny_dt)) == "decision_transformer"
    assert choose_adapter(None, default="llava_next_video") == "llava_next_video"
    assert choose_adapter(str(tiny_model_dir), requested="llama") == "llama"
    with pytest.raises(ValueError, match="unknown adapter 'gpt9'"):
        choose_adapter(str(tiny_model_dir), requested="gpt9")


def test_an_adapter_of_another_modality_is_refused(tiny_model_dir, tmp_path, capsys):
    args = ["run", "synthetic", "--model", str(tiny_model_dir), "--adapter", "decision_transformer"]
    assert main([*args, "--out", str(tmp_path)]) == 2
    assert "runs rl examples; suite synthetic has text examples" in capsys.readouterr().err
