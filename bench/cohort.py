#!/usr/bin/env python3
"""One region over a cohort on S3: `bams3 cohort count` against `samtools view -c` on
BAM+BAI, with the same concurrency, on the same server (moto on 127.0.0.1 behind a
counting proxy: requests and bytes are counted at the server).

    python bench/cohort.py SAMPLE_DIR [--samples 200] [--concurrency 16] [--json out.json]

The cohort is SAMPLE_DIR/sample.bam cut to chr1:1,000,001-1,400,000 (about 54,000 reads),
uploaded once per sample as BAM+BAI, as a bams3 dataset with a count index (`convert
--count-index`) and as one without. samtools runs as a pool of
--concurrency child processes (as GNU parallel -j would), each in an empty directory
so that it fetches the index as a first query does; bams3 runs one `cohort count`
process with -@ --concurrency. Prints a table; median of --repeat runs, taken in turn (one run
of each tool, then the next round).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "conformance"))

REGION = "chr1:1,100,001-1,200,000"
SLICE = "chr1:1,000,001-1,400,000"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sample_dir")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    from bench import bams3_program  # bench/bench.py, beside this script

    bams3_cmd = bams3_program() or sys.exit("needs bams3 installed (pip install .)")
    result = measure(args.sample_dir, bams3_cmd, args.samples, args.concurrency, args.repeat)
    print(table(result))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=1)
    return 0


def measure(sample_dir: str, bams3_cmd: str, samples: int = 200, concurrency: int = 16, repeat: int = 3,
            tmp_dir: str | None = None) -> dict:
    """The cohort's counts by bams3 (with a count index, and without) and by samtools: for each,
    the median wall time, requests and bytes of --repeat runs, and how many samples it counted
    right (and failed)."""
    import boto3

    import bams3
    from bams3.conformance.motoserver import MotoServer
    from bams3.conformance.proxy import CountingProxy

    samtools = shutil.which("samtools") or sys.exit("needs samtools on PATH")
    logging.disable(logging.CRITICAL)
    tmp = tempfile.mkdtemp(prefix="bams3-cohort-bench-", dir=tmp_dir)
    bam = os.path.join(tmp, "slice.bam")
    subprocess.run([samtools, "view", "-b", "-o", bam, os.path.join(sample_dir, "sample.bam"), SLICE],
                   check=True)
    subprocess.run([samtools, "index", bam], check=True)
    datasets = {"bams3": os.path.join(tmp, "index.bams3"), "bams3-no-index": os.path.join(tmp, "plain.bams3")}
    bams3.convert(bam, datasets["bams3"], count_index=True)
    bams3.convert(bam, datasets["bams3-no-index"])
    expected = int(subprocess.run([samtools, "view", "-c", bam, REGION], capture_output=True, text=True).stdout)

    server = MotoServer()  # its own process
    upstream = server.endpoint
    s3 = boto3.client("s3", endpoint_url=upstream, aws_access_key_id="bench", aws_secret_access_key="bench",
                      region_name="us-east-1")
    s3.create_bucket(Bucket="cohort")
    blobs = {who: {os.path.relpath(os.path.join(d, f), ds): open(os.path.join(d, f), "rb").read()
                   for d, _, fs in os.walk(ds) for f in fs} for who, ds in datasets.items()}
    bam_bytes, bai_bytes = open(bam, "rb").read(), open(bam + ".bai", "rb").read()
    names = [f"s{k:04d}" for k in range(samples)]
    for n in names:
        s3.put_object(Bucket="cohort", Key=f"bam/{n}.bam", Body=bam_bytes)
        s3.put_object(Bucket="cohort", Key=f"bam/{n}.bam.bai", Body=bai_bytes)
        for who, objects in blobs.items():
            for rel, data in objects.items():
                s3.put_object(Bucket="cohort", Key=f"{who}/{n}.bams3/{rel}", Body=data)
    proxy = CountingProxy(upstream)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": proxy.endpoint, "HTS_S3_HOST": proxy.endpoint.removeprefix("http://"),
           "HTS_S3_ADDRESS_STYLE": "path"}
    for who in datasets:
        with open(os.path.join(tmp, f"{who}.txt"), "w") as f:
            f.writelines(f"{n}\ts3://cohort/{who}/{n}.bams3\n" for n in names)

    def run_bams3(who):
        p = subprocess.run([bams3_cmd, "cohort", "count", REGION, "--from", os.path.join(tmp, f"{who}.txt"), "-@",
                            str(concurrency), "--no-progress"], env=env, capture_output=True, text=True)
        if p.returncode:
            sys.exit(f"bams3 failed: {p.stderr.strip()}")
        counts = [int(line.split("\t")[2]) for line in p.stdout.splitlines()[1:]]
        return counts

    def one_samtools(n):
        with tempfile.TemporaryDirectory(dir=tmp) as cwd:
            p = subprocess.run([samtools, "view", "-c", f"s3+http://cohort/bam/{n}.bam", REGION], env=env,
                               capture_output=True, text=True, cwd=cwd)
        return int(p.stdout) if p.returncode == 0 else None

    def run_samtools():
        with ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(one_samtools, names))

    result = {"samples": samples, "concurrency": concurrency, "repeat": repeat, "region": REGION,
              "reads_per_sample": expected}
    runners = [(who, lambda who=who: run_bams3(who)) for who in datasets] + [("samtools", run_samtools)]
    measured: dict[str, list[dict]] = {who: [] for who, _ in runners}
    for _ in range(repeat):
        for who, fn in runners:  # in turn, so that every tool meets the machine's same minute
            proxy.reset()
            t = time.perf_counter()
            counts = fn()
            wall = time.perf_counter() - t
            measured[who].append({"seconds": wall, "requests": len(proxy.log), "bytes": proxy.bytes_out(),
                                  "correct": sum(c == expected for c in counts),
                                  "failed": sum(c is None for c in counts)})
    for who, runs in measured.items():
        result[who] = {"seconds": statistics.median(r["seconds"] for r in runs),
                       "requests": int(statistics.median(r["requests"] for r in runs)),
                       "bytes": int(statistics.median(r["bytes"] for r in runs)),
                       "correct": min(r["correct"] for r in runs), "failed": max(r["failed"] for r in runs),
                       "runs": [round(r["seconds"], 2) for r in runs]}
    proxy.close()
    server.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    result["order"] = [who for who, _ in runners]
    return result


def table(result: dict) -> str:
    """The measurement as a table, and samtools' times, bytes and requests over bams3's."""
    b, s = result["bams3"], result["samtools"]
    n = result["samples"]
    lines = [f"\n{n} samples x 1 region ({REGION}, {result['reads_per_sample']:,} reads each), concurrency "
             f"{result['concurrency']}, median of {result['repeat']}\n",
             f"{'':15} {'wall s':>8} {'requests':>9} {'bytes':>14} {'correct':>8}"]
    for who in result["order"]:
        m = result[who]
        lines.append(f"{who:15} {m['seconds']:>8.2f} {m['requests']:>9,} {m['bytes']:>14,} {m['correct']:>5}/{n}")
    lines.append(f"\nsamtools / bams3: {s['seconds'] / b['seconds']:.1f}x the wall time, "
                 f"{s['bytes'] / max(b['bytes'], 1):.0f}x the bytes, {s['requests'] / max(b['requests'], 1):.1f}x "
                 "the requests")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
