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

Sections (``--only``): convert, tobam, size, query, latency, regions, s3, serve, cohort
(bench/cohort.py: ``--cohort-samples`` samples on the S3 test server), and frames (named only:
it installs oxbow and polars-bio from PyPI). Nothing here asserts a
time; it prints a table (stdout) and writes JSON (--json).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
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
    return {"seconds": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024,
            "returncode": p.returncode,
            "error": err.decode(errors="replace").strip().splitlines()[-1] if p.returncode and err.strip() else ""}


def median_run(cmd, repeat, *, env=None, prepare=None, stdout_path=None) -> dict:
    results = []
    for _ in range(repeat):
        if prepare:
            prepare()
        results.append(_run_to(cmd, stdout_path, env=env))
    return _summary(results)


def interleaved_runs(cmds: dict[str, list[str]], repeat: int, stdout_paths: dict[str, str] | None = None
                     ) -> dict[str, dict]:
    """median_run of each command, their runs taken in turn (a round: one run of each), so that
    the commands compared meet the same load: on this machine the time of one command moves by
    up to 30% from one minute to the next. ``stdout_paths``: where a command's output goes."""
    results: dict[str, list[dict]] = {k: [] for k in cmds}
    for _ in range(repeat):
        for k, cmd in cmds.items():
            results[k].append(_run_to(cmd, (stdout_paths or {}).get(k)))
    return {k: _summary(rs) for k, rs in results.items()}


def _run_to(cmd: list[str], stdout_path: str | None, env=None) -> dict:
    """run(cmd), its output written to ``stdout_path`` (None: discarded)."""
    if not stdout_path:
        return run(cmd, env=env)
    with open(stdout_path, "wb") as f:
        return run(cmd, env=env, stdout=f)


