"""Where and how output is written, as samtools writes it.

Output paths:

- ``-`` (or no path) is standard output;
- an existing symbolic link, FIFO, character or block device (``/dev/stdout``, ``/dev/null``,
  a named pipe) is opened and written in place, never replaced;
- a regular file or a new path is written under a temporary name in the same directory and
  renamed over the path only when complete: an interrupted or failed write leaves the old
  file (or nothing) behind, never a partial file;
- a directory is refused.

Output formats: ``-O FORMAT[,OPTION...]`` (``sam``, ``sam.gz``, ``bam``, ``cram``, ``json``
or a plugin's), ``-b``, ``-C``, ``-u``, or the file's extension (``.sam``, ``.sam.gz``,
``.bam``, ``.cram``, a plugin's). An extension bams3 does not know, or a format a verb
cannot write, is a usage error: never silently SAM.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import sys
from collections.abc import Iterator

import attrs

from .errors import Bams3Error, UsageError

STDOUT = "-"


@attrs.frozen
class OutputSpec:
    """A resolved output format: a registered format name and the options for its writer."""

    format: str
    options: dict = attrs.field(factory=dict)

    @property
    def label(self) -> str:
        return "sam.gz" if self.format == "sam" and self.options.get("bgzf") else self.format


def is_stdout(path: str | None) -> bool:
    return path is None or path == STDOUT


# Output options each built-in format takes, as htslib names them (hts_opt_add); a plugin's
# format takes none. Anything else is a usage error, as samtools refuses it.
_CRAM_FLAGS = {"fast", "normal", "small", "archive", "embed_ref", "no_ref", "use_bzip2", "use_lzma",
               "use_rans", "use_tok", "use_fqz", "use_arith", "lossy_names", "store_md", "store_nm"}
_CRAM_VALUES = {"version", "seqs_per_slice", "bases_per_slice", "slices_per_container", "reference",
                "embed_ref", "no_ref", "use_bzip2", "use_lzma", "use_rans", "use_tok", "use_fqz",
                "use_arith", "lossy_names", "store_md", "store_nm"}
_CRAM_VERSIONS = ("2.1", "3.0", "3.1", "4.0")
_OPTIONS = {"sam": ({"level"}, set()), "bam": ({"level"}, set()),
            "cram": ({"level"} | _CRAM_VALUES, _CRAM_FLAGS)}


def _parse_fmt(text: str) -> tuple[str, dict]:
    """``cram,version=3.1,archive`` -> ("cram", {"htslib": "version=3.1,archive", ...}); an
    option the format does not take, or a bad value, is a UsageError."""
    name, _, rest = text.partition(",")
    name = name.strip().lower()
    options: dict = {}
    if name == "sam.gz":
        name, options["bgzf"] = "sam", True
    values, flags = _OPTIONS.get(name, (set(), set()))
    extra = []
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not (key in values if eq else key in flags):
            known = sorted({f"{k}=" for k in values} | flags)
            raise UsageError(f"unknown output option {item!r} for {name}"
                             + (f" (known: {', '.join(known)})" if known else f" ({name} takes no options)"))
        if key == "level":
            try:
                options["level"] = int(value)
            except ValueError:
                raise UsageError(f"bad output option {item!r} (level=0..9)") from None
            if not 0 <= options["level"] <= 12:
                raise UsageError(f"bad output option {item!r} (level=0..9)")
        elif key == "reference":
            options["reference"] = value
        elif key == "version" and value.strip() not in _CRAM_VERSIONS:
            raise UsageError(f"bad output option {item!r} (CRAM versions: {', '.join(_CRAM_VERSIONS)})")
        elif eq and key not in ("reference", "version"):
            try:
                int(value)
            except ValueError:
                raise UsageError(f"bad output option {item!r} (a number)") from None
        extra.append(item)
    if extra:
        options["htslib"] = ",".join(extra)  # passed on to htslib for its formats (cram: version=3.1, archive)
    return name, options


def resolve(path: str | None, fmt: str | None = None, *, bam: bool = False, cram: bool = False,
            uncompressed: bool = False, reference: str | None = None, allowed: tuple[str, ...] | None = None,
            verb: str = "query") -> OutputSpec:
    """The output format for ``path``, from -O/-b/-C/-u or else the path's extension (SAM on
    standard output). UsageError for a contradiction, an unknown extension or format, a format
    this verb cannot write, and CRAM without a reference."""
    from .plugins import get_registry

    reg = None  # every installed format only when the path's extension must be looked up
    flags = [n for n, on in (("-b", bam), ("-C", cram), ("-u", uncompressed)) if on]
    if bam and cram:
        raise UsageError("-b and -C contradict each other")
    options: dict = {}
    if fmt:
        name, options = _parse_fmt(fmt)
        implied = "cram" if cram else "bam" if (bam or uncompressed) else None
        if implied and implied != name:
            raise UsageError(f"-O {fmt} contradicts {' '.join(flags)}")
    elif cram:
        name = "cram"
    elif bam or uncompressed:
        name = "bam"
    elif not is_stdout(path):
        lower = path.lower()
        if lower.endswith(".sam.gz"):
            name, options = "sam", {"bgzf": True}
        else:
            reg = get_registry()
            name = reg.format_for_path(path)
            if name is None and writes_in_place(path):  # /dev/stdout, a FIFO: SAM, as samtools writes there
                name = "sam"
            elif name is None:
                known = sorted({e for f, _ in reg.formats.values() for e in f.extensions} | {".sam.gz"})
                raise UsageError(f"cannot tell the output format of {path!r} from its extension (known: "
                                 f"{', '.join(known)}); name it with -O FORMAT")
    else:
        name = "sam"
    if uncompressed:
        options["level"] = 0
    reg = reg or get_registry(formats=name)
    if name not in reg.formats:
        raise UsageError(f"unknown output format {name!r} (installed: {', '.join(sorted(reg.formats))}, sam.gz)")
    if allowed is not None and name not in allowed:
        raise UsageError(f"{verb} writes {' or '.join(a.upper() for a in allowed)}, not {name.upper()}"
                         + (f" ({path})" if not is_stdout(path) else "")
                         + ("; use `bams3 query DATASET -o FILE` for other formats" if verb == "to-bam" else ""))
    if name == "cram":
        ref = options.get("reference") or reference
        if not ref:
            raise UsageError("CRAM output needs the reference: -T/--reference ref.fa")
        if not os.path.isfile(ref):
            raise UsageError(f"the reference {ref} does not exist")
        if _first_byte(ref) != b">":
            raise UsageError(f"the reference {ref} is not a FASTA file (it must start with '>')")
        options["reference"] = ref
    return OutputSpec(name, options)


def _first_byte(path: str) -> bytes:
    """The first byte of a file, or of its content if gzipped (a bgzipped FASTA)."""
    import gzip
    import zlib

    try:
        with open(path, "rb") as f:
            if f.read(2) != b"\x1f\x8b":
                f.seek(0)
                return f.read(1)
        with gzip.open(path, "rb") as f:
            return f.read(1)
    except (OSError, EOFError, zlib.error):
        return b""


def index_suffix(spec: OutputSpec) -> str:
    """The index samtools view --write-index makes for this output: .csi for BAM and bgzipped
    SAM, .crai for CRAM; UsageError for anything else."""
    if spec.format == "bam" or (spec.format == "sam" and spec.options.get("bgzf")):
        return ".csi"
    if spec.format == "cram":
        return ".crai"
    raise UsageError(f"--write-index needs BAM, CRAM or bgzipped SAM output, not {spec.label}")


def writes_in_place(path: str) -> bool:
    """An existing path that is written in place: a link, FIFO, device or socket, or anything
    under /dev or /proc (``/dev/stdout``, ``/dev/fd/N``)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(mode):
        raise UsageError(f"{path} is a directory; give a file name")
    real = os.path.abspath(path)
    return not stat.S_ISREG(mode) or real.startswith(("/dev/", "/proc/"))


