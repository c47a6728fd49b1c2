"""The claims ledger and ``namm-bench paper``: verdicts computed from rows, one NAMM, resumable."""

import csv
import io
import json
from pathlib import Path

import pytest
from test_bootstrap import H2O, NAMM, rows_of

from namm_bench.bootstrap import FULL
from namm_bench.claims import DOES_NOT_HOLD, HOLDS, NOT_MEASURED, Claim, check, ledger_csv, parse_column
from namm_bench.cli import main
from namm_bench.paper import load_paper_config

ABOVE_H2O = Claim("vs-h2o", "t", "NAMM above H2O at the same cache", "above", NAMM, H2O)


def test_a_claim_flips_when_one_row_changes():
    # Ten examples; the NAMM answers all, H2O misses four: margin +40, and a draw has none of the
    # four in (6/10)^10 = 0.6% of draws, so the interval stays above 0 and the claim holds. The
    # NAMM then misses one that H2O answers: margin +30, and 11% of draws are at or below 0.
    rows = rows_of({FULL: [1] * 10, NAMM: [1] * 10, H2O: [0] * 4 + [1] * 6})
    verdict = check(ABOVE_H2O, rows, resamples=2000)
    assert (verdict.verdict, verdict.ours, verdict.examples) == (HOLDS, 40, 10) and verdict.low > 0
    namm_rows = [r for r in rows if r["policy"] == "namm"]
    namm_rows[-1]["score"] = 0
    verdict = check(ABOVE_H2O, rows, resamples=2000)
    assert verdict.verdict == DOES_NOT_HOLD and verdict.ours == 30 and verdict.low < 0
    assert "interval reaches +0 or below" in verdict.why


def test_too_few_examples_or_mixed_settings_are_not_measured():
    verdict = check(ABOVE_H2O, rows_of({FULL: [1] * 9, NAMM: [1] * 9, H2O: [0] * 9}))
    assert verdict.verdict == NOT_MEASURED and "9 example(s) in a task; a verdict needs 10" in verdict.why
    rows = rows_of({FULL: [1] * 10, NAMM: [1] * 10, H2O: [0] * 10})
    rows[0]["preset"] = "paper"  # one full-cache row of another preset
    verdict = check(ABOVE_H2O, rows)
    assert verdict.verdict == NOT_MEASURED and "several settings" in verdict.why


def test_a_tolerance_and_a_margin_below_it():
    rows = rows_of({FULL: [1] * 10, NAMM: [1] * 9 + [0], H2O: [1] * 10})  # margin -10
    keeps = Claim("keeps", "t", "NAMM keeps H2O's score", "", NAMM, H2O, margin=-40)
    assert check(keeps, rows, resamples=2000).verdict == HOLDS
    verdict = check(ABOVE_H2O, rows, resamples=2000)
    assert verdict.verdict == DOES_NOT_HOLD and verdict.ours == -10 and "margin is +0 or below" in verdict.why


def test_a_smaller_cache_bound_and_not_measured():
    rows = rows_of({FULL: [1] * 10, NAMM: [1] * 10, H2O: [0] * 10})  # cache fraction 0.5 in every row
    smaller = Claim("small", "t", "above H2O with under 40% cache", "", NAMM, H2O, max_cache_pct=40)
    verdict = check(smaller, rows, resamples=50)
    assert verdict.verdict == DOES_NOT_HOLD and verdict.cache_pct == 50 and "not below 40%" in verdict.why
    assert check(Claim("s", "t", "", "", NAMM, H2O, max_cache_pct=60), rows, resamples=50).verdict == HOLDS
    missing = check(Claim("l2", "t", "above L2", "", NAMM, ("l2", "match")), rows)
    assert missing.verdict == NOT_MEASURED and missing.examples == 0 and "l2@match" in missing.why
    assert "not measured" in ledger_csv([missing])


def test_columns_parse():
    assert parse_column("namm") == ("namm", "none") and parse_column("h2o@match") == ("h2o", "match")
    assert parse_column("l2@0.25") == ("l2", "0.25")
    with pytest.raises(ValueError, match="POLICY@BUDGET"):
        parse_column("@match")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[tables]]\nname = "a"\nsuite = "synthetic"\nwindow = 3\n', "unknown keys \\['window'\\]"),
        ('[[tables]]\nname = "a"\n', "needs name and suite"),
        ('[[tables]]\nname = "a"\nsuite = "s"\n[[tables]]\nname = "a"\nsuite = "s"\n', "distinct names"),
        (
            '[[tables]]\nname = "a"\nsuite = "s"\n[[claims]]\nid = "c"\ntable = "b"\ntext = ""\npaper = ""\n'
            'policy = "namm"\nversus = "full"\n',
            "is on table 'b'",
        ),
        ('[[tables]]\nname = "a"\nsuite = "s"\n[[claims]]\nid = "c"\ntable = "a"\n', "missing"),
        ("tables = [", "not valid TOML"),
        ('[[tables]]\nname = "a"\nsuite = "s"\nseeds = 0\n', "seeds must be a list of integers"),
        ('[[tables]]\nname = "a"\nsuite = "s"\ntasks = "passkey_1k"\n', "tasks must be a list of names"),
        ('[[tables]]\nname = "a"\nsuite = 3\n', "suite must be a string"),
        ('preset = "paper"\n[[tables]]\nname = "v"\nsuite = "video"\ninterval = 128\n', "conflict with preset"),
    ],
)
def test_bad_configurations_are_one_clear_error(tmp_path, text, message):
    path = tmp_path / "paper.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_paper_config(path)
    with pytest.raises(ValueError, match="no such paper configuration"):
        load_paper_config(tmp_path / "absent.toml")


