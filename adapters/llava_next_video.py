"""LLaVA-NeXT-Video: video question answering with the visual tokens in the language model's cache.

The model is the stock ``LlavaNextVideoForConditionalGeneration``. Frames are decoded with
``decord`` (uniformly sampled N frames, or a fixed frame rate), resized and normalised here (no
torchvision), turned into visual tokens by the model's own ``get_video_features`` (vision tower,
spatial pooling, projector) and placed where the prompt's video placeholders are, exactly as the
stock forward merges them. The language model then reads the prompt in chunks under the memory
controller, so visual tokens are ordinary cache entries that every policy sees, counts and evicts.

Questions are multiple choice. The answer is the candidate whose first token the model ranks
highest right after the prompt (one-word candidates for the generated set, option letters for
benchmark files), the usual single-forward scoring of small models in lm-evaluation-harness.

The embedded default (``smollm2-video``) is a ``LlavaNextVideo`` whose language model is the
embedded SmolLM2-135M (frozen, unchanged) and whose small CLIP vision tower and projector are
trained by ``namm-bench video-train`` on generated videos and shipped in
``namm_bench/checkpoints/video-smollm2`` (only those weights: SmolLM2's come from its own package).
Hub checkpoints such as ``llava-hf/LLaVA-NeXT-Video-7B-hf`` load through ``--model`` where the
weights and a GPU exist.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from namm_bench.controller import ControllerConfig, MemoryController
from namm_bench.interfaces import ExampleError, Outcome, RunOptions, VideoExample
from namm_bench.models import is_hub_id
from namm_bench.policies.base import MemoryPolicy

from .llama import ModelLoadError, embedded_model_dir

EMBEDDED = "smollm2-video"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
VIDEO_MARKER = "{video}"
EMBEDDED_TEMPLATE = "{video}\n{question}\nAnswer:"
HUB_TEMPLATE = "USER: {video}\n{question} ASSISTANT:"
"""Prompt of LLaVA-NeXT-Video's model card; the embedded model is a base-style reader (raw text, no chat)."""
EMBEDDED_VIDEO_TOKEN = "<empty_output>"
"""A special token of SmolLM2's vocabulary that text does not produce: the video placeholder (no new embedding)."""


def shipped_vision_dir() -> Path:
    import namm_bench

    return Path(namm_bench.__file__).parent / "checkpoints" / "video-smollm2"


class VideoError(ExampleError):
    """A video that cannot be opened or decoded."""


# --------------------------------------------------------------------- frames
def sample_indices(total: int, avg_fps: float, num_frames: int | None = None, fps: float | None = None) -> np.ndarray:
    """Frame indices to decode from a video of ``total`` frames at ``avg_fps``.

    ``num_frames``: N indices spread uniformly over the whole video,
    ``np.linspace(0, total - 1, N)`` rounded down (LLaVA-NeXT-Video's sampling); fewer frames
    than N gives every frame. ``fps``: one frame every ``avg_fps / fps`` frames from the first
    (every frame when ``fps >= avg_fps``). Exactly one of the two must be given.
    """
    if (num_frames is None) == (fps is None):
        raise ValueError("give exactly one of num_frames (uniform sampling) and fps")
    if total < 1:
        raise VideoError("the video has no frames")
    if num_frames is not None:
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if total <= num_frames:
            return np.arange(total)
        return np.linspace(0, total - 1, num_frames).astype(np.int64)
    if fps <= 0 or avg_fps <= 0:
        raise ValueError(f"fps must be positive (asked {fps}, video {avg_fps})")
    step = max(1.0, avg_fps / fps)
    return np.unique(np.arange(0, total, step).astype(np.int64))


def read_video(path: str | Path, num_frames: int | None = None, fps: float | None = None) -> np.ndarray:
    """Decode the sampled frames of ``path`` with decord: (T, H, W, 3) uint8. Any failure is a ``VideoError``."""
    try:
        import decord
    except ImportError as err:
        raise ModelLoadError("reading video files needs decord: pip install 'namm-bench[video]'") from err
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"video {path} not found")
    try:
        reader = decord.VideoReader(str(path), num_threads=1)
        indices = sample_indices(len(reader), float(reader.get_avg_fps()), num_frames, fps)
        return reader.get_batch(list(indices)).asnumpy()
    except VideoError:
        raise
    except Exception as err:  # decord raises its own DECORDError (and RuntimeError) for broken streams
        raise VideoError(f"cannot decode {path}: {type(err).__name__}: {str(err).splitlines()[0][:200]}") from err


