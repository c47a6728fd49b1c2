"""Video suite: multiple-choice long-video QA under each memory policy (LLaVA-NeXT-Video adapter).

The paper's second transfer (Cetin et al., ICLR 2025, section 4.3): the text-evolved NAMM applied
unchanged to LLaVA-NeXT-Video's cache, where it keeps accuracy with less memory and learns to drop
redundant frames. Tasks:

- ``generated-colour``, ``generated-shape``, ``generated-order``: the generated long videos of
  ``video_generated.py``, evaluation seeds ``--seed``, ``--seed + 1`` ... (training uses seeds
  from 1,000,000 on), ``GENERATED_FRAMES`` frames each; candidates are the answer words.
- one task per JSONL file in ``--data-dir`` (file stem = task name), in the formats of public
  long-video benchmarks: the video (``video``, ``video_path`` or Video-MME's ``videoID``, relative
  to the file's directory), ``question``, the options (``options`` or ``candidates``) and the
  answer (a letter, the option's text, or ``correct_choice``'s index). The prompt lists the options
  as "A. ..." and asks for the letter, as Video-MME does; candidates are the letters.
- ``videomme``: without a local ``videomme.jsonl``, the questions of ``lmms-lab/Video-MME`` from
  the hub (``pip install datasets``, online); the videos, ``{videoID}.mp4``, are read from
  ``--data-dir`` (the hub serves them as separate archives).

A video that cannot be decoded gives a row with its ``error`` and the run goes on (the report
counts such rows). Every row also holds, per frame, the share of its visual tokens each policy
kept (``frame_retention``) and, for generated videos, which frames show an event.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from namm_bench.interfaces import VideoExample

from .base import DataError, Outcome, data_dir_from, prediction_text, read_jsonl
from .video_generated import KINDS, generate

GENERATED = {f"generated-{kind}": kind for kind in KINDS}
GENERATED_FRAMES = 128
"""Frames per generated evaluation video (4 visual tokens each: 512 cache entries)."""
LETTER_PROMPT = "Answer with the option's letter from the given choices directly."
HUB = {"videomme": ("lmms-lab/Video-MME", "test")}
"""Hub benchmarks whose questions load with ``datasets`` when online (a local ``NAME.jsonl`` wins)."""


def _generated_frames(seed: int, kind: str):
    return generate(seed, kind, GENERATED_FRAMES).frames


def _options_prompt(question: str, options: list[str]) -> str:
    lines = []
    for letter, option in zip(string.ascii_uppercase, options, strict=False):
        option = str(option).strip()
        lines.append(option if option[:2] == f"{letter}." else f"{letter}. {option}")
    return "\n".join([question.strip(), *lines, LETTER_PROMPT])


def _answer_index(row: dict[str, Any], options: list[str], where: str) -> int:
    if "correct_choice" in row:
        answer = row["correct_choice"]
    elif "answer" in row:
        answer = row["answer"]
    else:
        raise DataError(f"{where}: row lacks answer (or correct_choice)")
    letters = string.ascii_uppercase[: len(options)]
    if isinstance(answer, int) and 0 <= answer < len(options):
        return answer
    text = str(answer).strip()
    if len(text) == 1 and text.upper() in letters:
        return letters.index(text.upper())
    stripped = [str(o).strip() for o in options]
    if text in stripped:
        return stripped.index(text)
    raise DataError(f"{where}: answer {answer!r} is neither a letter, an index nor one of the options")


def read_video_file(path: Path, limit: int | None = None) -> list[VideoExample]:
    """Examples of one benchmark file (see the module docstring for the accepted fields)."""
    rows = read_jsonl(path, ["question"], limit)
    return _examples(rows, path.name.split(".")[0], path.parent, str(path))


def _examples(rows: list[dict[str, Any]], task: str, video_root: Path, source: str) -> list[VideoExample]:
    examples = []
    for n, row in enumerate(rows, 1):
        where = f"{source}:{n}"
        video = row.get("video") or row.get("video_path") or (f"{row['videoID']}.mp4" if "videoID" in row else None)
        options = row.get("options") or row.get("candidates")
        if video is None:
            raise DataError(f"{where}: row lacks video (or video_path, videoID)")
        if not isinstance(options, list) or len(options) < 2:
            raise DataError(f"{where}: row lacks options (or candidates): a list of at least 2")
        if "question" not in row:
            raise DataError(f"{where}: row lacks question")
        examples.append(
            VideoExample(
                task=task,
                example_id=str(row.get("question_id") or row.get("id") or f"{task}-{n}"),
                question=_options_prompt(row["question"], options),
                candidates=tuple(string.ascii_uppercase[: len(options)]),
                answer=_answer_index(row, options, where),
                video=str((video_root / video).resolve()),
            )
        )
    return examples


def _hub_examples(task: str, video_root: Path, limit: int | None) -> list[VideoExample]:
    """Questions of a hub benchmark (``HUB``); its videos must be files in ``video_root``."""
    name, split = HUB[task]
    try:
        from datasets import load_dataset

        data = load_dataset(name, split=split)
        rows = [dict(data[i]) for i in range(len(data) if limit is None else min(limit, len(data)))]
    except Exception as err:  # no datasets package, offline, or the hub layout changed
        raise DataError(
            f"no {task} questions: put {task}.jsonl in --data-dir, or load {name} from the hub "
            f"(needs `pip install datasets` and a network) failed: {err}"
        ) from err
    return _examples(rows, task, video_root, f"{name}[{split}]")


@dataclass
class VideoSuite:
    """Generated long-video QA plus the benchmark files found in ``data_dir``."""

    data_dir: str | Path | None = None
    name: str = "video"
    modality: str = "video"
    default_adapter: str = "llava_next_video"

    def _dir(self) -> Path | None:
        return data_dir_from(self.data_dir, "NAMM_BENCH_VIDEO")

    def files(self) -> dict[str, Path]:
        root = self._dir()
        if root is None:
            return {}
        if not root.is_dir():
            raise DataError(f"video data directory {root} not found")
        return {p.name.split(".")[0]: p for p in sorted(root.glob("*.jsonl*"))}

    def tasks(self) -> list[str]:
        files = self.files()
        return [*GENERATED, *files, *(t for t in HUB if t not in files)]

    def default_tasks(self) -> list[str]:
        """What runs without ``--tasks``: the generated tasks and the local files (hub tasks only when named)."""
        return [*GENERATED, *self.files()]

    def examples(self, task: str, count_tokens, max_prompt_tokens, seed: int, limit: int | None) -> list[VideoExample]:
        """The task's questions (``count_tokens`` and ``max_prompt_tokens`` are unused: prompts are short)."""
        if task in GENERATED:
            kind = GENERATED[task]
            out = []
            for s in range(seed, seed + (limit or 100)):
                video = generate(s, kind, GENERATED_FRAMES)
                events = [i for i, label in enumerate(video.labels) if label is not None]
                out.append(
                    VideoExample(
                        task,
                        f"{kind}-{s}",
                        video.question,
                        tuple(video.candidates),
                        video.answer,
                        seed=s,
                        meta={"event_frames": events},
                        load_frames=partial(_generated_frames, s, kind),
                    )
                )
            return out
        files = self.files()
        if task in files:
            return read_video_file(files[task], limit)
        if task in HUB:
            return _hub_examples(task, self._dir() or Path.cwd(), limit)
        raise DataError(f"unknown video task {task!r}; known: {', '.join(self.tasks())}")

    def score(self, example: VideoExample, outcome: Outcome | str) -> float:
        """1 if the chosen option is the answer."""
        return float(prediction_text(outcome) == example.candidates[example.answer])

    @staticmethod
    def write_plots(rows: list[dict[str, Any]], out_dir: Path) -> list[tuple[Path, str]]:
        """The suite's own report figures (the module's ``write_plots``)."""
        return write_plots(rows, out_dir)


