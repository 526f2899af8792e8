from __future__ import annotations

import functools
import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "htslib"  # HTSlib's test SAM/BAM files (see its README.md)
MAKE_SAMPLE = ROOT / "bench" / "make-sample.sh"
CACHE = pathlib.Path(os.environ.get("BAMS3_TEST_CACHE", ROOT / ".cache"))


def corpus_files() -> list[pathlib.Path]:
    files = sorted(p for p in CORPUS.rglob("*") if p.suffix in (".sam", ".bam"))
    assert len(files) >= 90, f"the HTSlib corpus is incomplete: {len(files)} files under {CORPUS}"
    return files


@functools.cache
def sorted_corpus() -> dict[pathlib.Path, pathlib.Path | None]:
    """Each corpus file -> its coordinate-sorted BAM (``samtools sort``), or None if samtools cannot sort it."""
    import pysam

    out_dir = pathlib.Path(tempfile.mkdtemp(prefix="bams3-corpus-"))
    result = {}
    for i, src in enumerate(corpus_files()):
        out = out_dir / f"{i:03d}.bam"
        try:
            pysam.sort("-o", str(out), str(src), catch_stdout=False)
            result[src] = out
        except pysam.SamtoolsError:
            result[src] = None
    return result


def corpus_id(p: pathlib.Path) -> str:
    return str(p.relative_to(CORPUS))


@pytest.fixture(scope="session")
def sample_dir() -> pathlib.Path:
    """The benchmark sample (~1.07 M reads), built once by bench/make-sample.sh into .cache/sample
    (BAMS3_TEST_CACHE moves the cache)."""
    out = CACHE / "sample"
    if not (out / "sample.bam.bai").exists():
        for tool in ("samtools", "minimap2", "art_illumina"):
            assert shutil.which(tool), f"{tool} is needed to build the benchmark sample (see .ci/run)"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        subprocess.run(["bash", str(MAKE_SAMPLE), str(out)], check=True,
                       stdout=subprocess.DEVNULL)
    return out


@pytest.fixture(scope="session")
def sample_dataset(sample_dir, tmp_path_factory) -> str:
    import bams3

    dest = str(tmp_path_factory.mktemp("sample") / "sample.bams3")
    bams3.convert(str(sample_dir / "sample.bam"), dest)
    return dest


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server process (moto's standalone server) on 127.0.0.1,
    reached over HTTP exactly as AWS is, configured through AWS_* variables."""
    import re
    import sys
    import threading

    import boto3

    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    port = None
    for line in proc.stdout:  # werkzeug prints the port it bound
        m = re.search(r"Running on http://127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    assert port, "moto's server did not start"
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # drain its log
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing-key-id", "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
           "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="bams3-test")
    yield {"endpoint": endpoint, "bucket": "bams3-test", "client": client, "env": env}
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def azure_server():
    """A real Azure Blob Storage emulator (Azurite, installed with npm on first use into the
    test cache) on 127.0.0.1, reached over HTTP as Azure is, configured through the AZURE_*
    variables obstore reads (its emulator mode, the port in AZURITE_BLOB_STORAGE_URL)."""
    from .azurite import Azurite, AzuriteError

    try:
        server = Azurite(CACHE)
    except AzuriteError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        server.create_container("bams3-test")
        saved = {k: os.environ.get(k) for k in server.env}
        os.environ.update(server.env)
        yield {"endpoint": server.endpoint, "container": "bams3-test", "env": server.env, "server": server}
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    finally:
        server.stop()

# Test modules whose tests each take seconds of their own (subprocess pools, Dask clusters,
# hypothesis against samtools, fault injection): left out of the fast subset with the rest.
SLOW_MODULES = {"test_cohort", "test_cohort_edges", "test_cohort_convert", "test_recipes", "test_outside_plugin", "test_load",
                "test_interrupted", "test_hostile", "test_fuzz", "test_scale", "test_mutation"}


def pytest_collection_modifyitems(config, items):
    """Markers from what each test uses: s3 (the S3 server), azure (the Azure server), sample
    (the benchmark sample), corpus (HTSlib's files); slow for the servers, the sample and the
    modules above."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        params = getattr(getattr(item, "callspec", None), "params", {}).values()
        slow = item.module.__name__.rsplit(".", 1)[-1] in SLOW_MODULES
        if "s3_server" in names:
            item.add_marker(pytest.mark.s3)
            slow = True
        if "azure_server" in names:
            item.add_marker(pytest.mark.azure)
            slow = True
        if names & {"sample_dir", "sample_dataset"}:
            item.add_marker(pytest.mark.sample)
            slow = True
        if any(isinstance(v, pathlib.Path) and CORPUS in v.parents for v in params):
            item.add_marker(pytest.mark.corpus)
        if slow:
            item.add_marker(pytest.mark.slow)


def pytest_terminal_summary(terminalreporter):
    """How many injected faults of each kind were survived (tests/test_faults.py), and what
    the hostile inputs cost (tests/test_hostile.py)."""
    import sys

    faults = sys.modules.get("tests.test_faults")
    if faults is not None and any(faults.SURVIVED.values()):
        terminalreporter.section("faults survived")
        for what, kinds in faults.SURVIVED.items():
            line = ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items()))
            terminalreporter.write_line(f"{what}: {sum(kinds.values())} ({line})")
    hostile = sys.modules.get("tests.test_hostile")
    if hostile is not None and hostile.REFUSED["commands"]:
        r = hostile.REFUSED
        terminalreporter.section("hostile input refused")
        terminalreporter.write_line(f"{r['commands']} commands refused in one line; peak RSS at most "
                                    f"{r['peak_mb']:.0f} MB, slowest {r['slowest_s']:.1f} s")


# ------------------------------------------------------------------ nothing outside its own temporary directories
# Tests write only under their temporary directories. At the end of the run, every file of the
# repository (but the caches the run keeps) and the system's /dev/null, /dev/zero and
# /dev/stdout must be as they were: not removed, renamed, replaced or rewritten. A test that
# wrote through a device, a link or a FIFO of its own did so in its temporary directory.
_SKIP = {".git", ".cache", "__pycache__", ".pytest_cache", ".hypothesis", "build", "dist"}
_DEVICES = ("/dev/null", "/dev/zero", "/dev/stdout", "/dev/stderr", "/dev/stdin")


def _snapshot() -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in _SKIP and not d.endswith(".egg-info")]
        for name in filenames:
            p = os.path.join(dirpath, name)
            if name.endswith((".so", ".pyc")):
                continue
            st = os.lstat(p)
            out[p] = (st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns)
    for p in _DEVICES:
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            continue
        out[p] = (st.st_ino, st.st_mode, st.st_rdev)
    return out


def pytest_sessionstart(session):
    session.config._bams3_snapshot = _snapshot()


def pytest_sessionfinish(session, exitstatus):
    before = getattr(session.config, "_bams3_snapshot", None)
    if before is None:
        return
    after = _snapshot()
    changed = sorted(p for p, v in before.items() if after.get(p) != v)
    if changed:
        import sys

        print(f"\nthe test run changed {len(changed)} path(s) outside its temporary directories: "
              f"{', '.join(changed[:10])}", file=sys.stderr)
        session.exitstatus = 1
