"""Every example in the README and in docs/ that needs no cloud account runs as written:
the bash blocks' commands one after another in a directory holding sample.bam (the example
BAM), targets.bed and samples.txt, and the README's Python block. Installing (pip, apt-get),
the test command, cloud URLs, remote clusters and the recipes (tests/test_recipes.py runs
those) are left out."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from .test_cli import EXAMPLE

ROOT = pathlib.Path(__file__).resolve().parent.parent
INSTALL = re.compile(r"^(pip|apt-get)\b")
NOT_HERE = re.compile(r"://|^(spark-submit|python bench/|bench/make-sample|JOBS=)|docs/recipes/")


def _blocks(path: pathlib.Path, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def _commands(path: pathlib.Path) -> list[str]:
    """The bash blocks' command lines, comments and install steps dropped; a line that needs the
    cloud, a remote cluster or a recipe is left out whole."""
    out = []
    for block in _blocks(path, "bash"):
        for line in block.splitlines():
            if line.lstrip().startswith("#") or "python -m pytest" in line:  # (the test command is CI's)
                continue
            parts = [p.strip() for p in line.split("  #", 1)[0].split(" && ")]
            parts = [p for p in parts if p and not INSTALL.match(p)]
            if parts and not any(NOT_HERE.search(p) for p in parts):
                out.append(" && ".join(parts))
    return out


@pytest.fixture()
def workdir(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "sample.bam")
    (tmp_path / "targets.bed").write_text("chr1\t10000\t30000\nchr1\t1000000\t1200000\nchr2\t0\t50000\n")
    return tmp_path


def _run(cmd: str, cwd: pathlib.Path) -> None:
    env = {**os.environ, "PATH": f"{pathlib.Path(sys.executable).parent}:{os.environ['PATH']}"}
    p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=cwd, capture_output=True, text=True, env=env,
                       timeout=300)
    assert p.returncode == 0, f"{cmd}\n{p.stderr[-2000:]}"


def test_the_readme_bash_examples_run_as_written(workdir):
    commands = _commands(ROOT / "README.md")
    assert "bams3 demo" in commands and any(c.startswith("bams3 convert sample.bam") for c in commands)
    for cmd in commands:
        _run(cmd, workdir)
    assert (workdir / "chr1.bam.csi").exists() and (workdir / "back.bam.bai").exists()
    assert (workdir / "q20.bams3" / "_metadata.json").exists()


def test_the_readme_python_example_runs_as_written(workdir):
    (code,) = _blocks(ROOT / "README.md", "python")
    p = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert (workdir / "back.bam").exists()


def test_the_docs_local_examples_run_as_written(workdir):
    """docs/cohorts.md's commands on local samples (samples.txt lists two datasets)."""
    for name in ("a", "b"):
        _run(f"bams3 convert sample.bam {name}.bams3", workdir)
    (workdir / "samples.txt").write_text("".join(f"{n}\t{workdir / n}.bams3\n" for n in ("a", "b")))
    commands = [c for doc in sorted((ROOT / "docs").glob("*.md")) for c in _commands(doc)]
    assert any("--from samples.txt" in c for c in commands)
    for cmd in commands:
        if "--workers 8" in cmd:  # a LocalCluster of 8 processes: 2 are as good a proof on 2 cores
            cmd = cmd.replace("--workers 8", "--workers 2")
        _run(cmd, workdir)
