"""Evolution: fitness modes, CMA-ES settings, exact resume after SIGKILL, 2 gloo ranks = 1 rank, bad input."""

import json
import pickle
import shutil
import signal
import time

import numpy as np
import pytest
import torch
from cli_process import cli as namm_bench
from cli_process import start

from namm_bench.context import RopeScaling
from namm_bench.evolution.cmaes import CMAES
from namm_bench.evolution.config import ConfigError, config_from_dict
from namm_bench.evolution.fitness import FastFitness, PaperFitness
from namm_bench.evolution.trainer import _fitness, load_state
from namm_bench.namm.checkpoint import load_checkpoint
from namm_bench.namm.features import RunningStats

TINY_NAMM = {"hidden_dim": 4, "recency_dims": 2}


def write_config(path, model_dir, tasks=("passkey_1k",), **overrides):
    top = {"model": str(model_dir), "seed": 3, "population": 4, "pool_per_task": 3, "examples_per_task": 2}
    # member_batch 3: batches (0-2) and (3, the mean) go to ranks 0 and 1, so rank 1 scores the mean
    top |= {"member_batch": 3, "sparsity_weight": 1.0, **overrides}
    lines = [f"{k} = {json.dumps(v)}" for k, v in top.items()]
    lines += ["[namm]", "hidden_dim = 4", "recency_dims = 2"]
    lines += ["[[stages]]", f"tasks = {json.dumps(list(tasks))}", "generations = 2"]
    lines += ["[[stages]]", 'tasks = ["passkey_1k", "needle_1k"]', "generations = 2"]
    path.write_text("\n".join(lines) + "\n")
    return path


def trajectory(run):
    """The log without wall-clock seconds."""
    return [
        {k: v for k, v in row.items() if k != "seconds"}
        for row in map(json.loads, (run / "log.jsonl").read_text().splitlines())
    ]


@pytest.fixture(scope="module")
def reference_run(tiny_model_dir, tmp_path_factory):
    """An uninterrupted 4-generation, 2-stage run on the tiny model."""
    root = tmp_path_factory.mktemp("evolution")
    config = write_config(root / "tiny.toml", tiny_model_dir)
    namm_bench("evolve", str(config), "--out", str(root / "reference"))
    return config, root / "reference"


# ----------------------------------------------------------------------------- fitness modes
@pytest.fixture(scope="module")
def tiny_setup(tiny_model_dir):
    from namm_bench.adapters import get_adapter
    from namm_bench.suites import get_suite

    adapter = get_adapter("llama", str(tiny_model_dir))
    suite = get_suite("synthetic")
    config = config_from_dict({"stages": [{"tasks": ["passkey_1k"], "generations": 1}], "namm": TINY_NAMM})
    examples = suite.examples("passkey_1k", adapter.count_tokens, adapter.max_prompt_tokens(64), 0, 2)
    return adapter, suite, config, examples


def test_fast_fitness_zero_namm_is_full_cache_and_batching_changes_nothing(tiny_setup):
    adapter, suite, config, examples = tiny_setup
    fast = FastFitness(adapter, suite, config)
    ema, full = fast.prepare(examples[0])
    stats = RunningStats.pooled([ema])
    torch.manual_seed(0)
    params = torch.cat([torch.zeros(1, config.namm.num_params), 0.5 * torch.randn(3, config.namm.num_params)])
    scores, fractions = fast.members(examples[0], params, stats)
    assert scores[0].item() == pytest.approx(full, abs=1e-6)
    assert fractions[0].item() == 1.0
    assert (fractions[1:] < 1).all(), "random members should evict something"
    for i in range(len(params)):  # alone, no padding: the padded batch must give the same numbers
        alone, frac = fast.members(examples[0], params[i : i + 1], stats)
        assert alone.item() == pytest.approx(scores[i].item(), rel=1e-5)
        assert frac.item() == fractions[i].item()


