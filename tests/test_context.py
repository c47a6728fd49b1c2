"""Context extension (``--rope-scaling``, ``--max-context``) and the synthetic tasks that do not fit a context."""

from __future__ import annotations

import math

import pytest
import torch
import transformers
from conftest import save_tiny_family

from namm_bench.cli import main
from namm_bench.context import RopeScaling, apply_context, parse_rope_scaling
from namm_bench.report import write_report
from namm_bench.results import ResultsStore

RUN = ["run", "synthetic", "--tasks", "passkey_1k", "--limit", "1", "--policies", "full"]


def test_the_papers_ntk_base_for_llama_3():
    """namm-reference.md 1.6: factor 4, alpha 2, head_dim 128 turn Llama 3's 500000 into ~3.61e6."""
    config = transformers.LlamaConfig(
        hidden_size=4096, num_attention_heads=32, head_dim=128, max_position_embeddings=8192, rope_theta=500000.0
    )
    assert apply_context(config, parse_rope_scaling("ntk:4:2"), 32768) == 32768
    assert config.rope_parameters["rope_theta"] == pytest.approx(3.61e6, rel=2e-3)
    assert config.rope_parameters["rope_type"] == "default" and config.max_position_embeddings == 32768


@pytest.mark.parametrize("text", ["ntk:4:2", "linear:4", "dynamic:2", "yarn:4", "llama3:8", "theta:3.61e6"])
def test_a_rope_scaling_reads_back_from_its_label(text):
    scaling = parse_rope_scaling(text)
    assert parse_rope_scaling(scaling.label) == scaling


@pytest.mark.parametrize("text", ["ntk:4", "cubic:2", "linear", "linear:x", "linear:0.5", "ntk:4:0.5", "theta:-1"])
def test_a_bad_rope_scaling_is_an_error(text):
    with pytest.raises(ValueError, match="--rope-scaling"):
        parse_rope_scaling(text)


def test_the_loaded_model_rotates_with_the_scaled_rope(tmp_path):
    from namm_bench.adapters.llama import LlamaAdapter

    model = save_tiny_family("llama", tmp_path / "model")
    plain = LlamaAdapter(str(model))
    ntk = LlamaAdapter(str(model), rope_scaling=RopeScaling("ntk", 4, 2), max_context=2048)
    linear = LlamaAdapter(str(model), rope_scaling=RopeScaling("linear", 4))
    assert (plain.max_context, ntk.max_context, linear.max_context) == (512, 2048, 512)
    config = plain.model.config
    dim = config.head_dim
    base = config.rope_parameters["rope_theta"] * 7 ** (dim / (dim - 2))
    want = 1.0 / base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    torch.testing.assert_close(ntk.model.model.rotary_emb.inv_freq, want)
    # linear: position 4p under the scaled rope is position p under the plain one
    x = torch.zeros(1, 3, config.hidden_size)
    scaled = linear.model.model.rotary_emb(x, torch.tensor([[0, 4, 8]]))
    unscaled = plain.model.model.rotary_emb(x, torch.tensor([[0, 1, 2]]))
    for a, b in zip(scaled, unscaled, strict=True):
        torch.testing.assert_close(a, b)


def test_gemma_3_scales_its_global_layers_only():
    config = transformers.Gemma3TextConfig(max_position_embeddings=32768)
    sliding = dict(config.rope_parameters["sliding_attention"])
    apply_context(config, RopeScaling("linear", 2), 65536)
    assert config.rope_parameters["sliding_attention"] == sliding
    assert config.rope_parameters["full_attention"]["rope_type"] == "linear"
    assert config.rope_parameters["full_attention"]["factor"] == 2


def test_dynamic_keeps_its_reference_length():
    """transformers' dynamic NTK scales past max_position_embeddings: it stays the pretrained length."""
    config = transformers.LlamaConfig(max_position_embeddings=8192)
    assert apply_context(config, RopeScaling("dynamic", 4), 32768) == 32768
    assert config.max_position_embeddings == 8192 and config.rope_parameters["factor"] == 4


def test_rows_record_the_context_settings_and_a_rerun_without_them_is_new(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    extra = ["--model", str(tiny_model_dir), "--out", str(out)]
    assert main([*RUN, *extra, "--rope-scaling", "ntk:4:2", "--max-context", "2048"]) == 0
    (row,) = ResultsStore(out).rows()
    assert (row["rope_scaling"], row["max_context"], row["truncated_tokens"]) == ("ntk:4:2", 2048, 0)
    assert main([*RUN, *extra]) == 0
    plain = ResultsStore(out).rows()[1]
    assert (plain["rope_scaling"], plain["max_context"]) == (None, None)


def test_a_task_longer_than_the_context_is_recorded_as_truncated(tiny_model_dir, tmp_path, caplog):
    """passkey_1k on a 512-token model: its prompt is ~447 tokens, and the row says so."""
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):
        assert main([*RUN, "--model", str(tiny_model_dir), "--out", str(out)]) == 0
    (row,) = ResultsStore(out).rows()
    assert row["meta"]["length"] < 512 and row["truncated_tokens"] == 1024 - row["meta"]["length"]
    assert "passkey_1k does not fit the model's context" in caplog.text
    write_report(out)
    assert "truncated prompts: `full` on `passkey_1k`: 1 of 1" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rope-scaling", "ntk:4"], "ntk:FACTOR:ALPHA"),
        (["--max-context", "0"], "--max-context must be >= 1"),
    ],
)
def test_bad_context_options_are_one_clear_error(tiny_model_dir, tmp_path, args, message, capsys):
    try:
        code = main([*RUN, "--model", str(tiny_model_dir), "--out", str(tmp_path), *args])
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2 and message in capsys.readouterr().err


def test_the_ntk_formula_matches_namm_reference():
    """theta' = theta * (alpha*s - (alpha-1)) ** (d/(d-2)) (namm-reference.md 1.6), here for d = 64."""
    config = transformers.LlamaConfig(hidden_size=512, num_attention_heads=8, rope_theta=10000.0)
    apply_context(config, RopeScaling("ntk", 2, 3), None)
    assert config.rope_parameters["rope_theta"] == pytest.approx(10000.0 * 4 ** (64 / 62))
    assert math.isclose(config.max_position_embeddings, transformers.LlamaConfig().max_position_embeddings)


def test_the_readme_llama_3_command_is_the_papers_setup():
    """The documented 32k Llama 3 8B command parses to the paper's settings (the model needs a GPU)."""
    import re
    import shlex
    from pathlib import Path

    from namm_bench.cli import build_parser

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (command,) = re.findall(r"namm-bench run longbench --model meta-llama/Meta-Llama-3-8B[^`]*", readme)
    args = build_parser().parse_args(shlex.split(command.replace("\\\n", " "))[1:])
    assert (args.preset, args.rope_scaling, args.max_context) == ("paper", RopeScaling("ntk", 4, 2), 32768)
    assert args.dtype == "bfloat16"
