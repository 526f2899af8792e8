"""Output paths and formats as samtools writes them: '-' is stdout; links, FIFOs and devices are
written in place, never replaced; a regular file is replaced only when the new one is complete;
the format comes from -O/-b/-C/-u or the extension, and anything else is refused in one line;
--write-index; @PG lines as samtools adds them; JSON numbers as numbers."""

from __future__ import annotations

import gzip
import json
import os
import pathlib
import signal
import stat
import subprocess
import threading
import time

import pysam
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bams3.records import Header

from .oracle import raw_bam, view
from .test_cli import BAMS3, EXAMPLE, assert_one_line_error, run

REGION = "chr1:10,000-30,000"


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> pathlib.Path:
    dest = tmp_path_factory.mktemp("outputs") / "ex.bams3"
    run("convert", EXAMPLE, dest, "--chunk-size", "256K", check=True)
    return dest


@pytest.fixture(scope="module")
def ref(tmp_path_factory) -> str:
    """A reference for the example's references (random bases: CRAM stores differences)."""
    import random

    rng = random.Random(1)
    path = tmp_path_factory.mktemp("ref") / "ref.fa"
    with open(path, "w") as f:
        for name, length in raw_bam(EXAMPLE)[0].references:
            f.write(f">{name}\n")
            seq = "".join(rng.choice("ACGT") for _ in range(length))
            f.write("\n".join(seq[i : i + 60] for i in range(0, len(seq), 60)) + "\n")
    pysam.faidx(str(path))
    return str(path)


def _records(path: str, ref: str | None = None) -> str:
    return pysam.samtools.view("--no-PG", *(["-T", ref] if ref else []), str(path), catch_stdout=True)


# ------------------------------------------------------------------ paths


def test_dash_is_standard_output(ds):
    p = run("query", ds, REGION, "-o", "-", check=True)
    assert p.stdout.decode() == view(EXAMPLE, REGION)
    p = run("to-bam", ds, "-", "--no-PG", check=True)
    assert p.stdout[:4] == b"\x1f\x8b\x08\x04"
    assert not pathlib.Path("-").exists()


