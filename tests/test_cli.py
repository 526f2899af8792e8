"""The command line: outputs match samtools, and every bad input is one clear line."""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import tempfile

import pysam
import pytest

from .oracle import raw_bam, view, view_count

SHIPPED = pathlib.Path(__file__).resolve().parent.parent / "bams3" / "data" / "example.bam"
EXAMPLE = os.path.join(tempfile.mkdtemp(prefix="bams3-cli-"), "example.bam")  # an indexed copy for the oracle
shutil.copy(SHIPPED, EXAMPLE)
pysam.index(EXAMPLE)
BAMS3 = shutil.which("bams3")


def run(*args, input=None, check=False):
    assert BAMS3, "the bams3 command is not installed (pip install -e .)"
    p = subprocess.run([BAMS3, *map(str, args)], capture_output=True, input=input)
    if check:
        assert p.returncode == 0, p.stderr.decode()
    return p


def assert_one_line_error(p, code=1, *needles):
    err = p.stderr.decode()
    assert p.returncode == code, (p.returncode, err)
    assert err.startswith("bams3: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, err


def assert_no_dataset(dest: pathlib.Path):
    assert not (dest / "_metadata.json").exists()
    assert not any(dest.rglob("data/*/*")) if dest.exists() else True


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    dest = tmp_path_factory.mktemp("cli") / "ex.bams3"
    run("convert", EXAMPLE, dest, "--chunk-size", "4K", check=True)
    return dest


# ------------------------------------------------------------------ outputs


def test_query_sam_matches_samtools_view(ds):
    p = run("query", ds, "chr1:10,000-20,000", "chr2:5K-6K", check=True)
    assert p.stdout.decode() == view(EXAMPLE, "chr1:10,000-20,000", "chr2:5000-6000")
    p = run("query", ds, "chrM", "-h", "--no-PG", check=True)
    assert p.stdout.decode() == view(EXAMPLE, "chrM", flags=("-h",))


def test_count_and_json_count(ds):
    assert int(run("query", ds, "chr1:10,000-20,000", "--count", check=True).stdout) == view_count(
        EXAMPLE, "chr1:10000-20000")
    out = json.loads(run("query", ds, "chr1", "-c", "--json", check=True).stdout)
    assert out["count"] == view_count(EXAMPLE, "chr1") and out["regions"] == ["chr1"]


def test_show_n_bam_and_json_outputs(ds, tmp_path):
    lines = run("query", ds, "chr1", "--show", "7", check=True).stdout.decode().splitlines()
    assert lines == view(EXAMPLE, "chr1").splitlines()[:7]
    run("query", ds, "chr2", "-o", tmp_path / "chr2.bam", check=True)
    assert view(str(tmp_path / "chr2.bam")) == view(EXAMPLE, "chr2")
    js = run("query", ds, "chrM", "--format", "json", check=True).stdout.decode().splitlines()
    assert len(js) == view_count(EXAMPLE, "chrM")
    assert json.loads(js[0])["name"] == view(EXAMPLE, "chrM").split("\t")[0]


def test_bed_regions(ds, tmp_path):
    bed = tmp_path / "t.bed"
    bed.write_text("chr1\t1000\t2000\nchr1\t1500\t3000\nchr2\t0\t500\n")
    assert run("query", ds, "-L", bed, check=True).stdout.decode() == view(EXAMPLE, flags=("-L", str(bed)))


def test_stats_human_json_flagstat(ds):
    text = run("stats", ds, check=True).stdout.decode()
    lines = text.splitlines()
    # the original BAMS3's block, which scripts grep: banner, sections and labels in its order
    assert lines[:4] == ["=" * 43, "BAMS3 Dataset Statistics", "=" * 43, ""]
    labels = [line.split(":")[0] for line in lines if ":" in line]
    seed = ["Format", "Source", "Statistics", "  Total reads", "  Mapped reads", "  Total bases", "  Mean coverage",
            "Structure", "  Chunk size", "  Total chunks", "  Compression", "Storage", "  Total size",
            "  Compression ratio"]
    assert [label for label in labels if label in seed] == seed
    value = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in lines if ":" in line)}
    meta = json.loads((ds / "_metadata.json").read_text())
    total = view_count(EXAMPLE)
    mapped = int(pysam.samtools.view("-c", "-F", "4", EXAMPLE, catch_stdout=True))
    bases = sum(r.query_length for r in pysam.AlignmentFile(EXAMPLE).fetch(until_eof=True))
    genome = sum(pysam.AlignmentFile(EXAMPLE).lengths)
    assert value["Format"] == f"bams3 v{meta['format_version']}"
    assert value["Source"] == f"example.bam (BAM, {os.path.getsize(EXAMPLE):,} bytes)"
    assert value["Total reads"] == f"{total:,}"
    assert value["Mapped reads"] == f"{mapped:,} ({100 * mapped / total:.2f}%)"
    assert value["Total bases"] == f"{bases:,}"
    assert value["Mean coverage"] == f"{bases / genome:.2f}x"
    assert value["Chunk size"] == f"{meta['chunk_size']} bp"
    assert value["Total chunks"] == f"{meta['chunks']['count']:,}"
    chunks = sum(p.stat().st_size for p in (ds / "data").rglob("*") if p.is_file() and p.name.isdigit())
    assert value["Total size"].endswith(f"({chunks:,} bytes)")
    assert value["Compression ratio"] == f"{meta['stats']['raw_bytes'] / meta['stats']['stored_bytes']:.2f}x"
    js = json.loads(run("stats", ds, "--json", check=True).stdout)
    assert js["stats"]["n_records"] == view_count(EXAMPLE)
    assert run("stats", ds, "--flagstat", check=True).stdout.decode() == pysam.samtools.flagstat(EXAMPLE)


