"""Training run directories: a corrupt or foreign ``state.pt`` is one clear error; a torn log line is repaired."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from test_decision_transformer_training import episodes, kill_at_batch, tiny
from test_video_training import tiny_builder, tiny_config

from namm_bench.cli import main
from namm_bench.training.decision_transformer import train
from namm_bench.training.llava_next_video import train as train_video


class Foreign:
    """A pickled object of another tool: loading it must not run its code."""

    def __reduce__(self):
        return (print, ("a foreign pickle ran code",))


def spoil(state, how: str) -> None:
    if how == "corrupt":
        state.write_bytes(state.read_bytes()[:100])
    elif how == "foreign":
        state.write_bytes(pickle.dumps({"model": Foreign()}))
    else:  # another tool's torch checkpoint: readable, without the trainer's keys
        torch.save({"weights": torch.zeros(2)}, state)


MESSAGES = {
    "corrupt": "is not a readable {what} training state (corrupt or foreign)",
    "foreign": "is not a readable {what} training state (corrupt or foreign)",
    "other": "is not a {what} training state: it has no",
}


@pytest.fixture(scope="module")
def dt_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("dt") / "run"
    train(tiny(steps=5), episodes(), run)
    return run


@pytest.mark.parametrize("how", sorted(MESSAGES))
def test_rl_export_and_resume_refuse_a_bad_state(dt_run, tmp_path, how, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for f in dt_run.iterdir():
        if f.is_file():
            (run / f.name).write_bytes(f.read_bytes())
    spoil(run / "state.pt", how)
    message = MESSAGES[how].format(what="Decision Transformer")
    assert main(["rl-export", str(run), "--to", str(tmp_path / "agent")]) == 2
    err = capsys.readouterr()
    assert message in err.err and len(err.err.strip().splitlines()) == 1
    assert "a foreign pickle ran code" not in err.out
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train(tiny(steps=5), episodes(), run, resume=True)


def test_video_export_refuses_a_foreign_state(tiny_video_dir, tmp_path, capsys):
    train_video(tiny_config(), tmp_path / "run", build=tiny_builder(tiny_video_dir))
    spoil(tmp_path / "run" / "state.pt", "foreign")
    assert main(["video-export", str(tmp_path / "run"), "--to", str(tmp_path / "out")]) == 2
    err = capsys.readouterr()
    assert MESSAGES["foreign"].format(what="video model") in err.err and "ran code" not in err.out


def test_a_torn_last_log_line_is_dropped_on_resume_and_a_corrupt_one_before_it_is_an_error(
    tmp_path, monkeypatch, caplog
):
    run = tmp_path / "run"
    kill_at_batch(monkeypatch, 8)
    with pytest.raises(RuntimeError):
        train(tiny(steps=10), episodes(), run)  # checkpoint at step 5, log rows 1-7
    monkeypatch.undo()
    log = run / "log.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines) + '\n{"step": 8, "lo')  # a kill while step 8's row was written
    with caplog.at_level("WARNING"):
        train(tiny(steps=10), episodes(), run, resume=True)
    assert "dropping its torn last line" in caplog.text
    assert [json.loads(r)["step"] for r in log.read_text().splitlines()] == list(range(1, 11))

    lines = log.read_text().splitlines()
    log.write_text(lines[0] + "\n{not json\n" + lines[2] + "\n")
    with pytest.raises(ValueError, match="line 2: corrupt training log"):
        train(tiny(steps=10), episodes(), run, resume=True)
