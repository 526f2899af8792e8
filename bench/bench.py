#!/usr/bin/env python3
"""bams3 against samtools (BAM+BAI) and CRAM, side by side, in one run.

    python bench/bench.py SAMPLE_DIR [--repeat 3] [--json out.json] [--no-s3] [--only convert,query,...]

SAMPLE_DIR is what ``bench/make-sample.sh OUT [COVERAGE]`` builds (the tests keep one in .cache/sample):
sample.bam(.bai), sample.cram(.crai) and ref.fa. Every measurement is the median
of --repeat runs of a command in a child process (wall time, and peak RSS from
the kernel's accounting of that child); ratios are bams3 / samtools from the same
run. Over S3, a moto server runs on 127.0.0.1 behind a counting proxy, and
requests and bytes are counted at the server for both tools (samtools reads
``s3+http://`` through htslib; ``HTS_S3_HOST`` points it at the proxy).

Sections (``--only``): convert, tobam, size, query, regions, s3, and frames (named only: it
installs oxbow and polars-bio from PyPI). Nothing here asserts a
time; it prints a table (stdout) and writes JSON (--json).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "conformance"))


def run(cmd: list[str], *, env=None, stdout=None, check=True, cwd=None) -> dict:
    """Wall seconds and peak RSS (MB) of one child process."""
    t = time.perf_counter()
    out = subprocess.DEVNULL if stdout is None else stdout
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, env=env, cwd=cwd)
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    if check and p.returncode:
        sys.exit(f"command failed ({p.returncode}): {' '.join(cmd)}\n{err.decode(errors='replace').strip()}")
    return {"seconds": wall, "rss_mb": usage.ru_maxrss / 1024, "returncode": p.returncode,
            "error": err.decode(errors="replace").strip().splitlines()[-1] if p.returncode and err.strip() else ""}


def median_run(cmd, repeat, *, env=None, prepare=None, stdout_path=None) -> dict:
    results = []
    for _ in range(repeat):
        if prepare:
            prepare()
        if stdout_path:
            with open(stdout_path, "wb") as f:
                results.append(run(cmd, env=env, stdout=f))
        else:
            results.append(run(cmd, env=env))
    return {
        "seconds": statistics.median(r["seconds"] for r in results),
        "rss_mb": max(r["rss_mb"] for r in results),
        "runs": [round(r["seconds"], 3) for r in results],
    }


def du(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def md5(path: str) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def regions_for(bam: str) -> dict[str, str]:
    """1 kb, 100 kb and 1 Mbp inside the longest reference, and the shortest reference
    longer than 1 Mbp as the whole contig."""
    import pysam

    with pysam.AlignmentFile(bam) as f:
        refs = list(zip(f.references, f.lengths))
    longest = max(refs, key=lambda r: r[1])[0]
    contig = min((r for r in refs if r[1] > 1_000_000), key=lambda r: r[1])[0]
    return {
        "1 kb": f"{longest}:1,500,001-1,501,000",
        "100 kb": f"{longest}:1,500,001-1,600,000",
        "1 Mbp": f"{longest}:1,000,001-2,000,000",
        "contig": contig,
    }


class Bench:
    def __init__(self, args):
        self.args = args
        self.dir = os.path.abspath(args.sample_dir)
        self.bam = os.path.join(self.dir, "sample.bam")
        self.cram = os.path.join(self.dir, "sample.cram")
        self.tmp = tempfile.mkdtemp(prefix="bams3-bench-", dir=args.tmp)
        self.ds = os.path.join(self.tmp, "sample.bams3")
        self.samtools = shutil.which("samtools")
        if not self.samtools:
            sys.exit("bench needs samtools on PATH (Debian: apt-get install samtools)")
        self.bams3 = shutil.which("bams3") or sys.exit("bench needs bams3 on PATH (pip install .)")
        self.repeat = args.repeat
        self.result: dict = {"sample": self.dir, "repeat": self.repeat, "machine": {"cpus": os.cpu_count()},
                             "tools": self.versions()}
        self.rows: list[tuple] = []

    def versions(self) -> dict:
        import bams3

        st = subprocess.run([self.samtools, "--version"], capture_output=True).stdout.decode("latin-1").splitlines()[0]
        return {"bams3": bams3.__version__, "samtools": st}

    def row(self, section, case, ours, theirs, extra=""):
        self.rows.append((section, case, ours, theirs, extra))

    # ------------------------------------------------------------------ local
    def convert(self):
        rw = os.path.join(self.tmp, "rewrite.bam")
        st = median_run([self.samtools, "view", "-@2", "-b", "-o", rw, self.bam], self.repeat)
        ours = median_run([self.bams3, "convert", self.bam, self.ds, "--force", "--no-progress", "-@", "2"],
                          self.repeat)
        high = os.path.join(self.tmp, "sample.high.bams3")
        hi = median_run([self.bams3, "convert", self.bam, high, "--force", "--no-progress", "-@", "2",
                         "--compression", "high"], self.repeat)
        self.result["convert"] = {"samtools_view_b": st, "bams3_convert": ours, "bams3_convert_high": hi}
        self.row("convert", "BAM -> bams3 (default)", ours, st, f"peak RSS {ours['rss_mb']:.0f} MB")
        self.row("convert", "BAM -> bams3 (--compression high)", hi, st, f"peak RSS {hi['rss_mb']:.0f} MB")
        os.unlink(rw)

    def tobam(self):
        rw = os.path.join(self.tmp, "rewrite.bam")
        back = os.path.join(self.tmp, "back.bam")
        st = median_run([self.samtools, "view", "-@2", "-b", "-o", rw, self.bam], self.repeat)
        ours = median_run([self.bams3, "to-bam", self.ds, back, "-@", "2", "--no-PG"], self.repeat)
        same = _records_md5(back) == _records_md5(self.bam)
        self.result["to_bam"] = {"samtools_view_b": st, "bams3_to_bam": ours, "records_identical": same}
        self.row("to-bam", "bams3 -> BAM", ours, st, f"peak RSS {ours['rss_mb']:.0f} MB; records identical: {same}")
        os.unlink(rw)
        os.unlink(back)

    def size(self):
        high = os.path.join(self.tmp, "sample.high.bams3")
        sizes = {"bam": du(self.bam), "cram": du(self.cram), "bams3": du(self.ds)}
        if os.path.exists(high):
            sizes["bams3_high"] = du(high)
        self.result["size"] = sizes
        for k in ("bams3", "bams3_high"):
            if k in sizes:
                self.rows.append(("size", f"{k} vs BAM / CRAM", sizes[k], sizes["bam"],
                                  f"{sizes[k] / sizes['bam']:.3f}x BAM, {sizes[k] / sizes['cram']:.3f}x CRAM "
                                  f"(BAM {sizes['bam'] / 1e6:.1f} MB, CRAM {sizes['cram'] / 1e6:.1f} MB, "
                                  f"bams3 {sizes[k] / 1e6:.1f} MB)"))

    def query(self):
        regions = regions_for(self.bam)
        out = {}
        a, b = os.path.join(self.tmp, "a.sam"), os.path.join(self.tmp, "b.sam")
        for name, reg in regions.items():
            st = median_run([self.samtools, "view", self.bam, reg], self.repeat, stdout_path=a)
            ours = median_run([self.bams3, "query", self.ds, reg], self.repeat, stdout_path=b)
            same = md5(a) == md5(b)
            mb = os.path.getsize(b) / 1e6
            out[name] = {"region": reg, "samtools": st, "bams3": ours, "identical": same, "sam_mb": mb}
            self.row("query (SAM)", f"{name} {reg}", ours, st,
                     f"{mb:.1f} MB SAM; {mb / ours['seconds']:.0f} vs {mb / st['seconds']:.0f} MB/s; "
                     f"identical: {same}")
        reg = regions["1 Mbp"]
        st = median_run([self.samtools, "view", "-c", self.bam, reg], self.repeat, stdout_path=a)
        ours = median_run([self.bams3, "query", self.ds, reg, "-c"], self.repeat, stdout_path=b)
        same = open(a).read() == open(b).read()
        out["count"] = {"region": reg, "samtools": st, "bams3": ours, "identical": same}
        self.row("query", f"count {reg}", ours, st, f"identical: {same}")
        st = median_run([self.samtools, "flagstat", "-@2", self.bam], self.repeat, stdout_path=a)
        ours = median_run([self.bams3, "stats", self.ds, "--flagstat"], self.repeat, stdout_path=b)
        same = md5(a) == md5(b)
        out["stats"] = {"samtools": st, "bams3": ours, "identical": same}
        self.row("query", "stats --flagstat vs flagstat", ours, st, f"identical: {same}")
        self.result["query"] = out

    def regions(self):
        """Many regions on one command line (samtools view REGION...): 2,000 in random order and
        20,000 sorted, records and counts, each compared with samtools'."""
        import random

        import pysam

        with pysam.AlignmentFile(self.bam) as f:
            refs = [(n, length) for n, length in zip(f.references, f.lengths) if length > 10_000]
        rng = random.Random(5)
        a, b = os.path.join(self.tmp, "a.sam"), os.path.join(self.tmp, "b.sam")
        out = {}
        for n, ordered in ((2000, False), (20000, True)):
            regs = []
            for _ in range(n):
                name, length = rng.choice(refs)
                beg = rng.randint(1, length - 2000)
                regs.append((name, beg, beg + rng.randint(100, 2000)))
            if ordered:
                regs.sort()
            texts = [f"{c}:{s}-{e}" for c, s, e in regs]
            label = f"{n:,} regions ({'sorted' if ordered else 'random order'})"
            st = median_run([self.samtools, "view", self.bam, *texts], self.repeat, stdout_path=a)
            ours = median_run([self.bams3, "query", self.ds, *texts], self.repeat, stdout_path=b)
            same = md5(a) == md5(b)
            mb = os.path.getsize(b) / 1e6
            stc = median_run([self.samtools, "view", "-c", self.bam, *texts], self.repeat, stdout_path=a)
            oursc = median_run([self.bams3, "query", self.ds, "-c", *texts], self.repeat, stdout_path=b)
            same_c = open(a).read() == open(b).read()
            out[label] = {"records": {"samtools": st, "bams3": ours, "identical": same},
                          "count": {"samtools": stc, "bams3": oursc, "identical": same_c}}
            self.row("regions", f"{label}, records", ours, st, f"{mb:.0f} MB SAM; identical: {same}")
            self.row("regions", f"{label}, -c", oursc, stc, f"identical: {same_c}")
        self.result["regions"] = out

    # ------------------------------------------------------------------ S3
    def s3(self):
        import logging

        import boto3

        from bams3.conformance.motoserver import MotoServer
        from bams3.conformance.proxy import CountingProxy

        logging.disable(logging.CRITICAL)
        server = MotoServer()  # its own process
        upstream = server.endpoint
        creds = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}
        s3 = boto3.client("s3", endpoint_url=upstream, **{
            "aws_access_key_id": "bench", "aws_secret_access_key": "bench", "region_name": "us-east-1"})
        s3.create_bucket(Bucket="bench")
        s3.upload_file(self.bam, "bench", "sample.bam")
        s3.upload_file(self.bam + ".bai", "bench", "sample.bam.bai")
        proxy = CountingProxy(upstream)
        env = {**os.environ, **creds, "AWS_ENDPOINT_URL": proxy.endpoint,
               "HTS_S3_HOST": proxy.endpoint.removeprefix("http://"), "HTS_S3_ADDRESS_STYLE": "path"}
        ds_url, bam_url = "s3://bench/sample.bams3", "s3+http://bench/sample.bam"
        proxy.reset()
        conv = run([self.bams3, "convert", self.bam, ds_url, "--no-progress", "-@", "2"], env=env)
        conv.update(requests=len(proxy.log), bytes_in=proxy.bytes_in() if hasattr(proxy, "bytes_in") else None)
        self.row("S3", "convert local BAM -> s3://", conv, None, f"{conv['requests']} requests")
        regions = regions_for(self.bam)
        cases = [(f"records {n} {r}", ["query", ds_url, r], ["view", bam_url, r]) for n, r in regions.items()]
        reg = regions["1 Mbp"]
        flt = ["-F", "0xF04", "-q", "20"]
        ref = reg.split(":")[0]
        depth_start = int(reg.split(":")[1].split("-")[0].replace(",", ""))
        depth_reg = f"{ref}:{depth_start}-{depth_start + 9_999}"  # 10 kb
        cases += [
            (f"count {reg}", ["query", ds_url, reg, "-c"], ["view", "-c", bam_url, reg]),
            (f"count -F 0xF04 -q 20 {reg}", ["query", ds_url, reg, "-c", *flt], ["view", "-c", *flt, bam_url, reg]),
            (f"count -F 0xF04 -q 20 {ref}", ["query", ds_url, ref, "-c", *flt], ["view", "-c", *flt, bam_url, ref]),
            (f"records -F 0xF04 -q 20 {reg}", ["query", ds_url, reg, *flt], ["view", *flt, bam_url, reg]),
            (f"depth -a {depth_reg}", ["depth", ds_url, "-a", "-r", depth_reg], ["depth", "-a", "-r", depth_reg, bam_url]),
            ("stats --flagstat vs flagstat", ["stats", ds_url, "--flagstat"], ["flagstat", bam_url]),
            ("header", ["query", ds_url, "-H", "--no-PG"], ["view", "-H", "--no-PG", bam_url]),
        ]
        out = {"convert": conv, "cases": {}}
        a, b = os.path.join(self.tmp, "a.out"), os.path.join(self.tmp, "b.out")
        for name, ours_args, st_args in cases:
            row = {}
            for who, cmd, path in (("bams3", [self.bams3, *ours_args], b), ("samtools", [self.samtools, *st_args], a)):
                times, reqs, nbytes, failures = [], [], [], []
                while len(times) < self.repeat and len(failures) < 3 * self.repeat:
                    proxy.reset()
                    # htslib saves the remote .bai into the working directory and reuses any
                    # file of that name later without checking it (a stale index gave wrong
                    # offsets here): every samtools run starts in an empty directory.
                    with open(path, "wb") as f, tempfile.TemporaryDirectory(dir=self.tmp) as cwd:
                        r = run(cmd, env=env, stdout=f, check=False, cwd=cwd)
                    if r["returncode"]:  # reported, then retried: a failed run is not a measurement
                        failures.append(r["error"])
                        continue
                    times.append(r["seconds"])
                    reqs.append(len(proxy.log))
                    nbytes.append(proxy.bytes_out())
                if not times:
                    sys.exit(f"{who} failed every run of {name}: {failures[-1]}")
                row[who] = {"seconds": statistics.median(times), "requests": int(statistics.median(reqs)),
                            "bytes": int(statistics.median(nbytes)), "runs": [round(t, 3) for t in times],
                            "failed_runs": failures}
            row["identical"] = md5(a) == md5(b)
            out["cases"][name] = row
            self.row("S3", name, row["bams3"], row["samtools"],
                     f"{row['bams3']['requests']} vs {row['samtools']['requests']} requests, "
                     f"{row['bams3']['bytes']:,} vs {row['samtools']['bytes']:,} B "
                     f"({row['bams3']['bytes'] / max(row['samtools']['bytes'], 1):.4f}x)"
                     + (f"; identical: {row['identical']}" if "identical" in row else "")
                     + "".join(f"; {w} FAILED {len(row[w]['failed_runs'])}x ({row[w]['failed_runs'][0]})"
                               for w in ("bams3", "samtools") if row[w]["failed_runs"]))
        proxy.close()
        server.stop()
        self.result["s3"] = out

    # ------------------------------------------------------------------ frames
    FRAME_CHILD = r"""
import hashlib, json, sys, time
tool, source, region, fields = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
import polars as pl
if tool == "bams3":
    import pyarrow  # noqa: F401 - imported before the clock starts, as oxbow's import brings it
    import bams3
    ds = bams3.open(source)
    names = {"qname": "name", "flag": "flag", "rname": "rname", "pos": "pos", "end": "end", "mapq": "mapq"}
    cols = None if fields is None else [names[f] for f in fields]
    t = time.perf_counter()
    df = ds.to_polars(region, columns=cols)
elif tool == "oxbow":
    import oxbow as ox
    t = time.perf_counter()
    df = ox.from_bam(source, regions=region, **({} if fields is None else {"fields": fields})).pl()
else:
    import polars_bio as pb
    ref, span = region.split(":")
    beg, end = (int(x.replace(",", "")) for x in span.split("-"))
    t = time.perf_counter()
    lf = pb.scan_bam(source).filter((pl.col("chrom") == ref) & (pl.col("start") <= end) & (pl.col("end") >= beg))
    if fields is not None:
        lf = lf.select([{"qname": "name", "flag": "flags", "rname": "chrom", "pos": "start", "end": "end",
                         "mapq": "mapping_quality"}[f] for f in fields])
    df = lf.collect()
seconds = time.perf_counter() - t
pos = df.get_column({"bams3": "pos", "oxbow": "pos", "polars_bio": "start"}[tool]).cast(pl.Int64).to_list()
print(json.dumps({"seconds": seconds, "rows": df.height, "columns": df.width,
                  "pos_md5": hashlib.md5(json.dumps(pos).encode()).hexdigest()}))
"""

    def frames(self):
        """1 Mbp into a Polars frame: bams3 (from the dataset) against oxbow and polars-bio (from
        the BAM), all fields and a 5-field projection, timed in-process after the imports; the
        peers are installed from PyPI when missing. Rows compared by their positions."""
        missing = [m for m in ("oxbow", "polars_bio", "polars") if importlib.util.find_spec(m) is None]
        if missing:
            run([sys.executable, "-m", "pip", "install", "-q", "oxbow", "polars-bio", "polars"])
        region = regions_for(self.bam)["1 Mbp"]
        out = {}
        for label, fields in (("all fields", None), ("5 fields", ["flag", "rname", "pos", "end", "mapq"])):
            row = {}
            for tool, source in (("bams3", self.ds), ("oxbow", self.bam), ("polars_bio", self.bam)):
                runs = []
                for _ in range(self.repeat):
                    p = subprocess.run([sys.executable, "-c", self.FRAME_CHILD, tool, source, region, json.dumps(fields)],
                                       capture_output=True, text=True)
                    if p.returncode:
                        runs.append({"error": p.stderr.strip().splitlines()[-1:]})
                        break
                    runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
                ok = [r for r in runs if "seconds" in r]
                row[tool] = {"seconds": statistics.median(r["seconds"] for r in ok) if ok else None,
                             "rows": ok[0]["rows"] if ok else None, "pos_md5": ok[0]["pos_md5"] if ok else None,
                             "error": None if ok else runs[-1]["error"]}
            out[label] = row
            peers = [row[t]["seconds"] for t in ("oxbow", "polars_bio") if row[t]["seconds"]]
            same = len({row[t]["pos_md5"] for t in row if row[t]["pos_md5"]}) == 1
            ours = row["bams3"]
            self.row("frames", f"1 Mbp -> Polars, {label}", {"seconds": ours["seconds"]},
                     {"seconds": min(peers)} if peers else None,
                     f"oxbow {row['oxbow']['seconds'] or 0:.3f}s, polars-bio {row['polars_bio']['seconds'] or 0:.3f}s;"
                     f" rows {ours['rows']}; same positions: {same}")
        self.result["frames"] = out

    # ------------------------------------------------------------------ report
    def report(self):
        print(f"\nbams3 vs samtools on {self.dir} (median of {self.repeat}; ratio = bams3 / samtools)\n")
        print(f"{'section':<12} {'case':<44} {'bams3':>9} {'samtools':>9} {'ratio':>7}  notes")
        for section, case, ours, theirs, extra in self.rows:
            if section == "size":
                print(f"{section:<12} {case:<44} {ours / 1e6:>7.1f}MB {theirs / 1e6:>7.1f}MB "
                      f"{ours / theirs:>6.3f}x  {extra}")
                continue
            t1 = ours["seconds"]
            t2 = theirs["seconds"] if theirs else None
            ratio = f"{t1 / t2:>6.2f}x" if t2 else "      -"
            print(f"{section:<12} {case[:44]:<44} {t1:>8.2f}s {(f'{t2:.2f}s' if t2 else '-'):>9} {ratio}  {extra}")


