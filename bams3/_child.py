"""Python children that run samtools through pysam (the decoder, the sorter, SAM and CRAM
writers): separate processes, because pysam holds the GIL while samtools runs.

pysam keeps samtools' output in temporary files (``$TMPDIR/tmpXXXXXXXX``) and removes them
only when samtools returns: a child stopped on Ctrl-C would leave them behind. Each child
gets a private ``TMPDIR``, removed when the child has been waited for.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile


def _private_tmpdir() -> str:
    """A new directory under $TMPDIR (TEMP, TMP, /tmp). Named, it skips tempfile's first-use
    probe of the directory, which writes a file there and removes it: a Ctrl-C between the two
    left that empty file behind."""
    root = tempfile.tempdir or os.environ.get("TMPDIR") or os.environ.get("TEMP") or os.environ.get("TMP") or "/tmp"
    try:
        return tempfile.mkdtemp(prefix="bams3-child-", dir=root)
    except OSError:  # not a usable directory: tempfile's own search
        return tempfile.mkdtemp(prefix="bams3-child-")


_HELD = {signal.SIGINT, signal.SIGTERM}


class Child(subprocess.Popen):
    """``python ARGS...`` with a private temporary directory, removed by :meth:`wait`."""

    def __init__(self, args: list[str], **kwargs):
        # Ctrl-C (or a TERM) is held off until the directory's name is kept, and taken inside the
        # block that removes it: one arriving as mkdir returns left it behind
        held = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
        try:
            self._tmpdir = _private_tmpdir()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            raise
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            env = {**(kwargs.pop("env", None) or os.environ), "TMPDIR": self._tmpdir}
            super().__init__([sys.executable, *args], env=env, **kwargs)
        except BaseException:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            raise

    def wait(self, timeout=None):
        code = super().wait(timeout)
        shutil.rmtree(self._tmpdir, ignore_errors=True)
        return code