def preprocess(
    frames: np.ndarray, image_size: int, mean: tuple[float, ...] = CLIP_MEAN, std: tuple[float, ...] = CLIP_STD
) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, S, S) float: shortest side resized to S (bilinear), centre crop, normalised."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    h, w = x.shape[-2:]
    scale = image_size / min(h, w)
    size = (max(image_size, round(h * scale)), max(image_size, round(w * scale)))
    if size != (h, w):
        x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    top, left = (size[0] - image_size) // 2, (size[1] - image_size) // 2
    x = x[..., top : top + image_size, left : left + image_size]
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


# --------------------------------------------------------------------- the embedded model
def embedded_config(text_config: Any) -> Any:
    """SmolLM2 as the language model, a small CLIP vision tower (64 px, patch 16): 4 tokens per frame."""
    from transformers import CLIPVisionConfig, LlavaNextVideoConfig

    vision = CLIPVisionConfig(
        image_size=64,
        patch_size=16,
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        projection_dim=128,
    )
    return LlavaNextVideoConfig(
        vision_config=vision,
        text_config=text_config,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        spatial_pool_mode="average",
        spatial_pool_stride=2,
        video_token_id=0,  # set by build_embedded from the tokenizer
        image_token_id=0,
        tie_word_embeddings=True,
    )


