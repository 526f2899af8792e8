"""What a query costs on S3, counted at the server (through a counting proxy), for
bams3 and for samtools reading BAM+BAI from the same server: the issue's figures."""

from __future__ import annotations

import os
import subprocess
import tempfile
import sys

import pytest

import bams3

from bams3.conformance.proxy import CountingProxy

REGION = "chr1:1,000,000-2,000,000"
KEY = "cost/sample.bam"


@pytest.fixture(scope="module")
def cost(s3_server, sample_dir):
    client, bucket = s3_server["client"], s3_server["bucket"]
    client.upload_file(str(sample_dir / "sample.bam"), bucket, KEY)
    client.upload_file(str(sample_dir / "sample.bam.bai"), bucket, KEY + ".bai")
    url = f"s3://{bucket}/cost/sample.bams3"
    bams3.convert(str(sample_dir / "sample.bam"), url)
    proxy = CountingProxy(s3_server["endpoint"])
    saved = os.environ["AWS_ENDPOINT_URL"]
    host = proxy.endpoint.removeprefix("http://")
    os.environ.update(AWS_ENDPOINT_URL=proxy.endpoint, HTS_S3_HOST=host, HTS_S3_ADDRESS_STYLE="path")
    yield proxy, url, f"s3+http://{bucket}/{KEY}"
    os.environ["AWS_ENDPOINT_URL"] = saved
    proxy.close()


def samtools_over_s3(proxy, *args) -> tuple[str, int, int]:
    """samtools (pysam's) reading BAM+BAI from the same server: (output, GET requests, bytes).

    It runs in a child process: in this one it would hold the GIL that the
    in-process S3 server and proxy need.
    """
    proxy.reset()
    code = "import pysam, sys; sys.stdout.write(pysam.samtools.view(*sys.argv[1:], catch_stdout=True))"
    # htslib saves a remote index into the working directory and later reuses any
    # file of that name without checking it: run it in an empty directory each time.
    with tempfile.TemporaryDirectory() as cwd:
        p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300,
                           cwd=cwd)
    assert p.returncode == 0, p.stderr
    return p.stdout, len(proxy.gets()), proxy.bytes_out()


def test_count_costs_at_most_3_gets_and_1_percent_of_samtools(cost):
    proxy, url, bam_url = cost
    theirs, sam_gets, sam_bytes = samtools_over_s3(proxy, "-c", bam_url, REGION)
    proxy.reset()
    n = bams3.open(url).count(REGION)
    assert n == int(theirs)
    assert len(proxy.gets()) <= 3
    assert proxy.bytes_out() <= 0.01 * sam_bytes, (proxy.bytes_out(), sam_bytes)


def test_stats_is_one_small_get(cost):
    proxy, url, _ = cost
    proxy.reset()
    ds = bams3.open(url)
    assert ds.stats["n_records"] > 1_000_000
    assert len(proxy.log) == 1 and proxy.log[0][0] == "GET" and proxy.bytes_out() < 64 * 1024


def test_region_query_moves_no_more_than_samtools_and_returns_the_same_records(cost, tmp_path):
    proxy, url, bam_url = cost
    theirs, _, sam_bytes = samtools_over_s3(proxy, "--no-PG", bam_url, REGION)
    proxy.reset()
    out = tmp_path / "ours.sam"
    with open(out, "wb") as f:
        bams3.open(url).write(f, REGION)
    assert out.read_text() == theirs
    assert proxy.bytes_out() <= sam_bytes, (proxy.bytes_out(), sam_bytes)


FILTER = ("-F", "0xF04", "-q", "20")


def _filtered():
    from bams3.filters import from_options

    return from_options(exclude=["0xF04"], min_mapq=20)


def _chunks_touched(ds, region) -> int:
    return len({index for index, _, _ in ds.chunks.plan(ds.selection(region))})


def test_filtered_count_moves_at_most_1_percent_of_samtools_in_two_gets_a_chunk(cost):
    """-F 0xF04 -q 20 over 1 Mbp: the flag and MAPQ columns (and pos/span where the region cuts
    a chunk), coalesced: at most two GETs per chunk touched, besides the metadata and table."""
    proxy, url, bam_url = cost
    theirs, _, sam_bytes = samtools_over_s3(proxy, "-c", *FILTER, bam_url, REGION)
    proxy.reset()
    ds = bams3.open(url)
    n = ds.count(REGION, filters=_filtered())
    assert n == int(theirs)
    touched = _chunks_touched(ds, REGION)
    assert len(proxy.gets()) <= 2 + 2 * touched, (len(proxy.gets()), touched)
    assert proxy.bytes_out() <= 0.01 * sam_bytes, (proxy.bytes_out(), sam_bytes)


def test_filtered_whole_reference_count_moves_at_most_5_percent(cost):
    proxy, url, bam_url = cost
    ds = bams3.open(url)
    name = ds.references[0]
    theirs, _, sam_bytes = samtools_over_s3(proxy, "-c", *FILTER, bam_url, name)
    proxy.reset()
    ds = bams3.open(url)
    assert ds.count(name, filters=_filtered()) == int(theirs)
    assert proxy.bytes_out() <= 0.05 * sam_bytes, (proxy.bytes_out(), sam_bytes)


def test_filtered_record_query_equals_samtools(cost, tmp_path):
    proxy, url, bam_url = cost
    region = "chr1:1,000,000-1,100,000"
    theirs, _, _ = samtools_over_s3(proxy, "--no-PG", *FILTER, bam_url, region)
    out = tmp_path / "ours.sam"
    with open(out, "wb") as f:
        bams3.open(url).write(f, region, filters=_filtered())
    assert out.read_text() == theirs
