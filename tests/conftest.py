from __future__ import annotations

import functools
import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = pathlib.Path(os.environ.get("BAMS3_SHARED", ROOT.parent / "shared"))
CORPUS = SHARED / "corpus" / "htslib"
CACHE = pathlib.Path(os.environ.get("BAMS3_TEST_CACHE", ROOT / ".cache"))


def corpus_files() -> list[pathlib.Path]:
    files = sorted(p for p in CORPUS.rglob("*") if p.suffix in (".sam", ".bam"))
    assert len(files) >= 90, f"the conformance corpus is missing: expected ../shared/corpus/htslib at {CORPUS}"
    return files


@functools.cache
def sorted_corpus() -> dict[pathlib.Path, pathlib.Path | None]:
    """Each corpus file -> its coordinate-sorted BAM (``samtools sort``), or None if samtools cannot sort it."""
    import pysam

    out_dir = pathlib.Path(tempfile.mkdtemp(prefix="bams3-corpus-"))
    result = {}
    for i, src in enumerate(corpus_files()):
        out = out_dir / f"{i:03d}.bam"
        try:
            pysam.sort("-o", str(out), str(src), catch_stdout=False)
            result[src] = out
        except pysam.SamtoolsError:
            result[src] = None
    return result


def corpus_id(p: pathlib.Path) -> str:
    return str(p.relative_to(CORPUS))


@pytest.fixture(scope="session")
def sample_dir() -> pathlib.Path:
    """The shared benchmark sample (~1.07 M reads), built once by ../shared/bench/make-sample.sh."""
    out = CACHE / "sample"
    if not (out / "sample.bam.bai").exists():
        for tool in ("samtools", "minimap2", "art_illumina"):
            assert shutil.which(tool), f"{tool} is needed to build the benchmark sample (see .ci/run)"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        subprocess.run(["bash", str(SHARED / "bench" / "make-sample.sh"), str(out)], check=True,
                       stdout=subprocess.DEVNULL)
    return out


@pytest.fixture(scope="session")
def sample_dataset(sample_dir, tmp_path_factory) -> str:
    import bams3

    dest = str(tmp_path_factory.mktemp("sample") / "sample.bams3")
    bams3.convert(str(sample_dir / "sample.bam"), dest)
    return dest