def test_the_project_configuration_names_real_suites_tasks_and_policies():
    from namm_bench.budget import parse_budget
    from namm_bench.models import make_suite
    from namm_bench.registry import POLICIES

    config = load_paper_config("configs/paper.toml")
    assert {c.table for c in config.claims} <= {t.name for t in config.tables}
    for table in config.tables:
        assert "namm" in table.policies and set(table.policies) <= set(POLICIES.names())
        if table.data_dir is None or Path(table.data_dir).is_dir():  # tasks read from files need them
            assert not set(table.tasks or []) - set(make_suite(table.suite, table.data_dir).tasks()), table.name
        [parse_budget(b) for b in table.budgets]


def test_paper_runs_every_table_writes_the_ledger_and_resumes(tiny_model_dir, tmp_path, capsys):
    config = tmp_path / "paper.toml"
    config.write_text(
        f"""
[[tables]]
name = "passkeys"
title = "Pass keys"
suite = "synthetic"
model = "{tiny_model_dir}"
tasks = ["passkey_1k"]
policies = ["full", "namm", "h2o"]
budgets = ["match"]
limit = 10

[[tables]]
name = "absent"
suite = "longbench"
data_dir = "{tmp_path / "no-such-dir"}"

[[claims]]
id = "vs-h2o"
table = "passkeys"
text = "above H2O at the same cache"
paper = "above"
policy = "namm"
versus = "h2o@match"

[[claims]]
id = "absent"
table = "absent"
text = "above the full cache"
paper = "+11%"
policy = "namm"
versus = "full"
"""
    )
    out = tmp_path / "paper"
    assert main(["paper", str(config), "--out", str(out), "--device", "cpu"]) == 0
    rows = [json.loads(line) for line in (out / "passkeys" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 10 * 3 and {r["policy"] for r in rows} == {"full", "namm", "h2o"}
    assert (out / "passkeys" / "report.md").exists()
    ledger = list(csv.DictReader(io.StringIO((out / "claims.csv").read_text())))
    assert [r["id"] for r in ledger] == ["vs-h2o", "absent"]
    # A random tiny model answers nothing, so the claim has no full-cache score to normalise by.
    assert ledger[0]["n"] == "10" and ledger[0]["verdict"] == NOT_MEASURED and "scores 0" in ledger[0]["why"]
    assert ledger[1]["verdict"] == NOT_MEASURED and ledger[1]["n"] == "0"
    index = (out / "README.md").read_text()
    assert "not run: its data directory" in index and "shipped (namm-smollm2)" in index
    before = (out / "passkeys" / "results.jsonl").read_text()
    assert main(["paper", str(config), "--out", str(out), "--device", "cpu"]) == 0  # nothing left to run
    assert (out / "passkeys" / "results.jsonl").read_text() == before
    # The ledger follows the rows: with the full cache and the NAMM right and H2O wrong, it holds.
    changed = [json.loads(line) for line in before.splitlines()]
    for row in changed:
        row["score"] = 0.0 if row["policy"] == "h2o" else 1.0
    (out / "passkeys" / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in changed))
    assert main(["paper", str(config), "--out", str(out), "--report-only"]) == 0
    ledger = list(csv.DictReader(io.StringIO((out / "claims.csv").read_text())))
    assert (ledger[0]["verdict"], ledger[0]["ours"], ledger[0]["low"]) == (HOLDS, "100.00", "100.00")
    assert ledger[0]["verdict"] == check(load_paper_config(config).claims[0], changed).verdict
    # Running some tables keeps the reason another one was not run in the index.
    assert main(["paper", str(config), "--out", str(out), "--tables", "passkeys", "--device", "cpu"]) == 0
    assert "not run: its data directory" in (out / "README.md").read_text()
    assert main(["paper", str(config), "--out", str(out), "--tables", "nope"]) == 2
    assert "no table ['nope']" in capsys.readouterr().err
    # A table that fails is reported; the others' rows and the ledger are still written.
    broken = config.read_text().replace('tasks = ["passkey_1k"]', 'tasks = ["passkey_1k", "no_such_task"]')
    config.write_text(broken)
    assert main(["paper", str(config), "--out", str(out), "--device", "cpu"]) == 1
    assert "table passkeys: failed (ValueError): unknown task(s) no_such_task" in capsys.readouterr().err
    assert "failed (ValueError): unknown task(s) no_such_task" in (out / "README.md").read_text()
    assert "its table failed" in (out / "claims.csv").read_text()
