"""The quick path over S3 (bams3/_quick.py, ``_Remote``): ``bams3 query s3://… REGION… -c``,
``bams3 stats s3://…`` and the records of one region answered before numpy, click or pysam is imported, through the store the
full command opens, on moto's S3 server behind a counting proxy. It prints what samtools and
the full command print, makes the requests the full command makes (never more, even when it
steps aside), reports a store that keeps failing as the full command does without waiting out
the retries twice, and ends at once on Ctrl-C."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

import bams3
from bams3._quick import REMOTE_WORKERS
from bams3.conformance.proxy import CountingProxy

from .oracle import view_count
from .test_faults import interrupt_when_stalled
from .synth import write_bam

BAMS3 = pathlib.Path(sys.executable).with_name("bams3")
MANY = [f"chrA:{s * 10_000 + 1234}-{s * 10_000 + 1300}" for s in range(16)]  # 16 edge chunks
REGIONS = (["chrA:1,000-50,000"], ["chrA:30,001-30,001", "chrB:10-20", "*"], ["chrC"], [],
           ["chrB:1-2", "chrA:120,000-", "chrA:1-1"])


@pytest.fixture(scope="module")
def remote(s3_server, tmp_path_factory):
    """A dataset of many small chunks on the S3 server, one with count slots, the BAM they came
    from, and a counting proxy in front of the server (which the CLI is pointed at)."""
    bam = write_bam(str(tmp_path_factory.mktemp("quick-remote") / "in.bam"), n=5000, seed=29)
    bucket = s3_server["bucket"]
    urls = {"plain": f"s3://{bucket}/quick/plain.bams3", "slots": f"s3://{bucket}/quick/slots.bams3"}
    bams3.convert(bam, urls["plain"], chunk_size="4K", force=True)
    bams3.convert(bam, urls["slots"], chunk_size="64K", slots=True, force=True)
    urls["cut"] = f"s3://{bucket}/quick/cut.bams3"  # the chunk at chrA:50,000 cut short
    bams3.convert(bam, urls["cut"], chunk_size="4K", force=True)
    ds = bams3.open(urls["cut"])
    t = ds.chunks
    edge = next(i for i in range(len(t)) if t.ref_id[i] == 0 and t.min_pos[i] < 49_999 < t.max_pos[i])
    key = "quick/cut.bams3/" + ds.meta.data_prefix + f"{edge:06d}"
    blob = s3_server["client"].get_object(Bucket=bucket, Key=key)["Body"].read()
    s3_server["client"].put_object(Bucket=bucket, Key=key, Body=blob[:40])
    proxy = CountingProxy(s3_server["endpoint"])
    yield {"bam": bam, "urls": urls, "proxy": proxy, "env": {**os.environ, **s3_server["env"],
                                                              "AWS_ENDPOINT_URL": proxy.endpoint},
           "first_chunk": bams3.open(urls["plain"]).meta.data_prefix + "000000"}
    proxy.close()


def _cli(remote, *args: str, quick: bool = True, **env) -> tuple[subprocess.CompletedProcess, int]:
    """The CLI's result and the GET requests it made."""
    remote["proxy"].reset()
    p = subprocess.run([str(BAMS3), *args], capture_output=True, text=True, timeout=120,
                       env={**remote["env"], "BAMS3_QUICK": "1" if quick else "0", **env})
    return p, len(remote["proxy"].gets())