def test_to_bam_region_and_index(ds, tmp_path):
    out = tmp_path / "chr1.bam"
    run("to-bam", ds, out, "--region", "chr1:1-30000", "--index", check=True)
    assert (tmp_path / "chr1.bam.bai").exists()
    assert view(str(out)) == view(EXAMPLE, "chr1:1-30000")
    full = tmp_path / "full.bam"
    run("to-bam", ds, full, "--no-PG", check=True)
    assert raw_bam(str(full)) == raw_bam(EXAMPLE)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_pipe_into_head_is_quiet(ds):
    p = subprocess.run(f"'{BAMS3}' query '{ds}' chr1 | head -n 1", shell=True, capture_output=True,
                       executable="/bin/bash")
    assert p.stdout.count(b"\n") == 1 and p.stderr == b""
    p = subprocess.run(f"set -o pipefail; '{BAMS3}' query '{ds}' chr1 | head -n 1 >/dev/null", shell=True,
                       executable="/bin/bash")
    assert p.returncode == 0


def test_demo_and_help():
    p = run("demo", check=True)
    assert b"Total reads:" in p.stdout and b"--count" in p.stdout
    for cmd in ("convert", "query", "stats", "to-bam"):
        assert b"Examples:" in run(cmd, "--help", check=True).stdout


def test_convert_refuses_to_overwrite_without_force(ds, tmp_path):
    dest = tmp_path / "d"
    run("convert", EXAMPLE, dest, check=True)
    meta = (dest / "_metadata.json").read_bytes()
    assert_one_line_error(run("convert", EXAMPLE, dest), 1, "--force")
    assert (dest / "_metadata.json").read_bytes() == meta
    run("convert", EXAMPLE, dest, "--force", "--chunk-size", "256K", check=True)
    assert (dest / "_metadata.json").read_bytes() != meta
    chunks = list((dest / "data").rglob("*"))
    prefixes = {p.parent.name for p in chunks if p.is_file()}
    assert len(prefixes) == 1  # the replaced dataset's chunks are gone


# ------------------------------------------------------------------ bad input