def trainable_state(model: Any) -> dict[str, torch.Tensor]:
    """The weights the project trains: vision tower and projector (the language model is SmolLM2's)."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith(("model.language_model.", "lm_head."))}


def build_embedded(vision_dir: Path | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) of the embedded video model; ``vision_dir`` holds trained vision weights (else random)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlavaNextVideoForConditionalGeneration

    text_dir = embedded_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(text_dir)
    lm = AutoModelForCausalLM.from_pretrained(text_dir, dtype=torch.float32)
    config = embedded_config(lm.config)
    config.video_token_id = config.image_token_id = tokenizer.convert_tokens_to_ids(EMBEDDED_VIDEO_TOKEN)
    torch.manual_seed(0)
    model = LlavaNextVideoForConditionalGeneration(config)
    model.model.language_model.load_state_dict(lm.model.state_dict())
    model.lm_head.weight = model.model.language_model.embed_tokens.weight
    if vision_dir is not None:
        from safetensors.torch import load_file

        weights = vision_dir / "vision.safetensors"
        if not weights.is_file():
            raise ModelLoadError(f"{vision_dir} has no vision.safetensors: train it with `namm-bench video-train`")
        missing, unexpected = model.load_state_dict(load_file(weights), strict=False)
        mismatched = sorted(set(trainable_state(model)) & set(missing))[:3] + unexpected[:3]
        if mismatched:
            raise ModelLoadError(f"{weights} does not fit the embedded video model (e.g. {', '.join(mismatched)})")
    return model.eval(), tokenizer


# --------------------------------------------------------------------- running
@dataclass
class VideoAnswer:
    choice: int
    scores: list[float]
    controller: MemoryController
    tokens: int
    video_span: tuple[int, int]  # [start, end) positions of the visual tokens
    tokens_per_frame: int
    seconds: float

    def frame_retention(self) -> list[float]:
        """Share of each frame's visual tokens still cached at the end, mean over layers and KV heads."""
        start, end = self.video_span
        frames = (end - start) // self.tokens_per_frame
        kept = np.zeros(frames)
        layers = self.controller.retained_per_layer()
        for layer in range(len(layers)):
            pos = self.controller.positions(layer)[0].cpu().numpy()  # (kv_heads, N)
            inside = pos[(pos >= start) & (pos < end)]
            kept += np.bincount((inside - start) // self.tokens_per_frame, minlength=frames)[:frames] / pos.shape[0]
        return [round(float(k), 4) for k in kept / (len(layers) * self.tokens_per_frame)]


class LlavaNextVideoAdapter:
    """Answers multiple-choice video questions under a memory policy.

    Parameters
    ----------
    model
        None / ``smollm2-video`` for the embedded model (shipped vision weights), a directory
        holding ``vision.safetensors`` (embedded model with those weights), or a hub id / local
        directory of a full ``LlavaNextVideoForConditionalGeneration`` checkpoint.
    num_frames, fps
        Frame sampling for video files: N uniform frames (default 32), or a fixed rate.
    """

    name = "llava_next_video"
    modality = "video"
    model_types = ("llava_next_video",)
    default_model = EMBEDDED

    def __init__(
        self,
        model: str | None = None,
        dtype: torch.dtype | None = None,
        device: str = "cpu",
        num_frames: int | None = None,
        fps: float | None = None,
    ) -> None:
        self.model_name = model or EMBEDDED
        if model in (None, EMBEDDED):
            loaded, tokenizer = build_embedded(shipped_vision_dir())
            template = EMBEDDED_TEMPLATE
        elif Path(model).is_dir() and (Path(model) / "vision.safetensors").is_file():
            loaded, tokenizer = build_embedded(Path(model))
            template = EMBEDDED_TEMPLATE
        else:
            loaded, tokenizer = self._load_full(model, dtype or torch.float32)
            template = HUB_TEMPLATE
        self._setup(loaded.to(dtype or torch.float32), tokenizer, template, device)
        if num_frames is not None and fps is not None:
            raise ValueError("give --frames or --fps, not both")
        self.num_frames, self.fps = (None, fps) if fps is not None else (num_frames or 32, None)

    @classmethod
    def wrap(cls, model: Any, tokenizer: Any, template: str = EMBEDDED_TEMPLATE) -> LlavaNextVideoAdapter:
        """An adapter around a model already in memory (training: it needs gradients, not a checkpoint)."""
        adapter = cls.__new__(cls)
        adapter.model_name = getattr(model, "name_or_path", "") or EMBEDDED
        adapter._setup(model, tokenizer, template, str(next(model.parameters()).device))
        adapter.num_frames, adapter.fps = 32, None
        return adapter

    def _setup(self, model: Any, tokenizer: Any, template: str, device: str) -> None:
        self.model, self.tokenizer, self.template = model.to(device), tokenizer, template
        self.device = torch.device(device)
        config = model.config
        grid = config.vision_config.image_size // config.vision_config.patch_size
        self.tokens_per_frame = (grid // config.spatial_pool_stride) ** 2
        self.image_size = config.vision_config.image_size
        self._frames: tuple[str, np.ndarray] | None = None  # the last example's frames: its variants reuse them

    @staticmethod
    def _load_full(model: str, dtype: torch.dtype) -> tuple[Any, Any]:
        from transformers import AutoTokenizer, LlavaNextVideoForConditionalGeneration

        if not Path(model).exists() and not is_hub_id(model):
            raise ModelLoadError(f"model path {model} does not exist (and is not a hub id like org/name)")
        try:
            tokenizer = AutoTokenizer.from_pretrained(model)
            return LlavaNextVideoForConditionalGeneration.from_pretrained(model, dtype=dtype), tokenizer
        except OSError as err:
            raise ModelLoadError(f"cannot load model {model}: {err}") from err

    def frames_of(self, video: str | Path) -> np.ndarray:
        return read_video(video, self.num_frames, self.fps)

    def example_frames(self, example: VideoExample) -> np.ndarray:
        """The example's frames (generated by its suite, or decoded from its file); the last one's are kept."""
        if self._frames is None or self._frames[0] != example.example_id:
            self._frames = None  # one video at a time in memory
            if example.load_frames is not None:
                frames = example.load_frames()
            elif example.video is not None:
                frames = self.frames_of(example.video)
            else:
                raise VideoError(f"{example.example_id}: neither a video file nor generated frames")
            self._frames = (example.example_id, frames)
        return self._frames[1]

    def run(
        self, example: VideoExample, policy: MemoryPolicy, config: ControllerConfig, options: RunOptions
    ) -> Outcome:
        """Answer ``example`` with ``policy`` managing the cache (``VideoError`` for an undecodable video)."""
        frames = self.example_frames(example)
        result = self.answer(frames, example.question, list(example.candidates), policy, config)
        return Outcome(
            prediction=example.candidates[result.choice],
            tokens=result.tokens,
            controller=result.controller,
            fields={
                "frames": len(frames),
                "visual_tokens": result.video_span[1] - result.video_span[0],
                "frame_retention": result.frame_retention(),
                "candidate_scores": result.scores,
                "video": example.video,
            },
        )

    def prompt_ids(self, question: str, num_frames: int) -> tuple[torch.Tensor, tuple[int, int]]:
        """Token ids of the prompt with ``num_frames`` frames of video placeholders, and the video's span."""
        before, after = self.template.format(video=VIDEO_MARKER, question=question).split(VIDEO_MARKER)
        head = self.tokenizer.encode(before, add_special_tokens=True)  # the tokenizer's BOS, if it has one
        tail = self.tokenizer.encode(after, add_special_tokens=False)
        n = num_frames * self.tokens_per_frame
        ids = head + [self.model.config.video_token_id] * n + tail
        return torch.tensor([ids], device=self.device), (len(head), len(head) + n)

    def candidate_ids(self, candidates: list[str]) -> list[int]:
        """First token of each candidate as the model would write it after the prompt (leading space)."""
        ids = [self.tokenizer.encode(" " + c.strip(), add_special_tokens=False)[0] for c in candidates]
        if len(set(ids)) != len(ids):
            raise ValueError(f"candidates {candidates} share a first token: they cannot be told apart")
        return ids

    def video_features(self, frames: np.ndarray) -> torch.Tensor:
        """(T * tokens_per_frame, H) visual tokens of ``frames``: the model's own vision tower, pooling, projector."""
        config = self.model.config
        pixels = preprocess(frames, self.image_size).to(self.device, self.model.dtype)[None]
        return self.model.get_video_features(
            pixel_values_videos=pixels,
            vision_feature_layer=config.vision_feature_layer,
            vision_feature_select_strategy=config.vision_feature_select_strategy,
        ).pooler_output[0]

    def embed(self, ids: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Prompt embeddings with ``features`` in the video placeholders (the stock forward's merge)."""
        embeds = self.model.get_input_embeddings()(ids)
        mask = (ids == self.model.config.video_token_id)[..., None].expand_as(embeds)
        return embeds.masked_scatter(mask, features.to(embeds.dtype))

    def new_cache(self):
        """An empty cache for one sequence of the language model."""
        from transformers import DynamicCache

        return DynamicCache(config=self.model.model.language_model.config)

    def forward_tokens(self, cache, inputs: torch.Tensor, start: int, end: int, last_only: bool = True) -> torch.Tensor:
        """Logits of ``inputs`` (token ids, or embeddings with the visual tokens merged) at positions
        start..end-1, appended to ``cache`` (the last position's only unless ``last_only`` is False)."""
        kind = "input_ids" if not inputs.is_floating_point() else "inputs_embeds"
        out = self.model(
            **{kind: inputs},
            position_ids=torch.arange(start, end, device=self.device)[None],
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1 if last_only else 0,
        )
        return out.logits

    def attention_modules(self) -> list[torch.nn.Module]:
        lm = self.model.model.language_model
        return [m for m in lm.modules() if hasattr(m, "layer_idx") and hasattr(m, "num_key_value_groups")]

    @torch.inference_mode()
    def answer(
        self, frames: np.ndarray, question: str, candidates: list[str], policy: MemoryPolicy, config: ControllerConfig
    ) -> VideoAnswer:
        """Pick one of ``candidates`` for ``question`` about ``frames`` with ``policy`` managing the cache."""
        began = time.perf_counter()
        ids, span = self.prompt_ids(question, len(frames))
        cand = self.candidate_ids(candidates)
        embeds = self.embed(ids, self.video_features(frames))
        lm = self.model.model.language_model
        cache = self.new_cache()
        controller = MemoryController(policy, config)

        def forward(start: int, end: int) -> torch.Tensor:
            return self.forward_tokens(cache, embeds[:, start:end], start, end)[:, -1]

        with controller.attach(lm, cache, self.attention_modules()):
            logits = controller.prefill(forward, ids.shape[1], question_start=span[1])
        scores = logits[0, cand].float()
        return VideoAnswer(
            choice=int(scores.argmax()),
            scores=[round(float(s), 4) for s in scores],
            controller=controller,
            tokens=int(ids.shape[1]),
            video_span=span,
            tokens_per_frame=self.tokens_per_frame,
            seconds=time.perf_counter() - began,
        )
