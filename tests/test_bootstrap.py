"""namm_bench.bootstrap: normalised scores and the paired bootstrap, on hand-worked rows."""

import pytest

from namm_bench.bootstrap import FULL, mean_over_tasks, normalised, paired_bootstrap, paired_groups

NAMM, H2O = ("namm", "none"), ("h2o", "match")


def rows_of(scores, task="t", protocol="streaming", seed=0, suite="s"):
    """scores: {(policy, budget): [score per example]} -> result rows."""
    return [
        {"model": "m", "suite": suite, "protocol": protocol, "seed": seed, "task": task, "example_id": f"{task}-{i}"}
        | {"policy": p, "budget": b, "score": s, "cache_fraction": 0.5, "error": None}
        for (p, b), per_example in scores.items()
        for i, s in enumerate(per_example)
    ]


def test_hand_worked_two_examples():
    # full [1, 1], namm [1, 0], h2o [0, 0]: namm is 50, h2o 0, margin +50. A resample of the two
    # examples draws (e1, e1) with p 1/4 (margin 100), one of each with p 1/2 (50), (e2, e2) with
    # p 1/4 (0): the 95% interval is [0, 100] and a quarter of the resamples are <= 0.
    groups = paired_groups(rows_of({FULL: [1, 1], NAMM: [1, 0], H2O: [0, 0]}), [NAMM, H2O])
    assert normalised(groups, NAMM) == 50 and normalised(groups, H2O) == 0
    interval = paired_bootstrap(groups, NAMM, H2O, resamples=4000, seed=1)
    assert (interval.point, interval.low, interval.high, interval.examples) == (50, 0, 100, 2)
    assert interval.share_at_or_below_zero == pytest.approx(0.25, abs=0.03)
    # Against the full cache itself: namm - full = 50 - 100.
    assert paired_bootstrap(groups, NAMM, FULL, resamples=10).point == -50


def test_tasks_are_averaged_and_a_task_the_full_cache_never_answers_is_left_out():
    rows = rows_of({FULL: [1, 1], NAMM: [1, 1], H2O: [0, 1]}, task="a")
    rows += rows_of({FULL: [2, 2], NAMM: [1, 1], H2O: [2, 2]}, task="b")
    rows += rows_of({FULL: [0, 0], NAMM: [1, 1], H2O: [0, 0]}, task="zero")
    groups = paired_groups(rows, [NAMM, H2O])
    assert normalised(groups, NAMM) == (100 + 50) / 2
    assert normalised(groups, H2O) == (50 + 100) / 2


def test_examples_without_every_column_or_with_an_error_are_left_out():
    rows = rows_of({FULL: [1, 1, 1], NAMM: [1, 0, 1], H2O: [0, 0]})  # the third example has no h2o row
    rows[1]["error"] = "out of memory"  # the second example's full cache failed
    groups = paired_groups(rows, [NAMM, H2O])
    assert [len(v) for v in groups.values()] == [1]
    assert not paired_groups(rows_of({FULL: [1], NAMM: [1]}), [NAMM, H2O])
    with pytest.raises(ValueError, match="no example has"):
        paired_bootstrap({}, NAMM, H2O)


def test_seeds_protocols_and_settings_stay_apart():
    # Two suite seeds reuse example ids: four examples, not two.
    rows = rows_of({FULL: [1, 1], NAMM: [1, 0]}, seed=0) + rows_of({FULL: [1, 1], NAMM: [0, 0]}, seed=1)
    assert sum(len(v) for v in paired_groups(rows, [NAMM]).values()) == 4
    assert normalised(paired_groups(rows, [NAMM]), NAMM) == 25
    # A row written before seeds were kept has the default seed, 0.
    old = rows_of({FULL: [1, 1]})
    for row in old:
        del row["seed"]
    assert sum(len(v) for v in paired_groups(old + rows_of({NAMM: [1, 0]}), [NAMM]).values()) == 2
    # The RL suite runs the full cache under "window" and "cached", the policies under "cached":
    # a policy pairs with the full cache of its own protocol only.
    rl = rows_of({FULL: [100, 100]}, protocol="window") + rows_of({FULL: [50, 50]}, protocol="cached")
    rl += rows_of({NAMM: [50, 100]}, protocol="cached")
    assert normalised(paired_groups(rl, [NAMM]), NAMM) == 150
    only_window = rows_of({FULL: [100, 100]}, protocol="window") + rows_of({NAMM: [50, 100]}, protocol="cached")
    assert not paired_groups(only_window, [NAMM])
    # Rows of two intervals are two sections, each normalised by its own full cache.
    a = rows_of({FULL: [1, 1], NAMM: [1, 1]})
    b = rows_of({FULL: [1, 1], NAMM: [0, 0]})
    for row in b:
        row["interval"] = 128
    groups = paired_groups(a + b, [NAMM])
    assert sorted(k[3] for k in groups) == ["streaming; interval 128", "streaming; interval 512"]
    assert normalised(groups, NAMM) == 50


def test_cache_fractions_of_the_same_examples():
    rows = rows_of({FULL: [1, 1], NAMM: [1, 1]}, task="a") + rows_of({FULL: [1], NAMM: [1]}, task="b")
    for row in rows:
        row["cache_fraction"] = {("a", "namm"): 0.2, ("b", "namm"): 0.6}.get((row["task"], row["policy"]), 1.0)
    assert mean_over_tasks(paired_groups(rows, [NAMM], field="cache_fraction"), NAMM) == pytest.approx(40)


def test_a_resample_whose_full_cache_scores_zero_in_a_task_is_left_out():
    # The second example's full cache scores 0: a draw of it twice cannot be normalised and is left
    # out, so the task set never changes between draws; the others all give namm 100, h2o 0.
    groups = paired_groups(rows_of({FULL: [1, 0], NAMM: [1, 0], H2O: [0, 0]}), [NAMM, H2O])
    interval = paired_bootstrap(groups, NAMM, H2O, resamples=400, seed=0)
    assert interval.point == 100 and interval.low == interval.high == 100
    assert interval.share_at_or_below_zero == 0