def test_truncated_bam(tmp_path):
    data = open(EXAMPLE, "rb").read()
    bad = tmp_path / "trunc.bam"
    bad.write_bytes(data[: len(data) // 2])
    dest = tmp_path / "out"
    assert_one_line_error(run("convert", bad, dest), 1, "truncated")
    assert_no_dataset(dest)
    bad.write_bytes(data[:-28])  # whole blocks, but no end-of-file marker
    assert_one_line_error(run("convert", bad, dest), 1, "truncated")
    assert_no_dataset(dest)


def test_not_a_bam(tmp_path):
    junk = tmp_path / "junk.bam"
    junk.write_bytes(bytes(range(256)) * 10)
    assert_one_line_error(run("convert", junk, tmp_path / "o1"), 1, "not a BAM")
    text = tmp_path / "notes.sam"
    text.write_text("hello, this is not SAM\n")
    assert_one_line_error(run("convert", text, tmp_path / "o2"), 1, "notes.sam")
    assert_no_dataset(tmp_path / "o1")
    assert_no_dataset(tmp_path / "o2")


def test_missing_file(tmp_path):
    assert_one_line_error(run("convert", tmp_path / "nope.bam", tmp_path / "o"), 1, "no such file")
    assert not (tmp_path / "o").exists()


def test_unsorted_input(tmp_path):
    recs = view(EXAMPLE, flags=("-h",)).splitlines()
    header = [r for r in recs if r.startswith("@")]
    body = [r for r in recs if not r.startswith("@")]
    unsorted = tmp_path / "unsorted.sam"
    unsorted.write_text("\n".join(header + body[100:200] + body[:100]) + "\n")
    dest = tmp_path / "o"
    assert_one_line_error(run("convert", unsorted, dest), 1, "samtools sort", "--sort")
    assert_no_dataset(dest)
    run("convert", unsorted, dest, "--sort", check=True)
    assert int(run("query", dest, "--count", check=True).stdout) == 200


def test_bad_regions(ds):
    assert_one_line_error(run("query", ds, "chr9:1-100"), 2, "unknown reference")
    assert_one_line_error(run("query", ds, "chr1:abc"), 2, "malformed")
    assert_one_line_error(run("query", ds, "chr1:500-100"), 2, "before the start")
    assert_one_line_error(run("query", ds, "chr1:-5-10"), 2)


def test_missing_dataset_and_not_a_dataset(tmp_path):
    assert_one_line_error(run("query", tmp_path / "nothing", "chr1", "-c"), 1, "no bams3 dataset")
    assert_one_line_error(run("stats", EXAMPLE), 1, "not a bams3 dataset")
    (tmp_path / "partial" / "data" / "x").mkdir(parents=True)
    assert_one_line_error(run("stats", tmp_path / "partial"), 1, "no bams3 dataset")


def test_unknown_scheme_lists_installed_ones():
    assert_one_line_error(run("stats", "zz://bucket/x"), 1, "file://", "memory://")


def test_convert_from_standard_input_and_a_named_pipe(tmp_path):
    data = pathlib.Path(EXAMPLE).read_bytes()
    run("convert", "-", tmp_path / "a", input=data, check=True)
    sam = view(EXAMPLE, flags=("-h",)).encode()
    run("convert", "/dev/stdin", tmp_path / "b", input=sam, check=True)  # SAM through the htslib decoder
    fifo = tmp_path / "in.bam"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"cat {EXAMPLE} > {fifo}"])
    run("convert", fifo, tmp_path / "c", check=True)
    writer.wait(timeout=30)
    for d in "abc":
        assert run("query", tmp_path / d, check=True).stdout.decode() == view(EXAMPLE)
    assert_one_line_error(run("convert", "-", tmp_path / "d", "--sort", input=data), 2, "--sort")


@pytest.mark.parametrize("given, want", [(None, "1"), ("4", "4")])
def test_the_program_starts_no_blas_threads_unless_told(given, want):
    """bams3 calls no BLAS: run as the program, it sets OPENBLAS_NUM_THREADS=1 (numpy's OpenBLAS
    otherwise starts a thread per CPU that spins ~0.1 s of CPU at import), keeping a user's value.
    (In a child: the program also sets how signals are handled once its work is done.)"""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if given is not None:
        env["OPENBLAS_NUM_THREADS"] = given
    code = ("import os, sys\nfrom bams3.cli import main\nsys.argv = ['bams3', '--version']\ncode = main()\n"
            "print(code, os.environ['OPENBLAS_NUM_THREADS'])")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1] == f"0 {want}"
    assert "version" in p.stdout


def test_version_is_answered_before_the_command_line_loads():
    """`bams3 --version` (the installed program's entry point) prints what click's version
    option prints, without importing click or any command."""
    from importlib.metadata import entry_points

    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "bams3"]
    assert script.value == "bams3._main:program"
    code = ("import sys\nsys.argv = ['bams3', '--version']\nfrom bams3._main import main\ncode = main()\n"
            "print(code, 'click' in sys.modules, 'numpy' in sys.modules)")
    fast = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    slow = subprocess.run([sys.executable, "-m", "bams3.cli", "--version"], capture_output=True, text=True,
                          check=True).stdout
    assert fast.splitlines() == [slow.strip(), "0 False False"]
    rest = ("import sys\nsys.argv = ['bams3', 'plugins', '--json']\nfrom bams3._main import main\n"
            "sys.exit(main())")
    p = subprocess.run([sys.executable, "-c", rest], capture_output=True, text=True)
    assert p.returncode == 0 and '"zstd"' in p.stdout


