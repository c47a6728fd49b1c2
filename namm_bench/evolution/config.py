"""The evolution run's configuration: a TOML file, validated before anything runs."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..context import parse_rope_scaling
from ..namm.scorer import NammConfig
from ..presets import resolve_preset
from ..typed import check_field_types

FITNESS_MODES = ("fast", "paper")
FAST_EVICTIONS = ("end", "interval", "streaming")
TEACHER_FORCED = ("answer", "reply")


class ConfigError(ValueError):
    """An evolution config that cannot run, named with the offending key."""


@dataclass(frozen=True)
class Stage:
    """Tasks evaluated for ``generations`` generations; later stages add tasks (paper section 5.3)."""

    tasks: tuple[str, ...]
    generations: int


@dataclass(frozen=True)
class EvolutionConfig:
    """Everything that fixes an evolution trajectory.

    Parameters
    ----------
    stages
        Incremental stages, run back to back without resetting the CMA-ES state.
    population, sigma0, elite_ratio
        CMA-ES settings (paper: 32, 0.065, 0.5).
    fitness
        ``fast`` (one full-cache prefill per example, members applied as masks, teacher-forced
        likelihood of the gold answer) or ``paper`` (streaming protocol, generated answers scored
        by the task metric).
    pool_per_task, examples_per_task, pool_seed
        Each task draws a fixed pool of examples (suite seed ``pool_seed``, kept away from the
        evaluation seeds); every generation samples ``examples_per_task`` of them, the same for
        all members.
    member_batch
        Members scored together in one forward (``fast``). Batches are fixed before they are
        spread over ranks, so any number of ranks computes the same numbers.
    fast_evictions
        ``end``: a ``fast`` member evicts once, at the end of the context. ``interval``: also at
        every ``interval`` tokens, as the streaming protocol does, each time from the full-cache
        spectrogram of that moment restricted to the tokens it still holds (the KV entries stay
        the full-cache ones, so this follows the streaming evictions, not their effect on later
        tokens). ``streaming``: each member prefills the whole prompt with its own cache under the
        streaming protocol, then the gold answer runs teacher-forced (faithful to ``namm-bench
        run``; about one prefill per member and example, members one at a time).
    teacher_forced
        What ``fast`` teacher-forces after the prompt and scores: ``answer``, the gold answer
        alone; or ``reply``, the full cache's own greedy reply up to the end of the gold answer in
        it, every token scored (the model answers in its own words first, "The pass key is ...",
        and a policy that derails those words fails as surely as one that loses the answer).
        Examples whose full-cache reply lacks the answer fall back to ``answer``.
    sparsity_target, sparsity_weight
        Fitness minus ``sparsity_weight * max(0, cache_fraction - sparsity_target)``. The paper's
        released runs use no such term (its ``SparsityAuxiliaryLoss`` is off); without one nothing
        rewards eviction on tasks where the full cache is best. Weight 0 turns it off.
    eval_interval, eval_examples_per_task
        Every ``eval_interval`` generations (and after the last), the CMA-ES mean is scored on a
        fixed validation draw (``eval_examples_per_task`` examples of every stage task, drawn
        with ``pool_seed + 1``) and the best-scoring mean is kept, as the paper's ``ckpt.pt``
        keeps it (``namm-bench export --solution best``). 0: no evaluation.
    rope_scaling, max_context
        Context extension of a text model, as ``namm-bench run --rope-scaling/--max-context``
        (``namm_bench.context``; the paper's Llama 3 8B: ``"ntk:4:2"`` and 32768). ``""`` / 0:
        the model's own.
    init
        A NAMM checkpoint directory whose parameters are CMA-ES's starting mean and whose
        normalisation statistics replace generation 0's (so its parameters keep their meaning).
        ``""`` starts from the zero NAMM, as the paper does.
    """

    stages: tuple[Stage, ...]
    model: str | None = None
    suite: str = "synthetic"
    seed: int = 0
    population: int = 32
    sigma0: float = 0.065
    elite_ratio: float = 0.5
    fitness: str = "fast"
    fast_evictions: str = "end"
    teacher_forced: str = "answer"
    pool_per_task: int = 32
    examples_per_task: int = 8
    pool_seed: int = 1000
    member_batch: int = 8
    sparsity_target: float = 0.5
    sparsity_weight: float = 0.0
    interval: int = 512
    chunk_size: int = 128
    prompt_end_call: bool = True
    preset: str = "default"
    rope_scaling: str = ""
    max_context: int = 0
    eval_interval: int = 0
    eval_examples_per_task: int = 4
    init: str = ""
    namm: NammConfig = field(default_factory=NammConfig)

    def adapter_options(self) -> dict[str, Any]:
        """The context extension options the adapter is built with (none when the model's own)."""
        options: dict[str, Any] = {}
        if self.rope_scaling:
            options["rope_scaling"] = parse_rope_scaling(self.rope_scaling)
        if self.max_context:
            options["max_context"] = self.max_context
        return options

    @property
    def total_generations(self) -> int:
        return sum(s.generations for s in self.stages)

    def stage_at(self, generation: int) -> tuple[int, Stage]:
        """The stage that generation ``generation`` (0-based) belongs to."""
        end = 0
        for i, stage in enumerate(self.stages):
            end += stage.generations
            if generation < end:
                return i, stage
        return len(self.stages) - 1, self.stages[-1]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stages"] = [{"tasks": list(s.tasks), "generations": s.generations} for s in self.stages]
        d["namm"] = self.namm.to_dict()
        d["model"] = self.model or ""
        return d

    def validate(self, known_tasks: list[str]) -> None:
        """Raise ``ConfigError`` for a config that cannot run on a suite with ``known_tasks``."""
        if self.population < 2:
            raise ConfigError(f"population must be at least 2, got {self.population}")
        if not 0 < self.elite_ratio <= 1 or int(self.population * self.elite_ratio) < 1:
            raise ConfigError(f"elite_ratio {self.elite_ratio} leaves no parents in a population of {self.population}")
        if self.sigma0 <= 0:
            raise ConfigError(f"sigma0 must be positive, got {self.sigma0}")
        if self.fitness not in FITNESS_MODES:
            raise ConfigError(f"unknown fitness mode {self.fitness!r}; known: {', '.join(FITNESS_MODES)}")
        if self.fast_evictions not in FAST_EVICTIONS:
            raise ConfigError(f"unknown fast_evictions {self.fast_evictions!r}; known: {', '.join(FAST_EVICTIONS)}")
        if self.teacher_forced not in TEACHER_FORCED:
            raise ConfigError(f"unknown teacher_forced {self.teacher_forced!r}; known: {', '.join(TEACHER_FORCED)}")
        if not 1 <= self.examples_per_task <= self.pool_per_task:
            raise ConfigError(
                f"examples_per_task ({self.examples_per_task}) must be between 1 and pool_per_task "
                f"({self.pool_per_task})"
            )
        if self.member_batch < 1:
            raise ConfigError(f"member_batch must be positive, got {self.member_batch}")
        if self.eval_interval < 0 or self.eval_examples_per_task < 1:
            raise ConfigError(
                f"eval_interval must be >= 0 and eval_examples_per_task >= 1, got {self.eval_interval} "
                f"and {self.eval_examples_per_task}"
            )
        for name in ("seed", "pool_seed"):  # CMA-ES seeds NumPy with seed + 1
            if not 0 <= getattr(self, name) < 2**32 - 1:
                raise ConfigError(f"{name} must be between 0 and 2**32 - 2, got {getattr(self, name)}")
        if self.chunk_size < 1 or self.interval < 1:
            raise ConfigError(f"chunk_size and interval must be positive, got {self.chunk_size} and {self.interval}")
        if self.sparsity_weight < 0 or not 0 <= self.sparsity_target <= 1:
            raise ConfigError(
                f"sparsity_weight must be at least 0 and sparsity_target in [0, 1], "
                f"got {self.sparsity_weight} and {self.sparsity_target}"
            )
        if self.init:
            from ..namm.checkpoint import CheckpointError, load_checkpoint

            try:
                start = load_checkpoint(self.init)
            except CheckpointError as err:
                raise ConfigError(f"init: {err}") from err
            if start.config != self.namm:
                raise ConfigError(f"init: {self.init} has NAMM config {start.config}, the run has {self.namm}")
        if not self.stages:
            raise ConfigError("the config has no [[stages]]")
        for i, stage in enumerate(self.stages):
            if stage.generations < 1:
                raise ConfigError(f"stage {i + 1}: generations must be positive, got {stage.generations}")
            if not stage.tasks:
                raise ConfigError(f"stage {i + 1} has no tasks")
            if len(set(stage.tasks)) < len(stage.tasks):
                raise ConfigError(f"stage {i + 1} names a task twice: {', '.join(stage.tasks)}")
            unknown = [t for t in stage.tasks if t not in known_tasks]
            if unknown:
                raise ConfigError(f"stage {i + 1}: unknown task(s) {', '.join(unknown)} for suite {self.suite!r}")


def config_from_dict(raw: dict[str, Any], source: str = "config") -> EvolutionConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a table of settings, got {type(raw).__name__}")
    raw = dict(raw)
    try:
        stages = []
        for i, s in enumerate(raw.pop("stages", [])):
            if not isinstance(s, dict):
                raise TypeError(f"{source}: stage {i + 1} must be a [[stages]] table, got {s!r}")
            check_field_types(Stage, s, f"{source}: stage {i + 1}")
            tasks = s["tasks"]
            if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
                raise TypeError(f"{source}: stage {i + 1}: tasks must be a list of task names, got {tasks!r}")
            stages.append(Stage(tuple(tasks), s["generations"]))
        namm_raw = raw.pop("namm", {})
        if not isinstance(namm_raw, dict):
            raise TypeError(f"{source}: [namm] must be a table, got {namm_raw!r}")
        namm = NammConfig.from_dict(namm_raw, f"{source}: [namm]")
        if raw.get("model") == "":
            raw["model"] = None
        check_field_types(EvolutionConfig, raw, source)
        # a preset fixes the streaming settings (``namm_bench.presets``; "paper": the paper's code's)
        preset = resolve_preset(
            raw.get("preset", "default"), **{k: raw.get(k) for k in ("chunk_size", "interval", "prompt_end_call")}
        )
        raw.update(chunk_size=preset.chunk_size, interval=preset.interval, prompt_end_call=preset.prompt_end_call)
        if raw.get("rope_scaling"):
            parse_rope_scaling(raw["rope_scaling"])
        if raw.get("max_context", 0) < 0:
            raise ValueError(f"max_context must be >= 1 (or 0: the model's own), got {raw['max_context']}")
        return EvolutionConfig(stages=tuple(stages), namm=namm, **raw)
    except (TypeError, KeyError, ValueError) as err:
        message = str(err) if str(err).startswith(source) else f"{source}: {err}"
        raise ConfigError(message) from err


def load_config(path: str | Path) -> EvolutionConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"evolution config {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"evolution config {path} is not valid TOML: {err}") from err
    return config_from_dict(raw, str(path))
