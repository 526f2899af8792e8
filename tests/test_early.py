"""``bams3 convert`` inflates a local BAM's first BGZF blocks on a thread while it loads the
converter (bams3/early.py): the reader takes them and reads on from where the thread stopped.
The dataset, the errors and the progress are those of a reading from the start; a file that is
not the one the reader opens, or not a BAM, leaves them unused."""

from __future__ import annotations

import io
import os
import shutil
import sys
import threading

import pytest

import bams3
from bams3 import bgzf, early
from bams3.cli import main
from bams3.errors import InputError
from bams3.inputs import open_input

from . import oracle, synth


@pytest.fixture(scope="module")
def bam(tmp_path_factory) -> str:
    return synth.write_bam(str(tmp_path_factory.mktemp("early") / "in.bam"), n=6000)


def _objects(ds: str) -> list[bytes]:
    """A dataset's chunk objects, in order (their run's directory name aside)."""
    out = []
    for root, _, files in sorted(os.walk(os.path.join(ds, "data"))):
        out += [open(os.path.join(root, f), "rb").read() for f in sorted(files) if f != "_run"]
    return out


def _stream(path: str) -> bytes:
    with open(path, "rb") as f:
        return b"".join(bgzf.decompress_stream(f.read))


def test_the_program_takes_the_blocks_it_inflated_while_loading(bam, tmp_path, capfd, monkeypatch):
    """The CLI's conversion claims the early blocks (some, within the budget) and writes the
    dataset a library conversion writes, chunk for chunk, its records samtools' records; the
    switch interval is put back."""
    monkeypatch.setattr(early, "BUDGET", 64 << 10)
    taken = []
    take = early.EarlyRead.take

    def spy(self, read, skip):
        taken.append(self)
        return take(self, read, skip)

    monkeypatch.setattr(early.EarlyRead, "take", spy)
    switch = sys.getswitchinterval()
    code = main(["convert", bam, str(tmp_path / "cli.bams3"), "--chunk-size", "16K", "--json"])
    assert code == 0, capfd.readouterr().err
    assert len(taken) == 1 and taken[0].consumed > 0 and early._pending is None
    assert not taken[0]._thread.is_alive()
    assert sys.getswitchinterval() == switch
    bams3.convert(bam, str(tmp_path / "lib.bams3"), chunk_size="16K")
    assert _objects(str(tmp_path / "cli.bams3")) == _objects(str(tmp_path / "lib.bams3"))
    assert len(_objects(str(tmp_path / "cli.bams3"))) > 10
    bams3.open(str(tmp_path / "cli.bams3")).to_bam(str(tmp_path / "back.bam"))
    assert oracle.raw_bam(str(tmp_path / "back.bam"))[1] == oracle.raw_bam(bam)[1]


@pytest.mark.parametrize("budget", [0, 1, 100_000, 1 << 30])
def test_the_blocks_read_early_are_the_stream_read_from_the_start(bam, budget):
    """Whatever the thread had inflated when it was stopped (nothing, some, all), the reader's
    stream is the file's, and its position (the progress) ends at the file's size."""
    e = early.EarlyRead(bam, budget=budget)
    e._thread.join()
    held = sum(sum(map(len, p)) for p in e.pieces)
    assert held >= min(budget, len(_stream(bam)))
    if e.pieces:  # it stopped at the read that reached the budget
        assert held - sum(map(len, e.pieces[-1])) <= budget
    f = open(bam, "rb")
    moved = []

    def skip(n):
        f.seek(n)
        moved.append(n)

    stream = b"".join(b"".join(p) for p in e.take(f.read, skip))
    assert stream == _stream(bam)
    assert moved == [e.consumed] and f.tell() == os.path.getsize(bam)
    assert e.f.closed
    f.close()


def test_a_damaged_block_read_early_fails_as_a_reading_from_the_start_does(bam, tmp_path):
    """A CRC error in a block the thread inflated: the blocks before it, then the same error,
    through the program too (one line, status 1, nothing written)."""
    data = bytearray(open(bam, "rb").read())
    o = 0
    for _ in range(5):  # the sixth block's CRC
        o += (data[o + 16] | data[o + 17] << 8) + 1
    size = (data[o + 16] | data[o + 17] << 8) + 1
    data[o + size - 8] ^= 0xFF
    bad = tmp_path / "bad.bam"
    bad.write_bytes(bytes(data))
    with pytest.raises(InputError) as plain:
        b"".join(bgzf.decompress_stream(io.BytesIO(bytes(data)).read))
    e = early.EarlyRead(str(bad))
    e._thread.join()
    assert isinstance(e.error, InputError)
    f = open(bad, "rb")
    got = []
    with pytest.raises(InputError) as late:
        for piece in e.take(f.read, f.seek):
            got.append(b"".join(piece))
    f.close()
    assert str(late.value) == str(plain.value) and "CRC" in str(late.value)
    assert _stream(bam).startswith(b"".join(got))
    r = _run(["convert", str(bad), str(tmp_path / "o.bams3")])
    assert r[0] == 1 and r[2].count("\n") == 1 and "CRC mismatch" in r[2], r
    assert not (tmp_path / "o.bams3").exists()


