"""Load: 64 concurrent queries against one dataset on the S3 test server, all exact,
with bounded memory.

The benchmark sample (~1.07 M reads) is converted once to the S3 test server. 64
distinct regions (1 kb to whole references, some with an edge on a chunk boundary)
are answered by samtools on the local BAM: ``samtools view -c`` and the sha256 of
the raw records of ``samtools view -u``. A child process then runs the 64 queries
at once on 64 threads (each opens the dataset itself, a count and a streamed fetch
whose batches are hashed and dropped) and reports its answers and its peak RSS.
Every answer must equal samtools', and the peak RSS must stay below a bound that
is well below the total size of the records the queries returned: memory does not
grow with the size of the results.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import subprocess
import sys
import textwrap
import time
import uuid

import pysam
import pytest

import bams3
from bams3 import bgzf
from bams3.records import split_records

from .oracle import view_count

N_QUERIES = 64
MiB = 1 << 20

# Peak RSS (VmHWM) of the child, imports (22 MiB) included, measured on the 2-core test
# machine: 1.00-1.15 GiB over 12 runs, up to 1.18 GiB with 2-4 CPU-bound processes competing.
# What it is made of: a streamed query holds at most 2 x 4 workers decoded chunks of
# <= 4 MiB raw, ~60-90 MiB (one chr1 stream alone, 209 MiB of records: 110 MiB peak);
# a small query decodes one or two whole chunks, ~10 MiB (the 47 queries of <= 200 kb
# alone: 0.43-0.53 GiB). So the peak scales with the concurrent streams (17 big ones
# here), not with the bytes they return: the 64 results total 2.64 GiB, 1.76x the bound.
RSS_BOUND = 1536 * MiB

CHILD = textwrap.dedent(
    """
    import hashlib, json, re, sys, threading, time, traceback

    import bams3


    def vm_hwm_kib():
        # this process's peak resident set (KiB). Not ru_maxrss: a child started by
        # vfork+exec inherits the parent's peak there (pytest's, here).
        with open("/proc/self/status") as f:
            return int(re.search(r"VmHWM:\\s+(\\d+) kB", f.read()).group(1))


    url = sys.argv[1]
    regions = json.loads(sys.stdin.read())
    results = [None] * len(regions)
    baseline_kib = vm_hwm_kib()  # after imports
    start = threading.Barrier(len(regions) + 1)

    def query(i, region):
        start.wait()
        t_start = time.perf_counter()
        try:
            ds = bams3.open(url)  # every thread opens the dataset itself
            count = ds.count(region)
            h = hashlib.sha256()
            n = nbytes = 0
            for batch in ds.batches(region):  # streamed: hashed, then dropped
                data = batch.tobytes()
                h.update(data)
                n += len(batch)
                nbytes += len(data)
                del batch, data
            c = ds.store.counter
            results[i] = {"region": region, "count": count, "streamed": n, "nbytes": nbytes,
                          "sha256": h.hexdigest(), "requests": c.requests, "bytes_in": c.bytes_in,
                          "t": [t_start, time.perf_counter()]}
        except BaseException:
            results[i] = {"region": region, "error": traceback.format_exc()}

    threads = [threading.Thread(target=query, args=(i, r), name=f"q{i}") for i, r in enumerate(regions)]
    for t in threads:
        t.start()
    start.wait()  # all 64 released together
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    peak_kib = vm_hwm_kib()
    json.dump({"results": results, "baseline_kib": baseline_kib, "peak_kib": peak_kib,
               "seconds": seconds}, sys.stdout)
    """
)


@pytest.fixture(scope="module")
def sample_on_s3(s3_server, sample_dir):
    """The whole benchmark sample, converted once to the S3 test server (~3 s)."""
    url = f"s3://{s3_server['bucket']}/{uuid.uuid4().hex[:8]}/load/sample.bams3"
    bams3.convert(str(sample_dir / "sample.bam"), url, chunk_size="1M")
    return str(sample_dir / "sample.bam"), url


def _regions(ds) -> list[str]:
    """64 distinct regions, deterministic: 1 kb, 10 kb, 100 kb, 1 Mbp, several Mbp and
    whole references, with edges exactly on chunk boundaries (window edges, and the
    edges between the chunks of a window holding more than 4 MiB of records)."""
    refs = dict(zip(ds.references, ds.lengths))
    t, cs = ds.chunks, ds.meta.chunk_size
    rng = random.Random(64)
    out: list[str] = []

    def add(region: str) -> None:
        if region not in out:
            out.append(region)

    # window edges (1-based: window w starts at w*cs+1)
    add(f"chr1:{cs + 1}-{cs + 1000}")                     # starts on window 1's first base
    add(f"chr1:{cs - 999}-{cs}")                           # ends on window 0's last base
    add(f"chr2:{2 * cs - 4999}-{2 * cs + 5000}")           # straddles the window 1|2 edge
    add(f"chr1:{2 * cs + 1}-{3 * cs}")                     # exactly window 2 (1 Mbp)
    add(f"chr2:{cs - 99_999}-{cs + 100_000}")              # 200 kb across an edge
    # edges between the chunks of a split window
    splits = [i for i in range(1, len(t)) if t.ref_id[i] == t.ref_id[i - 1] >= 0 and t.window[i] == t.window[i - 1]]
    assert len(splits) >= 10, "the sample should have windows split into several chunks"
    for i in rng.sample(splits, 6):
        name = ds.references[int(t.ref_id[i])]
        first = int(t.min_pos[i]) + 1  # 1-based position of the chunk's first record
        add(f"{name}:{first}-{first + rng.choice([999, 9_999])}")         # starts on the chunk's first record
        add(f"{name}:{first - rng.choice([1_000, 10_000])}-{first - 1}")  # ends just before it
    # big results: whole references, another 1 Mbp, and several Mbp (the streams that
    # make the records returned far larger than the memory bound)
    add("chr1")
    add("chr2")
    add("chrM")
    add("chr2:1500001-2500000")
    for _ in range(12):
        size = rng.randint(4_000_000, 4_900_000)
        beg = rng.randint(1, refs["chr1"] - size + 1)
        add(f"chr1:{beg}-{beg + size - 1}")
    # the rest at random: 1 kb, 10 kb, 100 kb
    sizes = [1_000] * 13 + [10_000] * 11 + [100_000] * 7
    names, weights = ["chr1", "chr2", "chrM"], [refs["chr1"], refs["chr2"], 20 * refs["chrM"]]
    for size in sizes:
        name = rng.choices(names, weights)[0]
        size = min(size, refs[name])
        beg = rng.randint(1, refs[name] - size + 1)
        add(f"{name}:{beg}-{beg + size - 1}")
    assert len(out) == N_QUERIES, len(out)
    return out


def _span(region: str) -> int:
    if ":" not in region:
        return 1 << 62  # a whole reference
    beg, end = region.split(":")[1].split("-")
    return int(end) - int(beg) + 1


def _samtools_records(bam: str, region: str, tmp) -> tuple[int, int, str]:
    """Records, raw bytes and sha256 of ``samtools view -u BAM REGION``, hashed as streamed."""
    out = str(tmp / "region.bam")
    pysam.samtools.view("--no-PG", "-u", "-o", out, bam, region, catch_stdout=False)
    h = hashlib.sha256()
    n = nbytes = 0
    with open(out, "rb") as f:
        _, batches = split_records(bgzf.decompress_stream(f.read))
        for b in batches:
            data = b.tobytes()
            h.update(data)
            n += len(b)
            nbytes += len(data)
    os.unlink(out)
    return n, nbytes, h.hexdigest()


@pytest.fixture(scope="module")
def oracle(sample_on_s3, tmp_path_factory):
    bam, url = sample_on_s3
    regions = _regions(bams3.open(url))
    tmp = tmp_path_factory.mktemp("oracle")
    truth = {}
    for region in regions:
        n, nbytes, digest = _samtools_records(bam, region, tmp)
        count = view_count(bam, region)
        assert n == count, region
        truth[region] = {"count": count, "nbytes": nbytes, "sha256": digest}
    return regions, truth


def test_64_concurrent_queries_exact_with_bounded_memory(sample_on_s3, oracle, s3_server, tmp_path):
    bam, url = sample_on_s3
    regions, truth = oracle
    assert len(set(regions)) == N_QUERIES
    total = sum(v["nbytes"] for v in truth.values())
    # the bound means something: the results together are far larger than it, so a
    # child that held them (or grew with them) would blow through it
    assert total > 1.5 * RSS_BOUND, total
    assert all(v["count"] > 0 for v in truth.values())  # every region really holds reads

    script = tmp_path / "load_child.py"
    script.write_text(CHILD)
    env = {**os.environ, **s3_server["env"]}
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, str(script), url], input=json.dumps(regions), capture_output=True,
                       text=True, env=env, timeout=300)
    wall = time.perf_counter() - t0
    assert p.returncode == 0, p.stderr[-4000:]
    out = json.loads(p.stdout)
    results = out["results"]
    assert len(results) == N_QUERIES
    errors = [r for r in results if "error" in r]
    assert not errors, errors[0]["error"]

    for r in results:
        want = truth[r["region"]]
        assert r["count"] == want["count"], r["region"]
        assert r["streamed"] == want["count"], r["region"]
        assert r["nbytes"] == want["nbytes"], r["region"]
        assert r["sha256"] == want["sha256"], r["region"]
        assert r["requests"] >= 1 and r["bytes_in"] > 0, r["region"]
    assert sorted(r["region"] for r in results) == sorted(regions)
    # under load, a small query still reads only the chunk or two it needs (plus metadata)
    stored = bams3.open(url).stats["stored_bytes"]
    for r in results:
        if _span(r["region"]) <= 10_000:
            assert r["bytes_in"] < stored / 10, r

    # they really ran together: the most queries in flight at one moment
    events = sorted([(r["t"][0], 1) for r in results] + [(r["t"][1], -1) for r in results])
    in_flight = max(itertools.accumulate(d for _, d in events))
    assert in_flight == N_QUERIES, in_flight

    peak = out["peak_kib"] * 1024
    requests = sum(r["requests"] for r in results)
    bytes_in = sum(r["bytes_in"] for r in results)
    print(f"\nload: {N_QUERIES} queries in {out['seconds']:.1f} s (child {wall:.1f} s), "
          f"{total / MiB:.0f} MiB of records returned, peak RSS {peak / MiB:.0f} MiB "
          f"(after imports {out['baseline_kib'] / 1024:.0f} MiB), {requests} requests, {bytes_in / MiB:.0f} MiB in, "
          f"{in_flight} in flight at once")
    assert peak < RSS_BOUND, f"peak RSS {peak / MiB:.0f} MiB >= bound {RSS_BOUND / MiB:.0f} MiB"
