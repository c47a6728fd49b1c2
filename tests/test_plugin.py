"""An outside package (tests/plugin) adds a policy, an adapter and a suite through entry points only."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_process import RUN_DIR

PLUGIN = Path(__file__).parent / "plugin"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """The plugin installed (pip, no build isolation: offline) into a directory only this test's processes see."""
    pytest.importorskip("setuptools", reason="building the plugin offline needs setuptools (in the dev extras)")
    site = tmp_path_factory.mktemp("plugin-site")
    source = tmp_path_factory.mktemp("plugin-src") / "plugin"
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", site, source],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return site


def _cli(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(
        [sys.executable, "-m", "namm_bench", *args], capture_output=True, text=True, env=env, cwd=RUN_DIR, timeout=600
    )


def test_the_plugin_is_listed(plugin_site):
    listing = _cli(plugin_site, "list")
    assert listing.returncode == 0, listing.stderr
    assert "counting (text, default adapter llama): count_words" in listing.stdout
    assert (
        "recent (budget: ratio or tokens; streaming, post-prefill, post-prefill-context): Keep the most recent tokens"
        in listing.stdout
    )
    assert "plain_prompt (text)" in listing.stdout


def test_the_plugin_runs_and_reports(plugin_site, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    run = _cli(
        plugin_site,
        *("run", "counting", "--model", str(tiny_model_dir), "--adapter", "plain_prompt", "--limit", "2"),
        *("--policies", "full,recent", "--budget", "4", "--interval", "8", "--out", str(out)),
    )
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {(r["policy"], r["adapter"], r["suite"]) for r in rows} == {
        ("full", "plain_prompt", "counting"),
        ("recent", "plain_prompt", "counting"),
    }
    assert len(rows) == 4 and all(r["error"] is None for r in rows)
    recent = [r for r in rows if r["policy"] == "recent"]
    # a 4-token window on prompts of more than 8 tokens keeps far less than the full cache
    assert all(r["cache_fraction"] < 0.9 for r in recent) and all(r["retained_per_layer"] for r in recent)
    report = _cli(plugin_site, "report", str(out))
    assert report.returncode == 0, report.stderr
    table = (out / "report.md").read_text()
    assert "count_words" in table and "recent" in table


def test_the_guide_examples_are_the_plugin_code():
    """docs/extending.md's "Adding a policy/adapter/suite" code is the code the tests above install and run."""
    guide = (Path(__file__).parents[1] / "docs" / "extending.md").read_text()
    source = (PLUGIN / "namm_bench_plugin_example" / "__init__.py").read_text()
    extending = guide[guide.index("# Extending namm-bench") :]
    blocks = re.findall(r"```python\n(.*?)```", extending, flags=re.S)
    assert len(blocks) == 3
    for block in blocks:
        imports = [line for line in block.splitlines() if line.startswith(("import ", "from "))]
        code = block[block.index("\n\n\n") :].strip() if imports else block.strip()
        assert code in source, code.splitlines()[0]
        source_imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
        for line in imports:  # the plugin imports as much, maybe along with more names
            module, _, names = line.partition(" import ")
            assert line in source_imports or any(
                have.startswith(module + " import ")
                and set(names.split(", ")) <= set(have.split(" import ")[1].split(", "))
                for have in source_imports
            ), line
