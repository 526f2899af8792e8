#!/usr/bin/env python3
"""What a query costs on an S3 server: bams3 vs samtools on BAM+BAI, side by side.

Starts moto's S3 server on 127.0.0.1 with a counting proxy in front of it (bytes
and requests are counted at the server side), uploads BAM+BAI, converts the BAM
to a bams3 dataset on the server, then runs each command REPEAT times and prints
the median wall time, requests and bytes, with ratios. Writes JSON with --json.

    python bench/s3_costs.py SAMPLE_DIR [--region chr1:1,000,000-2,000,000] [--json out.json]

SAMPLE_DIR holds sample.bam(.bai) from ../shared/bench/make-sample.sh. samtools is
the samtools on PATH (built with S3 support), else pysam's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

REPEAT = 3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sample_dir")
    ap.add_argument("--region", default="chr1:1,000,000-2,000,000")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()

    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    import bams3
    from bams3_conformance.proxy import CountingProxy

    logging.disable(logging.CRITICAL)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    upstream = f"http://{host}:{port}"
    env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}
    os.environ.update(env, AWS_ENDPOINT_URL=upstream)
    s3 = boto3.client("s3", endpoint_url=upstream)
    s3.create_bucket(Bucket="bench")
    bam = os.path.join(args.sample_dir, "sample.bam")
    s3.upload_file(bam, "bench", "sample.bam")
    s3.upload_file(bam + ".bai", "bench", "sample.bam.bai")
    t = time.perf_counter()
    bams3.convert(bam, "s3://bench/sample.bams3")
    convert_s = time.perf_counter() - t

    proxy = CountingProxy(upstream)
    run_env = {**os.environ, **env, "AWS_ENDPOINT_URL": proxy.endpoint,
               "HTS_S3_HOST": proxy.endpoint.removeprefix("http://"), "HTS_S3_ADDRESS_STYLE": "path"}
    samtools = [shutil.which("samtools")] if shutil.which("samtools") else [
        sys.executable, "-c", "import pysam, sys; sys.stdout.write(pysam.samtools.main(*sys.argv[1:]) or '')"]
    bams3_cmd = [shutil.which("bams3") or "bams3"]
    bam_url, ds_url = "s3+http://bench/sample.bam", "s3://bench/sample.bams3"
    r = args.region
    cases = [
        (f"count {r}", bams3_cmd + ["query", ds_url, r, "-c"], samtools + ["view", "-c", bam_url, r]),
        (f"records {r} (SAM)", bams3_cmd + ["query", ds_url, r], samtools + ["view", bam_url, r]),
        ("stats / flagstat", bams3_cmd + ["stats", ds_url], samtools + ["flagstat", bam_url]),
        ("header", bams3_cmd + ["stats", ds_url, "--json"], samtools + ["view", "-H", bam_url]),
    ]
    rows = []
    for name, ours, theirs in cases:
        row = {"case": name}
        for who, cmd in (("bams3", ours), ("samtools", theirs)):
            times, outs = [], []
            for _ in range(REPEAT):
                proxy.reset()
                t = time.perf_counter()
                p = subprocess.run(cmd, capture_output=True, env=run_env)
                times.append(time.perf_counter() - t)
                if p.returncode:
                    sys.exit(f"{who} failed: {p.stderr.decode().strip()}")
                outs.append(p.stdout)
            row[who] = {"seconds": statistics.median(times), "requests": len(proxy.log), "bytes": proxy.bytes_out()}
            row[who + "_output"] = outs[0]
        if name.startswith(("count", "records")):
            row["identical"] = row["bams3_output"] == row["samtools_output"]
        del row["bams3_output"], row["samtools_output"]
        rows.append(row)
    proxy.close()
    server.stop()

    print(f"convert to S3: {convert_s:.2f} s")
    print(f"{'case':<42} {'tool':<9} {'time s':>7} {'reqs':>5} {'bytes':>13}   ratio (bams3/samtools)")
    for row in rows:
        b, s = row["bams3"], row["samtools"]
        for who, m in (("bams3", b), ("samtools", s)):
            print(f"{row['case'] if who == 'bams3' else '':<42} {who:<9} {m['seconds']:>7.2f} {m['requests']:>5} "
                  f"{m['bytes']:>13,}", end="")
            if who == "samtools":
                print(f"   time {b['seconds'] / s['seconds']:.2f}x, bytes {b['bytes'] / max(s['bytes'], 1):.4f}x"
                      + (f", identical output: {row['identical']}" if "identical" in row else ""))
            else:
                print()
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"convert_seconds": convert_s, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
