"""SAM written in this process by htslib's own sam_format1 (``sam`` in ``bams3/_segments.c``, the
writer in ``bams3/builtins/formats.py``): the lines samtools view writes for the same records,
no child process for them; from the first record htslib's reader would change, samtools view in
a child writes the rest; without a usable htslib in this process, samtools view writes it all."""

from __future__ import annotations

import subprocess
import sys

import pysam
import pytest

import bams3
import bams3._pysam
from bams3.builtins import formats

from . import filterbam
from .conftest import sorted_corpus
from .oracle import view
from .synth import write_cg_bam


@pytest.fixture(scope="module")
def filtered(tmp_path_factory):
    return filterbam.dataset(tmp_path_factory.mktemp("samfmt"))


@pytest.fixture
def children(monkeypatch):
    """How many samtools view children were started, and for which records."""
    started = []
    real = formats.SamtoolsWriter

    class Spy(real):
        def __init__(self, *args, **kwargs):
            started.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(formats, "SamtoolsWriter", Spy)
    return started


def samtools_view(bam: str, *regions: str) -> bytes:
    return pysam.samtools.view(bam, *regions).encode()


def written(ds, path, *regions) -> bytes:
    with open(path, "wb") as out:
        ds.write(out, list(regions) or None)
    with open(path, "rb") as f:
        return f.read()


def test_this_process_formats_sam_with_htslib():
    """Here the in-process path is on (pysam's htslib loads and formats the probe record as
    samtools does), so the tests below exercise it."""
    assert bams3._pysam._htslib() is not None


def test_sam_lines_are_samtools_lines_without_a_child(filtered, tmp_path, children):
    bam, url = filtered
    ds = bams3.open(url)
    assert written(ds, tmp_path / "all.sam") == samtools_view(bam)
    for region in ("chr1:10001-40000", "chr2", "*"):
        assert written(ds, tmp_path / "r.sam", region) == samtools_view(bam, region)
    assert children == []


def test_records_htslib_would_change_are_written_by_samtools(tmp_path, children):
    """A CIGAR kept in a CG tag: htslib moves it into place as it reads the record. The lines
    before it are formatted here; from it on, samtools view writes them; the file is samtools'."""
    bam = write_cg_bam(str(tmp_path / "cg.bam"))
    want = samtools_view(bam)
    assert b"\t4M2I4M\t" in want.splitlines()[17] and b"CG:" not in want  # htslib moved it
    dest = str(tmp_path / "cg.bams3")
    bams3.convert(bam, dest)
    assert written(bams3.open(dest), tmp_path / "cg.sam") == want
    assert len(children) == 1  # one child, from record 17 on


def test_without_htslib_here_samtools_writes_everything(filtered, tmp_path, monkeypatch, children):
    bam, url = filtered
    monkeypatch.setattr(bams3._pysam, "_HTSLIB", False)
    assert written(bams3.open(url), tmp_path / "r.sam", "chr1:10001-40000") == samtools_view(bam, "chr1:10001-40000")
    assert len(children) == 1


def test_a_header_is_written_here_as_samtools_writes_it(filtered, tmp_path, children):
    """-h: htslib's own sam_hdr_read and sam_hdr_write, in this process: the header samtools view
    writes, byte for byte, then the records."""
    bam, url = filtered
    with open(tmp_path / "h.sam", "wb") as out:
        bams3.open(url).write(out, ["chr2"], options={"header": True})
    assert (tmp_path / "h.sam").read_bytes() == pysam.samtools.view("-h", "--no-PG", bam, "chr2").encode()
    assert children == []


