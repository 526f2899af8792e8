"""Before and after: the latency of whole bams3 processes from two trees, interleaved.

    python bench/ab.py OLD NEW SAMPLE_DIR [--repeat 11] [--s3] [--bed] [--own-datasets]

OLD and NEW are each a git revision of this repository (``HEAD~3``, ``5d4bdd2``) or the path of
a ``bams3`` program. A revision is installed as users install it (``pip install``, compiled to
bytecode) into its own virtualenv under ``.cache/ab/<commit>/``, made once and reused. NEW
converts ``SAMPLE_DIR/sample.bam`` (bench/make-sample.sh) once; then each case runs
``--repeat`` times, alternating OLD, NEW and (where it has one) samtools' command, so that
both trees meet the same machine load. It prints the minimum and median wall time of each, the
median CPU (user and system, threads and children included) and whether OLD's and NEW's outputs
were identical, and exits 1 when one tree failed a case. ``--bed`` adds bench.py's
1,000-interval BED (``-L``), its records and its count. With
``--own-datasets``, OLD converts the sample too and reads its own dataset: for a change of
format, which OLD may refuse to read.
With ``--s3``, the sample is also converted to moto's S3 server (started on 127.0.0.1 by this
Python, which needs moto and boto3) and a count and ``stats`` of it are timed the same way.
With ``--convert``, the cases are conversions instead: the default setting against samtools'
CRAM 3.0 (``view -@2 -C -T ref.fa``) and ``--compression high`` against CRAM 3.1 ``small``,
each output a new directory; OLD's and NEW's datasets are "identical" when their chunk objects
are, byte for byte.
Timings are printed, never asserted."""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
REGION = "chr1:1,000,001-2,000,000"  # 1 Mbp of the benchmark sample


def cases(ds: str, bam: str) -> dict[str, tuple[list[str], list[str] | None]]:
    """name: (bams3's arguments, samtools' command or None)."""
    return {
        "--version": (["--version"], ["samtools", "--version"]),
        "count 1 Mbp": (["query", ds, REGION, "-c"], ["samtools", "view", "-c", bam, REGION]),
        "count of 3 regions": (["query", ds, REGION, "chr2:5-10", "chrM", "-c"],
                               ["samtools", "view", "-c", bam, REGION, "chr2:5-10", "chrM"]),
        "count, no region": (["query", ds, "-c"], ["samtools", "view", "-c", bam]),
        "count 1 Mbp -F 0x904": (["query", ds, REGION, "-c", "-F", "0x904"],
                                 ["samtools", "view", "-c", "-F", "0x904", bam, REGION]),
        "count, no region, -q 30": (["query", ds, "-c", "-q", "30"], ["samtools", "view", "-c", "-q", "30", bam]),
        "stats": (["stats", ds], None),
        "stats --json": (["stats", ds, "--json"], None),
        "stats --flagstat": (["stats", ds, "--flagstat"], ["samtools", "flagstat", bam]),
        "SAM of 1 kb": (["query", ds, "chr1:1,000,001-1,001,000"], ["samtools", "view", bam, "chr1:1,000,001-1,001,000"]),
    }


def convert_cases(sample_dir: pathlib.Path) -> dict[str, tuple[list[str], list[str] | None]]:
    """name: (bams3's arguments, samtools' command), each writing to the path "{out}"."""
    bam, ref = str(sample_dir / "sample.bam"), str(sample_dir / "ref.fa")
    return {
        "convert": (["convert", bam, "{out}"], ["samtools", "view", "-@2", "-C", "-T", ref, "-o", "{out}", bam]),
        "convert high": (["convert", bam, "{out}", "--compression", "high"],
                         ["samtools", "view", "-@2", "-O", "cram,version=3.1,small", "-T", ref, "-o", "{out}", bam]),
    }


def chunk_objects(ds: str) -> bytes:
    """A dataset's chunk objects (the files under data/ but the run marker), in order."""
    out = []
    for root, dirs, files in os.walk(os.path.join(ds, "data")):
        dirs.sort()
        out += [pathlib.Path(root, f).read_bytes() for f in sorted(files) if f != "_run"]
    return b"".join(out)


def s3_cases(url: str) -> dict[str, tuple[list[str], None]]:
    return {"S3 count 1 Mbp": (["query", url, REGION, "-c"], None),
            "S3 count, no region": (["query", url, "-c"], None),
            "S3 stats --flagstat": (["stats", url, "--flagstat"], None),
            "S3 SAM of 1 kb": (["query", url, "chr1:1,000,001-1,001,000"], None)}


