"""The layering contracts of ``pyproject.toml`` hold, cover the whole core, and fail when broken."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = {"adapters": "adapters", "suites": "suites", "training": "training"}
"""Subpackage of namm_bench -> its directory in the checkout (pyproject's package-dir)."""


def _contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_the_core_contract_names_every_core_module():
    core = next(c for c in _contracts() if "core" in c["name"])
    listed = set(core["source_modules"])
    present = {
        f"namm_bench.{p.stem if p.is_file() else p.name}"
        for p in (ROOT / "namm_bench").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").is_file())
    }
    assert present == listed, f"add to or remove from the contract: {sorted(present ^ listed)}"
    assert set(core["forbidden_modules"]) == {f"namm_bench.{name}" for name in PLUGINS}


def _lint(tmp_path: Path, inject: str | None) -> subprocess.CompletedProcess:
    """lint-imports on a copy of the package laid out as installed, with ``inject`` appended to runner.py."""
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.is_file():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    package = tmp_path / "site" / "namm_bench"
    shutil.copytree(ROOT / "namm_bench", package, ignore=shutil.ignore_patterns("checkpoints", "__pycache__"))
    for name, directory in PLUGINS.items():
        shutil.copytree(ROOT / directory, package / name, ignore=shutil.ignore_patterns("__pycache__"))
    if inject:
        with open(package / "runner.py", "a") as f:
            f.write(f"\n{inject}\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    return subprocess.run([str(lint), "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_contracts_hold(tmp_path):
    result = _lint(tmp_path, None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_a_core_module_importing_a_suite_breaks_the_contract(tmp_path):
    result = _lint(tmp_path, "import namm_bench.suites.synthetic  # noqa")
    assert result.returncode != 0
    assert "the core imports no adapter, suite or training module BROKEN" in result.stdout
    assert "namm_bench.runner -> namm_bench.suites.synthetic" in result.stdout
