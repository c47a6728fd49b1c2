"""Video: frame sampling, decoding, the LLaVA-NeXT-Video adapter on a tiny random model, the suite."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from namm_bench.adapters.llava_next_video import (
    LlavaNextVideoAdapter,
    VideoError,
    preprocess,
    read_video,
    sample_indices,
)
from namm_bench.budget import Budget
from namm_bench.controller import ControllerConfig
from namm_bench.policies import make_policy
from namm_bench.suites.video_generated import EVENT_FRAMES, KINDS, generate

SHARED_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "video"
FRAMES = 16


@pytest.fixture(scope="session")
def adapter(tiny_video_dir):
    return LlavaNextVideoAdapter(str(tiny_video_dir), num_frames=8)


# --------------------------------------------------------------------- frames
def test_uniform_sampling_spreads_n_frames_over_the_whole_video():
    assert sample_indices(100, 25.0, num_frames=5).tolist() == [0, 24, 49, 74, 99]
    assert sample_indices(3, 30.0, num_frames=8).tolist() == [0, 1, 2]  # shorter than N: every frame


def test_fps_sampling_takes_one_frame_every_avg_fps_over_fps_frames():
    assert sample_indices(100, 25.0, fps=5).tolist() == list(range(0, 100, 5))
    assert sample_indices(10, 30.0, fps=60).tolist() == list(range(10))  # faster than the video: every frame
    assert sample_indices(31, 30.0, fps=1).tolist() == [0, 30]


def test_sampling_needs_exactly_one_mode():
    with pytest.raises(ValueError, match="exactly one"):
        sample_indices(10, 25.0)
    with pytest.raises(ValueError, match="exactly one"):
        sample_indices(10, 25.0, num_frames=2, fps=1)


def test_preprocess_resizes_the_short_side_crops_the_centre_and_normalises():
    frames = np.zeros((2, 40, 80, 3), np.uint8)
    frames[:, :, 12:68] = 255  # white beyond the centre 40 columns the crop keeps
    x = preprocess(frames, 32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert x.shape == (2, 3, 32, 32)
    assert torch.allclose(x, torch.ones_like(x), atol=1e-5)  # the crop is all white: (1 - 0.5) / 0.5


@pytest.mark.skipif(not SHARED_VIDEO.is_dir(), reason="../shared/data/video is absent")
@pytest.mark.parametrize("name", ["example.mp4", "chaplin.mp4", "flipping_a_pancake.mkv", "video_90.mov"])
def test_real_videos_decode_through_the_adapter(name):
    pytest.importorskip("decord")
    frames = read_video(SHARED_VIDEO / name, num_frames=8)
    assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[-1] == 3
    assert 1 <= len(frames) <= 8 and frames.std() > 1  # real pictures, not blank
    assert preprocess(frames, 64).shape == (len(frames), 3, 64, 64)


@pytest.mark.skipif(not SHARED_VIDEO.is_dir(), reason="../shared/data/video is absent")
def test_the_corrupt_video_is_a_video_error():
    pytest.importorskip("decord")
    with pytest.raises(VideoError, match="cannot decode"):
        read_video(SHARED_VIDEO / "corrupted.mp4", num_frames=8)


def test_a_missing_or_garbage_file_is_a_video_error(tmp_path):
    pytest.importorskip("decord")
    with pytest.raises(VideoError, match="not found"):
        read_video(tmp_path / "nope.mp4", num_frames=4)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x01not a video" * 100)
    with pytest.raises(VideoError, match="cannot decode"):
        read_video(garbage, num_frames=4)


# --------------------------------------------------------------------- generated videos
@pytest.mark.parametrize("kind", KINDS)
def test_generated_videos_are_deterministic_and_their_labels_match_the_answer(kind):
    a, b = generate(7, kind, 40), generate(7, kind, 40)
    assert np.array_equal(a.frames, b.frames) and a.question == b.question and a.answer == b.answer
    assert not np.array_equal(a.frames, generate(8, kind, 40).frames)
    assert a.frames.shape == (40, 64, 64, 3) and len(a.candidates) == 4
    events = [label for label in a.labels if label is not None]
    lo, hi = EVENT_FRAMES
    assert lo * (1 + (kind == "order")) <= len(events) <= hi * (1 + (kind == "order"))
    gold = a.candidates[a.answer]
    if kind == "order":
        assert events[0][0] == gold and events[-1][0] != gold
    else:
        assert all(gold in label for label in events)
    # event frames differ from the background; background frames stay near its grey
    event_idx = [i for i, label in enumerate(a.labels) if label is not None]
    quiet = [i for i, label in enumerate(a.labels) if label is None]
    assert a.frames[event_idx].max(axis=(1, 2, 3)).min() > 150
    assert abs(a.frames[quiet].mean() - 40) < 2


# --------------------------------------------------------------------- the adapter
def _question(adapter):
    video = generate(0, "colour", FRAMES)
    frames = video.frames[:, ::2, ::2]  # 32 px, the tiny model's frame size
    return frames, video.question, video.candidates


def test_visual_tokens_are_cache_entries_counted_in_the_cache_fraction(adapter):
    frames, question, candidates = _question(adapter)
    full = adapter.answer(frames, question, candidates, make_policy("full"), ControllerConfig(chunk_size=16))
    start, end = full.video_span
    assert end - start == FRAMES * adapter.tokens_per_frame == FRAMES * 4
    assert full.controller.retained_per_layer() == [full.tokens] * 2  # every prompt token, visual ones included
    assert full.frame_retention() == [1.0] * FRAMES
    config = ControllerConfig(chunk_size=16, interval=16)
    h2o = adapter.answer(frames, question, candidates, make_policy("h2o", Budget(tokens=20)), config)
    assert h2o.controller.retained_per_layer() == [20, 20]
    assert h2o.controller.stats.cache_fraction == pytest.approx(20 / full.tokens)
    # frame_retention counts exactly the kept entries that are visual tokens (mean over layers and KV heads)
    positions = [h2o.controller.positions(layer)[0] for layer in (0, 1)]  # (kv_heads, 20) each
    visual = [((p >= start) & (p < end)).sum(dim=-1).float().mean() for p in positions]
    assert sum(h2o.frame_retention()) * adapter.tokens_per_frame == pytest.approx(float(sum(visual)) / 2, abs=1e-3)


def test_keep_all_policy_answers_as_the_stock_model_without_a_policy(adapter):
    frames, question, candidates = _question(adapter)
    result = adapter.answer(frames, question, candidates, make_policy("full"), ControllerConfig(chunk_size=16))
    ids, _ = adapter.prompt_ids(question, len(frames))
    pixels = preprocess(frames, adapter.image_size)[None]
    with torch.no_grad():
        stock = adapter.model(input_ids=ids, pixel_values_videos=pixels).logits[0, -1]
    expected = stock[adapter.candidate_ids(candidates)]
    assert torch.allclose(torch.tensor(result.scores), expected, atol=1e-4)  # scores are rounded to 1e-4
    assert result.choice == int(expected.argmax())


def test_frame_sampling_options_reach_the_adapter(tiny_video_dir):
    from namm_bench.adapters import get_adapter

    by_rate = get_adapter("llava_next_video", str(tiny_video_dir), fps=2.0)
    assert (by_rate.num_frames, by_rate.fps) == (None, 2.0)
    assert get_adapter("llava_next_video", str(tiny_video_dir), num_frames=12).num_frames == 12


def test_candidates_sharing_a_first_token_are_an_error(adapter):
    with pytest.raises(ValueError, match="share a first token"):
        adapter.candidate_ids(["red", "red"])


# --------------------------------------------------------------------- the suite
def _write_tasks(directory: Path, video: Path) -> None:
    rows = [
        {"video": video.name, "question": "Which one?", "options": ["A. red", "B. blue"], "answer": "A"},
        {"video_path": video.name, "question": "And now?", "candidates": ["red", "blue"], "correct_choice": 1},
    ]
    (directory / "files.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_corrupt_video_becomes_an_error_row_and_the_run_goes_on(tiny_video_dir, tmp_path, monkeypatch):
    pytest.importorskip("decord")
    from namm_bench.report import summary_frame, write_report
    from namm_bench.results import ResultsStore
    from namm_bench.runner import RunSpec, run_suite
    from namm_bench.suites import video as video_suite

    monkeypatch.setattr(video_suite, "GENERATED_FRAMES", FRAMES)
    monkeypatch.setattr(LlavaNextVideoAdapter, "frames_of", lambda self, path: read_video(path, 8)[:, ::8, ::8])
    data = tmp_path / "data"
    data.mkdir()
    bad = data / "broken.mp4"  # the shared corrupt video when present, else a broken header of our own
    shared = SHARED_VIDEO / "corrupted.mp4"
    bad.write_bytes(shared.read_bytes() if shared.is_file() else b"\x00\x00\x00\x18ftypmp42" + b"\xff" * 4000)
    _write_tasks(data, bad)
    # generated frames are 64 px; the tiny model takes 32 px (preprocess resizes)
    spec = RunSpec(
        suite="video",
        out=tmp_path / "out",
        model=str(tiny_video_dir),
        policies=["full", "h2o"],
        budgets=[Budget(ratio=0.5)],
        controller=ControllerConfig(chunk_size=16, interval=32),
        tasks=["generated-colour", "files"],
        limit=2,
        data_dir=str(data),
    )
    run_suite(spec)
    rows = ResultsStore(spec.out).rows()
    assert len(rows) == 2 * 2 * 2  # (2 generated + 2 file examples) x (full, h2o)
    errors = [r for r in rows if r["error"]]
    assert len(errors) == 4 and all("cannot decode" in r["error"] for r in errors)
    ok = [r for r in rows if not r["error"]]
    assert all(r["score"] in (0.0, 1.0) and len(r["frame_retention"]) == FRAMES for r in ok)
    assert all(r["meta"]["event_frames"] for r in ok)
    summary = summary_frame(rows)
    assert summary.set_index(["task", "policy"]).loc[("files", "full"), "errors"] == 2
    run_suite(spec)  # resumable: nothing runs twice
    assert len(ResultsStore(spec.out).rows()) == 8
    md, _ = write_report(spec.out)
    assert (spec.out / "report-video-frames.png").stat().st_size > 1000
    assert "report-video-frames.png" in md.read_text() and "errors" in md.read_text()
    # NAMM rows of another checkpoint are refused, not taken for the shipped NAMM's
    other = spec.out.parent / "other-namm"
    other.mkdir()
    stale = {**rows[0], "policy": "namm", "policy_config": {"name": "namm", "provenance": {}, "stats_count": -1}}
    (other / "results.jsonl").write_text(json.dumps(stale) + "\n")
    with pytest.raises(ValueError, match="NAMM rows of another checkpoint"):
        run_suite(dataclasses.replace(spec, out=other, policies=["namm"], budgets=[]))


def test_benchmark_files_with_a_missing_field_are_one_clear_error(tmp_path):
    from namm_bench.suites.base import DataError
    from namm_bench.suites.video import VideoSuite

    (tmp_path / "bad.jsonl").write_text(json.dumps({"video": "v.mp4", "question": "q?", "answer": "A"}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1: row lacks options"):
        VideoSuite(tmp_path).examples("bad", None, None, 0, None)
    with pytest.raises(DataError, match="unknown video task"):
        VideoSuite(tmp_path).examples("nope", None, None, 0, None)


def test_video_mme_questions_come_from_the_hub_and_videos_from_the_data_dir(tmp_path, monkeypatch):
    import sys
    import types

    from namm_bench.suites.base import DataError
    from namm_bench.suites.video import VideoSuite

    rows = [{"videoID": "abc", "question_id": "001-1", "question": "Who?", "options": ["A. x", "B. y"], "answer": "B"}]
    asked = []
    fake = types.SimpleNamespace(load_dataset=lambda name, split: asked.append((name, split)) or rows)
    monkeypatch.setitem(sys.modules, "datasets", fake)
    assert "videomme" in VideoSuite(tmp_path).tasks() and "videomme" not in VideoSuite(tmp_path).default_tasks()
    (ex,) = VideoSuite(tmp_path).examples("videomme", None, None, 0, None)
    assert asked == [("lmms-lab/Video-MME", "test")]
    assert ex.video == str(tmp_path / "abc.mp4") and ex.answer == 1 and ex.candidates == ("A", "B")
    assert ex.question.splitlines() == [
        "Who?",
        "A. x",
        "B. y",
        "Answer with the option's letter from the given choices directly.",
    ]

    def offline(name, split):
        raise ConnectionError("offline")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=offline))
    with pytest.raises(DataError, match="videomme.jsonl in --data-dir"):
        VideoSuite(tmp_path).examples("videomme", None, None, 0, None)
