"""Generated long-video QA: coloured shapes that appear briefly in a long, static video.

No pretrained video-language model can be downloaded offline, so the embedded video model
(``adapters/llava_next_video.py``) learns its vision side on these videos, and the ``video``
suite evaluates on held-out seeds. Each video is ``num_frames`` frames of a dark, noisy, static
background (the redundant frames the paper's NAMM learns to forget) in which one or two *events*
happen: a coloured shape shown for a few frames at a random place. Questions (answered in one
word, four candidates each):

- ``colour``: one event; "What colour was the {shape}?"
- ``shape``: one event; "What shape was the {colour} object?"
- ``order``: two events of different colours; "Which colour appeared first?"

Every frame carries its label ((colour, shape) of what it shows, or None), which training uses
and which the per-frame retention plot splits on (event frames vs background frames).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME_SIZE = 64
COLOURS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 80, 235), "yellow": (235, 215, 40)}
SHAPES = ("circle", "square", "triangle", "cross")
KINDS = ("colour", "shape", "order")
BACKGROUND = 40
NOISE = 6.0
EVENT_FRAMES = (3, 6)
"""An event lasts between 3 and 6 frames (inclusive)."""


@dataclass
class GeneratedVideo:
    """One generated video and its question."""

    frames: np.ndarray  # (T, 64, 64, 3) uint8
    labels: list[tuple[str, str] | None]  # per frame: (colour, shape) shown, or None for background
    question: str
    candidates: list[str]
    answer: int  # index into candidates
    kind: str


def draw_shape(frame: np.ndarray, shape: str, colour: str, cx: float, cy: float, radius: float) -> None:
    """Draw a filled ``shape`` of ``colour`` centred at (cx, cy) into ``frame`` (in place)."""
    size = frame.shape[0]
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = x - cx, y - cy
    if shape == "circle":
        mask = dx**2 + dy**2 <= radius**2
    elif shape == "square":
        half = radius * 0.85
        mask = (np.abs(dx) <= half) & (np.abs(dy) <= half)
    elif shape == "triangle":  # apex up: inside when below the two sides and above the base
        mask = (dy <= radius * 0.8) & (dy >= -radius) & (np.abs(dx) <= (dy + radius) * 0.6)
    elif shape == "cross":
        arm = radius * 0.3
        mask = ((np.abs(dx) <= arm) & (np.abs(dy) <= radius)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= radius))
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    frame[mask] = COLOURS[colour]


def _background(rng: np.random.Generator, num_frames: int) -> np.ndarray:
    base = np.full((FRAME_SIZE, FRAME_SIZE, 3), BACKGROUND, np.float32)
    frames = base[None] + rng.normal(0.0, NOISE, (num_frames, FRAME_SIZE, FRAME_SIZE, 3))
    return frames.clip(0, 255).astype(np.uint8)


def _event(
    rng: np.random.Generator,
    frames: np.ndarray,
    labels: list,
    start: int,
    colour: str,
    shape: str,
) -> int:
    """Show ``colour`` ``shape`` from frame ``start``, drifting a little; returns the frame after the event."""
    length = int(rng.integers(EVENT_FRAMES[0], EVENT_FRAMES[1] + 1))
    radius = float(rng.uniform(10, 14))
    cx, cy = rng.uniform(radius + 2, FRAME_SIZE - radius - 2, 2)
    vx, vy = rng.uniform(-1.5, 1.5, 2)
    end = min(start + length, len(frames))
    for t in range(start, end):
        x = np.clip(cx + vx * (t - start), radius + 1, FRAME_SIZE - radius - 1)
        y = np.clip(cy + vy * (t - start), radius + 1, FRAME_SIZE - radius - 1)
        draw_shape(frames[t], shape, colour, x, y, radius)
        labels[t] = (colour, shape)
    return end


def generate(seed: int, kind: str, num_frames: int = 64) -> GeneratedVideo:
    """The video and question of ``seed`` for question ``kind`` (deterministic)."""
    if kind not in KINDS:
        raise ValueError(f"unknown question kind {kind!r}; known: {', '.join(KINDS)}")
    if num_frames < 2 * EVENT_FRAMES[1] + 2:
        raise ValueError(f"a generated video needs at least {2 * EVENT_FRAMES[1] + 2} frames, got {num_frames}")
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    frames = _background(rng, num_frames)
    labels: list[tuple[str, str] | None] = [None] * num_frames
    colours = list(COLOURS)
    colour, shape = colours[rng.integers(4)], SHAPES[rng.integers(4)]
    if kind == "order":
        first, second = (colours[i] for i in rng.permutation(4)[:2])
        half = num_frames // 2
        _event(rng, frames, labels, int(rng.integers(0, half - EVENT_FRAMES[1])), first, shape)
        _event(rng, frames, labels, int(rng.integers(half, num_frames - EVENT_FRAMES[1])), second, shape)
        return GeneratedVideo(frames, labels, "Which colour appeared first?", colours, colours.index(first), kind)
    _event(rng, frames, labels, int(rng.integers(0, num_frames - EVENT_FRAMES[1])), colour, shape)
    if kind == "colour":
        return GeneratedVideo(frames, labels, f"What colour was the {shape}?", colours, colours.index(colour), kind)
    question = f"What shape was the {colour} object?"
    return GeneratedVideo(frames, labels, question, list(SHAPES), SHAPES.index(shape), kind)
