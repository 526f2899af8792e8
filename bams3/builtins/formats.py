"""bams3 output formats: SAM (htslib-formatted, as samtools), BAM (BGZF) and JSON lines."""

import json
import os
import select
import subprocess

from bams3.plugin_api import (
    Bams3Error,
    BgzfWriter,
    Child,
    HtslibWriter,
    OutputFormat,
    UsageError,
    hookimpl,
    sam_formatter,
)


class _Fd:
    """Lends pysam a file descriptor (pysam writes through its own duplicate)."""

    def __init__(self, fd: int):
        self._fd = fd

    def fileno(self) -> int:
        return self._fd


def _reader_gone(fd: int) -> bool:
    """True when ``fd`` is a pipe whose reading end was closed."""
    p = select.poll()
    p.register(fd, select.POLLOUT)
    return any(ev & select.POLLERR for _, ev in p.poll(0))


def _sam_emit(with_header: bool):
    def emit(af, out):
        import pysam

        try:
            fd = os.dup(out.fileno())
        except (AttributeError, OSError, ValueError):
            fd = None
        if fd is None:  # a file object without a descriptor (BytesIO, ...): htslib formats each record
            if with_header:
                out.write(str(af.header).encode())
            lines = []
            for rec in af:
                lines.append(rec.to_string())
                if len(lines) >= 4096:
                    out.write(("\n".join(lines) + "\n").encode())
                    lines.clear()
            if lines:
                out.write(("\n".join(lines) + "\n").encode())
            return
        try:
            with pysam.AlignmentFile(_Fd(fd), "w", template=af, add_sam_header=with_header) as sam:
                for rec in af:
                    sam.write(rec)
        except OSError:
            if _reader_gone(fd):  # bams3 query ... | head
                raise BrokenPipeError() from None
            raise
        finally:
            os.close(fd)

    return emit


# samtools view in a child process: our raw records go into its stdin as an
# uncompressed BAM stream, and it formats SAM straight onto our output descriptor,
# in C, on the other core, byte for byte as `samtools view` does.
_SAMTOOLS_CHILD = """
import signal, sys, pysam
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops this child
try:
    pysam.samtools.view(*sys.argv[1:], catch_stdout=False)
except pysam.SamtoolsError as exc:
    from bams3.plugin_api import samtools_message
    sys.stderr.write(samtools_message(exc))
    sys.exit(1)
"""


class SamtoolsWriter:
    """``samtools view`` in a child process formats SAM, bgzipped SAM or CRAM from our raw records
    onto ``fd`` (the header as given: any @PG line is bams3's, added by the caller)."""

    def __init__(self, fd: int, header, with_header: bool, fmt: str = "sam", reference: str | None = None,
                 htslib_options: str = ""):
        self._fd = fd
        self._label = "SAM" if fmt == "sam" else fmt.upper()
        spec = fmt + (f",{htslib_options}" if htslib_options else "")
        args = ["--no-PG", *(["-h"] if with_header else []), "-O", spec,
                *(["-T", reference] if reference else []), "-"]
        self._proc = Child(["-c", _SAMTOOLS_CHILD, *args], stdin=subprocess.PIPE, stdout=fd,
                           stderr=subprocess.PIPE, bufsize=1 << 20)
        try:
            self._raw(header.to_bam_bytes())
        except BaseException:  # (a Ctrl-C here: no caller holds this writer to abort it)
            self.abort()
            raise

    def _raw(self, data) -> None:
        try:
            self._proc.stdin.write(data)
        except BrokenPipeError:
            self._finish()
            raise

    def write(self, batch) -> None:
        self._raw(memoryview(batch.data)[batch.offsets[0] : batch.offsets[-1]])

    def _finish(self) -> None:
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            pass
        err = self._proc.stderr.read().decode(errors="replace").strip()
        self._proc.stderr.close()
        if self._proc.wait() != 0:
            if _reader_gone(self._fd):  # bams3 query ... | head
                raise BrokenPipeError()
            raise Bams3Error(f"writing {self._label} failed: {err.splitlines()[-1] if err else 'samtools view died'}")

    def close(self) -> None:
        try:
            self._finish()
        except KeyboardInterrupt:  # Ctrl-C while the child finishes: stop it, and its directory goes
            self.abort()
            raise

    def abort(self) -> None:
        self._proc.kill()
        self._proc.wait()
        for f in (self._proc.stdin, self._proc.stderr):
            try:
                f.close()
            except OSError:
                pass


