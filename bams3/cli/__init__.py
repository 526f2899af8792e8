"""The ``bams3`` command line: a thin layer over the Python API, one module per command family.

Data goes to stdout, messages to stderr. Exit status: 0 ok, 1 error, 2 usage
error, 130 interrupted, 143 terminated. Errors are one line, never a traceback
(set BAMS3_DEBUG=1 to see one).
"""

from . import cohort, convert, depth, info, query, serve  # noqa: F401 (each registers its commands on the group)
from .app import cli, main
from .common import redact

__all__ = ["cli", "main", "redact"]