def _records_md5(bam: str) -> str:
    """md5 of the raw records of a BAM (not its compression)."""
    sys.path.insert(0, os.path.join(HERE, ".."))
    from bams3 import bgzf
    from bams3.records import split_records

    h = hashlib.md5()
    with open(bam, "rb") as f:
        header, batches = split_records(bgzf.decompress_stream(f.read))
        h.update(header.to_bam_bytes())
        for b in batches:
            h.update(memoryview(b.data)[b.offsets[0] : b.offsets[-1]])
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sample_dir")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--no-s3", action="store_true")
    ap.add_argument("--only", default="convert,tobam,size,query,regions,s3",
                    help="sections; 'frames' (oxbow and polars-bio, installed from PyPI) runs only when named")
    ap.add_argument("--tmp", default=None, help="where the datasets are written (default: the system temp dir)")
    args = ap.parse_args()
    b = Bench(args)
    sections = [s.strip() for s in args.only.split(",")]
    if args.no_s3 and "s3" in sections:
        sections.remove("s3")
    if "convert" not in sections and any(s in sections for s in ("tobam", "size", "query", "regions", "frames")):
        run([b.bams3, "convert", b.bam, b.ds, "--force", "--no-progress"])
    try:
        for s in sections:
            getattr(b, s)()
    finally:
        b.report()
        if args.json_out:
            b.result["table"] = [
                {"section": s, "case": c,
                 "bams3": o if not isinstance(o, dict) else {k: v for k, v in o.items()},
                 "samtools": t, "notes": e} for s, c, o, t, e in b.rows]
            with open(args.json_out, "w") as f:
                json.dump(b.result, f, indent=1)
        shutil.rmtree(b.tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
