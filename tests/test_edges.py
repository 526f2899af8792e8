"""The edges the outside testing found: every failure of the storage layer is one line naming the
object and the cause, and retried when it is a transport fault (every attempt traced); a
password in any URL is never printed; a malformed endpoint is a usage error, not a panic;
gzip SAM and BAM are read as samtools reads them; a CRAM with the wrong reference and a sort
with a full temporary directory say so."""

from __future__ import annotations

import gzip
import os
import pathlib
import random
import subprocess

import pysam
import pytest

import bams3
from bams3.conformance.proxy import CountingProxy

from .oracle import raw_bam, view
from .test_cli import BAMS3, EXAMPLE, assert_one_line_error, run


def _cli(args, env=None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([BAMS3, *map(str, args)], capture_output=True, text=True, env=env, timeout=300, **kw)


def _one_line(p: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert_one_line_error(subprocess.CompletedProcess(p.args, p.returncode, p.stdout.encode(), p.stderr.encode()),
                          code, *needles)


# ------------------------------------------------------------------ retries, seen by --trace


@pytest.fixture(scope="module")
def behind_proxy(s3_server):
    url = f"s3://{s3_server['bucket']}/edges/ex.bams3"
    bams3.convert(EXAMPLE, url, chunk_size="256K", force=True)
    proxy = CountingProxy(s3_server["endpoint"])
    env = {**os.environ, **s3_server["env"], "AWS_ENDPOINT_URL": proxy.endpoint, "AWS_MAX_ATTEMPTS": "4"}
    yield proxy, url, env
    proxy.close()


def test_trace_lists_every_attempt_failed_ones_too(behind_proxy):
    proxy, url, env = behind_proxy
    proxy.reset()
    proxy.faults[:] = ["503", "slowdown"]
    p = _cli(["query", url, "chr1:1000-2000", "-c", "--trace"], env)
    assert p.returncode == 0, p.stderr
    assert int(p.stdout) == int(pysam.view("-c", EXAMPLE, "chr1:1000-2000"))
    lines = [line for line in p.stderr.splitlines() if line.startswith("trace: ")]
    requests = [line for line in lines if not line.startswith("trace: total")]
    failed = [line for line in requests if " FAILED (" in line]
    assert len(failed) == 2 and all("503" in line for line in failed), lines
    assert len(requests) == len(proxy.log)  # the server saw what the trace shows, no more
    assert lines[-1].endswith(", 2 failed")


@pytest.mark.parametrize("fault", ["short", "reset", "long"])
def test_short_long_and_cut_bodies_are_retried(behind_proxy, tmp_path, fault):
    proxy, url, env = behind_proxy
    before = proxy.injected.get(fault, 0)
    # the metadata read goes through; the chunk read is hit twice (a body longer than its
    # Content-Length is cut at it by the HTTP client: the junk never reaches bams3, once)
    proxy.faults[:] = ["ok", fault, fault] if fault != "long" else ["ok", fault]
    p = _cli(["query", url, "chr1:10000-60000"], env)
    assert p.returncode == 0, p.stderr
    assert p.stdout == view(EXAMPLE, "chr1:10000-60000")
    assert proxy.injected.get(fault, 0) - before == (2 if fault != "long" else 1) and not proxy.faults


def test_a_response_longer_than_asked_is_retried_then_refused():
    """What the HTTP client lets through is checked too: more bytes than the range asked for is a
    transport fault, tried again, and refused in one line when it persists."""
    import bams3.builtins.cloud
    from bams3.errors import StorageError
    from bams3.storage import TransportError

    store = bams3.builtins.cloud.CloudStore(None, "s3://b/x.bams3")
    store._conf = {**store._conf, "attempts": 3}
    answers = [TransportError("the server sent 20 bytes of k for a range of 10"), b"0123456789"]

    def flaky(key):
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a

    assert store._guard(flaky, "k") == b"0123456789"
    with pytest.raises(StorageError, match="for a range of 10 after 3 attempts") as exc:
        store._guard(lambda key: (_ for _ in ()).throw(TransportError("the server sent 20 bytes of k for a range "
                                                                       "of 10")), "k")
    assert "\n" not in str(exc.value)


def test_a_server_that_ignores_ranges_is_one_line(behind_proxy):
    proxy, url, env = behind_proxy
    proxy.faults[:] = ["whole"] * 10
    p = _cli(["stats", url], env)
    proxy.faults[:] = []
    _one_line(p, 1, "_metadata.json", "ignored the byte range")


def test_a_malformed_endpoint_is_a_usage_error_not_a_panic(s3_server):
    url = f"s3://{s3_server['bucket']}/edges/ex.bams3"
    env = {**os.environ, **s3_server["env"]}
    for args, extra in ((["stats", url, "--endpoint-url", "notaurl"], {}),
                        (["stats", url], {"AWS_ENDPOINT_URL": "notaurl"}),
                        (["stats", url], {"AWS_ENDPOINT_URL": "http://host:port"})):
        p = _cli(args, {**env, **extra})
        assert "panicked" not in p.stderr and "RUST_BACKTRACE" not in p.stderr
        _one_line(p, 2, "AWS_ENDPOINT_URL")


# ------------------------------------------------------------------ secrets in URLs

PASSWORD = "hunter2-Very-Secret-Pw"


def test_a_password_in_any_url_is_never_printed(s3_server, tmp_path):
    url = f"s3://{s3_server['bucket']}/edges/pw.bams3"
    env = {**os.environ, **s3_server["env"], "AWS_MAX_ATTEMPTS": "1", "BAMS3_CONNECT_TIMEOUT": "1"}
    dead = f"http://admin:{PASSWORD}@127.0.0.1:9"  # nothing listens on port 9
    outputs = []
    for extra_env, args in (
        ({}, ["stats", url, "--endpoint-url", dead]),
        ({"AWS_ENDPOINT_URL": dead}, ["stats", url]),
        ({"AWS_ENDPOINT_URL": dead, "BAMS3_DEBUG": "1"}, ["query", url, "chr1", "-c"]),
        ({"AWS_ENDPOINT_URL": dead}, ["convert", EXAMPLE, url]),
        ({}, ["stats", f"http://admin:{PASSWORD}@127.0.0.1:9/x.bams3"]),
        ({"BAMS3_DEBUG": "1"}, ["query", f"https://admin:{PASSWORD}@127.0.0.1:9/x.bams3", "chr1", "-c"]),
        ({}, ["convert", f"http://admin:{PASSWORD}@127.0.0.1:9/in.bam", tmp_path / "d"]),
    ):
        p = _cli(args, {**env, **extra_env})
        assert p.returncode != 0
        outputs.append(p.stdout + p.stderr)
    for text in outputs:
        assert PASSWORD not in text, text
        assert "admin:" not in text, text
    assert any("Traceback" in text for text in outputs)  # BAMS3_DEBUG did print its tracebacks
    assert any("***@127.0.0.1:9" in text for text in outputs)


# ------------------------------------------------------------------ inputs


def test_gzip_sam_and_gzip_bam_are_read_as_samtools_reads_them(tmp_path):
    sam = tmp_path / "in.sam.gz"
    sam.write_bytes(gzip.compress(pysam.view("-h", "--no-PG", EXAMPLE).encode()))
    bam = tmp_path / "in.bam.gz"  # a BAM stream compressed with plain gzip, not BGZF
    with gzip.open(EXAMPLE) as f:
        bam.write_bytes(gzip.compress(f.read()))
    assert int(pysam.view("-c", str(sam))) == int(pysam.view("-c", str(bam))) == 13462  # samtools reads both
    for src in (sam, bam):
        dest = tmp_path / (src.name + ".bams3")
        run("convert", src, dest, check=True)
        out = tmp_path / (src.name + ".back.bam")
        bams3.open(str(dest)).to_bam(str(out))
        assert raw_bam(str(out))[1] == raw_bam(EXAMPLE)[1]
    p = subprocess.run([BAMS3, "convert", "-", str(tmp_path / "stdin.bams3")], input=sam.read_bytes(),
                       capture_output=True)
    assert p.returncode == 0, p.stderr
    assert bams3.open(str(tmp_path / "stdin.bams3")).count() == 13462


def _fasta(path: pathlib.Path, seed: int) -> str:
    rng = random.Random(seed)
    with open(path, "w") as f:
        for name, length in raw_bam(EXAMPLE)[0].references:
            seq = "".join(rng.choice("ACGT") for _ in range(length))
            f.write(f">{name}\n" + "\n".join(seq[i : i + 60] for i in range(0, length, 60)) + "\n")
    pysam.faidx(str(path))
    return str(path)


def test_a_cram_with_the_wrong_reference_says_so(tmp_path):
    right, wrong = _fasta(tmp_path / "right.fa", 1), _fasta(tmp_path / "wrong.fa", 2)
    cram = tmp_path / "in.cram"
    pysam.view("-C", "-T", right, "-o", str(cram), EXAMPLE, catch_stdout=False)
    assert_one_line_error(run("convert", cram, tmp_path / "d", "-T", wrong), 1, "does not match", "MD5")
    assert not (tmp_path / "d").exists()
    run("convert", cram, tmp_path / "ok", "-T", right, check=True)


def test_sort_with_a_full_temporary_directory_says_so(tmp_path):
    records = list(pysam.AlignmentFile(EXAMPLE))
    random.Random(1).shuffle(records)
    unsorted = tmp_path / "unsorted.bam"
    with pysam.AlignmentFile(EXAMPLE) as f, pysam.AlignmentFile(str(unsorted), "wb", template=f) as out:
        for r in records:
            out.write(r)
    mnt = tmp_path / "tmp"
    mnt.mkdir()
    script = 'mount -t tmpfs -o size=64k tmpfs "$1" && export TMPDIR="$1" && shift && exec "$@"'
    p = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", str(mnt), BAMS3, "convert", "--sort",
                        str(unsorted), str(tmp_path / "d")], capture_output=True)
    assert_one_line_error(p, 1, "temporary directory", "is full", "TMPDIR")


# ------------------------------------------------------------------ the command line's promises


def test_usage_errors_are_one_line():
    for args in (["query"], ["query", "--no-such-option", "x"], ["nonsense"], ["convert", "in.bam"],
                 ["query", "x", "-@", "0"], ["cohort", "count", "--engine", "spark"]):
        p = _cli(args)
        _one_line(p, 2, "--help")
    p = _cli([])
    assert p.returncode == 0 and "Usage: bams3" in p.stdout and p.stderr == ""
