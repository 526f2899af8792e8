"""The bams3 process itself: what it sets up before any command runs."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

from bams3 import _main


class _Libc:
    def __init__(self, calls):
        self.calls = calls

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return 1


@pytest.fixture
def mallopt(monkeypatch):
    calls = []
    monkeypatch.setattr(ctypes, "CDLL", lambda name: _Libc(calls))
    for key in list(os.environ):
        if key.startswith("MALLOC_") or key == "GLIBC_TUNABLES":
            monkeypatch.delenv(key)
    return calls


def test_the_process_keeps_freed_memory_for_the_next_chunk(mallopt):
    _main._keep_freed_memory()
    assert mallopt == [(_main.M_MMAP_THRESHOLD, 32 << 20), (_main.M_TRIM_THRESHOLD, 512 << 20)]


@pytest.mark.parametrize("key, value", [("MALLOC_ARENA_MAX", "2"), ("MALLOC_TRIM_THRESHOLD_", "0"),
                                        ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0")])
def test_a_users_own_malloc_settings_are_left_alone(mallopt, monkeypatch, key, value):
    monkeypatch.setenv(key, value)
    _main._keep_freed_memory()
    assert mallopt == []


def test_importing_bams3_changes_nothing():
    """Only the bams3 program tunes malloc: importing bams3 (every command's module too) as a
    library leaves the user's process alone."""
    code = ("import ctypes, sys\n"
            "calls = []\n"
            "class Libc:\n"
            "    def mallopt(self, *a): calls.append(a); return 1\n"
            "ctypes.CDLL = lambda name: Libc()\n"
            "import bams3, bams3.cli, bams3.dataset\n"
            "sys.exit(len(calls))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0


@pytest.mark.parametrize("given, threads", [(None, "1"), ("2", "2")])
def test_the_program_starts_no_blas_threads_unless_the_user_asks(given, threads):
    """numpy's OpenBLAS starts a thread per core at import, which spins before it sleeps; the
    bams3 program does no linear algebra and asks for none (a value the user set stays). The
    threads are counted in the process after a command ran and numpy is imported."""
    code = ("import contextlib, io, os, sys\n"
            "sys.argv = ['bams3', 'plugins', '--json']\n"
            "from bams3._main import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n"
            "        main()\n"
            "    except SystemExit:\n"
            "        pass\n"
            "import numpy\n"
            "print(os.environ['OPENBLAS_NUM_THREADS'], len(os.listdir('/proc/self/task')))\n")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if given:
        env["OPENBLAS_NUM_THREADS"] = given
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [threads, threads]


def test_importing_bams3_leaves_blas_alone():
    code = "import os, bams3, bams3.cli, bams3.dataset; print(os.environ.get('OPENBLAS_NUM_THREADS'))"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip() == "None"
