"""The ``bams3`` program's entry point. ``bams3 --version`` is answered here, before the
command line (click and every command's module) is loaded: scripts run it to check an
install, and it should cost no more than starting Python."""

from __future__ import annotations

import sys


def main() -> int:
    if sys.argv[1:] == ["--version"]:
        from . import __version__

        print(f"bams3, version {__version__}")  # as click's version option prints it
        return 0
    from .cli import main as run

    return run()