def test_fast_fitness_interval_evictions(tiny_setup):
    adapter, suite, config, examples = tiny_setup
    ex = examples[0]
    torch.manual_seed(0)
    params = torch.cat([torch.zeros(1, config.namm.num_params), 0.5 * torch.randn(3, config.namm.num_params)])
    once = FastFitness(adapter, suite, config)
    ema, full = once.prepare(ex)
    stats = RunningStats.pooled([ema])
    end_scores, end_fractions = once.members(ex, params, stats)

    def interval_mode(interval):
        changes = {"fast_evictions": "interval", "interval": interval, "chunk_size": 32}
        cfg = config_from_dict({**config.to_dict(), **changes})
        fitness = FastFitness(adapter, suite, cfg)
        fitness.prepare(ex)
        return fitness, fitness.members(ex, params, stats)

    # No call inside the context: the same single eviction at its end.
    _, (scores, fractions) = interval_mode(4096)
    assert torch.equal(scores, end_scores) and torch.equal(fractions, end_fractions)
    # Calls every 64 tokens: the zero NAMM still keeps everything; random members evict more often.
    fitness, (scores, fractions) = interval_mode(64)
    prefilled = fitness._prefilled[ex.example_id]
    assert [n for n, _ in prefilled.calls] == list(range(64, prefilled.length, 64))
    assert scores[0].item() == pytest.approx(full, abs=1e-6) and fractions[0] == 1.0
    assert not torch.equal(fractions[1:], end_fractions[1:]), "evicting at every call changes what is kept"


def test_fast_fitness_streaming_evictions_follow_the_members_own_streaming_run(tiny_setup, monkeypatch):
    from dataclasses import replace

    from namm_bench.controller import ControllerConfig
    from namm_bench.namm.checkpoint import NammCheckpoint
    from namm_bench.policies.namm import NAMM

    adapter, suite, config, examples = tiny_setup
    cfg = config_from_dict({**config.to_dict(), "fast_evictions": "streaming", "interval": 64, "chunk_size": 32})
    # One answer token, so the score is the probability the greedy run's first step gives it.
    ex = replace(examples[0], answer="7", max_new_tokens=1)
    fitness = FastFitness(adapter, suite, cfg)
    ema, full = fitness.prepare(ex)
    stats = RunningStats.pooled([ema])
    torch.manual_seed(0)
    params = torch.cat([torch.zeros(1, cfg.namm.num_params), 0.5 * torch.randn(3, cfg.namm.num_params)])
    scores, fractions = fitness.members(ex, params, stats)
    assert scores[0].item() == pytest.approx(full, abs=1e-6) and fractions[0].item() == 1.0
    assert (fractions[1:] < 1).all(), "random members should evict something"
    prefix = fitness._prefilled[ex.example_id].prefix
    assert prefix is not None and prefix.tokens_seen == 64, "members start from the shared run to the first call"

    monkeypatch.setattr(adapter, "stop_ids", set())
    answer = adapter.tokenizer.encode("7", add_special_tokens=False)
    assert len(answer) == 1
    last = []
    for i in range(1, len(params)):
        hook = adapter.model.register_forward_hook(lambda m, a, out: last.append(out.logits[0, -1]))
        ckpt = NammCheckpoint(params=params[i], stats=stats, config=cfg.namm, stats_frozen=True)
        try:
            gen = adapter.generate(ex, NAMM(checkpoint=ckpt), ControllerConfig(32, 64, "streaming"))
        finally:
            hook.remove()
        assert gen.controller.stats.prompt_fraction == pytest.approx(fractions[i].item())
        expected = torch.softmax(last[-1].float(), dim=-1)[answer[0]].item()
        assert scores[i].item() == pytest.approx(expected, rel=1e-5)


def test_reply_forcing_stops_at_the_end_of_the_answer(tiny_setup):
    from namm_bench.evolution.fitness import reply_forcing

    tokenizer = tiny_setup[0].tokenizer
    for reply, answer in [("The pass key is 0123. Done", "0123"), ("What is the key? The sky is blue", "the sky is")]:
        text = tokenizer.decode(reply_forcing(tokenizer, reply, answer))
        assert text.lower().endswith(answer.lower()) and reply.startswith(text), "the reply up to the answer's end"
    assert reply_forcing(tokenizer, "no digits here", "0123") is None


