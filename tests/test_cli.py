"""End to end through the CLI on a tiny local model: results, resume, SIGKILL, bad input."""

import json
import signal
import time

import pytest
from cli_process import cli, start

from namm_bench.budget import Budget
from namm_bench.cli import main
from namm_bench.suites.base import TextExample


def rows(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def key(r):
    return (r["task"], r["example_id"], r["policy"], r["budget"], r["protocol"])


def test_run_report_and_resume(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    common = ["run", "synthetic", "--model", str(tiny_model_dir), "--tasks", "passkey_1k", "--out", str(out)]
    cli(*common, "--limit", "2")
    first = rows(out)
    assert len(first) == 2 * 3
    for r in first:
        assert {
            "suite",
            "task",
            "example_id",
            "model",
            "policy",
            "budget",
            "protocol",
            "score",
            "cache_fraction",
        } <= set(r)
        assert {"peak_kv_bytes", "tokens", "seconds", "prediction", "truncated_tokens"} <= set(r)
        assert r["tokens"] <= 512  # sized to the tiny model's context
    by_policy = {r["policy"]: r for r in first if r["example_id"].endswith("0")}
    assert by_policy["full"]["cache_fraction"] == 1.0
    assert abs(by_policy["h2o"]["cache_fraction_prompt"] - 0.25) < 0.01
    cli(*common, "--limit", "3")
    second = rows(out)
    assert second[: len(first)] == first and len(second) == 3 * 3
    assert len({key(r) for r in second}) == len(second)
    cli("report", str(out))
    assert "| passkey_1k |" in (out / "report.md").read_text()
    assert (out / "report.csv").read_text().count("passkey_1k") == 3


def test_sigkill_mid_run_then_rerun_gives_each_row_once(tiny_model_dir, tmp_path):
    out = tmp_path / "killed"
    args = ["run", "synthetic", "--model", str(tiny_model_dir)]
    args += ["--tasks", "passkey_1k,needle_1k", "--limit", "4", "--out", str(out)]
    proc = start(*args)
    results = out / "results.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (results.exists() and results.read_text().count("\n") >= 2):
        assert proc.poll() is None, "the run exited before it wrote two rows"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    killed_at = len(results.read_text().splitlines())
    assert killed_at < 2 * 4 * 3, "the run finished before it was killed"
    cli(*args)
    final = rows(out)  # every line parses
    assert len(final) == 2 * 4 * 3
    assert len({key(r) for r in final}) == len(final)


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "nosuch"], "unknown suite 'nosuch'"),
        (["run", "synthetic", "--tasks", "passkey_3k"], "unknown task(s) passkey_3k"),
        (["run", "synthetic", "--policies", "full,quest"], "unknown policy 'quest'"),
        (["run", "synthetic", "--budget", "1.5"], "budget ratio must be in (0, 1]"),
        (["run", "synthetic", "--budget", "0"], "budget token count must be >= 1"),
        (["run", "synthetic", "--policies", "namm", "--namm-checkpoint", "/no/ckpt"], "checkpoint /no/ckpt does not"),
        (["run", "synthetic", "--budget", "match"], "add namm to --policies"),
        (["run", "synthetic", "--model", "/no/such/model"], "model path /no/such/model does not exist"),
        (["run", "synthetic", "--limit", "0"], "--limit must be >= 1"),
        (["report", "/no/such/dir"], "no results"),
    ],
)
def test_bad_input_gets_one_clear_error(args, message, tmp_path, capsys):
    out = tmp_path / "out"
    if args[0] == "run":
        args = [*args, "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("error:") == 1
    assert not (out / "results.jsonl").exists()


def test_unknown_adapter():
    from namm_bench.adapters import get_adapter

    with pytest.raises(ValueError, match="unknown adapter 'gpt9'"):
        get_adapter("gpt9")


def test_more_torchrun_ranks_than_gpus_is_one_clear_error(monkeypatch, tmp_path, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert main(["evolve", "any.toml", "--out", str(tmp_path / "run")]) == 2
    assert "rank 1 has no GPU of its own (1 visible)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_corrupt_results_file_is_refused_and_left_alone(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "corrupt"
    out.mkdir()
    content = '{"suite": "synthetic"\n{"also": "broken"}\n'
    (out / "results.jsonl").write_text(content)
    code = main(["run", "synthetic", "--model", str(tiny_model_dir), "--tasks", "passkey_1k", "--out", str(out)])
    assert code == 2
    assert "results.jsonl" in capsys.readouterr().err
    assert (out / "results.jsonl").read_text() == content


def test_results_of_another_namm_checkpoint_are_refused_and_left_alone(tiny_model_dir, tmp_path, capsys):
    # skipping by row key would keep the other checkpoint's NAMM rows and match budgets as this one's
    from namm_bench.namm.checkpoint import SHIPPED as SHIPPED_NAMM

    out = tmp_path / "other-namm"
    out.mkdir()
    row = {
        "suite": "synthetic",
        "task": "passkey_1k",
        "example_id": "passkey_1k-0000",
        "model": "tiny",
        "policy": "namm",
        "budget": "none",
        "protocol": "streaming",
        "score": 1.0,
        "cache_fraction": 0.3,
        "policy_config": {"name": "namm", "provenance": {"tasks": ["kv_1k"], "generations": 3}, "stats_count": 7},
    }
    content = json.dumps(row) + "\n"
    (out / "results.jsonl").write_text(content)
    args = ["run", "synthetic", "--model", str(tiny_model_dir), "--tasks", "passkey_1k", "--limit", "1"]
    args += ["--policies", "namm", "--namm-checkpoint", str(SHIPPED_NAMM), "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "NAMM rows of another checkpoint" in err and "['kv_1k'], 3 generations" in err
    assert (out / "results.jsonl").read_text() == content
    # rows of the same checkpoint, as stored, are accepted (and then skipped)
    from namm_bench.namm.checkpoint import load_checkpoint
    from namm_bench.policies import make_policy
    from namm_bench.results import ResultsStore
    from namm_bench.runner import refuse_other_namm

    shipped = load_checkpoint(SHIPPED_NAMM)
    same = {**row, "policy_config": make_policy("namm", checkpoint=shipped).describe()}
    (out / "results.jsonl").write_text(json.dumps(same) + "\n")
    refuse_other_namm(ResultsStore(out), shipped)


def test_prompt_longer_than_the_context_is_middle_truncated_and_recorded(tiny_model_dir):
    from namm_bench.adapters import get_adapter
    from namm_bench.controller import ControllerConfig
    from namm_bench.policies import make_policy

    adapter = get_adapter("llama", str(tiny_model_dir))
    head, tail = "The grass is green. " * 200, "The sky is blue. " * 200
    example = TextExample("t", "t-0", head + tail, "What is the pass key?", "1", max_new_tokens=8)
    prompt = adapter.build_prompt(example)
    assert prompt.truncated_tokens > 0
    assert prompt.ids.shape[1] + 8 <= adapter.max_context
    text = adapter.tokenizer.decode(prompt.ids[0])
    assert text.count("grass") > 20 and text.count("sky") > 20 and "pass key" in text  # both ends kept
    generation = adapter.generate(example, make_policy("full"), ControllerConfig())
    assert generation.prompt.truncated_tokens == prompt.truncated_tokens


def test_prompt_splits_where_the_question_starts(tiny_model_dir):
    from namm_bench.adapters import get_adapter
    from namm_bench.controller import ControllerConfig
    from namm_bench.policies import make_policy

    adapter = get_adapter("llama", str(tiny_model_dir))
    example = TextExample("t", "t-0", "The grass is green. " * 30, "\nWhat is the pass key?", "1", max_new_tokens=4)
    prompt = adapter.build_prompt(example)
    ids = prompt.ids[0].tolist()
    assert "pass key" not in adapter.tokenizer.decode(ids[: prompt.question_start])
    assert "What is the pass key?" in adapter.tokenizer.decode(ids[prompt.question_start - 1 :])
    config = ControllerConfig(protocol="post-prefill-context")
    generation = adapter.generate(example, make_policy("h2o", Budget(ratio=0.25)), config)
    calls = generation.controller.stats.calls
    assert [c["tokens_seen"] for c in calls] == [prompt.question_start]


def test_rows_say_where_in_the_prompt_the_cache_was_kept(tiny_model_dir):
    from namm_bench.adapters import get_adapter
    from namm_bench.controller import ControllerConfig
    from namm_bench.interfaces import RunOptions
    from namm_bench.policies import make_policy

    adapter = get_adapter("llama", str(tiny_model_dir))
    example = TextExample("t", "t-0", "The grass is green. " * 60, "\nWhat is the pass key?", "1", max_new_tokens=2)
    full = adapter.run(example, make_policy("full"), ControllerConfig(), RunOptions())
    assert full.fields["position_retention"] == [1.0] * 10 and full.fields["question_retention"] == 1.0
    # StreamingLLM keeps 4 sinks and the most recent tokens: the first span a little, the last all,
    # the middle nothing; the question is the prompt's end, so it is kept.
    config = ControllerConfig(protocol="post-prefill")
    kept = adapter.run(example, make_policy("streaming_llm", Budget(tokens=40)), config, RunOptions())
    spans, tokens = kept.fields["position_retention"], kept.tokens
    width = tokens / 10
    assert spans[0] == pytest.approx(4 / round(width), abs=0.02) and spans[-1] == 1.0
    assert spans[1:7] == [0.0] * 6
    assert kept.fields["question_retention"] == 1.0
    assert sum(s * w for s, w in zip(spans, [width] * 10, strict=True)) == pytest.approx(40, abs=1.5)