def _run(args):
    """The program in a child process: status, stdout, stderr."""
    import subprocess

    p = subprocess.run([sys.executable, "-m", "bams3.cli", *args], capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def test_another_file_is_not_claimed(bam, tmp_path):
    """The reader opened another file (or the file changed since): the early blocks are
    dropped, the thread stopped, and the reader reads its own file from the start."""
    other = tmp_path / "other.bam"
    shutil.copy(bam, other)
    early.start(bam)
    try:
        pending = early._pending
        assert pending is not None
        with open(other, "rb") as f:
            assert early.claim(str(other), f) is None
        assert early._pending is None and not pending._thread.is_alive() and pending.f.closed
        inp = open_input(str(other))
        assert b"".join(b.tobytes() for b in inp.batches) == oracle.raw_bam(bam)[1]
        assert inp.progress() == os.path.getsize(other)
    finally:
        early.drop()


def test_an_early_read_of_a_bgzipped_sam_is_left_unused(tmp_path, capfd, monkeypatch):
    """A bgzipped SAM starts as BGZF too: the thread inflates it, the reader stops it without
    taking its blocks, htslib reads the file, the records are samtools'."""
    calls = []
    for name in ("take", "stop"):
        real = getattr(early.EarlyRead, name)
        monkeypatch.setattr(early.EarlyRead, name,
                            lambda self, *a, _real=real, _name=name: calls.append(_name) or _real(self, *a))
    bam = synth.write_bam(str(tmp_path / "s.bam"), n=300)
    sam = oracle.samtools("view", "-h", "--no-PG", bam)
    gz = tmp_path / "s.sam.gz"
    with open(gz, "wb") as f:
        w = bgzf.BgzfWriter(f, threads=1)
        w.write(sam.encode())
        w.close()
    assert main(["convert", str(gz), str(tmp_path / "o.bams3")]) == 0, capfd.readouterr().err
    assert early._pending is None
    bams3.open(str(tmp_path / "o.bams3")).to_bam(str(tmp_path / "back.bam"))
    assert oracle.records(str(tmp_path / "back.bam")) == oracle.records(bam)
    assert calls == ["stop"]
    assert not [t for t in threading.enumerate() if t.name == "bams3-early-inflate"]


def test_only_a_local_bgzf_file_is_read_early(tmp_path):
    """Standard input, a missing path, a directory, a plain (not BGZF) file: no thread."""
    plain = tmp_path / "x.sam"
    plain.write_text("@HD\tVN:1.6\n")
    for name in ("-", "/dev/stdin", str(tmp_path / "missing.bam"), str(tmp_path), str(plain)):
        early.start(name)
        assert early._pending is None, name


def test_no_thread_to_be_had_leaves_the_reading_to_the_reader(bam, tmp_path, monkeypatch, capfd):
    """A process that cannot start another thread converts as it would without the early read,
    its file closed and the switch interval as it was."""
    opened = []
    real_open = open

    def tracking_open(*a, **k):
        f = real_open(*a, **k)
        opened.append(f)
        return f

    def no_thread(self):
        raise RuntimeError("can't start new thread")

    switch = sys.getswitchinterval()
    monkeypatch.setattr(early, "open", tracking_open, raising=False)
    monkeypatch.setattr(threading.Thread, "start", no_thread)
    early.start(bam)
    assert early._pending is None and opened and all(f.closed for f in opened)
    assert sys.getswitchinterval() == switch
    monkeypatch.undo()
    assert main(["convert", bam, str(tmp_path / "o.bams3")]) == 0, capfd.readouterr().err
    bams3.open(str(tmp_path / "o.bams3")).to_bam(str(tmp_path / "back.bam"))
    assert oracle.raw_bam(str(tmp_path / "back.bam"))[1] == oracle.raw_bam(bam)[1]
