"""The conformance kit catches real bugs: it is run against a correct tiny store and codec
(which must pass it whole) and against each seeded bug in tests/mutants/ (18 store bugs,
6 codec bugs, 8 output-format bugs, as an outside developer might write them), in a child pytest each. The kit
must fail at least 90% of each kind; the score is printed."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from .mutants import codecs, formats, stores

ROOT = pathlib.Path(__file__).resolve().parent.parent
KIT = ROOT / "tests" / "mutants" / "kit_run.py"


def _kit(mutant: str, only: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BAMS3_MUTANT": mutant}
    return subprocess.run([sys.executable, "-m", "pytest", str(KIT), "-q", "-p", "no:cacheprovider", "-p",
                           "no:warnings", "-x", "-k", only], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=600)


def test_the_correct_plugins_pass_the_whole_kit():
    p = _kit("none:", "Store or Codec or Format")
    assert p.returncode == 0, p.stdout[-3000:]
    assert " passed" in p.stdout and "failed" not in p.stdout


@pytest.mark.parametrize(("kind", "names", "only"), [
    ("store", [m.__name__ for m in stores.MUTANTS], "Store"),
    ("codec", list(codecs.MUTANTS), "Codec"),
    ("format", list(formats.MUTANTS), "Format"),
])
def test_the_kit_catches_at_least_90_percent_of_each_kind(kind, names, only):
    missed = [name for name in names if _kit(f"{kind}:{name}", only).returncode == 0]
    caught = len(names) - len(missed)
    print(f"\n{kind} mutants caught by the kit: {caught}/{len(names)}" + (f" (missed: {missed})" if missed else ""))
    assert caught / len(names) >= 0.9, missed