@contextlib.contextmanager
def s3_server():
    """moto's S3 server on 127.0.0.1 (``bams3.conformance.motoserver``, as bench.py and the tests
    start it) with a bucket ``bams3-ab``: the environment that reaches it."""
    import boto3

    from bams3.conformance.motoserver import MotoServer

    server = MotoServer()
    try:
        env = {"AWS_ACCESS_KEY_ID": "ab", "AWS_SECRET_ACCESS_KEY": "ab", "AWS_REGION": "us-east-1",
               "AWS_ENDPOINT_URL": server.endpoint}
        boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                     aws_access_key_id="ab", aws_secret_access_key="ab").create_bucket(Bucket="bams3-ab")
        yield env
    finally:
        server.stop()


def program(tree: str, cache: pathlib.Path) -> str:
    """The bams3 program of ``tree``: a path as given, or a revision installed in a virtualenv."""
    if os.sep in tree and os.access(tree, os.X_OK):
        return tree
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{tree}^{{commit}}"],
                         capture_output=True, text=True, check=True).stdout.strip()
    home = cache / sha
    exe = home / "venv" / "bin" / "bams3"
    if not exe.exists():
        shutil.rmtree(home, ignore_errors=True)
        (home / "src").mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(home / "src")], input=archive, check=True)
        subprocess.run([sys.executable, "-m", "venv", str(home / "venv")], check=True)
        py = str(home / "venv" / "bin" / "python")
        print(f"installing {tree} ({sha[:10]}) into {home / 'venv'}", file=sys.stderr)
        subprocess.run([py, "-m", "pip", "install", "-q", str(home / "src")], check=True)
        site = subprocess.run([py, "-c", "import bams3, os; print(os.path.dirname(bams3.__file__))"],
                              capture_output=True, text=True, check=True).stdout.strip()
        subprocess.run([py, "-m", "compileall", "-q", site], check=True)
    return str(exe)