@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_a_stdout_that_cannot_take_it_all_is_one_line_and_status_1(ds, tmp_path, unbuffered):
    """stdout on a full device, or appending to a file at its size limit (`ulimit -f`): one line
    and status 1, whatever the verb and whether Python's stdout is unbuffered (PYTHONUNBUFFERED,
    under which `stats` used to end 0 with its text cut) or buffered (which added a second
    message and status 120); the quick path (BAMS3_QUICK) and the full command alike."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    env = {**os.environ, "PYTHONUNBUFFERED": unbuffered}
    for quick in ("1", "0"):
        for args in (["stats", ds], ["stats", ds, "--flagstat"], ["query", ds, REGION],
                     ["query", ds, REGION, "-O", "json"]):
            out = tmp_path / "out"
            out.write_bytes(b"x" * 1000)
            with open(out, "ab") as f:
                p = subprocess.run([BAMS3, *map(str, args)], stdout=f, stderr=subprocess.PIPE, preexec_fn=limit,
                                   env={**env, "BAMS3_QUICK": quick})
            assert_one_line_error(p, 1, "File too large")
            assert out.stat().st_size == 1024
            with open("/dev/full", "wb") as f:
                p = subprocess.run([BAMS3, *map(str, args)], stdout=f, stderr=subprocess.PIPE,
                                   env={**env, "BAMS3_QUICK": quick})
            assert_one_line_error(p, 1, "No space left on device")


def test_a_closed_stdout_is_never_a_traceback(ds):
    """Started with stdout closed (`>&-`): at most one line on stderr, never a traceback from
    the last flush; a query says stdout is closed (it said "AttributeError ... please report it")."""
    for quick in ("1", "0"):
        for args in (["stats", ds], ["query", ds, REGION, "-c"], ["query", ds, REGION]):
            p = subprocess.run([BAMS3, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, "BAMS3_QUICK": quick}, pass_fds=(), close_fds=True,
                               preexec_fn=lambda: os.close(1))
            err = p.stderr.decode()
            assert "Traceback" not in err and err.count("\n") <= 1, (args, err)
            if args[0] == "query":  # records or a count written nowhere: said, as samtools view says it
                assert_one_line_error(p, 1, "standard output", "closed")


def test_a_link_is_written_through_never_replaced(ds, tmp_path):
    target = tmp_path / "target.bam"
    link = tmp_path / "link.bam"
    link.symlink_to(target)
    run("to-bam", ds, link, "--no-PG", check=True)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert raw_bam(str(target)) == raw_bam(EXAMPLE)
    sam_link = tmp_path / "out.sam"
    sam_target = tmp_path / "real.sam"
    sam_target.write_text("old\n")
    sam_link.symlink_to(sam_target)
    run("query", ds, REGION, "-o", sam_link, check=True)
    assert sam_link.is_symlink() and sam_target.read_text() == view(EXAMPLE, REGION)


def test_a_fifo_is_written_in_place(ds, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = {}

    def reader():
        got["data"] = fifo.read_bytes()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    run("to-bam", ds, fifo, "--no-PG", check=True)
    t.join(30)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    out = tmp_path / "from-fifo.bam"
    out.write_bytes(got["data"])
    assert raw_bam(str(out)) == raw_bam(EXAMPLE)
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    run("query", ds, REGION, "-o", fifo, check=True)  # no extension on a FIFO: SAM, as samtools
    t.join(30)
    assert got["data"].decode() == view(EXAMPLE, REGION)


def test_a_device_is_written_in_place(ds, tmp_path):
    dev = tmp_path / "null"
    os.mknod(dev, 0o20666, os.makedev(1, 3))  # a /dev/null of our own
    run("to-bam", ds, dev, check=True)
    run("query", ds, REGION, "-o", dev, "-b", check=True)
    st_ = os.lstat(dev)
    assert stat.S_ISCHR(st_.st_mode) and os.major(st_.st_rdev) == 1 and os.minor(st_.st_rdev) == 3


def test_dev_stdout_is_written_through(ds):
    before = os.lstat("/dev/stdout")
    p = subprocess.run([BAMS3, "to-bam", str(ds), "/dev/stdout", "--no-PG"], capture_output=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout[:4] == b"\x1f\x8b\x08\x04" and len(p.stdout) > 100_000
    p = subprocess.run([BAMS3, "query", str(ds), REGION, "-o", "/dev/stdout"], capture_output=True)
    assert p.stdout.decode() == view(EXAMPLE, REGION)
    after = os.lstat("/dev/stdout")
    assert (before.st_mode, before.st_ino) == (after.st_mode, after.st_ino)


def test_a_regular_file_is_replaced_only_when_complete(ds, tmp_path):
    out = tmp_path / "out.bam"
    out.write_bytes(b"the previous file")
    os.chmod(out, 0o640)
    # a failure half-way (a chunk goes missing): the old file stays, nothing else is left behind
    broken = tmp_path / "broken.bams3"
    run("convert", EXAMPLE, broken, "--chunk-size", "256K", check=True)
    chunk = sorted(p for p in (broken / "data").rglob("0000*") if p.is_file())[1]
    chunk.unlink()
    assert_one_line_error(run("to-bam", broken, out), 1, "missing")
    assert out.read_bytes() == b"the previous file"
    assert_one_line_error(run("query", broken, "-o", out), 1, "missing")
    assert out.read_bytes() == b"the previous file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.bams3", "out.bam"]
    run("to-bam", ds, out, "--no-PG", check=True)
    assert raw_bam(str(out)) == raw_bam(EXAMPLE)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o640


def test_an_interrupted_write_leaves_nothing(ds, tmp_path):
    """Ctrl-C while the output is being written (into a pipe nobody reads yet... a FIFO would
    block: a slow reader instead): the previous file is intact and no temporary file remains."""
    out = tmp_path / "out.sam"
    out.write_text("previous\n")
    tmp = tmp_path.parent / f"{tmp_path.name}-tmpdir"  # where pysam in the SAM writer keeps its files
    tmp.mkdir()
    p = subprocess.Popen([BAMS3, "query", str(ds), "-o", str(out), "-@", "1"], stderr=subprocess.PIPE,
                         env={**os.environ, "TMPDIR": str(tmp)})
    deadline = time.monotonic() + 30
    while not any(n.name.endswith(".tmp") for n in tmp_path.iterdir()) and p.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=30)[1].decode()
    if p.returncode == 0:  # it finished first: then the file is whole
        assert out.read_text() == view(EXAMPLE)
    else:
        assert p.returncode == 130 and err == "bams3: interrupted\n", err
        assert out.read_text() == "previous\n"
    assert sorted(n.name for n in tmp_path.iterdir()) == ["out.sam"]
    assert list(tmp.iterdir()) == []


def test_a_directory_or_a_missing_directory_is_refused(ds, tmp_path):
    assert_one_line_error(run("query", ds, REGION, "-o", tmp_path), 2, "is a directory")
    assert_one_line_error(run("to-bam", ds, tmp_path / "no" / "such.bam"), 2, "does not exist")


# ------------------------------------------------------------------ formats


def test_unknown_or_unwritable_formats_are_refused(ds, tmp_path):
    assert_one_line_error(run("query", ds, REGION, "-o", tmp_path / "x.cram"), 2, "-T")
    assert_one_line_error(run("query", ds, REGION, "-C"), 2, "-T")
    assert_one_line_error(run("query", ds, REGION, "-o", tmp_path / "out.xyz"), 2, "extension")
    assert_one_line_error(run("query", ds, REGION, "-O", "vcf"), 2, "unknown output format")
    assert_one_line_error(run("query", ds, REGION, "-b", "-C"), 2, "contradict")
    assert_one_line_error(run("query", ds, REGION, "-O", "sam", "-b"), 2, "contradicts")
    assert_one_line_error(run("to-bam", ds, tmp_path / "x.sam"), 2, "to-bam writes BAM")
    assert_one_line_error(run("to-bam", ds, tmp_path / "x.cram"), 2, "to-bam writes BAM")
    assert_one_line_error(run("to-bam", ds, tmp_path / "x"), 2, "to-bam writes BAM")
    # options a format does not take, and values htslib would refuse, as samtools refuses them
    for fmt, needle in (("bam,levle=1", "unknown output option 'levle=1'"), ("json,foo", "json takes no options"),
                        ("cram,version=9.9", "CRAM versions"), ("bam,level=x", "level=0..9"),
                        ("cram,seqs_per_slice=many", "a number")):
        assert_one_line_error(run("query", ds, REGION, "-O", fmt, "-T", EXAMPLE, "-o", tmp_path / "o"), 2, needle)
    assert_one_line_error(run("query", ds, REGION, "-C", "-T", EXAMPLE, "-o", tmp_path / "o"), 2, "not a FASTA")
    assert list(tmp_path.iterdir()) == []


def test_header_only_count_is_zero_as_samtools(ds):
    assert run("query", ds, "-H", "-c", check=True).stdout == \
        pysam.samtools.view("-H", "-c", EXAMPLE, catch_stdout=True).encode() == b"0\n"


def test_each_format_holds_exactly_samtools_records(ds, tmp_path, ref):
    want = view(EXAMPLE, REGION)
    for name, extra in (("a.sam", []), ("a.bam", []), ("a.sam.gz", []), ("b.out", ["-O", "bam,level=1"]),
                        ("c.out", ["-b"]), ("d.out", ["-u"]), ("e.cram", ["-T", ref]),
                        ("f.out", ["-O", "cram,version=3.1", "-T", ref]), ("g.out", ["-O", "sam.gz"]),
                        ("h.sam", ["-h"]), ("i.sam.gz", ["-h"])):
        path = tmp_path / name
        run("query", ds, REGION, "-o", path, *extra, check=True)
        if name in ("a.sam", "a.sam.gz", "g.out"):  # headerless SAM, as samtools writes it without -h
            text = gzip.open(path).read() if name != "a.sam" else path.read_bytes()
            assert text.decode() == want, name
        elif "cram" in name + " ".join(extra):  # CRAM as samtools writes it (it orders tags, adds MD)
            theirs = tmp_path / f"theirs-{name}"
            pysam.samtools.view("-C", "-T", ref, *extra[:2 if extra[0] == "-O" else 0], "-o", str(theirs),
                                EXAMPLE, REGION, catch_stdout=False)
            assert _records(path, ref) == _records(theirs, ref), name
        else:
            assert _records(path) == want, name
    assert gzip.open(tmp_path / "a.sam.gz").read().decode() == want  # BGZF is gzip
    assert (tmp_path / "a.sam.gz").read_bytes()[12:14] == b"BC"
    assert (tmp_path / "f.out").read_bytes()[:6] == b"CRAM\x03\x01"
    for fmt in ("-b", "-u"):
        p = run("query", ds, REGION, fmt, "--no-PG", check=True)
        (tmp_path / "stdout.bam").write_bytes(p.stdout)
        assert _records(tmp_path / "stdout.bam") == want


def test_write_index_as_samtools(ds, tmp_path, ref):
    for name, suffix, extra in (("a.bam", ".csi", []), ("a.sam.gz", ".csi", []), ("a.cram", ".crai", ["-T", ref])):
        path = tmp_path / name
        run("query", ds, "chr1", "-o", path, "--write-index", *extra, check=True)
        assert (tmp_path / (name + suffix)).exists()
        n = pysam.samtools.view("-c", *(["-T", ref] if extra else []), str(path), "chr1:20,000-21,000",
                                catch_stdout=True)
        assert int(n) == int(pysam.samtools.view("-c", EXAMPLE, "chr1:20,000-21,000", catch_stdout=True))
    assert_one_line_error(run("query", ds, "chr1", "-o", tmp_path / "x.sam", "--write-index"), 2, "--write-index")
    assert_one_line_error(run("query", ds, "chr1", "-b", "--write-index"), 2, "--write-index")
    assert not (tmp_path / "x.sam").exists()


def test_an_index_path_that_is_a_link_is_written_through(ds, tmp_path):
    target = tmp_path / "elsewhere.csi"
    target.write_bytes(b"old index")
    link = tmp_path / "a.bam.csi"
    link.symlink_to(target)
    run("query", ds, "chr1", "-o", tmp_path / "a.bam", "--write-index", check=True)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes()[:4] == b"\x1f\x8b\x08\x04"  # a bgzipped CSI, written through the link
    bai_target = tmp_path / "elsewhere.bai"
    (tmp_path / "b.bam.bai").symlink_to(bai_target)
    run("to-bam", ds, tmp_path / "b.bam", "--index", check=True)
    assert (tmp_path / "b.bam.bai").is_symlink() and bai_target.read_bytes()[:4] == b"BAI\x01"
    n = pysam.samtools.view("-c", str(tmp_path / "a.bam"), "chr1:20,000-21,000", catch_stdout=True)
    assert int(n) == int(pysam.samtools.view("-c", EXAMPLE, "chr1:20,000-21,000", catch_stdout=True))


def test_an_index_that_cannot_be_written_leaves_the_old_output(ds, tmp_path):
    out = tmp_path / "a.bam"
    out.write_bytes(b"the previous file")
    (tmp_path / "a.bam.csi").mkdir()  # the index's path is a directory: refused before any work
    assert_one_line_error(run("query", ds, "chr1", "-o", out, "--write-index"), 2, "a.bam.csi")
    assert out.read_bytes() == b"the previous file"
    (tmp_path / "a.bam.csi").rmdir()
    (tmp_path / "a.bam.csi").symlink_to(tmp_path / "missing-dir" / "x.csi")  # written through: fails late
    p = run("query", ds, "chr1", "-o", out, "--write-index")
    assert_one_line_error(p, 1, "a.bam.csi")
    assert b".tmp" not in p.stderr
    assert out.read_bytes() == b"the previous file"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.bam", "a.bam.csi"]


def test_json_numbers_are_numbers(ds):
    p = run("query", ds, REGION, "-O", "json", "--show", "3", check=True)
    rows = [json.loads(line) for line in p.stdout.decode().splitlines()]
    assert len(rows) == 3
    for r in rows:
        assert all(isinstance(r[k], int) for k in ("flag", "ref_pos", "next_ref_pos", "map_quality", "length"))
    with pysam.AlignmentFile(EXAMPLE) as f:
        first = next(f.fetch("chr1", 9999, 30000))
    assert rows[0]["ref_pos"] == first.reference_start + 1 and rows[0]["flag"] == first.flag


def test_count_goes_to_the_output_file(ds, tmp_path):
    run("query", ds, REGION, "-c", "-o", tmp_path / "n.txt", check=True)
    assert (tmp_path / "n.txt").read_text() == f"{view(EXAMPLE, REGION).count(chr(10))}\n"


# ------------------------------------------------------------------ @PG


def test_pg_line_as_samtools_adds_its_own(ds):
    ours = run("query", ds, "-H", check=True).stdout.decode().splitlines()
    theirs = pysam.samtools.view("-H", EXAMPLE, catch_stdout=True).splitlines()
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        if "ID:bams3" in a:
            assert b.startswith("@PG\tID:samtools.2\tPN:samtools\tPP:samtools.1\t")
            assert a.startswith("@PG\tID:bams3\tPN:bams3\tPP:samtools.1\tVN:") and "\tCL:bams3 query " in a
        else:
            assert a == b
    assert run("query", ds, "-H", "--no-PG", check=True).stdout.decode() == \
        pysam.samtools.view("-H", "--no-PG", EXAMPLE, catch_stdout=True)


@st.composite
def _pg_lines(draw):
    """@PG lines whose PP names an earlier line, nothing or a missing program: chains, forks and
    dangling links (a cycle would make htslib itself spin)."""
    ids = draw(st.lists(st.sampled_from(["a", "b", "c", "samtools", "samtools.1", "x"]), max_size=6, unique=True))
    out = []
    for k, i in enumerate(ids):
        pp = draw(st.one_of(st.none(), st.sampled_from(ids[:k] + ["zz"])))
        out.append((i, pp))
    return out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pgs=_pg_lines(), comment=st.booleans())
def test_pg_chains_as_htslib_links_them(pgs, comment, tmp_path):
    """Any arrangement of @PG lines (chains, forks, dangling PP): our @PG lines go where htslib
    puts samtools', with the same PP links and ID suffixes."""
    text = "@HD\tVN:1.6\n@SQ\tSN:chrA\tLN:1000\n" + "".join(
        f"@PG\tID:{i}\tPN:{i}" + (f"\tPP:{pp}" if pp else "") + "\n" for i, pp in pgs) + (
        "@CO\tx\n" if comment else "")
    sam = tmp_path / "h.sam"
    sam.write_text(text)
    theirs = pysam.samtools.view("-H", str(sam), catch_stdout=True)
    ours = Header(text, (("chrA", 1000),)).with_pg("samtools", "1", "cl").text

    def shape(t):
        return [line.split("\tVN:")[0] for line in t.splitlines()]

    assert shape(ours) == shape(theirs)