@pytest.mark.parametrize("evictions", ["end", "streaming"])
def test_fast_fitness_reply_forcing_scores_the_full_cache_reply_up_to_the_answer(tiny_setup, monkeypatch, evictions):
    from types import SimpleNamespace

    from namm_bench.evolution.fitness import reply_forcing

    adapter, suite, config, examples = tiny_setup
    ex = examples[0]
    reply = f"The pass key is {ex.answer}. Done"
    monkeypatch.setattr(adapter, "generate", lambda *args, **kwargs: SimpleNamespace(text=reply))
    changes = {"fast_evictions": evictions, "teacher_forced": "reply", "interval": 64, "chunk_size": 32}
    fitness = FastFitness(adapter, suite, config_from_dict({**config.to_dict(), **changes}))
    ema, full = fitness.prepare(ex)

    forced = reply_forcing(adapter.tokenizer, reply, ex.answer)
    prompt = adapter.build_prompt(ex)
    ids = torch.cat([prompt.ids, torch.tensor([forced])], dim=1)
    with torch.inference_mode():
        logits = adapter.model(input_ids=ids).logits[0, prompt.ids.shape[1] - 1 : -1].float()
    logp = torch.log_softmax(logits, dim=-1).gather(-1, torch.tensor(forced)[:, None]).squeeze(-1)
    assert len(forced) > len(adapter.tokenizer.encode(ex.answer)), "the preamble is forced too"
    assert full == pytest.approx(logp.mean().exp().item(), rel=1e-4)

    zero = torch.zeros(1, config.namm.num_params)
    scores, fractions = fitness.members(ex, zero, RunningStats.pooled([ema]))
    assert scores[0].item() == pytest.approx(full, rel=1e-5) and fractions[0].item() == 1.0


class AnswerRecorder:
    """Stands in for the suite: its metric counts the answers it was given."""

    def __init__(self):
        self.calls = 0

    def score(self, example, text):
        self.calls += 1
        return float(self.calls)


def test_paper_fitness_zero_namm_generates_what_full_cache_does(tiny_setup, monkeypatch):
    adapter, _, config, examples = tiny_setup
    # The random model's answers decode to "", so compare the logits of every generation step instead.
    monkeypatch.setattr(adapter, "stop_ids", set())
    steps: list[list[torch.Tensor]] = []
    generate = adapter.generate

    def recording_generate(*args, **kwargs):
        steps.append([])
        hook = adapter.model.register_forward_hook(lambda m, a, out: steps[-1].append(out.logits[0, -1].clone()))
        try:
            return generate(*args, **kwargs)
        finally:
            hook.remove()

    monkeypatch.setattr(adapter, "generate", recording_generate)
    paper = PaperFitness(adapter, AnswerRecorder(), config)
    ema, full = paper.prepare(examples[1])
    stats = RunningStats.pooled([ema])
    torch.manual_seed(0)
    params = torch.cat([torch.zeros(1, config.namm.num_params), 0.5 * torch.randn(1, config.namm.num_params)])
    scores, fractions = paper.members(examples[1], params, stats)
    full_steps, zero_steps, _ = steps
    assert len(full_steps) > examples[1].max_new_tokens
    torch.testing.assert_close(torch.stack(zero_steps), torch.stack(full_steps), atol=1e-4, rtol=1e-4)
    assert full == 1.0 and scores.tolist() == [2.0, 3.0]  # each answer was scored once, in order
    assert fractions[0] == 1.0 and fractions[1] < 1.0, "the NAMM was called and a random member evicts"


def test_fitness_is_score_over_full_cache_per_task_minus_sparsity():
    config = config_from_dict(
        {"stages": [{"tasks": ["a"], "generations": 1}], "sparsity_target": 0.5, "sparsity_weight": 2.0}
    )
    # 2 items x 3 examples (tasks a, a, b) x (score, fraction)
    results = torch.tensor(
        [[[0.2, 0.4], [0.4, 0.4], [0.5, 0.4]], [[0.1, 0.8], [0.1, 0.8], [1.0, 0.8]]], dtype=torch.float64
    )
    full = torch.tensor([0.4, 0.2, 1.0], dtype=torch.float64)
    value, perf, fraction = _fitness(results, full, ["a", "a", "b"], config)
    assert perf.tolist() == pytest.approx([(0.3 / 0.3 + 0.5) / 2, (0.1 / 0.3 + 1.0) / 2])
    assert fraction.tolist() == pytest.approx([0.4, 0.8])
    assert value.tolist() == pytest.approx([perf[0].item(), perf[1].item() - 2.0 * 0.3])