def bed_cases(ds: str, bam: str, bed: str) -> dict[str, tuple[list[str], list[str]]]:
    """--bed's cases: bench.py's 1,000-interval BED (``bed``), its records and its count."""
    return {"BED, records": (["query", ds, "-L", bed], ["samtools", "view", "-L", bed, bam]),
            "BED, -c": (["query", ds, "-c", "-L", bed], ["samtools", "view", "-c", "-L", bed, bam])}


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, float, int, bytes]:
    """(wall, CPU of the process and its children, exit status, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=tempfile.gettempdir(), env=env)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, p.returncode, p.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", help="a git revision, or the path of a bams3 program")
    ap.add_argument("new", help="a git revision, or the path of a bams3 program")
    ap.add_argument("sample_dir", type=pathlib.Path)
    ap.add_argument("--repeat", type=int, default=11)
    ap.add_argument("--s3", action="store_true", help="also time a count and stats of the sample on moto's S3 server")
    ap.add_argument("--own-datasets", action="store_true",
                    help="each tree converts the sample itself and reads its own dataset (for a change of format "
                         "that OLD cannot read); outputs that name the dataset (stats: its path and size) then differ")
    ap.add_argument("--bed", action="store_true",
                    help="also time bench.py's 1,000-interval BED (-L), its records and its count")
    ap.add_argument("--convert", action="store_true",
                    help="time conversions (default and high, against CRAM 3.0 and CRAM 3.1 small) instead")
    ap.add_argument("--cache", type=pathlib.Path, default=ROOT / ".cache" / "ab",
                    help="where revisions are installed (default: .cache/ab)")
    args = ap.parse_args()
    old, new = program(args.old, args.cache), program(args.new, args.cache)
    bam = str(args.sample_dir.resolve() / "sample.bam")
    if args.convert:
        return compare_conversions(old, new, args.sample_dir.resolve(), args.repeat)
    with tempfile.TemporaryDirectory(prefix="bams3-ab-") as tmp, contextlib.ExitStack() as stack:
        ds = os.path.join(tmp, "sample.bams3")
        subprocess.run([new, "convert", bam, ds], check=True, stdout=subprocess.DEVNULL)
        todo, env = cases(ds, bam), None
        old_ds = ds
        if args.own_datasets:
            old_ds = os.path.join(tmp, "old.bams3")
            subprocess.run([old, "convert", bam, old_ds], check=True, stdout=subprocess.DEVNULL)
        old_todo = cases(old_ds, bam)
        if args.bed:
            from bench import thousand_interval_bed  # bench/bench.py, beside this script

            bed = thousand_interval_bed(bam, os.path.join(tmp, "targets.bed"))
            todo.update(bed_cases(ds, bam, bed))
            old_todo.update(bed_cases(old_ds, bam, bed))
        if args.s3:
            env = {**os.environ, **stack.enter_context(s3_server())}
            subprocess.run([new, "convert", bam, "s3://bams3-ab/sample.bams3"], check=True, stdout=subprocess.DEVNULL,
                           env=env)
            todo.update(s3_cases("s3://bams3-ab/sample.bams3"))
            old_s3 = "s3://bams3-ab/sample.bams3"
            if args.own_datasets:
                old_s3 = "s3://bams3-ab/old.bams3"
                subprocess.run([old, "convert", bam, old_s3], check=True, stdout=subprocess.DEVNULL, env=env)
            old_todo.update(s3_cases(old_s3))
        failed = False
        print(f"{'case':20s} {'OLD min / median ms':>20s} {'NEW min / median ms':>20s} {'samtools':>16s} "
              f"{'CPU median ms: OLD NEW samtools':>32s}  outputs")
        for name, (argv, anchor) in todo.items():
            walls: dict[str, list[float]] = {"old": [], "new": [], "samtools": []}
            cpus: dict[str, list[float]] = {"old": [], "new": [], "samtools": []}
            outs: dict[str, set[bytes]] = {"old": set(), "new": set()}
            for _ in range(args.repeat):
                for who, cmd in (("old", [old, *old_todo[name][0]]), ("new", [new, *argv]), ("samtools", anchor)):
                    if cmd is None:
                        continue
                    wall, cpu, rc, out = timed(cmd, env)
                    walls[who].append(wall)
                    cpus[who].append(cpu)
                    if who != "samtools":
                        outs[who].add(out if rc == 0 else b"exit %d" % rc)
                        failed |= rc != 0

            def cell(v: list[float]) -> str:
                return f"{1e3 * min(v):.0f} / {1e3 * statistics.median(v):.0f}" if v else "-"

            cpu = " ".join(f"{1e3 * statistics.median(cpus[w]):.0f}" if cpus[w] else "-" for w in cpus)
            same = "identical" if outs["old"] == outs["new"] and len(outs["new"]) == 1 else "DIFFER"
            print(f"{name:20s} {cell(walls['old']):>20s} {cell(walls['new']):>20s} {cell(walls['samtools']):>16s} "
                  f"{cpu:>32s}  {same}")
    return 1 if failed else 0


def compare_conversions(old: str, new: str, sample_dir: pathlib.Path, repeat: int) -> int:
    """``--convert``: each conversion case ``repeat`` times, OLD, NEW and samtools in turn."""
    failed = False
    print(f"{'case':14s} {'OLD min / median s':>20s} {'NEW min / median s':>20s} {'samtools':>16s}  NEW/samtools  datasets")
    for name, (argv, anchor) in convert_cases(sample_dir).items():
        walls: dict[str, list[float]] = {"old": [], "new": [], "samtools": []}
        outs: dict[str, set[bytes]] = {"old": set(), "new": set()}
        for _ in range(repeat):
            for who, cmd in (("old", [old, *argv]), ("new", [new, *argv]), ("samtools", anchor)):
                with tempfile.TemporaryDirectory(prefix="bams3-ab-") as tmp:
                    out = os.path.join(tmp, "out")
                    wall, _cpu, rc, _ = timed([a.replace("{out}", out) for a in cmd])
                    walls[who].append(wall)
                    if who != "samtools":
                        outs[who].add(chunk_objects(out) if rc == 0 else b"exit %d" % rc)
                        failed |= rc != 0

        def cell(v: list[float]) -> str:
            return f"{min(v):.2f} / {statistics.median(v):.2f}"

        ratio = statistics.median(walls["new"]) / statistics.median(walls["samtools"])
        same = "identical" if outs["old"] == outs["new"] and len(outs["new"]) == 1 else "DIFFER"
        print(f"{name:14s} {cell(walls['old']):>20s} {cell(walls['new']):>20s} {cell(walls['samtools']):>16s}  "
              f"{ratio:11.2f}x  {same}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