def _summary(results: list[dict]) -> dict:
    return {
        "seconds": statistics.median(r["seconds"] for r in results),
        "cpu": statistics.median(r["cpu"] for r in results),
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


def thousand_interval_bed(bam: str, path: str) -> str:
    """The latency rows' BED (written to ``path``): 1,000 intervals of 50-1,000 bp at random
    (seed 11) on the references of more than 10 kbp, in no order."""
    import random

    import pysam

    with pysam.AlignmentFile(bam) as f:
        refs = [(n, length) for n, length in zip(f.references, f.lengths) if length > 10_000]
    rng = random.Random(11)
    with open(path, "w") as f:
        for _ in range(1000):
            name, length = rng.choice(refs)
            beg = rng.randrange(0, length - 1000)
            f.write(f"{name}\t{beg}\t{beg + rng.randint(50, 1000)}\n")
    return path


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
        self.ref = os.path.join(self.dir, "ref.fa")
        self.tmp = tempfile.mkdtemp(prefix="bams3-bench-", dir=args.tmp)
        self.ds = os.path.join(self.tmp, "sample.bams3")
        self.samtools = shutil.which("samtools")
        if not self.samtools:
            sys.exit("bench needs samtools on PATH (Debian: apt-get install samtools)")
        self.bams3 = bams3_program() or sys.exit("bench needs bams3 installed (pip install .)")
        self.bytecode = _compile_bytecode()
        self.repeat = args.repeat
        self.result: dict = {"sample": self.dir, "repeat": self.repeat, "machine": {"cpus": os.cpu_count()},
                             "tools": self.versions(), "bams3_program": self.bams3, "bytecode": self.bytecode}
        self.rows: list[tuple] = []

    def versions(self) -> dict:
        import bams3

        st = subprocess.run([self.samtools, "--version"], capture_output=True).stdout.decode("latin-1").splitlines()[0]
        return {"bams3": bams3.__version__, "samtools": st}

    def row(self, section, case, ours, theirs, extra=""):
        self.rows.append((section, case, ours, theirs, extra))

    # ------------------------------------------------------------------ local
    CRAMS = {"cram30": ("CRAM 3.0", []), "cram31_small": ("CRAM 3.1 small", ["-O", "cram,version=3.1,small"]),
             "cram31_archive": ("CRAM 3.1 archive", ["-O", "cram,version=3.1,archive"])}

    def convert(self):
        """bams3 against the tools a storage-conscious user would pick: CRAM 3.0 (samtools view
        -C, with the reference), CRAM 3.1 small and archive; and against BAM (view -b)."""
        rw = os.path.join(self.tmp, "rewrite.bam")
        high = os.path.join(self.tmp, "sample.high.bams3")
        cmds = {"view_b": [self.samtools, "view", "-@2", "-b", "-o", rw, self.bam]}
        for key, (_, opts) in self.CRAMS.items():
            cmds[key] = [self.samtools, "view", "-@2", "-C", *opts, "-T", self.ref, "-o",
                         os.path.join(self.tmp, f"{key}.cram"), self.bam]
        cmds["ours"] = [self.bams3, "convert", self.bam, self.ds, "--force", "--no-progress", "-@", "2"]
        cmds["high"] = [self.bams3, "convert", self.bam, high, "--force", "--no-progress", "-@", "2",
                        "--compression", "high"]
        got = interleaved_runs(cmds, self.repeat)  # in turn: a slow minute slows every tool alike
        st, ours, hi = got["view_b"], got["ours"], got["high"]
        crams = {}
        for key in self.CRAMS:
            out = os.path.join(self.tmp, f"{key}.cram")
            crams[key] = {**got[key], "bytes": os.path.getsize(out)}
            os.unlink(out)
        sharded = os.path.join(self.tmp, "sample.sharded.bams3")
        sh = median_run([self.bams3, "convert", self.bam, sharded, "--force", "--no-progress", "-@", "2",
                         "--engine", "dask", "--dask-workers", "2", "--shard-size", "16M"], self.repeat)
        same = _dataset_chunks(sharded) == _dataset_chunks(self.ds)
        shutil.rmtree(sharded)
        self.result["convert"] = {"samtools_view_b": st, "bams3_convert": ours, "bams3_convert_high": hi,
                                  "bams3_convert_sharded": {**sh, "identical": same}, **crams}
        self.row("convert", "default vs CRAM 3.0 (-C -T ref.fa)", ours, crams["cram30"],
                 f"peak RSS {ours['rss_mb']:.0f} MB")
        self.row("convert", "high vs CRAM 3.1 small", hi, crams["cram31_small"], f"peak RSS {hi['rss_mb']:.0f} MB")
        self.row("convert", "high vs CRAM 3.1 archive", hi, crams["cram31_archive"], "")
        self.row("convert", "default vs BAM (view -b)", ours, st, "")
        self.row("convert", "--engine dask (2 workers) vs CRAM 3.0", sh, crams["cram30"],
                 f"LocalCluster start included; same chunks as one process: {same}")
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
        """Sizes against BAM and the CRAMs convert() wrote (the sample's own CRAM when it did not run)."""
        high = os.path.join(self.tmp, "sample.high.bams3")
        sizes = {"bam": du(self.bam), "cram": du(self.cram), "bams3": du(self.ds)}
        if os.path.exists(high):
            sizes["bams3_high"] = du(high)
        for key in self.CRAMS:
            if key in self.result.get("convert", {}):
                sizes[key] = self.result["convert"][key]["bytes"]
        self.result["size"] = sizes
        cram30 = sizes.get("cram30", sizes["cram"])
        self.rows.append(("size", "default vs CRAM 3.0", sizes["bams3"], cram30,
                          f"{sizes['bams3'] / sizes['bam']:.3f}x BAM ({sizes['bam'] / 1e6:.1f} MB)"))
        if "bams3_high" in sizes:
            for key in ("cram31_small", "cram31_archive"):
                if key in sizes:
                    self.rows.append(("size", f"high vs {self.CRAMS[key][0]}", sizes["bams3_high"], sizes[key],
                                      f"{sizes['bams3_high'] / sizes['bam']:.3f}x BAM"))

        self.real_qualities()

    def real_qualities(self):
        """The sample's qualities are simulated (ART: they follow the cycle); real instruments'
        follow the quality before. HTSlib's ce#1000.sam (1,000 GA II reads, in the repository):
        the qual column bams3 writes against the QS block of CRAM 3.1 archive (fqzcomp)."""
        import pysam

        src = os.path.join(HERE, "..", "tests", "data", "htslib", "ce#1000.sam")
        ds, cram = os.path.join(self.tmp, "ce1000.bams3"), os.path.join(self.tmp, "ce1000.cram")
        run([self.bams3, "convert", src, ds, "--force", "--no-progress"])
        run([self.samtools, "view", "-O", "cram,version=3.1,archive,no_ref", "-o", cram, src])
        qs = [line.split() for line in pysam.samtools.cram_size(cram).splitlines() if line.endswith(" QS")]
        theirs = sum(int(f[3]) for f in qs)
        sys.path.insert(0, os.path.join(HERE, ".."))
        import bams3

        d = bams3.open(ds)
        ours = 0
        for i in range(len(d.chunks)):
            entry = d.source.directory(i).columns[16]
            ours += entry[1]
        self.result["size"]["real_qualities"] = {"bams3_qual": ours, "cram31_archive_qs": theirs}
        self.rows.append(("size", "real qualities (ce#1000) vs CRAM 3.1 arch.", ours, theirs,
                          "100,000 GA II qualities; bams3's qual codec chooses scheme 3 (previous quality)"))
        shutil.rmtree(ds)
        os.unlink(cram)

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

    def latency(self):
        """A whole process for the smallest questions, wall and CPU: --version, a 1 Mbp count, SAM
        of 1 kb, statistics, and a 1,000-interval BED (records and -c), each against samtools; and
        the interpreter alone (``python -c pass``, with this environment's site-packages), the
        floor under every bams3 process here."""
        regions = regions_for(self.bam)
        a, b = os.path.join(self.tmp, "a.txt"), os.path.join(self.tmp, "b.txt")
        out = {}

        def case(label, ours_cmd, st_cmd, compare=True):
            got = interleaved_runs({"st": st_cmd, "ours": ours_cmd}, self.repeat, {"st": a, "ours": b})
            st, ours = got["st"], got["ours"]
            same = md5(a) == md5(b) if compare else None
            out[label] = {"samtools": st, "bams3": ours, **({"identical": same} if compare else {})}
            self.row("latency", label, ours, st, f"CPU {ours['cpu']:.3f}s vs {st['cpu']:.3f}s "
                     f"({ours['cpu'] / max(st['cpu'], 1e-3):.1f}x)" + (f"; identical: {same}" if compare else ""))

        case("python -c pass (the interpreter's floor here)", [sys.executable, "-c", "pass"],
             [self.samtools, "--version"], compare=False)
        case("--version", [self.bams3, "--version"], [self.samtools, "--version"], compare=False)
        case(f"count {regions['1 Mbp']}", [self.bams3, "query", self.ds, regions["1 Mbp"], "-c"],
             [self.samtools, "view", "-c", self.bam, regions["1 Mbp"]])
        case(f"SAM {regions['1 kb']}", [self.bams3, "query", self.ds, regions["1 kb"]],
             [self.samtools, "view", self.bam, regions["1 kb"]])
        case("stats --flagstat", [self.bams3, "stats", self.ds, "--flagstat"], [self.samtools, "flagstat", self.bam])
        bed = thousand_interval_bed(self.bam, os.path.join(self.tmp, "targets.bed"))
        case("1,000-interval BED, records", [self.bams3, "query", self.ds, "-L", bed],
             [self.samtools, "view", "-L", bed, self.bam])
        case("1,000-interval BED, -c", [self.bams3, "query", self.ds, "-c", "-L", bed],
             [self.samtools, "view", "-c", "-L", bed, self.bam])
        self.result["latency"] = out

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
    def _s3_server(self):
        """A moto server (its own process) holding s3://bench/sample.bam(.bai), a counting proxy
        in front of it, and the environment that points children (bams3, htslib, boto-based
        and object_store-based readers) at the proxy."""
        import logging

        import boto3

        from bams3.conformance.motoserver import MotoServer
        from bams3.conformance.proxy import CountingProxy

        logging.disable(logging.CRITICAL)
        server = MotoServer()  # its own process
        try:
            upstream = server.endpoint
            creds = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}
            s3 = boto3.client("s3", endpoint_url=upstream, **{
                "aws_access_key_id": "bench", "aws_secret_access_key": "bench", "region_name": "us-east-1"})
            s3.create_bucket(Bucket="bench")
            s3.upload_file(self.bam, "bench", "sample.bam")
            s3.upload_file(self.bam + ".bai", "bench", "sample.bam.bai")
            proxy = CountingProxy(upstream)
        except BaseException:
            server.stop()
            raise
        env = {**os.environ, **creds, "AWS_ENDPOINT_URL": proxy.endpoint,
               "HTS_S3_HOST": proxy.endpoint.removeprefix("http://"), "HTS_S3_ADDRESS_STYLE": "path"}
        return server, proxy, env

    def s3(self):
        server, proxy, env = self._s3_server()
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

    # ------------------------------------------------------------------ cohort
    def cohort(self):
        """A region counted over a cohort on the S3 test server (bench/cohort.py): `bams3 cohort
        count` on datasets with a count index and without, against `samtools view -c` on BAM+BAI
        in a pool of as many processes."""
        import cohort as cohort_bench  # bench/cohort.py, beside this script

        n = self.args.cohort_samples
        r = cohort_bench.measure(self.dir, self.bams3, n, 16, self.repeat, self.tmp)
        self.result["cohort"] = r
        s = r["samtools"]
        for who, label in (("bams3", "count index"), ("bams3-no-index", "no index")):
            b = r[who]
            self.row("cohort", f"count, {n} samples, {label}", b, s,
                     f"{b['requests']} vs {s['requests']} requests ({b['requests'] / n:g} a sample), "
                     f"{b['bytes']:,} vs {s['bytes']:,} B; correct {b['correct']}/{n} vs {s['correct']}/{n}")

    # ------------------------------------------------------------------ frames
    FRAME_CHILD = r"""
import hashlib, json, sys, time
tool, source, region, fields = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
import polars as pl
if tool == "bams3":
    import pyarrow  # noqa: F401 - imported before the clock starts, as oxbow's import brings it
    import bams3
    import bams3.dataset  # noqa: F401 - what bams3.open imports on first use, and the plugins it loads:
    bams3.get_registry()  # imports, so before the clock (opening, a GET over S3, is timed)
    names = {"qname": "name", "flag": "flag", "rname": "rname", "pos": "pos", "end": "end", "mapq": "mapq"}
    cols = None if fields is None else [names[f] for f in fields]
    t = time.perf_counter()
    df = bams3.open(source).to_polars(region, columns=cols)
elif tool in ("oxbow", "oxbow_1mib"):
    import oxbow as ox
    kw = {} if fields is None else {"fields": fields}
    if source.startswith("s3://"):
        import fsspec
        import s3fs  # noqa: F401 - what fsspec imports for s3:// on first use
        if tool == "oxbow":  # the documented way: URLs through fsspec (s3fs, its default 50 MiB blocks);
            kw["index"] = source + ".bai"  # the .bai is not found by itself for a URL
        else:  # the same reader, tuned: file objects with 1 MiB blocks
            fs, url = fsspec.filesystem("s3", default_block_size=1 << 20), source
            source, kw["index"] = (lambda: fs.open(url, "rb")), (lambda: fs.open(url + ".bai", "rb"))
    t = time.perf_counter()
    df = ox.from_bam(source, regions=region, **kw).pl()
elif tool == "pysam":  # htslib's BAM+BAI range reader, records into a frame in Python
    import pysam
    get = {"name": lambda r: r.query_name, "flag": lambda r: r.flag, "rname": lambda r: r.reference_name,
           "pos": lambda r: r.reference_start + 1, "end": lambda r: r.reference_end,
           "mapq": lambda r: r.mapping_quality, "cigar": lambda r: r.cigarstring,
           "rnext": lambda r: r.next_reference_name, "pnext": lambda r: r.next_reference_start + 1,
           "tlen": lambda r: r.template_length, "seq": lambda r: r.query_sequence, "qual": lambda r: r.qual}
    cols = list(get) if fields is None else [{"qname": "name"}.get(f, f) for f in fields]
    t = time.perf_counter()
    with pysam.AlignmentFile(source) as f:
        recs = list(f.fetch(region=region.replace(",", "")))
    df = pl.DataFrame({c: [get[c](r) for r in recs] for c in cols})
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
pos = df.get_column("start" if tool == "polars_bio" else "pos").cast(pl.Int64).to_list()
print(json.dumps({"seconds": seconds, "rows": df.height, "columns": df.width,
                  "pos_md5": hashlib.md5(json.dumps(pos).encode()).hexdigest()}))
"""
    FRAME_FIELDS = (("all fields", None), ("5 fields", ["flag", "rname", "pos", "end", "mapq"]))
    FRAME_NAMES = {"bams3": "bams3", "oxbow": "oxbow", "oxbow_1mib": "oxbow (1 MiB blocks)",
                   "polars_bio": "polars-bio", "pysam": "pysam"}

    def _frame_tool(self, tool, source, region, fields, *, env=None, proxy=None) -> dict:
        """self.repeat runs of FRAME_CHILD for one tool: the median of the in-process seconds, rows
        and positions' md5, and with a proxy, what the server saw for each run (reset before it).
        A failed run stops the tool; its error is kept (the others go on)."""
        runs = []
        for _ in range(self.repeat):
            if proxy:
                proxy.reset()
            # htslib saves a remote .bai in the working directory and reuses it blindly: a fresh one each run
            with tempfile.TemporaryDirectory(dir=self.tmp) as cwd:
                try:
                    p = subprocess.run([sys.executable, "-c", self.FRAME_CHILD, tool, source, region,
                                        json.dumps(fields)], capture_output=True, text=True, env=env,
                                       cwd=cwd if proxy else None, timeout=900)
                except subprocess.TimeoutExpired:
                    runs.append({"error": "timed out after 900 s"})
                    break
            if p.returncode:
                runs.append({"error": (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]})
                break
            r = json.loads(p.stdout.strip().splitlines()[-1])
            if proxy:
                r.update(requests=len(proxy.log), bytes=proxy.bytes_out())
            runs.append(r)
        ok = [r for r in runs if "seconds" in r]
        out = {"seconds": statistics.median(r["seconds"] for r in ok) if ok else None,
               "rows": ok[0]["rows"] if ok else None, "pos_md5": ok[0]["pos_md5"] if ok else None,
               "runs": [round(r["seconds"], 3) for r in ok], "error": runs[-1].get("error")}
        if proxy:
            out.update(requests=int(statistics.median(r["requests"] for r in ok)) if ok else None,
                       bytes=int(statistics.median(r["bytes"] for r in ok)) if ok else None)
        return out

    def frames(self):
        """1 Mbp into a Polars frame: bams3 (from the dataset) against oxbow and polars-bio (from
        the BAM), all fields and a 5-field projection, timed in-process after the imports; the
        peers are installed from PyPI when missing. Rows compared by their positions. Then the
        same over S3 (_frames_s3)."""
        missing = [m for m in ("oxbow", "polars_bio", "polars") if importlib.util.find_spec(m) is None]
        if missing:
            run([sys.executable, "-m", "pip", "install", "-q", "oxbow", "polars-bio", "polars"])
        region = regions_for(self.bam)["1 Mbp"]
        out = {}
        for label, fields in self.FRAME_FIELDS:
            row = {tool: self._frame_tool(tool, source, region, fields)
                   for tool, source in (("bams3", self.ds), ("oxbow", self.bam), ("polars_bio", self.bam))}
            out[label] = row
            peers = [row[t]["seconds"] for t in ("oxbow", "polars_bio") if row[t]["seconds"]]
            same = len({row[t]["pos_md5"] for t in row if row[t]["pos_md5"]}) == 1
            ours = row["bams3"]
            self.row("frames", f"1 Mbp -> Polars, {label}", {"seconds": ours["seconds"] or float("nan")},
                     {"seconds": min(peers)} if peers else None,
                     ", ".join(self._frame_note(t, row[t]) for t in ("oxbow", "polars_bio"))
                     + f"; rows {ours['rows']}; same positions: {same}"
                     + ("" if ours["seconds"] else f"; bams3 FAILED ({ours['error']})"))
        self.result["frames"] = out
        self._iteration(region)
        self._frames_s3(region, out)

    ITER_CHILD = r"""
import hashlib, sys, time
tool, source, contig, start, stop = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
import pysam
if tool == "bams3":
    import bams3, bams3.dataset  # noqa: F401 - imports before the clock, as pysam's
    bams3.get_registry()
t = time.perf_counter()
f = bams3.open(source) if tool == "bams3" else pysam.AlignmentFile(source)
reads = list(f.fetch(contig, start, stop))
seconds = time.perf_counter() - t
h = hashlib.md5()
for r in reads:
    h.update(r.to_string().encode())
print(seconds, len(reads), h.hexdigest())
"""

    def _iteration(self, region):
        """pysam's AlignmentFile.fetch of the megabase (pysam.AlignedSegment objects, kept in a
        list) from the BAM, against bams3's Dataset.fetch from the dataset; reads compared by
        their SAM text after the clock."""
        contig, span = region.split(":")
        beg, end = (int(x.replace(",", "")) for x in span.split("-"))
        row = {}
        for tool, source in (("bams3", self.ds), ("pysam", self.bam)):
            runs = []
            for _ in range(self.repeat):
                p = subprocess.run([sys.executable, "-c", self.ITER_CHILD, tool, source, contig, str(beg - 1), str(end)],
                                   capture_output=True, text=True)
                if p.returncode:
                    runs = [p.stderr.strip().splitlines()[-1:]]
                    break
                sec, n, digest = p.stdout.split()
                runs.append((float(sec), int(n), digest))
            ok = [r for r in runs if isinstance(r, tuple)]
            row[tool] = {"seconds": statistics.median(r[0] for r in ok) if ok else None,
                         "reads": ok[0][1] if ok else None, "md5": ok[0][2] if ok else None,
                         "error": None if ok else runs[0]}
        same = row["bams3"]["md5"] is not None and row["bams3"]["md5"] == row["pysam"]["md5"]
        self.row("frames", "1 Mbp -> pysam AlignedSegments (fetch)", {"seconds": row["bams3"]["seconds"] or float("nan")},
                 {"seconds": row["pysam"]["seconds"]} if row["pysam"]["seconds"] else None,
                 f"anchor: pysam {importlib.metadata.version('pysam')} on the BAM; reads {row['bams3']['reads']}; identical: {same}"
                 + "".join(f"; {t} FAILED ({row[t]['error']})" for t in row if row[t]["error"]))
        self.result["frames"]["iteration"] = row

    def _frame_note(self, tool, r, io=False) -> str:
        name = self.FRAME_NAMES[tool]
        if r["seconds"] is None:
            return f"{name} FAILED ({r['error']})"
        return f"{name} {r['seconds']:.3f}s" + (f" {r['requests']} req {r['bytes']:,} B" if io else "")

    def _frames_s3(self, region, local):
        """The same two cases with the data on the S3 test server (moto behind the counting proxy,
        as in the s3 section): bams3 from s3://bench/sample.bams3 (the local dataset, copied up
        with bams3 cp); oxbow through fsspec/s3fs as documented (s3fs's default 50 MiB blocks) and
        with 1 MiB blocks; polars-bio (its object store reads AWS_ENDPOINT_URL); pysam (htslib's
        BAM+BAI range reader, HTS_S3_HOST), each from s3://bench/sample.bam(.bai). Requests and
        bytes sent to the client are counted at the server for every run."""
        if importlib.util.find_spec("s3fs") is None:  # oxbow reads s3:// through fsspec's s3fs
            pin = []  # s3fs's aiobotocore pins botocore: keep the installed one (boto3, awscli pin it too)
            if importlib.util.find_spec("botocore") is not None:
                from importlib.metadata import version

                pin = [f"botocore=={version('botocore')}"]
            run([sys.executable, "-m", "pip", "install", "-q", "s3fs", *pin], check=False)
        out = {"region": region}
        try:
            server, proxy, env = self._s3_server()
        except Exception as e:  # noqa: BLE001 - reported in the table, not fatal to the section
            out["error"] = f"S3 test server: {e}"
            self.row("frames S3", "S3 test server", {"seconds": float("nan")}, None, f"FAILED ({e})")
            self.result["frames"]["s3"] = out
            return
        try:
            ds_url, bam_url = "s3://bench/sample.bams3", "s3://bench/sample.bam"
            cp = run([self.bams3, "cp", self.ds, ds_url, "--no-progress"], env=env, check=False)
            if cp["returncode"]:
                out["cp_error"] = cp["error"]
            tools = (("bams3", ds_url), ("oxbow", bam_url), ("oxbow_1mib", bam_url), ("polars_bio", bam_url),
                     ("pysam", "s3+http://bench/sample.bam"))  # the proxy speaks http
            peers = [t for t, _ in tools if t != "bams3"]
            for label, fields in self.FRAME_FIELDS:
                row = {tool: self._frame_tool(tool, source, region, fields, env=env, proxy=proxy)
                       for tool, source in tools}
                if cp["returncode"] and row["bams3"]["error"]:
                    row["bams3"]["error"] = f"bams3 cp to S3 failed: {cp['error']}; {row['bams3']['error']}"
                ours = row["bams3"]
                local_md5 = local.get(label, {}).get("bams3", {}).get("pos_md5")
                md5s = {row[t]["pos_md5"] for t in row if row[t]["pos_md5"]} | ({local_md5} if local_md5 else set())
                same = len(md5s) == 1
                ok = [t for t in peers if row[t]["seconds"] is not None]
                # the bytes ratio is taken against the peer that moved the fewest bytes (the best-informed
                # reader of the BAM+BAI) among those that returned the same rows as bams3
                informed = [t for t in ok if row[t]["pos_md5"] == ours["pos_md5"]] or ok
                best = min(informed, key=lambda t: row[t]["bytes"]) if informed else None
                fastest = min(ok, key=lambda t: row[t]["seconds"]) if ok else None
                ratio = (f"; bytes bams3/{self.FRAME_NAMES[best]} {ours['bytes'] / max(row[best]['bytes'], 1):.4f}x"
                         if best and ours["bytes"] is not None else "")
                row["bytes_ratio"] = {"peer": best, "ratio": ours["bytes"] / max(row[best]["bytes"], 1)} \
                    if best and ours["bytes"] is not None else None
                row["fastest_peer"] = fastest
                row["same_positions"] = same
                out[label] = row
                self.row("frames S3", f"1 Mbp -> Polars, {label}", {"seconds": ours["seconds"] or float("nan")},
                         {"seconds": row[fastest]["seconds"]} if fastest else None,
                         "; ".join(self._frame_note(t, row[t], io=True) for t, _ in tools) + ratio
                         + f"; fastest peer {self.FRAME_NAMES[fastest] if fastest else '-'}; rows {ours['rows']}"
                         f"; same positions (and as local): {same}")
        finally:
            proxy.close()
            server.stop()
        self.result["frames"]["s3"] = out

    # ------------------------------------------------------------------ serve
    def serve(self):
        """An htsget ticket for the megabase from bams3 serve (in this process, the store's reads
        counted by --trace's counters; the data fetched over HTTP as a client would), all fields
        and fields=QNAME,FLAG,RNAME,POS,MAPQ, against what an htsget server of the BAM sends: the
        byte ranges of BGZF blocks its BAI's bins and linear index give for the region (as
        htsget-rs computes them), whole blocks, plus the header's blocks. Then htslib reading the
        ticket URL (samtools view -c, the server in its own process) against samtools on the BAM."""
        import socket
        import urllib.request

        sys.path.insert(0, os.path.join(HERE, ".."))
        from bams3.serve import Server
        from bams3.storage import start_trace, trace_totals

        region = regions_for(self.bam)["1 Mbp"]
        contig, span = region.split(":")
        beg, end = (int(x.replace(",", "")) for x in span.split("-"))
        beg -= 1
        start_trace()
        server = Server(self.ds)
        import threading

        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        uv = uvicorn.Server(uvicorn.Config(server.app(), log_level="warning", access_log=False, lifespan="off"))
        threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True).start()
        while not uv.started:
            time.sleep(0.05)
        ident = os.path.basename(self.ds.rstrip("/")).removesuffix(".bams3")
        out = {}
        for label, fields in (("all fields", None), ("QNAME,FLAG,RNAME,POS,MAPQ", "QNAME,FLAG,RNAME,POS,MAPQ")):
            server._prepared = type(server._prepared)(2, 256 << 20)  # nothing made before this case
            url = f"http://127.0.0.1:{port}/reads/{ident}?referenceName={contig}&start={beg}&end={end}"
            if fields:
                url += f"&fields={fields}"
            before = trace_totals()
            t = time.perf_counter()
            ticket = json.loads(urllib.request.urlopen(url).read())
            sent = 0
            for u in ticket["htsget"]["urls"]:
                if not u["url"].startswith("data:"):
                    sent += len(urllib.request.urlopen(u["url"]).read())
            seconds = time.perf_counter() - t
            after = trace_totals()
            out[label] = {"seconds": seconds, "store_bytes": after["bytes_in"] - before["bytes_in"],
                          "store_requests": after["requests"] - before["requests"], "sent_bytes": sent,
                          "urls": len(ticket["htsget"]["urls"])}
        uv.should_exit = True
        bai = bai_ranges(self.bam, contig, beg, end)
        out["BAM+BAI htsget"] = bai
        for label in ("all fields", "QNAME,FLAG,RNAME,POS,MAPQ"):
            r = out[label]
            self.row("serve", f"1 Mbp ticket, {label}", {"seconds": r["seconds"]}, None,
                     f"store {r['store_requests']} requests {r['store_bytes']:,} B; sent {r['sent_bytes']:,} B "
                     f"({r['sent_bytes'] / bai['bytes']:.3f}x BAM+BAI htsget's {bai['bytes']:,} B, "
                     f"{bai['ranges']} ranges)")
        # htslib reading the ticket, the server in its own process
        port2 = _free_port()
        proc = subprocess.Popen([self.bams3, "serve", self.ds, "--port", str(port2)], stderr=subprocess.DEVNULL)
        try:
            _wait_port(port2)
            url = f"http://127.0.0.1:{port2}/reads/{ident}?referenceName={contig}&start={beg}&end={end}"
            a, b2 = os.path.join(self.tmp, "a.txt"), os.path.join(self.tmp, "b.txt")
            ours = median_run([self.samtools, "view", "-c", url], self.repeat, stdout_path=a)
            st = median_run([self.samtools, "view", "-c", self.bam, region], self.repeat, stdout_path=b2)
            same = open(a).read() == open(b2).read()
            self.row("serve", "samtools view -c of the ticket URL", ours, st,
                     f"samtools on the local BAM; same count: {same} (the first run makes the chunks, "
                     f"later ones find them made)")
            out["htslib"] = {"bams3": ours, "samtools": st, "identical": same}
        finally:
            proc.terminate()
            proc.wait(10)
        self.result["serve"] = out

    # ------------------------------------------------------------------ report
    def report(self):
        print(f"\nbams3 vs samtools on {self.dir} (median of {self.repeat}; ratio = bams3 / samtools; "
              f"bams3's bytecode {self.bytecode}; bams3 run as {self.bams3})\n")
        print(f"{'section':<12} {'case':<44} {'bams3':>9} {'samtools':>9} {'ratio':>7}  notes")
        for section, case, ours, theirs, extra in self.rows:
            if section == "size":
                unit, div = ("MB", 1e6) if theirs >= 1e6 else ("KB", 1e3)
                print(f"{section:<12} {case[:44]:<44} {ours / div:>7.1f}{unit} {theirs / div:>7.1f}{unit} "
                      f"{ours / theirs:>6.3f}x  {extra}")
                continue
            t1 = ours["seconds"]
            t2 = theirs["seconds"] if theirs else None
            ratio = f"{t1 / t2:>6.2f}x" if t2 else "      -"
            print(f"{section:<12} {case[:44]:<44} {t1:>8.2f}s {(f'{t2:.2f}s' if t2 else '-'):>9} {ratio}  {extra}")