# ----------------------------------------------------------------------------- CMA-ES
def test_cmaes_has_the_papers_settings_and_resumes_exactly():
    cma = CMAES(dim=4172, population=32, sigma0=0.065, elite_ratio=0.5, seed=0)
    weights = np.array(cma.es.sp.weights)
    assert cma.es.sp.weights.mu == 16 and cma.sigma == 0.065 and not cma.mean.any()
    assert weights[:3] == pytest.approx([0.198, 0.149, 0.120], abs=1e-3)
    assert (weights[16:] < 0).all(), "active CMA: negative weights for the worse half"
    assert type(cma.es.adapt_sigma).__name__ == "CMAAdaptSigmaCSA"
    small = CMAES(dim=10, population=6, sigma0=0.1, elite_ratio=0.5, seed=1)
    pop = small.ask()
    small.tell(pop, -np.square(pop).sum(1))
    saved = pickle.loads(pickle.dumps(small.state()))
    expected = small.ask()
    np.random.seed(12345)  # anything in between must not matter
    assert np.array_equal(CMAES.from_state(saved).ask(), expected)


# ----------------------------------------------------------------------------- runs
def test_sigkill_then_resume_follows_the_uninterrupted_trajectory(reference_run, tmp_path):
    config, reference = reference_run
    out = tmp_path / "killed"
    proc = start("evolve", str(config), "--out", str(out))
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "log.jsonl").exists():
        assert proc.poll() is None, "the run exited before its first generation"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    done = load_state(out)["generation"]
    assert 1 <= done < 4, "the run finished before it was killed"
    namm_bench("evolve", str(config), "--out", str(out), "--resume")
    assert trajectory(out) == trajectory(reference)


def test_stop_after_then_resume_follows_the_same_trajectory(reference_run, tmp_path):
    config, reference = reference_run
    namm_bench("evolve", str(config), "--out", str(tmp_path / "run"), "--stop-after", "1")
    assert load_state(tmp_path / "run")["generation"] == 1
    namm_bench("evolve", str(config), "--out", str(tmp_path / "run"), "--resume")
    assert trajectory(tmp_path / "run") == trajectory(reference)


def test_resume_restores_the_statistics_where_the_example_draw_differs_from_generation_0s(tiny_model_dir, tmp_path):
    """Statistics pooled again on resume would come from the resumed generation's examples: here another draw."""
    from namm_bench.evolution.config import load_config
    from namm_bench.evolution.trainer import evolve, sample_examples

    # Seed 2 draws examples [0, 1] of the pool for generation 0 and [0, 2] for generation 1 (seed 3, the
    # reference run's, draws [0, 1] for both, so resuming there re-pools the very same features).
    top = {"model": str(tiny_model_dir), "seed": 2, "population": 4, "pool_per_task": 3, "examples_per_task": 2}
    lines = [f"{k} = {json.dumps(v)}" for k, v in {**top, "member_batch": 3, "sparsity_weight": 1.0}.items()]
    lines += ["[namm]", "hidden_dim = 4", "recency_dims = 2", "[[stages]]", 'tasks = ["passkey_1k"]', "generations = 2"]
    config = tmp_path / "seed2.toml"
    config.write_text("\n".join(lines) + "\n")
    pool = {"passkey_1k": [0, 1, 2]}
    draws = [sample_examples(load_config(config), pool, g) for g in (0, 1)]
    assert draws == [[0, 1], [0, 2]], "generation 1 must draw other examples than generation 0"

    evolve(config, tmp_path / "whole")
    evolve(config, tmp_path / "resumed", stop_after=1)
    assert load_state(tmp_path / "resumed")["generation"] == 1
    evolve(config, tmp_path / "resumed", resume=True)
    assert trajectory(tmp_path / "resumed") == trajectory(tmp_path / "whole")
    whole, resumed = load_state(tmp_path / "whole")["stats"], load_state(tmp_path / "resumed")["stats"]
    assert resumed["count"] == whole["count"] > 0
    assert torch.equal(resumed["mean"], whole["mean"]) and torch.equal(resumed["var"], whole["var"])


def test_two_gloo_ranks_give_the_same_generations_as_one(reference_run, tmp_path):
    config, reference = reference_run
    namm_bench("evolve", str(config), "--out", str(tmp_path / "two"), torchrun=True)
    assert trajectory(tmp_path / "two") == trajectory(reference)


