"""Training the video model's vision side: word targets, a crash then --resume, the exported weights."""

import json

import pytest
import torch

from namm_bench.training import llava_next_video as training
from namm_bench.training.llava_next_video import VideoTrainConfig, frame_targets, train


def tiny_builder(directory):
    from transformers import AutoTokenizer, LlavaNextVideoForConditionalGeneration

    def build(_vision_dir):
        model = LlavaNextVideoForConditionalGeneration.from_pretrained(directory)
        return model, AutoTokenizer.from_pretrained(directory)

    return build


def tiny_config() -> VideoTrainConfig:
    return VideoTrainConfig(
        align_steps=4,
        qa_steps=3,
        align_videos=2,
        align_frames=16,
        qa_batch=2,
        qa_frames=16,
        log_every=2,
        checkpoint_every=2,
    )


def test_frames_are_pulled_to_the_embeddings_of_their_words(tiny_video_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_video_dir)
    emb = torch.randn(320, 8)
    got = frame_targets([None, ("red", "circle")], tok, emb, 4)
    word = lambda w: emb[tok.encode(" " + w, add_special_tokens=False)[0]]  # noqa: E731
    expected = torch.stack([word("gray")] * 4 + [word("red"), word("circle"), word("red"), word("circle")])
    assert torch.equal(got, expected)


def test_a_crash_then_resume_gives_the_uninterrupted_run(tiny_video_dir, tmp_path, monkeypatch):
    build = tiny_builder(tiny_video_dir)
    whole = train(tiny_config(), tmp_path / "whole", build=build)

    calls = {"n": 0}
    original = training.generate

    def dies_at_video_11(*args, **kwargs):  # in step 6 (qa); the last checkpoint is step 4
        calls["n"] += 1
        if calls["n"] == 11:
            raise RuntimeError("killed")
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "generate", dies_at_video_11)
    with pytest.raises(RuntimeError, match="killed"):
        train(tiny_config(), tmp_path / "crashed", build=build)
    monkeypatch.setattr(training, "generate", original)
    with pytest.raises(ValueError, match="pass --resume"):
        train(tiny_config(), tmp_path / "crashed", build=build)
    resumed = train(tiny_config(), tmp_path / "crashed", resume=True, build=build)

    a, b = (torch.load(p / "state.pt", weights_only=False) for p in (tmp_path / "whole", tmp_path / "crashed"))
    assert a["step"] == b["step"] == 7 and a["video_seed"] == b["video_seed"]
    assert all(torch.equal(a["trainable"][k], b["trainable"][k]) for k in a["trainable"])
    assert not any(k.startswith("model.language_model.") for k in a["trainable"])  # SmolLM2 is not shipped
    logs = [
        [{k: v for k, v in json.loads(r).items() if k != "seconds"} for r in (p / "log.jsonl").read_text().splitlines()]
        for p in (tmp_path / "whole", tmp_path / "crashed")
    ]
    assert logs[0] == logs[1] and [r["step"] for r in logs[0]] == [2, 4, 6, 7]
    assert [r["stage"] for r in logs[0]] == ["align", "align", "qa", "qa"]
    assert (whole / "vision.safetensors").is_file() and (resumed / "vision.safetensors").is_file()


def test_only_the_vision_side_learns(tiny_video_dir, tmp_path):
    build = tiny_builder(tiny_video_dir)
    fresh, _ = build(None)
    built = []
    train(tiny_config(), tmp_path / "run", build=lambda v: built.append(build(v)) or built[-1])
    trained = built[0][0].state_dict()
    before = fresh.state_dict()
    lm = [k for k in before if k.startswith(("model.language_model.", "lm_head."))]
    assert lm and all(torch.equal(trained[k], before[k]) for k in lm)
    assert not torch.equal(
        trained["model.multi_modal_projector.linear_1.weight"], before["model.multi_modal_projector.linear_1.weight"]
    )


def test_video_export_replaces_weights_only_with_force(tiny_video_dir, tmp_path, capsys):
    from namm_bench.cli import main

    train(tiny_config(), tmp_path / "run", build=tiny_builder(tiny_video_dir))
    export = ["video-export", str(tmp_path / "run"), "--to", str(tmp_path / "vision")]
    assert main(export) == 0
    written = (tmp_path / "vision" / "config.json").read_text()
    assert main(export) == 2
    assert "already holds vision weights (vision.safetensors, config.json): pass --force" in capsys.readouterr().err
    assert (tmp_path / "vision" / "config.json").read_text() == written
    assert main([*export, "--force"]) == 0