def bams3_program() -> str | None:
    """The bams3 program installed with the Python running this (its console script beside the
    interpreter, as in a virtualenv), else the first on PATH. A version manager's shim found
    first on PATH (pyenv's is a bash script that starts a second process) cost every bams3 run
    here ~0.15 s that an installed bams3 does not: `--version` measured 0.18 s through pyenv's
    shim, 0.04 s run directly."""
    beside = os.path.join(os.path.dirname(sys.executable), "bams3")
    return beside if os.access(beside, os.X_OK) else shutil.which("bams3")


def _compile_bytecode() -> str:
    """bams3's modules compiled to bytecode, as `pip install` does: a process started from an
    editable checkout, or with PYTHONDONTWRITEBYTECODE set (as on some CI machines), would
    otherwise compile ~150 modules (~0.1 s) every time it starts, which no installed bams3 does."""
    import compileall

    import bams3

    pkg = os.path.dirname(bams3.__file__)
    ok = compileall.compile_dir(pkg, quiet=2)
    return f"compiled in {pkg}" if ok else f"could not compile every module in {pkg}"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.time() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)


def _reg2bins(beg: int, end: int) -> list[int]:
    """The BAI bins overlapping [beg, end) (SAM spec, section 5.3)."""
    end -= 1
    out = [0]
    for shift, offset in ((26, 1), (23, 9), (20, 73), (17, 585), (14, 4681)):
        out.extend(range(offset + (beg >> shift), offset + (end >> shift) + 1))
    return out