def test_log_plot_and_export(reference_run, tmp_path):
    config, reference = reference_run
    rows = trajectory(reference)
    assert [r["generation"] for r in rows] == [0, 1, 2, 3] and [r["stage"] for r in rows] == [1, 1, 2, 2]
    assert {r["fitness_mode"] for r in rows} == {"fast"} and rows[2]["examples"] == 4
    assert (reference / "fitness.png").read_bytes()[:4] == b"\x89PNG"
    assert (reference / "log.csv").read_text().count("\n") == 5
    namm_bench("export", str(reference), "--to", str(tmp_path / "ckpt"))
    ckpt = load_checkpoint(tmp_path / "ckpt")
    state = load_state(reference)
    assert torch.equal(ckpt.params, torch.from_numpy(CMAES.from_state(state["cma"]).mean).float())
    assert ckpt.stats.count == state["stats"]["count"] > 0 and ckpt.stats_frozen
    assert ckpt.provenance["generations"] == 4 and ckpt.provenance["tasks"] == ["passkey_1k", "needle_1k"]
    assert ckpt.provenance["seed"] == 3 and ckpt.config.hidden_dim == 4
    assert ckpt.provenance["model_sha256"] == load_state(reference)["model_sha256"] is not None
    saved = (tmp_path / "ckpt" / "namm.json").read_bytes()
    proc = namm_bench("export", str(reference), "--to", str(tmp_path / "ckpt"), check=False)
    assert proc.returncode == 2 and "already holds a NAMM checkpoint" in proc.stderr
    assert (tmp_path / "ckpt" / "namm.json").read_bytes() == saved
    namm_bench("export", str(reference), "--to", str(tmp_path / "ckpt"), "--force")


def test_init_starts_from_a_checkpoint_with_its_statistics(reference_run, tiny_model_dir, tmp_path):
    _, reference = reference_run
    namm_bench("export", str(reference), "--to", str(tmp_path / "start"))
    start = load_checkpoint(tmp_path / "start")
    warm = write_config(tmp_path / "warm.toml", tiny_model_dir, init=str(tmp_path / "start"))
    namm_bench("evolve", str(warm), "--out", str(tmp_path / "run"), "--stop-after", "1")
    state = load_state(tmp_path / "run")
    assert np.array_equal(CMAES.from_state(state["cma"]).es.x0, start.params.double().numpy())
    assert torch.equal(state["stats"]["mean"], start.stats.mean) and state["stats"]["count"] == start.stats.count
    namm_bench("export", str(tmp_path / "run"), "--to", str(tmp_path / "end"))
    assert load_checkpoint(tmp_path / "end").provenance["init"] == str(tmp_path / "start")


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"tasks": ["passkey_3k"]}, "unknown task(s) passkey_3k"),
        ({"population": 1}, "population must be at least 2"),
        ({"examples_per_task": 9}, "examples_per_task (9) must be between 1 and pool_per_task (3)"),
        ({"fitness": "slow"}, "unknown fitness mode 'slow'"),
        ({"teacher_forced": "gold"}, "unknown teacher_forced 'gold'"),
        ({"init": "no/such/namm"}, "init: NAMM checkpoint no/such/namm does not exist"),
        ({"population": "32"}, "population must be an integer, got '32'"),
        ({"population": 4.5}, "population must be an integer, got 4.5"),
        ({"sigma0": "x"}, "sigma0 must be a finite number, got 'x'"),
        ({"seed": -1}, "seed must be between 0 and 2**32 - 2, got -1"),
        ({"chunk_size": 0}, "chunk_size and interval must be positive"),
        ({"sparsity_weight": -1.0}, "sparsity_weight must be at least 0"),
        ({"tasks": ["passkey_1k", "passkey_1k"]}, "stage 1 names a task twice"),
    ],
)
def test_bad_config_is_one_clear_error_and_writes_nothing(tiny_model_dir, tmp_path, overrides, message):
    config = write_config(tmp_path / "bad.toml", tiny_model_dir, **overrides)
    proc = namm_bench("evolve", str(config), "--out", str(tmp_path / "run"), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("namm-bench: error:") and message in proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"namm": {"hidden_dim": 0}}, "[namm]: NAMM recency_max_freq and hidden_dim must be positive"),
        ({"namm": {"hidden_dim": "4"}}, "[namm]: hidden_dim must be an integer, got '4'"),
        ({"namm": {"recency_dims": 3}}, "recency_dims must be even"),
        ({"stages": [{"tasks": ["passkey_1k"], "generations": 1.5}]}, "stage 1: generations must be an integer"),
        ({"stages": [{"tasks": "passkey_1k", "generations": 1}]}, "tasks must be a list of task names"),
        ({"model": 5}, "model must be a string, got 5"),
        ({"rope_scaling": "ntk:4"}, "--rope-scaling 'ntk:4'"),
        ({"max_context": -1}, "max_context must be >= 1"),
    ],
)
def test_config_types_and_namm_sizes_are_checked_by_key(raw, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict({"stages": [{"tasks": ["passkey_1k"], "generations": 1}], **raw}, "tiny.toml")
    assert str(err.value).startswith("tiny.toml") and message in str(err.value)


def test_a_new_run_refuses_a_directory_that_holds_other_files(reference_run, tmp_path):
    config, _ = reference_run
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "log.jsonl").write_text('{"mine": 1}\n')
    proc = namm_bench("evolve", str(config), "--out", str(tmp_path / "mine"), check=False)
    assert proc.returncode == 2 and "is not empty" in proc.stderr
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["log.jsonl"]
    assert (tmp_path / "mine" / "log.jsonl").read_text() == '{"mine": 1}\n'


