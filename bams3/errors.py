"""Errors users meet. Every one carries a one-line message that says what to do.

The CLI prints ``bams3: error: <message>`` and exits non-zero; the Python API
raises these exceptions unchanged.
"""

from __future__ import annotations


class Bams3Error(Exception):
    """Base class: a problem the user can act on (exit status 1)."""

    exit_code = 1


class UsageError(Bams3Error):
    """The command line or an argument is wrong (exit status 2)."""

    exit_code = 2


class InputError(Bams3Error):
    """The input file is missing, unreadable, truncated, corrupt or unsorted. ``source`` is the
    input the message names, or None when it names none (yet)."""

    def __init__(self, message: str, *, source: str | None = None):
        super().__init__(message)
        self.source = source

    def naming(self, source: str) -> InputError:
        """This error, its message naming ``source`` (once: unchanged if it names its input)."""
        if self.source is not None:
            return self
        return type(self)(f"{source}: {self}", source=source)

    def __reduce__(self):
        return (_rebuild_input, (type(self), str(self), self.source))


def _rebuild_input(cls, message: str, source: str | None):
    return cls(message, source=source)


class TruncatedInputError(InputError):
    """The input ends too early (inside a BGZF block or a record, or without BGZF's EOF marker)."""


class RegionError(UsageError):
    """A region string cannot be parsed or names an unknown reference."""


class UnknownReferenceError(RegionError):
    """A region names a reference the dataset's header lacks."""


class DatasetError(Bams3Error):
    """A dataset is missing, incomplete, corrupt, or of an unsupported version."""


class NotADatasetError(DatasetError):
    """There is no dataset at a URL (no ``_metadata.json``)."""


class CorruptDatasetError(DatasetError):
    """Part of a dataset is damaged: ``where`` (the dataset or object), ``reason`` (what is wrong).
    The message is ``"{where}: {reason}"``."""

    def __init__(self, where: str, reason: str):
        super().__init__(f"{where}: {reason}")
        self.where, self.reason = where, reason

    def __reduce__(self):  # pickled as itself (Dask sends errors between processes)
        return (type(self), (self.where, self.reason))


class DatasetExistsError(Bams3Error):
    """The destination already holds a dataset and --force was not given."""


class PluginError(Bams3Error):
    """No plugin serves a URL scheme, codec or output format, or plugins clash, or a plugin
    failed: ``plugin`` and ``package`` name it when known."""

    def __init__(self, message: str, *, plugin: str | None = None, package: str | None = None):
        super().__init__(message)
        self.plugin, self.package = plugin, package

    def __reduce__(self):
        return (_rebuild, (type(self), str(self), {"plugin": self.plugin, "package": self.package}))


class StorageError(Bams3Error):
    """A storage backend failed in a way the user must fix (credentials, bucket, network).
    ``kind`` says which, for code to act on (never the message text): one of STORAGE_KINDS;
    ``key`` is the object concerned, if any."""

    def __init__(self, message: str, *, kind: str = "failed", key: str | None = None):
        super().__init__(message)
        self.kind, self.key = kind, key

    def __reduce__(self):
        return (_rebuild, (type(self), str(self), {"kind": self.kind, "key": self.key}))


# StorageError.kind: what failed, whatever the store's own words were
STORAGE_KINDS = (
    "failed",  # anything else
    "denied",  # the credentials may not do this (HTTP 403)
    "unauthenticated",  # the credentials were rejected (401, a bad key or signature)
    "no-credentials",  # none were found
    "no-bucket",  # the bucket or container does not exist
    "timeout",  # no answer in time
    "unreachable",  # the server cannot be reached
    "server",  # the server answered an error status (5xx, 429)
    "transport",  # the connection dropped, or a body was cut short or too long
    "range",  # the server ignored a byte range
    "conflict",  # a conditional write lost (ConflictError)
    "read-only",  # the store cannot be written
)


def _rebuild(cls, message: str, attrs: dict):
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.__dict__.update(attrs)
    return exc


class ConflictError(StorageError):
    """A conditional write lost: the object exists already, or changed since it was read."""

    def __init__(self, message: str, *, kind: str = "conflict", key: str | None = None):
        super().__init__(message, kind=kind, key=key)


def samtools_message(exc) -> str:
    """The last thing samtools (run through pysam: a ``pysam.SamtoolsError``) said before failing,
    as one line."""
    text = str(exc)
    if "stderr=" in text:
        text = text.split("stderr=", 1)[1]
    lines = [line.strip(" '\"") for line in text.replace("\\n", "\n").splitlines() if line.strip(" '\"")]
    return lines[-1] if lines else "samtools failed"
