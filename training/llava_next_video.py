"""Training the embedded video model's vision side on generated videos (SmolLM2 frozen), on CPU.

Two stages, in the spirit of LLaVA's alignment-then-instruction recipe:

1. ``align`` (cheap, no language model forward): the vision tower and projector learn to turn
   each frame into tokens close to SmolLM2's input embeddings of words describing it: an event
   frame's 4 tokens become " {colour}", " {shape}", " {colour}", " {shape}" and a background
   frame's become " gray". Loss: mean squared error to those embeddings.
2. ``qa``: whole generated videos with their questions go through the frozen SmolLM2; the loss is
   the cross-entropy of the gold candidate among the candidates' first tokens (how the suite
   scores), plus the ``align`` loss on the same frames (weight ``align_weight``) so the tokens
   stay word-like.

Videos come from ``suites/video_generated.py`` with seeds from ``TRAIN_SEEDS`` on, disjoint from
the evaluation seeds (0, 1, 2 ...). A run directory holds ``config.json``, ``state.pt`` (replaced
atomically every ``checkpoint_every`` steps; ``--resume`` continues the same trajectory),
``log.jsonl`` and, at the end, ``vision/`` (``vision.safetensors`` + ``config.json``), the
directory the adapter loads.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from namm_bench.adapters.llava_next_video import LlavaNextVideoAdapter, build_embedded, trainable_state
from namm_bench.files import refuse_overwrite, write_atomic
from namm_bench.suites.video_generated import KINDS, generate
from namm_bench.training_runs import RunFiles, check_run, load_state, rewind_log, run_files, save_state, start_run

TRAIN_SEEDS = 1_000_000
"""Training videos use seeds from here on; evaluation uses 0, 1, 2 ..."""
BACKGROUND_WORD = "gray"


@dataclass(frozen=True)
class VideoTrainConfig:
    align_steps: int = 1500
    qa_steps: int = 300
    align_videos: int = 4  # videos per align step (all their frames)
    align_frames: int = 16
    qa_batch: int = 4  # questions per qa step (gradients accumulated)
    qa_frames: int = 32
    lr: float = 1e-3
    qa_lr: float = 5e-5
    align_weight: float = 1.0
    seed: int = 0
    log_every: int = 50
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        for name in ("align_videos", "align_frames", "qa_batch", "qa_frames", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.align_steps < 0 or self.qa_steps < 0 or self.align_steps + self.qa_steps < 1:
            raise ValueError("align_steps and qa_steps must be >= 0 and not both 0")

    @property
    def steps(self) -> int:
        return self.align_steps + self.qa_steps


def frame_targets(labels: list, tokenizer, embeddings: torch.Tensor, tokens_per_frame: int) -> torch.Tensor:
    """(T * tokens_per_frame, H) word embeddings the align stage pulls each frame's tokens to."""
    word = lambda w: tokenizer.encode(" " + w, add_special_tokens=False)[0]  # noqa: E731
    rows = []
    for label in labels:
        if label is None:
            rows += [word(BACKGROUND_WORD)] * tokens_per_frame
        else:
            rows += [word(label[0]), word(label[1])] * (tokens_per_frame // 2)
    return embeddings[torch.tensor(rows)]


def align_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error to the word embeddings relative to their mean square (1.0 = predicting zeros)."""
    return F.mse_loss(features, target) / target.pow(2).mean()


def train(cfg: VideoTrainConfig, out: Path, resume: bool = False, build=build_embedded) -> Path:
    """Train (or continue) into ``out``; returns the exported ``vision/`` directory.

    ``build(None)`` gives (model, tokenizer) with untrained vision weights: the embedded model
    (tests pass a tiny one).
    """
    out = Path(out)
    wanted = dataclasses.asdict(cfg)
    files = check_run(out, wanted, resume)

    model, tokenizer = build(None)
    for p in model.model.language_model.parameters():
        p.requires_grad_(False)
    params = [p for n, p in model.named_parameters() if n in trainable_state(model)]
    adapter = LlavaNextVideoAdapter.wrap(model, tokenizer)
    embeddings = model.get_input_embeddings().weight.detach()
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    step, video_seed = 0, TRAIN_SEEDS
    if resume:
        state = load_state(files, STATE_KEYS, "video model")
        model.load_state_dict(state["trainable"], strict=False)
        opt.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        step, video_seed = state["step"], state["video_seed"]
        rewind_log(files, step)
    else:
        start_run(files, wanted)

    model.train()
    model.model.language_model.eval()  # frozen: no dropout either
    bar = tqdm(total=cfg.steps, initial=step, desc="video-train", unit="step", dynamic_ncols=True)
    logged: dict[str, list[float]] = {}
    began = time.perf_counter()
    while step < cfg.steps:
        stage = "align" if step < cfg.align_steps else "qa"
        if stage == "qa" and step == cfg.align_steps:
            for group in opt.param_groups:
                group["lr"] = cfg.qa_lr
        opt.zero_grad()
        if stage == "align":
            losses = {"align": 0.0}  # mean squared error relative to the targets' mean square
            for _ in range(cfg.align_videos):
                video = generate(video_seed, KINDS[int(rng.integers(len(KINDS)))], cfg.align_frames)
                video_seed += 1
                target = frame_targets(video.labels, tokenizer, embeddings, adapter.tokens_per_frame)
                loss = align_loss(adapter.video_features(video.frames), target) / cfg.align_videos
                loss.backward()
                losses["align"] += loss.item()
        else:
            losses = {"qa": 0.0, "align": 0.0, "accuracy": 0.0}
            for _ in range(cfg.qa_batch):
                video = generate(video_seed, KINDS[int(rng.integers(len(KINDS)))], cfg.qa_frames)
                video_seed += 1
                ids, _ = adapter.prompt_ids(video.question, len(video.frames))
                cand = torch.tensor(adapter.candidate_ids(video.candidates))
                features = adapter.video_features(video.frames)
                embeds = adapter.embed(ids, features)
                logits = model(inputs_embeds=embeds, logits_to_keep=1).logits[0, -1, cand]
                qa = F.cross_entropy(logits[None], torch.tensor([video.answer]))
                target = frame_targets(video.labels, tokenizer, embeddings, adapter.tokens_per_frame)
                align = align_loss(features, target)
                ((qa + cfg.align_weight * align) / cfg.qa_batch).backward()
                losses["qa"] += qa.item() / cfg.qa_batch
                losses["align"] += align.item() / cfg.qa_batch
                losses["accuracy"] += float(int(logits.argmax()) == video.answer) / cfg.qa_batch
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        for k, v in losses.items():
            logged.setdefault(k, []).append(v)
        if step % cfg.log_every == 0 or step == cfg.steps or step == cfg.align_steps:
            row = {"step": step, "stage": stage, **{k: round(float(np.mean(v)), 5) for k, v in logged.items()}}
            row["seconds"] = round(time.perf_counter() - began, 2)
            with files.log.open("a") as f:
                f.write(json.dumps(row) + "\n")
            bar.set_postfix({k: v for k, v in row.items() if k not in ("step", "seconds")})
            logged, began = {}, time.perf_counter()
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            _save_state(files, model, opt, rng, step, video_seed)
        bar.update(1)
    bar.close()
    return export_run(out, force=True)  # the run's own vision/, rewritten as training goes


STATE_KEYS = ("trainable", "optimizer", "numpy_rng", "torch_rng", "step", "video_seed")
"""What ``state.pt`` holds (``_save_state``); a file without them is not this trainer's."""


def _save_state(files: RunFiles, model, opt, rng: np.random.Generator, step: int, video_seed: int) -> None:
    state = {
        "trainable": trainable_state(model),
        "optimizer": opt.state_dict(),
        "numpy_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "step": step,
        "video_seed": video_seed,
    }
    save_state(files, state)


def export_run(run: Path, directory: Path | None = None, force: bool = False) -> Path:
    """Write the run's latest state as ``vision.safetensors`` + ``config.json`` (what the adapter loads).

    Weights already in ``directory`` are replaced only with ``force``.
    """
    from safetensors.torch import save

    run = Path(run)
    if not (run / "state.pt").is_file():
        raise ValueError(f"{run} holds no training state (state.pt); train first with `namm-bench video-train`")
    directory = Path(directory) if directory is not None else run / "vision"
    refuse_overwrite(directory, ("vision.safetensors", "config.json"), "vision weights", force)
    state = load_state(run_files(run), STATE_KEYS, "video model")
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in state["trainable"].items()}
    write_atomic(directory / "vision.safetensors", save(tensors))
    meta = {"step": state["step"], "training": json.loads((run / "config.json").read_text())}
    write_atomic(directory / "config.json", json.dumps(meta, indent=2) + "\n")
    return directory