def test_a_bed_query_imports_no_more_of_numpy_than_it_uses(tmp_path):
    """`bams3 query DS -L targets.bed` in a fresh process (the full command line: several
    intervals): the records samtools writes for the same BED, without numpy.ma, which np.unique
    imports (12-16 ms of the process's CPU)."""
    ds, bed = tmp_path / "x.bams3", tmp_path / "t.bed"
    run("convert", EXAMPLE, ds, check=True)
    bed.write_text("chr1\t1000\t1500\nchr1\t20000\t20100\nchr2\t500\t900\nchr1\t1200\t1300\n")
    code = ("import sys\nsys.argv = ['bams3'] + sys.argv[1:]\nfrom bams3._main import main\ncode = main()\n"
            "sys.stdout.flush()\nprint(code, 'numpy' in sys.modules, 'numpy.ma' in sys.modules, file=sys.stderr)")
    p = subprocess.run([sys.executable, "-c", code, "query", str(ds), "-L", str(bed)], capture_output=True,
                       text=True, check=True)
    assert p.stderr.split() == ["0", "True", "False"]
    assert p.stdout == view(EXAMPLE, flags=("-L", str(bed))) and p.stdout.count("\n") > 10


def test_the_program_ends_without_teardown_only_after_a_quick_answer(tmp_path):
    """The installed program (bams3._main.program): a command answered before the command line
    loads ends the process at once (no atexit handler runs), its output whole and its status
    kept; the full command line ends as Python ends."""
    ds = tmp_path / "x.bams3"
    run("convert", EXAMPLE, ds, check=True)
    code = ("import atexit, sys\natexit.register(lambda: sys.stderr.write('teardown\\n'))\n"
            "sys.argv = ['bams3'] + sys.argv[1:]\nfrom bams3._main import program\nsys.exit(program())")
    cases = [(["--version"], 0, False), (["query", "-c", str(ds), "chr1"], 0, False),
             (["stats", "--flagstat", str(ds)], 0, False), (["query", str(ds), "chr1:1-1000"], 0, False),
             (["query", "-c", str(tmp_path / "missing.bams3"), "chr1"], 1, True),  # the full command says it
             (["plugins", "--json"], 0, True)]
    for args, status, teardown in cases:
        p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
        assert (p.returncode, p.stderr.endswith("teardown\n")) == (status, teardown), (args, p.stderr)
        if args[0] == "query" and status == 0:
            want = view(EXAMPLE, *args[2:]) if "-c" not in args else f"{view_count(EXAMPLE, 'chr1')}\n"
            assert p.stdout == want, args
    # a reader that stops reading: the answer ends as before (status 0, no message), whether the
    # pipe closed before it was written or after
    r = subprocess.run(["bash", "-c", f"set -o pipefail; {shlex.quote(sys.executable)} -c {shlex.quote(code)} "
                        f"query {shlex.quote(str(ds))} chr1 | head -c 1"], capture_output=True, text=True)
    assert (r.returncode, r.stdout, r.stderr) == (0, view(EXAMPLE, "chr1")[0], "")


def test_max_chunk_raw_sets_the_chunks_size_and_bad_values_are_one_line(tmp_path):
    """--max-chunk-raw: the raw record bytes a chunk holds at most, over --compression's own
    (4 MiB, 32 MiB with high); the records are samtools' either way."""
    import bams3

    whole, small = tmp_path / "whole.bams3", tmp_path / "small.bams3"
    run("convert", EXAMPLE, whole, "--compression", "high", check=True)
    run("convert", EXAMPLE, small, "--compression", "high", "--max-chunk-raw", "64K", check=True)
    n_whole = json.loads((whole / "_metadata.json").read_text())["stats"]["n_chunks"]
    n_small = json.loads((small / "_metadata.json").read_text())["stats"]["n_chunks"]
    assert n_small > 3 * n_whole
    raw = bams3.open(str(small)).source.table.raw_nbytes
    assert max(raw) < (64 << 10) + 4096  # the record that reaches 64 KiB is a chunk's last
    for ds in (whole, small):
        assert run("query", ds, "chr1", check=True).stdout.decode() == view(EXAMPLE, "chr1")
    for bad, says in (("12Q", "bad size '12Q' for --max-chunk-raw"), ("512M", "outside 1 byte to 256 MiB"),
                      ("0", "outside 1 byte to 256 MiB")):
        p = run("convert", EXAMPLE, tmp_path / "bad.bams3", "--max-chunk-raw", bad)
        assert_one_line_error(p, 2, says)
        assert not (tmp_path / "bad.bams3").exists()
