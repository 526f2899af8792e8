"""A regular install, as the README's first command makes one (`pip install .`, not the editable
install the test suite runs from): the sdist and the wheel built from it hold every module of the
package, and the installed program runs the demo and a query. An editable install maps the whole
source tree, so a subpackage missing from pyproject.toml's list goes unnoticed everywhere else
(bams3.cli and bams3.format were, from 2026-11-28 to 2026-12-04: `bams3` failed on import)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tarfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _package_files() -> set[str]:
    """The package's modules and data as they are in the checkout, as paths inside the wheel."""
    files = {str(p.relative_to(ROOT)) for p in (ROOT / "bams3").rglob("*.py")}
    files |= {str(p.relative_to(ROOT)) for p in (ROOT / "bams3" / "data").iterdir() if p.is_file()}
    files |= {"bams3/conformance/" + str(p.relative_to(ROOT / "conformance"))
              for p in (ROOT / "conformance").rglob("*.py")}
    return {f for f in files if "__pycache__" not in f}


def _clean_copy(dest: pathlib.Path) -> pathlib.Path:
    """The tracked files only, as a fresh clone has them: no build/ or *.egg-info/ left by earlier
    builds, which setuptools would reuse (its sdist lists the files an egg-info's SOURCES.txt names)."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, names.decode().split("\0")):
        src, dst = ROOT / name, dest / name
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
    return dest


def test_a_regular_install_holds_every_module_and_runs(tmp_path):
    tree = _clean_copy(tmp_path / "tree")
    dist = tmp_path / "dist"
    # the wheel as `pip install .` builds it (from the tree), and the sdist
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(tree)], check=True,
                   capture_output=True)
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--outdir", str(dist), str(tree)], check=True,
                   capture_output=True)
    (wheel,) = dist.glob("bams3-*.whl")
    (sdist,) = dist.glob("bams3-*.tar.gz")
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    assert _package_files() - in_wheel == set()
    assert any(n.startswith("bams3/_kernels.") and n.endswith(".so") for n in in_wheel)
    with tarfile.open(sdist) as tar:
        top = tar.getnames()[0].split("/")[0]
        in_sdist = {n.removeprefix(top + "/") for n in tar.getnames()}
    assert {f.replace("bams3/conformance/", "conformance/", 1) for f in _package_files()} - in_sdist == set()

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                    str(wheel)], check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(site)}
    program = "import sys; from bams3._main import main; sys.argv[0] = 'bams3'; sys.exit(main())"

    def bams3(*args):
        return subprocess.run([sys.executable, "-c", program, *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)

    where = subprocess.run([sys.executable, "-c", "import bams3.cli, bams3.format; print(bams3.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site))  # the installed copy, not the checkout
    p = bams3("demo", "--keep", str(tmp_path / "example.bams3"))
    assert p.returncode == 0, p.stderr
    assert "$ bams3 stats" in p.stdout
    p = bams3("query", str(tmp_path / "example.bams3"), "chr1:20,000-30,000", "-c")
    assert p.returncode == 0, p.stderr
    import pysam

    bam = tmp_path / "example.bam"
    bam.write_bytes((ROOT / "bams3" / "data" / "example.bam").read_bytes())
    pysam.index(str(bam))
    assert int(p.stdout) == int(pysam.samtools.view("-c", str(bam), "chr1:20,000-30,000")) > 0
