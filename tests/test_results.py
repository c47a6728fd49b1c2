"""Tests for the crash-safe results store."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from namm_bench.results import RESULTS_FILE, ResultsFileError, ResultsStore, row_key


def make_row(example_id: int, policy: str = "h2o", budget: str = "0.25", **extra: object) -> dict:
    row = {
        "suite": "longbench",
        "task": "qasper",
        "example_id": example_id,
        "model": "smollm2-135m",
        "policy": policy,
        "budget": budget,
        "protocol": "post-prefill",
        "score": 0.5,
        "cache_fraction": 0.25,
        "prediction": "réponse ✓",  # non-ASCII must survive the round trip
        "error": None,
    }
    row.update(extra)
    return row


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "run"  # does not exist yet
    store = ResultsStore(out)
    assert out.is_dir()
    assert store.rows() == []
    assert store.done_keys() == set()

    rows = [make_row(0), make_row(1), make_row(0, policy="full", budget="none")]
    for row in rows:
        store.append(row)

    assert store.rows() == rows
    assert ResultsStore(out).rows() == rows  # a fresh store reads the same
    assert ResultsStore(out).done_keys() == {row_key(r) for r in rows}
    # rows from before a key field existed have the value every row had then (hashes: unknown)
    assert row_key(rows[0]) == (
        *("smollm2-135m", "longbench", "qasper", 0, "h2o", "0.25", "post-prefill", "truncate"),
        *(128, 512, True, 0, "default", "float32", None, None, None, None),
    )
    assert row_key({**rows[0], "long_inputs": "stream"})[7] == "stream"
    text = (out / RESULTS_FILE).read_text(encoding="utf-8")
    assert text.endswith("\n") and text.count("\n") == 3
    assert "réponse ✓" in text  # ensure_ascii=False


def test_resume_drops_torn_last_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / RESULTS_FILE
    complete = json.dumps(make_row(0)) + "\n" + json.dumps(make_row(1)) + "\n"
    torn = json.dumps(make_row(2))[:40]  # what a SIGKILL mid-write leaves: half a line, no newline
    path.write_text(complete + torn, encoding="utf-8")

    store = ResultsStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="namm_bench.results"):
        assert [r["example_id"] for r in store.rows()] == [0, 1]
    assert "line 3" in caplog.text and "incomplete" in caplog.text
    assert path.read_text(encoding="utf-8") == complete + torn  # reading alone changes nothing
    assert row_key(make_row(2)) not in store.done_keys()

    store.append(make_row(2))  # the torn row is redone
    store.append(make_row(3))

    lines = lines_of(path)
    assert [json.loads(line)["example_id"] for line in lines] == [0, 1, 2, 3]
    assert path.read_text(encoding="utf-8").endswith("\n")


def test_resume_torn_in_multibyte_character(tmp_path: Path) -> None:
    path = tmp_path / RESULTS_FILE
    full = (json.dumps(make_row(1), ensure_ascii=False) + "\n").encode("utf-8")
    cut = full.index("✓".encode()) + 1  # inside the 3-byte character: not valid UTF-8
    path.write_bytes(json.dumps(make_row(0)).encode() + b"\n" + full[:cut])

    store = ResultsStore(tmp_path)
    store.append(make_row(1))
    assert [json.loads(line)["example_id"] for line in lines_of(path)] == [0, 1]


def test_complete_last_row_without_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / RESULTS_FILE
    path.write_text(json.dumps(make_row(0)) + "\n" + json.dumps(make_row(1)), encoding="utf-8")

    store = ResultsStore(tmp_path)
    assert len(store.rows()) == 2
    with pytest.raises(ValueError, match="already present"):
        store.append(make_row(1))
    store.append(make_row(2))
    assert [json.loads(line)["example_id"] for line in lines_of(path)] == [0, 1, 2]


def test_empty_lines_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / RESULTS_FILE
    path.write_text("\n" + json.dumps(make_row(0)) + "\n\n  \n" + json.dumps(make_row(1)) + "\n")
    assert [r["example_id"] for r in ResultsStore(tmp_path).rows()] == [0, 1]


def test_corrupt_middle_line_raises_and_leaves_file(tmp_path: Path) -> None:
    path = tmp_path / RESULTS_FILE
    content = (
        json.dumps(make_row(0)) + "\n" + '{"suite": "longbench", "task": \n' + json.dumps(make_row(1)) + "\n"
    ).encode()
    path.write_bytes(content)

    store = ResultsStore(tmp_path)
    with pytest.raises(ResultsFileError, match=r"line 2\b") as info:
        store.rows()
    assert str(path) in str(info.value)
    with pytest.raises(ResultsFileError, match=r"line 2\b"):
        store.append(make_row(5))
    assert path.read_bytes() == content


def test_corrupt_terminated_last_line_raises(tmp_path: Path) -> None:
    # With a newline the line was written whole, so garbage there is corruption, not a crash.
    path = tmp_path / RESULTS_FILE
    content = json.dumps(make_row(0)) + "\n" + '{"suite": "lo\n'
    path.write_text(content)
    with pytest.raises(ResultsFileError, match=r"line 2\b"):
        ResultsStore(tmp_path).append(make_row(1))
    assert path.read_text() == content


def test_row_missing_key_field_raises(tmp_path: Path) -> None:
    path = tmp_path / RESULTS_FILE
    bad = make_row(1)
    del bad["protocol"]
    path.write_text(json.dumps(make_row(0)) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ResultsFileError, match=r"line 2\b.*protocol"):
        ResultsStore(tmp_path).done_keys()


def test_duplicate_key_in_file_raises(tmp_path: Path) -> None:
    path = tmp_path / RESULTS_FILE
    content = "\n".join(json.dumps(r) for r in [make_row(0), make_row(1), make_row(0, score=1.0)]) + "\n"
    path.write_text(content)
    with pytest.raises(ResultsFileError, match=r"line 3\b.*duplicate.*first on line 1"):
        ResultsStore(tmp_path).rows()
    assert path.read_text() == content


def test_append_existing_key_raises(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    store.append(make_row(0))
    with pytest.raises(ValueError, match="already present"):
        store.append(make_row(0, score=1.0))
    # A fresh store (a resumed run) knows the key from the file.
    with pytest.raises(ValueError, match="already present"):
        ResultsStore(tmp_path).append(make_row(0))
    # A different budget is a different key.
    store.append(make_row(0, budget="0.5"))
    assert len(lines_of(tmp_path / RESULTS_FILE)) == 2


def test_append_row_without_key_field_raises(tmp_path: Path) -> None:
    row = make_row(0)
    del row["model"]
    with pytest.raises(ValueError, match="model"):
        ResultsStore(tmp_path).append(row)
    assert not (tmp_path / RESULTS_FILE).exists()


def test_reruns_after_torn_last_lines_compute_each_row_once(tiny_model_dir, tmp_path: Path) -> None:
    """Real torn lines, then ``namm-bench run`` again into the same --out: a row cut mid-write, then half a
    row appended after complete ones."""
    from namm_bench.cli import main

    out = tmp_path / "run"
    path = out / RESULTS_FILE

    def run(limit: int) -> list[dict]:
        argv = ["run", "synthetic", "--model", str(tiny_model_dir), "--tasks", "passkey_1k", "--limit", str(limit)]
        assert main([*argv, "--out", str(out)]) == 0
        data = path.read_bytes()
        assert data.endswith(b"\n")
        rows, unparsed = [], []
        for lineno, line in enumerate(data.splitlines(), start=1):
            try:
                rows.append(json.loads(line))
            except ValueError:
                unparsed.append(lineno)
        assert not unparsed, f"line(s) {unparsed} of {path} do not parse"
        assert len({row_key(r) for r in rows}) == len(rows) == 3 * limit, "every row exactly once"
        return rows

    def timeless(row: dict) -> dict:
        return {k: v for k, v in row.items() if k != "seconds"}

    before = run(2)
    written = path.read_bytes().splitlines(keepends=True)
    complete, last = b"".join(written[:-1]), written[-1]
    path.write_bytes(complete + last[: len(last) // 2])  # the last row cut mid-write by a SIGKILL: no newline
    rows = run(2)
    assert path.read_bytes().startswith(complete), "the good rows are kept as they were"
    assert [row_key(r) for r in rows] == [row_key(r) for r in before]
    assert timeless(rows[-1]) == timeless(before[-1]), "the torn row is computed again"

    whole = path.read_bytes()
    half = json.dumps({**rows[0], "example_id": "the next example"}).encode()
    path.write_bytes(whole + half[: len(half) // 2])  # a kill in the first write of the next example
    more = run(3)
    assert path.read_bytes().startswith(whole) and [timeless(r) for r in more[:6]] == [timeless(r) for r in rows]
    new_examples = {r["example_id"] for r in more[6:]}
    assert len(new_examples) == 1 and not new_examples & {r["example_id"] for r in rows}, "one new example's rows"