def test_counts_and_stats_equal_samtools_and_the_full_command_in_as_many_requests(remote):
    url = remote["urls"]["plain"]
    for regions in REGIONS:
        q, q_gets = _cli(remote, "query", url, *regions, "-c")
        f, f_gets = _cli(remote, "query", url, *regions, "-c", quick=False)
        assert (q.returncode, q.stdout, q.stderr) == (f.returncode, f.stdout, f.stderr) == (0, q.stdout, ""), regions
        assert int(q.stdout) == view_count(remote["bam"], *regions), regions
        assert 1 <= q_gets <= f_gets, (regions, q_gets, f_gets)
    q, q_gets = _cli(remote, "query", url, "chrA:1,000-50,000", "-c")
    assert q_gets == 3  # the metadata, then the count prefixes of the two chunks at the region's edges
    for which in ([], ["--flagstat"], ["--idxstats"]):
        q, q_gets = _cli(remote, "stats", url, *which)
        f, f_gets = _cli(remote, "stats", url, *which, quick=False)
        assert (q.returncode, q.stdout, q.stderr) == (f.returncode, f.stdout, f.stderr) and q.returncode == 0
        assert q_gets == f_gets == 1


def test_it_imports_no_numpy_and_steps_aside_without_asking_twice(remote):
    """No numpy, click or pysam on the quick path; a dataset with count slots is left to the full
    command, which opens it from the metadata the quick path read: no request is made twice."""
    probe = ("import sys; sys.argv = ['bams3', 'query', sys.argv[1], 'chrA:1-90000', '-c']; "
             "from bams3._main import main; code = main(); "
             "print(sorted(m for m in ('numpy', 'click', 'pysam') if m in sys.modules), code, file=sys.stderr)")
    want = f"{view_count(remote['bam'], 'chrA:1-90000')}\n"
    for name, imported in (("plain", "[]"), ("slots", "['click', 'numpy']")):  # (a count needs no pysam)
        remote["proxy"].reset()
        r = subprocess.run([sys.executable, "-c", probe, remote["urls"][name]], capture_output=True, text=True,
                           timeout=60, env=remote["env"])
        assert (r.stdout, r.stderr.strip()) == (want, f"{imported} 0"), name
        quick_gets = remote["proxy"].gets()
        f, f_gets = _cli(remote, "query", remote["urls"][name], "chrA:1-90000", "-c", quick=False)
        assert f.stdout == want and len(quick_gets) == f_gets, (name, quick_gets)


def test_a_regions_records_equal_samtools_and_the_full_commands_in_as_many_requests(remote):
    """SAM of one region (bams3/_quicksam.py): the full command's bytes, which are samtools
    view's, from the same requests (the metadata, then each chunk whole), without numpy; a region
    it leaves to the full command (more chunks than it takes, count slots) costs no request more."""
    import pysam

    bam = remote["bam"]
    if not os.path.exists(bam + ".bai"):
        pysam.index(bam)
    url = remote["urls"]["plain"]
    for region in ("chrA:1,000-1,500", "chrB:100-900", "chrA:99,000-99,100", "chrEmpty:1-100", "chrA:1,000-50,000"):
        q, q_gets = _cli(remote, "query", url, region)
        f, f_gets = _cli(remote, "query", url, region, quick=False)
        assert (q.returncode, q.stdout, q.stderr) == (f.returncode, f.stdout, f.stderr) and q.returncode == 0, region
        assert q.stdout == pysam.samtools.view("--no-PG", bam, region, catch_stdout=True), region
        assert q_gets == f_gets, (region, q_gets, f_gets)
    q, q_gets = _cli(remote, "query", remote["urls"]["slots"], "chrA:1,000-1,500")
    f, f_gets = _cli(remote, "query", remote["urls"]["slots"], "chrA:1,000-1,500", quick=False)
    assert (q.stdout, q_gets) == (f.stdout, f_gets) and q.stdout.count("\n") > 3
    probe = ("import sys; sys.argv = ['bams3', 'query', sys.argv[1], 'chrA:1,000-1,500']; "
             "from bams3._main import main; code = main(); "
             "print(sorted(m for m in ('numpy', 'click', 'pysam') if m in sys.modules), code, file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", probe, url], capture_output=True, text=True, timeout=60, env=remote["env"])
    assert r.stderr.strip() == "[] 0" and r.stdout == q.stdout != "", r.stderr
    q, q_gets = _cli(remote, "query", remote["urls"]["cut"], "chrA:49,900-50,100")  # its chunk cut short
    f, f_gets = _cli(remote, "query", remote["urls"]["cut"], "chrA:49,900-50,100", quick=False)
    assert (q.returncode, q.stdout, q.stderr, q_gets) == (f.returncode, f.stdout, f.stderr, f_gets)
    assert q.returncode == 1 and "chunk" in q.stderr and q.stderr.count("\n") == 1