def write_plots(rows: list[dict[str, Any]], out_dir: Path) -> list[tuple[Path, str]]:
    """The video suite's figure: the share of each frame's visual tokens each memory policy kept.

    Left, by position in the video (10 bins); right, on generated videos, on the frames that show
    an event against the static background frames (the paper's finding: NAMMs drop redundant
    frames). Returns (path, caption) for the figure; none without video rows of memory policies.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from namm_bench.files import write_figure
    from namm_bench.report import column_label

    rows = [
        r
        for r in rows
        if r.get("suite") == "video" and not r.get("error") and r.get("frame_retention") and r["policy"] != "full"
    ]
    if not rows:
        return []
    bins = 10
    by_phase: dict[str, list[np.ndarray]] = {}
    by_kind: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        label = column_label(r["policy"], r["budget"])
        kept = np.asarray(r["frame_retention"], dtype=float)
        phase = np.minimum((np.arange(len(kept)) * bins) // len(kept), bins - 1)
        by_phase.setdefault(label, []).append(np.bincount(phase, kept, bins) / np.bincount(phase, minlength=bins))
        events = (r.get("meta") or {}).get("event_frames")
        if events:
            is_event = np.zeros(len(kept), bool)
            is_event[events] = True
            shares = by_kind.setdefault(label, {"event frames": [], "background frames": []})
            shares["event frames"].append(kept[is_event].mean())
            shares["background frames"].append(kept[~is_event].mean())

    fig, axes = plt.subplots(1, 2 if by_kind else 1, figsize=(11 if by_kind else 5.5, 4), squeeze=False)
    ax = axes[0][0]
    for label, values in by_phase.items():
        ax.plot(100 * (np.arange(bins) + 0.5) / bins, 100 * np.mean(values, axis=0), "o-", label=label)
    ax.set_xlabel("position in the video (% of its frames)")
    ax.set_ylabel("visual tokens still cached at the end (%)")
    ax.set_ylim(0, 105)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if by_kind:
        ax = axes[0][1]
        labels = list(by_kind)
        width = 0.38
        for k, kind in enumerate(("event frames", "background frames")):
            means = [100 * np.mean(by_kind[label][kind]) for label in labels]
            ax.bar(np.arange(len(labels)) + (k - 0.5) * width, means, width, label=kind)
        ax.set_xticks(np.arange(len(labels)), labels, rotation=20, fontsize=8)
        ax.set_ylabel("visual tokens still cached at the end (%)")
        ax.set_title("generated videos: frames with an event vs static background", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / "report-video-frames.png"
    write_figure(fig, path)
    return [(path, "share of each frame's visual tokens kept per memory policy (mean over layers, heads and videos)")]
