"""The repository is self-contained and light: nothing in it reads files from outside the
checkout (a sibling shared directory, an environment variable pointing at one), nothing
built (the benchmark sample under .cache/) is tracked, and a clone's files stay small."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

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


def test_a_hung_test_ends_the_run_with_every_threads_stack(tmp_path):
    """The suite's own settings (pyproject.toml): a test stuck past faulthandler_timeout stops the
    run, non-zero, with the stack of each thread (here the worker waiting on a lock and the test
    waiting on the worker), instead of holding CI until its limit."""
    (tmp_path / "test_stuck.py").write_text(
        "import threading\n"
        "def test_stuck():\n"
        "    lock = threading.Lock(); lock.acquire()\n"
        "    t = threading.Thread(target=lock.acquire, name='worker'); t.start(); t.join()\n")
    ini = (ROOT / "pyproject.toml").read_text()
    timeout = re.search(r"^faulthandler_timeout = (\d+)$", ini, re.M)
    assert timeout and int(timeout[1]) >= 300 and re.search(r"^faulthandler_exit_on_timeout = true$", ini, re.M)
    (tmp_path / "pyproject.toml").write_text(ini.replace(f"faulthandler_timeout = {timeout[1]}",
                                                         "faulthandler_timeout = 2"))
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_stuck.py"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode != 0
    assert "Timeout (0:00:02)!" in p.stderr
    assert "test_stuck.py\", line 4 in test_stuck" in p.stderr  # the test, waiting on the thread
    assert p.stderr.count("Thread 0x") == 2  # the test's and the worker's