def test_what_it_leaves_to_the_full_command_is_not_asked_for_twice(remote, tmp_path):
    """Stdout in another encoding (and an error naming a non-ASCII key), /dev/full, a chunk cut
    short: the full command answers or
    reports it, from the reads the quick path handed over; together they ask the server for no
    more than the full command alone."""
    url, regions = remote["urls"]["plain"], ["chrA:1,000-50,000", "chrB:10-20"]
    cases = [({"PYTHONIOENCODING": "latin-1"}, url, None), ({"PYTHONIOENCODING": "ascii"}, "s3://no-such-bkt/é", None),
             ({}, url, "/dev/full"), ({}, remote["urls"]["cut"], None)]
    for env, dest, stdout in cases:
        results = []
        for quick in (True, False):
            remote["proxy"].reset()
            with open(stdout or os.devnull, "w") as sink:
                p = subprocess.run([str(BAMS3), "query", dest, *regions, "-c"], timeout=120, text=True,
                                   stdout=sink if stdout else subprocess.PIPE, stderr=subprocess.PIPE,
                                   env={**remote["env"], "BAMS3_QUICK": "1" if quick else "0", **env})
            results.append((p.returncode, p.stdout, p.stderr, len(remote["proxy"].gets())))
        assert results[0] == results[1], (env, dest, stdout, results)
    assert results[0][0] == 1 and "chunk" in results[0][2]  # the cut chunk, reported by the full command


def test_failures_are_reported_as_the_full_command_reports_them_in_as_many_requests(remote):
    """A missing dataset, a missing bucket, a server answering 503 to everything or to the chunks'
    reads, chunk reads that stall, with 1 or 16 edge chunks: the same line and status as the full
    command, and the retries waited out once, not twice; no chunk's read started once one has
    failed: at most the first REMOTE_WORKERS chunks', each at most as often as the store tries.
    (How many have started when the first in order fails is up to each process's timing, so the
    two commands' counts of them are not compared: the full command's differ from run to run.)"""
    bucket_url = remote["urls"]["plain"].rsplit("/", 2)[0]
    proxy = remote["proxy"]
    for args, faults, match in (([f"{bucket_url}/no/such.bams3", "-c"], [], None),
                                (["s3://no-such-bucket-here/x.bams3", "chrA", "-c"], [], None),
                                ([remote["urls"]["plain"], "chrA:1-100", "-c"], ["503"] * 1000, None),
                                ([remote["urls"]["plain"], "chrA:1,000-50,000", "-c"], ["503"] * 1000, "/data/"),
                                ([remote["urls"]["plain"], "chrA:1,000-50,000", "-c"], ["stall"] * 1000, "/data/"),
                                ([remote["urls"]["plain"], *MANY, "-c"], ["503"] * 1000, remote["first_chunk"]),
                                ([remote["urls"]["plain"], *MANY, "-c"], ["stall"] * 1000, "/data/"),
                                ([remote["urls"]["plain"], "chrB:100-900"], ["503"] * 1000, "/data/"),
                                ([remote["urls"]["plain"], "chrB:100-900"], ["stall"] * 1000, "/data/")):
        results = []
        for quick in (True, False):
            proxy.faults, proxy.fault_match, proxy.stall_seconds = list(faults), match, 2
            try:
                p, _ = _cli(remote, "query", *args, quick=quick, AWS_MAX_ATTEMPTS="2", BAMS3_TIMEOUT="1")
            finally:
                proxy.faults, proxy.fault_match, proxy.stall_seconds = [], None, 10.0
            results.append((p.returncode, p.stderr, p.stdout, len(proxy.log),
                            [e[1] for e in proxy.log if "/data/" in e[1]]))
        assert results[0][:3] == results[1][:3], (args, faults, match, results)
        (*quick, chunks), (*full, full_chunks) = results
        if match is None:  # the metadata's reads only: as many
            assert quick[3] == full[3], (args[1:3], faults[:1], quick, full)
        else:  # chunks' reads in flight when the first in order failed: as many as each command's timing let start
            assert len(set(chunks)) <= REMOTE_WORKERS and max(map(chunks.count, chunks)) <= 2, (args[1:3], faults[:1], chunks)
            reported = next(c for c in chunks if c.split(".bams3/", 1)[1] in quick[1])
            assert chunks.count(reported) == 2, (args[1:3], faults[:1], chunks, quick[1])  # AWS_MAX_ATTEMPTS
            assert quick[3] - len(chunks) == full[3] - len(full_chunks) == 1, (quick, full)  # and the metadata, once
        assert results[0][0] != 0 and results[0][1].startswith("bams3: error: ") and results[0][1].count("\n") == 1


