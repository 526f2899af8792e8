"""The repository is self-contained and light: nothing in it reads files from outside the
checkout (a sibling shared directory, an environment variable pointing at one), nothing
built (the benchmark sample under .cache/) is tracked, and a clone's files stay small."""

from __future__ import annotations

import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUTSIDE = re.compile(re.escape("..") + r"[/\\]" + "shared" + r"|BAMS3_" + "SHARED")
SKIP_DIRS = {".git", ".cache", ".venv", "venv", "build", "dist", "__pycache__", ".hypothesis", ".pytest_cache"}


def _files() -> list[pathlib.Path]:
    """The tracked files (git ls-files), or, in a copy without .git, every file but build output."""
    if (ROOT / ".git").exists():
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        return [ROOT / name for name in out.decode().split("\0") if name]
    return [p for p in ROOT.rglob("*")
            if p.is_file() and not SKIP_DIRS & set(p.relative_to(ROOT).parts) and ".egg-info" not in str(p)]


def test_nothing_reads_outside_the_checkout():
    offenders = []
    for path in _files():
        rel = path.relative_to(ROOT)
        if rel.parts[0] not in ("tests", "bench", "conformance", ".ci", "docs", "plugins", "bams3") and \
                rel.name not in ("README.md", "CONTRIBUTING.md", "pyproject.toml"):
            continue
        if "golden" in rel.parts:  # pinned datasets record the command lines that made them: data, not reads
            continue
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        offenders += [f"{rel}:{n}" for n, line in enumerate(text.splitlines(), 1) if OUTSIDE.search(line)]
    assert offenders == []


def test_the_corpus_and_the_sample_recipe_are_in_the_repository():
    corpus = ROOT / "tests" / "data" / "htslib"
    assert (corpus / "COPYRIGHT").is_file() and (corpus / "README.md").is_file()
    assert len([p for p in corpus.rglob("*") if p.suffix in (".sam", ".bam")]) == 97
    assert (ROOT / "bench" / "make-sample.sh").is_file()


def test_a_clone_is_light():
    files = _files()
    assert not [p for p in files if ".cache" in p.relative_to(ROOT).parts]
    total = sum(p.stat().st_size for p in files if p.exists())
    assert total < 10_000_000, f"{total:,} bytes tracked"