@pytest.mark.parametrize("text, refs", [
    ("", (("a", 100), ("b", 200))),  # no text: htslib writes @SQ lines from the references
    ("@HD\tVN:1.6\n@SQ\tSN:a\tLN:100\n", (("a", 100), ("b", 7))),  # one @SQ line missing
    ("@HD\tVN:1.6\n@CO\tno newline at the end", (("x", 5),)),
    ("", ()),
    ("@HD\tVN:1.6\tSO:coordinate\n@RG\tID:x\n@CO\tb\xc3\xa4d\n", (("chr1", 1000), ("chr 2", 99))),
])
def test_headers_samtools_rewrites_come_out_as_samtools_writes_them(text, refs):
    """The header comes from htslib reading the BAM header bytes a samtools child would have
    read, so whatever samtools view adds or repairs, it adds or repairs here too."""
    import os

    from bams3.records import Header

    header = Header(text, refs)
    fmt = bams3._pysam.sam_formatter(header)
    r, w = os.pipe()
    try:
        assert fmt.write_header(w)
        os.close(w)
        w = -1
        got = b"".join(iter(lambda: os.read(r, 1 << 16), b""))
    finally:
        fmt.close()
        os.close(r)
        if w >= 0:
            os.close(w)
    want = subprocess.run([sys.executable, "-c", "import pysam; pysam.samtools.view('--no-PG', '-h', '-', "
                           "catch_stdout=False)"], input=header.to_bam_bytes(), capture_output=True, check=True).stdout
    assert got == want


def test_ctrl_c_stops_a_write_to_a_reader_that_never_reads(filtered, tmp_path):
    """SAM goes out with the GIL released; a write blocked on a full pipe that nobody ever reads
    still answers one Ctrl-C at once (a write cut short runs Python's handlers), leaving one
    line on stderr."""
    import os
    import signal
    import time

    _, url = filtered
    r, w = os.pipe()
    with open(tmp_path / "err", "wb") as err:
        p = subprocess.Popen(["bams3", "query", url], stdout=w, stderr=err)
    os.close(w)
    try:
        begin = time.monotonic()
        while time.monotonic() < begin + 60:  # blocked: the pipe (64 KiB) is full and nobody reads it
            with open(f"/proc/{p.pid}/wchan") as f:
                wchan = f.read().strip()  # (anon_)pipe_write; "0" where the kernel hides it
            if "pipe_write" in wchan or (wchan == "0" and time.monotonic() > begin + 5):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("bams3 never blocked writing")
        p.send_signal(signal.SIGINT)
        code = p.wait(timeout=20)  # the pipe is still open and unread
    finally:
        p.kill()
        os.close(r)
    err = (tmp_path / "err").read_text()
    assert code == 130, err
    assert len(err.strip().splitlines()) == 1, err


def test_a_corrupt_record_gets_one_message(tmp_path, children):
    """Tags that do not walk to the record's end are left to samtools view, which refuses them:
    one message, as before (htslib in this process says nothing)."""
    import numpy as np

    from bams3.records import Header, RecordBatch

    rec = bams3._pysam._probe_record()[:-3]  # the last tag cut short
    rec = (len(rec) - 4).to_bytes(4, "little") + rec[4:]
    fmt = bams3._pysam.sam_formatter(Header("", (("a", 10), ("b", 10), ("c", 10))))
    batch = RecordBatch(np.frombuffer(rec, np.uint8), np.array([0, len(rec)], np.int64))
    with open(tmp_path / "out", "wb") as out:
        try:
            assert fmt.write(batch, out.fileno()) == 0  # not formatted here
        finally:
            fmt.close()
    assert (tmp_path / "out").read_bytes() == b""


_CORPUS = [p for p, s in sorted_corpus().items() if s is not None]


@pytest.mark.parametrize("src", _CORPUS, ids=lambda p: p.name)
def test_htslibs_corpus_comes_out_as_samtools_writes_it(src, tmp_path):
    """Every sortable file of HTSlib's test corpus: SAM with and without its header, written in
    this process (a samtools child only from a record htslib's reader would change), equals
    samtools view's output of the same sorted BAM, byte for byte."""
    bam = str(sorted_corpus()[src])
    dest = str(tmp_path / "ds.bams3")
    bams3.convert(bam, dest, chunk_size=1024)
    ds = bams3.open(dest)
    for options, flags in (({}, ()), ({"header": True}, ("-h",))):
        with open(tmp_path / "out.sam", "wb") as out:
            ds.write(out, options=options)
        assert (tmp_path / "out.sam").read_bytes() == view(bam, flags=flags).encode(errors="surrogateescape")
