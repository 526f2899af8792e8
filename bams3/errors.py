"""Errors users meet. Every one carries a one-line message that says what to do.

The CLI prints ``bams3: error: <message>`` and exits non-zero; the Python API
raises these exceptions unchanged.
"""


class Bams3Error(Exception):
    """Base class: a problem the user can act on (exit status 1)."""

    exit_code = 1


class UsageError(Bams3Error):
    """The command line or an argument is wrong (exit status 2)."""

    exit_code = 2


class InputError(Bams3Error):
    """The input file is missing, unreadable, truncated, corrupt or unsorted."""


class RegionError(UsageError):
    """A region string cannot be parsed or names an unknown reference."""


class UnknownReferenceError(RegionError):
    """A region names a reference the dataset's header lacks."""


class DatasetError(Bams3Error):
    """A dataset is missing, incomplete, corrupt, or of an unsupported version."""


class DatasetExistsError(Bams3Error):
    """The destination already holds a dataset and --force was not given."""


class PluginError(Bams3Error):
    """No plugin serves a URL scheme, codec or output format, or plugins clash."""


class StorageError(Bams3Error):
    """A storage backend failed in a way the user must fix (credentials, bucket, network)."""


class ConflictError(StorageError):
    """A conditional write lost: the object exists already, or changed since it was read."""


def samtools_message(exc) -> str:
    """The last thing samtools (run through pysam: a ``pysam.SamtoolsError``) said before failing,
    as one line."""
    text = str(exc)
    if "stderr=" in text:
        text = text.split("stderr=", 1)[1]
    lines = [line.strip(" '\"") for line in text.replace("\\n", "\n").splitlines() if line.strip(" '\"")]
    return lines[-1] if lines else "samtools failed"