class Output:
    """A binary output stream for a path (see the module docstring); use as a context manager.
    ``commit()`` is called on success by ``__exit__``; ``companion(suffix)`` gives the temporary
    name of a file published beside it (an index), renamed after the main file."""

    def __init__(self, path: str | None):
        self.path = path
        self.tmp: str | None = None
        self.file = None
        self._companions: list[tuple[str, str]] = []

    @property
    def in_place(self) -> bool:
        return self.tmp is None

    @property
    def name(self) -> str:
        """What is being written: the temporary file, the path itself, or /dev/stdout."""
        return self.tmp or ("/dev/stdout" if is_stdout(self.path) else self.path)

    def __enter__(self):
        if is_stdout(self.path):
            if sys.stdout is None:  # the program was started with it closed (`>&-`)
                raise Bams3Error("cannot write to standard output: it is closed (give -o FILE)")
            sys.stdout.flush()
            self.file = sys.stdout.buffer
            return self.file
        path = self.path
        if writes_in_place(path):
            self.file = open(path, "wb")  # noqa: SIM115 - closed in __exit__
            return self.file
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise UsageError(f"cannot write {path}: directory {directory} does not exist")
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        self.tmp = os.path.join(directory, f".{os.path.basename(path)}.bams3-{secrets.token_hex(4)}.tmp")
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.fchmod(fd, mode)
        self.file = os.fdopen(fd, "wb")
        return self.file

    def companion(self, suffix: str) -> str:
        """Where to write a file that goes beside the output (``out.bam`` + ``.csi``): always a
        temporary name, published after the main file (renamed over a regular file, copied into
        a link, FIFO or device, which is never replaced)."""
        if is_stdout(self.path) or self.tmp is None:
            raise UsageError(f"an index needs a regular output file, not {self.path or 'standard output'}")
        final = self.path + suffix
        writes_in_place(final)  # a directory is refused before any work
        name = f"{self.tmp}{suffix}"
        self._companions.append((name, final))
        return name

    def __exit__(self, kind, exc, tb):
        if self.file is None:
            return False
        if is_stdout(self.path):
            if kind is None:
                self.file.flush()
            return False
        try:
            if kind is None:
                self.file.flush()
            self.file.close()
        except BaseException:
            if kind is None:
                self._discard()
                raise
        if kind is not None:
            self._discard()
            return False
        if self.tmp is not None:
            try:
                self._publish()
            finally:
                self._discard()
        return False

    def _publish(self) -> None:
        """Rename the data over the path, then publish each companion. If a companion cannot be
        published, the old file is put back (or the new one removed): never new data beside an
        old index."""
        backup = None
        if self._companions and os.path.isfile(self.path) and not os.path.islink(self.path):
            backup = f"{self.tmp}.old"
            try:
                os.link(self.path, backup)
            except OSError:
                backup = None
        try:
            _rename(self.tmp, self.path)
            try:
                for tmp, final in self._companions:
                    if writes_in_place(final):
                        with open(tmp, "rb") as src, open(final, "wb") as dst:
                            shutil.copyfileobj(src, dst, 1 << 20)
                    else:
                        _rename(tmp, final)
            except BaseException:
                if backup:
                    os.replace(backup, self.path)
                    backup = None
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.path)
                raise
        finally:
            if backup:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(backup)

    def _discard(self) -> None:
        for name in [self.tmp] + [t for t, _ in self._companions]:
            if name:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name)


def _rename(tmp: str, final: str) -> None:
    """os.replace, with an error that names the path the user gave, not the temporary one."""
    try:
        os.replace(tmp, final)
    except OSError as e:
        raise Bams3Error(f"cannot write {final}: {e.strerror or e}") from None


def _umask() -> int:
    """The process's umask, read without changing it (os.umask would, for every thread)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


@contextlib.contextmanager
def text_output(path: str | None) -> Iterator:
    """A text stream for tables and reports, with the same rules as :class:`Output`."""
    import io

    with Output(path) as f:
        if f is sys.stdout.buffer:
            yield sys.stdout
            sys.stdout.flush()
        else:
            wrapper = io.TextIOWrapper(f, encoding="utf-8", newline="")
            try:
                yield wrapper
                wrapper.flush()
            finally:
                wrapper.detach()
