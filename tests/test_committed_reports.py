"""The committed reports: one NAMM in every current report, and an index that names them all.

Reports of earlier NAMMs belong under ``reports/history/``; everything else in ``reports/`` must
have been run with the shipped checkpoint, so a reader of ``reports/README.md`` can trust which
NAMM a table shows.
"""

import json
from pathlib import Path

import pytest

from namm_bench.results import ResultsStore

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "reports"
SHIPPED = ROOT / "namm_bench" / "checkpoints" / "namm-smollm2" / "namm.json"


def _current_results() -> list[Path]:
    return sorted(p for p in REPORTS.rglob("results.jsonl") if "history" not in p.relative_to(REPORTS).parts)


def _namm_rows(path: Path) -> list[dict]:
    return [row for row in ResultsStore(path.parent).rows() if row["policy"] == "namm"]


def test_every_current_report_runs_the_shipped_namm():
    shipped = json.loads(SHIPPED.read_text())
    paths = _current_results()
    assert paths, "no committed results under reports/"
    checked = 0
    for path in paths:
        for row in _namm_rows(path):
            config = row["policy_config"]
            where = f"{path.relative_to(ROOT)} {row['example_id']}"
            # provenance (the run and generation it came from) and the normaliser's count identify it
            assert config.get("provenance") == shipped["provenance"], f"{where}: not the shipped NAMM"
            assert config.get("stats_count") == shipped["normalization"]["count"], f"{where}: other statistics"
            checked += 1
    assert checked > 100  # the paper tables alone hold more NAMM rows than this


@pytest.mark.parametrize("index", ["README.md", "history/README.md"])
def test_the_indexes_name_every_report_beside_them(index):
    readme = REPORTS / index
    text = readme.read_text()
    entries = [p for p in readme.parent.iterdir() if p.name not in {"README.md", "history"}]
    missing = [p.name for p in entries if p.name not in text]
    assert not missing, f"{readme.relative_to(ROOT)} does not name {missing}"