def test_resume_refuses_other_model_weights_at_the_same_path(reference_run, tiny_model_dir, tmp_path):
    """The config names the model by path only; the run remembers the files' sha256."""
    from safetensors.torch import load_file, save_file

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    config = write_config(tmp_path / "run.toml", model)
    namm_bench("evolve", str(config), "--out", str(tmp_path / "run"), "--stop-after", "1")
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    weights = next(model.glob("*.safetensors"))
    tensors = load_file(weights)
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 0.01
    save_file(tensors, weights, metadata={"format": "pt"})
    proc = namm_bench("evolve", str(config), "--out", str(tmp_path / "run"), "--resume", check=False)
    assert proc.returncode == 2 and "the model's files differ" in proc.stderr, proc.stderr
    assert before == {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}


def test_resume_refuses_a_changed_config_a_corrupt_state_and_a_rerun(reference_run, tmp_path):
    config, reference = reference_run
    before = {p.name: p.read_bytes() for p in reference.iterdir() if p.is_file()}
    changed = tmp_path / "changed.toml"
    changed.write_text(config.read_text().replace("seed = 3", "seed = 4"))
    proc = namm_bench("evolve", str(changed), "--out", str(reference), "--resume", check=False)
    assert proc.returncode == 2 and "differs from the one" in proc.stderr and "seed" in proc.stderr
    proc = namm_bench("evolve", str(config), "--out", str(reference), check=False)
    assert proc.returncode == 2 and "already holds an evolution run" in proc.stderr
    assert before == {p.name: p.read_bytes() for p in reference.iterdir() if p.is_file()}

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for name, data in before.items():
        (corrupt / name).write_bytes(data[: len(data) // 2] if name == "state.pkl" else data)
    torn = (corrupt / "state.pkl").read_bytes()
    for args in (["evolve", str(config), "--out", str(corrupt), "--resume"], ["export", str(corrupt)]):
        proc = namm_bench(*args, check=False)
        assert proc.returncode == 2 and "state.pkl is corrupt" in proc.stderr, proc.stderr
    assert (corrupt / "state.pkl").read_bytes() == torn and not (corrupt / "namm").exists()

    # A state that unpickles but does not hold a run: one message too.
    state = pickle.loads(before["state.pkl"])
    for broken in ({**state, "cma": {}}, {**state, "generation": 99}):
        (corrupt / "state.pkl").write_bytes(pickle.dumps(broken))
        for args in (["evolve", str(config), "--out", str(corrupt), "--resume"], ["export", str(corrupt)]):
            proc = namm_bench(*args, check=False)
            assert proc.returncode == 2 and "state.pkl is corrupt" in proc.stderr, proc.stderr

    # The state lost, the log kept: resuming would restart from generation 0 over the log.
    lost = tmp_path / "lost"
    lost.mkdir()
    for name, data in before.items():
        if name != "state.pkl":
            (lost / name).write_bytes(data)
    proc = namm_bench("evolve", str(config), "--out", str(lost), "--resume", check=False)
    assert proc.returncode == 2 and "no state.pkl" in proc.stderr
    assert (lost / "log.jsonl").read_bytes() == before["log.jsonl"]


def test_a_config_extends_the_models_context_as_run_does():
    config = config_from_dict(
        {"stages": [{"tasks": ["passkey_1k"], "generations": 1}], "rope_scaling": "ntk:4:2", "max_context": 32768}
    )
    assert config.adapter_options() == {"rope_scaling": RopeScaling("ntk", 4, 2), "max_context": 32768}
    assert config_from_dict({"stages": [{"tasks": ["passkey_1k"], "generations": 1}]}).adapter_options() == {}
