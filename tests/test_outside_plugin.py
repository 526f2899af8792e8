"""A plugin package that lives outside bams3 (plugins/bams3-parquet, its own pyproject) is
installed with pip into a fresh virtual environment and used from the CLI by name, with
no change to bams3; in that environment it passes its own tests, which run bams3's
conformance kit. Without it, bams3 says the format is unknown."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pyarrow.parquet as pq
import pysam
import pytest

import bams3

ROOT = pathlib.Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "plugins" / "bams3-parquet"


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    d = tmp_path_factory.mktemp("venv") / "v"
    # bams3 and its dependencies come from the running environment (a virtualenv or the system's
    # Python alike): the new venv's site-packages gets a .pth that adds this environment's
    # site-packages after its own, with their .pth files (an editable bams3). Only the plugin is
    # installed into the venv.
    subprocess.run([sys.executable, "-m", "venv", str(d)], check=True)
    py = d / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    ours = [p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages"))]
    pathlib.Path(purelib, "_bams3_running_env.pth").write_text(
        "import site; " + "; ".join(f"site.addsitedir({p!r})" for p in ours) + "\n")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    p = subprocess.run([str(py), "-m", "pip", "install", "--no-deps", str(PLUGIN)],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    return py


def test_the_plugin_is_not_in_this_environment():
    assert "rawparquet" not in bams3.get_registry().formats
    p = subprocess.run([sys.executable, "-m", "bams3.cli", "query", str(ROOT / "tests" / "golden" / "v1" /
                        "qual_ctx.bams3"), "--format", "rawparquet"], capture_output=True, text=True)
    assert p.returncode != 0 and "unknown output format 'rawparquet'" in p.stderr


def test_installed_plugin_is_listed_and_used_by_name(venv, tmp_path, sample_dataset, sample_dir):
    p = subprocess.run([str(venv), "-m", "bams3.cli", "plugins", "--json"], capture_output=True, text=True,
                       check=True)
    rows = {r["plugin"]: r for r in map(json.loads, p.stdout.splitlines()) if "plugin" in r}
    assert rows["parquet"]["package"] == "bams3-parquet" and rows["parquet"]["formats"] == ["rawparquet"]
    region = "chr1:1,000,000-1,010,000"
    out = tmp_path / "r.raw.parquet"  # the plugin's extension, longer than bams3's own .parquet
    subprocess.run([str(venv), "-m", "bams3.cli", "query", sample_dataset, region, "-o", str(out)], check=True)
    t = pq.read_table(out)
    bam = str(sample_dir / "sample.bam")
    assert t.num_rows == int(pysam.view("-c", bam, region))
    with pysam.AlignmentFile(bam) as f:
        expect = [(r.query_name, r.reference_start + 1) for r in f.fetch("chr1", 999_999, 1_010_000)]
    assert list(zip(t["name"].to_pylist(), t["pos"].to_pylist())) == expect


def test_the_plugin_passes_its_own_tests_with_the_kit(venv):
    p = subprocess.run([str(venv), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PLUGIN / "tests")],
                       capture_output=True, text=True, cwd=str(PLUGIN))
    assert p.returncode == 0, p.stdout[-3000:]
    assert " passed" in p.stdout and "failed" not in p.stdout
