"""Python children that run samtools through pysam (the decoder, the sorter, SAM and CRAM
writers): separate processes, because pysam holds the GIL while samtools runs.

pysam keeps samtools' output in temporary files (``$TMPDIR/tmpXXXXXXXX``) and removes them
only when samtools returns: a child stopped on Ctrl-C would leave them behind. Each child
gets a private ``TMPDIR``, removed when the child has been waited for.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile


class Child(subprocess.Popen):
    """``python ARGS...`` with a private temporary directory, removed by :meth:`wait`."""

    def __init__(self, args: list[str], **kwargs):
        self._tmpdir = tempfile.mkdtemp(prefix="bams3-child-")
        env = {**(kwargs.pop("env", None) or os.environ), "TMPDIR": self._tmpdir}
        try:
            super().__init__([sys.executable, *args], env=env, **kwargs)
        except BaseException:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            raise

    def wait(self, timeout=None):
        code = super().wait(timeout)
        shutil.rmtree(self._tmpdir, ignore_errors=True)
        return code