def bai_ranges(bam: str, contig: str, beg: int, end: int) -> dict:
    """What an htsget server of BAM+BAI sends for a region: the byte ranges of the BGZF blocks
    the index's overlapping bins hold (chunks ending before the linear index's offset dropped,
    adjacent ones merged, the last block whole) and the header's blocks."""
    import struct

    import pysam

    with pysam.AlignmentFile(bam) as f:
        tid = f.references.index(contig)
    with open(bam + ".bai", "rb") as f:
        data = f.read()
    assert data[:4] == b"BAI\1"
    (n_ref,) = struct.unpack_from("<i", data, 4)
    o = 8
    chunks, linear, first = [], [], None
    for r in range(n_ref):
        (n_bin,) = struct.unpack_from("<i", data, o)
        o += 4
        bins = {}
        for _ in range(n_bin):
            b, n_chunk = struct.unpack_from("<Ii", data, o)
            o += 8
            bins[b] = [struct.unpack_from("<QQ", data, o + 16 * k) for k in range(n_chunk)]
            o += 16 * n_chunk
        (n_intv,) = struct.unpack_from("<i", data, o)
        o += 4
        intv = struct.unpack_from(f"<{n_intv}Q", data, o)
        o += 8 * n_intv
        if r == tid:
            linear = intv
            want = set(_reg2bins(beg, end))
            chunks = [c for b, cs in bins.items() if b in want and b != 37450 for c in cs]
        for b, cs in bins.items():
            if b != 37450 and cs:
                lo = min(c[0] for c in cs)
                first = lo if first is None else min(first, lo)
    min_off = linear[beg >> 14] if beg >> 14 < len(linear) else 0
    chunks = sorted(c for c in chunks if c[1] > min_off)
    merged = []
    for a, b in chunks:
        a, b = a >> 16, b >> 16  # whole blocks: from a block's start to the start of the block holding the end
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    with open(bam, "rb") as f:
        def block_size(at: int) -> int:
            f.seek(at)
            head = f.read(18)
            return struct.unpack_from("<H", head, 16)[0] + 1 if len(head) == 18 else 0

        body = sum(b + block_size(b) - a for a, b in merged)
    header = (first >> 16) if first is not None else 0
    return {"bytes": body + header, "body_bytes": body, "header_bytes": header, "ranges": len(merged)}


def _dataset_chunks(path: str) -> list[str]:
    """The MD5 of each chunk of a dataset, in table order (objects found through the table)."""
    from bams3.dataset import Dataset

    ds = Dataset.open(path)
    return [hashlib.md5(ds.store.get(ds.source.key(i))).hexdigest() for i in range(len(ds.chunks))]


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
    ap.add_argument("--cohort-samples", type=int, default=200, help="samples of the cohort section (default 200)")
    ap.add_argument("--only", default="convert,tobam,size,query,latency,regions,s3,serve,cohort",
                    help="sections; 'frames' (oxbow and polars-bio, installed from PyPI) runs only when named")
    ap.add_argument("--tmp", default=None, help="where the datasets are written (default: the system temp dir)")
    args = ap.parse_args()
    b = Bench(args)
    sections = [s.strip() for s in args.only.split(",")]
    if args.no_s3 and "s3" in sections:
        sections.remove("s3")
    if "convert" not in sections and any(s in sections for s in ("tobam", "size", "query", "latency", "regions",
                                                                   "frames", "serve")):
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