class SamWriter:
    """SAM written in this process by htslib itself (its sam_hdr_write for the header, with
    ``-h``; its sam_format1 for each record), straight onto ``fd``: no child process, no pipe.
    From the first record htslib's reader would change or refuse (a CIGAR in a CG tag, a name
    without its NUL, ...) samtools view in a child (:class:`SamtoolsWriter`) writes the rest, so
    every line is the one samtools writes."""

    def __init__(self, fd: int, header, formatter, with_header: bool):
        self._fd, self._header, self._fmt = fd, header, formatter
        self._child: SamtoolsWriter | None = None
        if with_header and not formatter.write_header(fd):
            formatter.close()
            if _reader_gone(fd):  # bams3 query -h ... | head
                raise BrokenPipeError()
            raise Bams3Error("writing SAM failed: htslib could not write the header")

    def write(self, batch) -> None:
        if self._child is not None:
            self._child.write(batch)
            return
        end = self._fmt.write(batch, self._fd)
        if end < len(batch):
            self._child = SamtoolsWriter(self._fd, self._header, False, "sam")
            self._child._raw(memoryview(batch.data)[batch.offsets[end] : batch.offsets[-1]])

    def close(self) -> None:
        self._fmt.close()
        if self._child is not None:
            self._child.close()

    def abort(self) -> None:
        self._fmt.close()
        if self._child is not None:
            self._child.abort()


def _fd(out) -> int | None:
    try:
        return out.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def open_sam(out, header, options):
    """SAM (``bgzf``: BGZF-compressed, as ``samtools view -O sam.gz``)."""
    with_header = bool(options.get("header"))
    fd = _fd(out)
    if fd is not None:
        out.flush()
        if not options.get("bgzf") and not _htslib_options(options):
            formatter = sam_formatter(header)
            if formatter is not None:
                return SamWriter(fd, header, formatter, with_header)
        return SamtoolsWriter(fd, header, with_header, "sam.gz" if options.get("bgzf") else "sam",
                              htslib_options=_htslib_options(options))
    if options.get("bgzf"):
        raise Bams3Error("bgzipped SAM is written only to a file or a pipe")
    return HtslibWriter(out, header, _sam_emit(with_header))


def _htslib_options(options) -> str:
    """Options for htslib's -O (``version=3.1``, ``archive``, ...), without the ones bams3 handles."""
    return ",".join(o for o in (options.get("htslib") or "").split(",")
                    if o and o.split("=")[0] not in ("level", "reference"))


def open_cram(out, header, options):
    """CRAM against ``options["reference"]``, written by htslib (``samtools view -C``); options such
    as ``version=3.1`` or ``archive`` are passed on."""
    fd = _fd(out)
    if fd is None:
        raise Bams3Error("CRAM is written only to a file or a pipe")
    if not options.get("reference"):
        raise UsageError("CRAM output needs the reference: -T/--reference ref.fa")
    out.flush()
    level = options.get("level")
    extra = _htslib_options(options) + (f",level={level}" if level is not None else "")
    return SamtoolsWriter(fd, header, True, "cram", reference=options["reference"], htslib_options=extra.strip(","))


_JSON_NUMBERS = ("flag", "ref_pos", "next_ref_pos", "map_quality", "length")


def _json_record(rec) -> dict:
    """pysam's to_dict with its numeric fields as JSON numbers (it gives every field as text)."""
    d = rec.to_dict()
    for k in _JSON_NUMBERS:
        d[k] = int(d[k])
    return d


def _json_emit(af, out):
    dumps = json.dumps
    buf = []
    for rec in af:
        buf.append(dumps(_json_record(rec)))
        if len(buf) >= 4096:
            out.write(("\n".join(buf) + "\n").encode())
            buf.clear()
    if buf:
        out.write(("\n".join(buf) + "\n").encode())


def open_json(out, header, options):
    if options.get("header"):
        out.write((json.dumps({"header": header.text, "references": header.references}) + "\n").encode())
    return HtslibWriter(out, header, _json_emit)


class BamWriter:
    def __init__(self, out, header, options):
        self._w = BgzfWriter(out, level=int(options.get("level", 6)), threads=int(options.get("threads", 2)))
        self._w.write(header.to_bam_bytes())

    def write(self, batch):
        self._w.write(memoryview(batch.data)[batch.offsets[0] : batch.offsets[-1]])

    def close(self):
        self._w.close()

    def abort(self):
        self._w.abort()


@hookimpl
def bams3_register_output_formats(register):
    register(OutputFormat(name="sam", extensions=(".sam",), open=open_sam,
                                description="SAM text, formatted by htslib as samtools view (sam.gz: bgzipped)"))
    register(OutputFormat(name="bam", extensions=(".bam",), open=BamWriter,
                                description="BAM (BGZF-compressed, threaded)"))
    register(OutputFormat(name="cram", extensions=(".cram",), open=open_cram,
                                description="CRAM against a reference (-T), written by htslib"))
    register(OutputFormat(name="json", extensions=(".json", ".jsonl", ".ndjson"), open=open_json,
                                description="JSON lines, one object per record (pysam's to_dict; numbers as numbers)"))
    register(OutputFormat(name="parquet", extensions=(".parquet", ".pq"), open=_frames("open_parquet"),
                          description="Apache Parquet, the typed SAM schema of docs/frames.md (zstd)"))
    register(OutputFormat(name="arrow", extensions=(".arrow", ".arrows", ".feather"), open=_frames("open_arrow"),
                          description="Arrow IPC file, the typed SAM schema of docs/frames.md"))


def _frames(name: str):
    """A writer of bams3.frames, imported when used (pyarrow loads only then)."""

    def open_(out, header, options):
        from .. import frames

        return getattr(frames, name)(out, header, options)

    return open_