def test_a_failure_first_in_order_is_reported_without_waiting_for_the_reads_behind_it():
    """_Remote.reads on the main thread: the first read fails (a Bams3Error, after its store's
    retries) while the three beside it stall; the failure is raised then, as the full command's
    ordered reads raise it, not once the stalled reads have run out of their retries. (The
    scheduler alone: a store object that fails and stalls on cue, no server.)"""
    import threading

    from bams3 import storage
    from bams3._quick import _Failed, _Remote
    from bams3.errors import StorageError

    release, finished, stalling = threading.Event(), [], threading.Semaphore(0)

    class FailsThenStalls:
        def get_range(self, key, start, end):
            if key == "c0":  # fails once the three beside it have started
                for _ in range(3):
                    stalling.acquire(timeout=10)
                raise StorageError("no answer for c0", kind="timeout", key=key)
            stalling.release()
            release.wait(10)
            finished.append(key)
            return bytes(end - start)

    remote = _Remote.__new__(_Remote)  # (not opened: its store is the one above)
    remote.url, remote.store = "s3://nowhere/stalls.bams3", FailsThenStalls()
    try:
        with pytest.raises(_Failed) as got:
            remote.reads([(f"c{k}", 0, 4) for k in range(8)])
        assert finished == [] and got.value.error.key == "c0"  # (waiting for them, it would see 3)
    finally:
        release.set()
        storage.drop_handed_over(remote.url)


@pytest.mark.parametrize("quick", [True, False])
@pytest.mark.parametrize(("match", "args"), [(None, ["-c"]), ("/data/", ["-c"]), ("/data/", [])])
def test_ctrl_c_ends_a_query_whose_requests_stall(remote, quick, match, args):
    """Every request, or every chunk's, stalls (6 attempts of 6 s each): Ctrl-C ends a count or
    a records query at once, in one line, quick or not. (The full command once waited 39 s for
    its stalled chunk reads to run out of retries before it exited.)"""
    proxy = remote["proxy"]
    proxy.stall_seconds = 8
    proxy.faults, proxy.fault_match = ["stall"] * 1000, match
    try:
        code, out, err, took = interrupt_when_stalled(
            proxy, [str(BAMS3), "query", remote["urls"]["plain"], "chrA:1,000-50,000", *args],
            {**remote["env"], "AWS_MAX_ATTEMPTS": "6", "BAMS3_TIMEOUT": "6", "BAMS3_QUICK": "1" if quick else "0"})
    finally:
        proxy.faults, proxy.fault_match = [], None
        proxy.stall_seconds = 10.0
    assert (code, err, out) == (130, "bams3: interrupted\n", "")
    assert took < 3, took
