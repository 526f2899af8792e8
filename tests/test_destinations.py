"""Destinations: bams3 writes, replaces and deletes only what it owns. A destination holding
the user's objects is refused; --force replaces only a bams3 dataset; links inside a dataset
are never followed; two conversions to one place: exactly one publishes; object keys are
kept exactly as named; local objects are read only when they are regular files; a full or
read-only disk is one line naming the object."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import threading
import time
import uuid

import pytest

import bams3
from bams3.verify import verify

from .test_cli import BAMS3, EXAMPLE, assert_one_line_error, run


def _tree(root: pathlib.Path) -> dict[str, bytes]:
    """Every regular file under root (not following links) with its content."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for f in filenames:
            p = pathlib.Path(dirpath) / f
            if p.is_file() and not p.is_symlink():
                out[str(p.relative_to(root))] = p.read_bytes()
    return out


@pytest.fixture
def users_project(tmp_path):
    """A directory with the user's own files under data/, as in the issue."""
    proj = tmp_path / "project"
    (proj / "data" / "results").mkdir(parents=True)
    (proj / "data" / "notes.txt").write_text("my notes\n")
    (proj / "data" / "results" / "table.csv").write_text("a,b\n1,2\n")
    return proj


def test_a_destination_with_the_users_files_is_refused_with_or_without_force(users_project):
    before = _tree(users_project)
    for force in ([], ["--force"]):
        p = run("convert", EXAMPLE, users_project, *force)
        assert_one_line_error(p, 1, "holds no bams3 dataset", "data/")
        assert _tree(users_project) == before
        assert not (users_project / "_metadata.json").exists()


def test_force_replaces_a_dataset_and_leaves_the_users_files_beside_it(tmp_path):
    dest = tmp_path / "d.bams3"
    run("convert", EXAMPLE, dest, "--chunk-size", "256K", check=True)
    (dest / "README.txt").write_text("mine\n")
    (dest / "data" / "mine.txt").write_text("also mine\n")
    old = bams3.open(str(dest)).meta.data_prefix
    run("convert", EXAMPLE, dest, "--chunk-size", "1M", "--force", check=True)
    new = bams3.open(str(dest)).meta.data_prefix
    assert new != old and not (dest / old).exists()
    assert (dest / "README.txt").read_text() == "mine\n" and (dest / "data" / "mine.txt").read_text() == "also mine\n"
    assert bams3.open(str(dest)).count("chr1") == 10719


def test_leftovers_of_an_interrupted_run_are_ours_and_removed(tmp_path):
    """A run that marked its prefix and never published: the next conversion may write there
    (no --force needed: there is no dataset) and removes that run."""
    dest = tmp_path / "d.bams3"
    (dest / "data" / "0123456789ab").mkdir(parents=True)
    (dest / "data" / "0123456789ab" / "_run").write_text('{"bams3_run": "data/0123456789ab/"}\n')
    (dest / "data" / "0123456789ab" / "000000").write_bytes(b"partial chunk")
    run("convert", EXAMPLE, dest, check=True)
    assert not (dest / "data" / "0123456789ab").exists()
    assert verify(str(dest), deep=True).ok


def test_an_unmarked_run_like_prefix_is_not_ours(tmp_path):
    dest = tmp_path / "d"
    (dest / "data" / "0123456789ab").mkdir(parents=True)
    (dest / "data" / "0123456789ab" / "000000").write_bytes(b"the user's")
    assert_one_line_error(run("convert", EXAMPLE, dest, "--force"), 1, "holds no bams3 dataset")
    assert (dest / "data" / "0123456789ab" / "000000").read_bytes() == b"the user's"


def test_a_foreign_metadata_file_is_never_replaced(tmp_path):
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "_metadata.json").write_text('{"my": "own metadata"}\n')
    assert_one_line_error(run("convert", EXAMPLE, dest, "--force"), 1, "not bams3 metadata")
    assert (dest / "_metadata.json").read_text() == '{"my": "own metadata"}\n'


def test_users_objects_under_data_on_s3_are_refused(s3_server):
    client, bucket = s3_server["client"], s3_server["bucket"]
    base = f"proj-{uuid.uuid4().hex[:8]}"
    client.put_object(Bucket=bucket, Key=f"{base}/data/notes.txt", Body=b"my notes")
    client.put_object(Bucket=bucket, Key=f"{base}/data/results/table.csv", Body=b"a,b")
    for force in ([], ["--force"]):
        assert_one_line_error(run("convert", EXAMPLE, f"s3://{bucket}/{base}", *force), 1, "holds no bams3 dataset")
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=base + "/")["Contents"])
    assert keys == [f"{base}/data/notes.txt", f"{base}/data/results/table.csv"]


# ------------------------------------------------------------------ links


def test_a_link_out_of_the_dataset_is_never_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me\n")
    before = _tree(outside)
    # data/ itself a link out, in an empty destination and in a dataset replaced with --force
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "data").symlink_to(outside)
    assert_one_line_error(run("convert", EXAMPLE, fresh), 1, "holds no bams3 dataset")
    ds = tmp_path / "ds"
    run("convert", EXAMPLE, ds, check=True)
    shutil.rmtree(ds / "data")
    (ds / "data").symlink_to(outside)
    assert_one_line_error(run("convert", EXAMPLE, ds, "--force"), 1, "symbolic link")
    assert _tree(outside) == before and list(outside.iterdir()) == [outside / "precious.txt"]
    # the run directory of a dataset replaced by a link out: reads refuse it, --force never deletes through it
    ds2 = tmp_path / "ds2"
    run("convert", EXAMPLE, ds2, check=True)
    prefix = bams3.open(str(ds2)).meta.data_prefix
    shutil.rmtree(ds2 / prefix)
    (ds2 / prefix.rstrip("/")).symlink_to(outside)
    assert_one_line_error(run("query", ds2, "chr1:1000-2000", "-c"), 1, "symbolic link")
    assert_one_line_error(run("query", ds2, "chr1:1-100000"), 1, "symbolic link")
    run("convert", EXAMPLE, ds2, "--force", check=True)
    assert _tree(outside) == before
    assert (ds2 / prefix.rstrip("/")).is_symlink()  # the user's link is left alone


def test_a_link_loop_under_data(tmp_path):
    ds = tmp_path / "ds"
    run("convert", EXAMPLE, ds, check=True)
    (ds / "data" / "loop").symlink_to("loop")
    p = run("convert", EXAMPLE, ds, "--force")
    assert p.returncode == 0, p.stderr.decode()
    assert (ds / "data" / "loop").is_symlink()
    assert bams3.open(str(ds)).count("chr1") == 10719


def test_fifos_and_devices_in_a_dataset_are_refused_at_once(tmp_path):
    ds = tmp_path / "ds"
    run("convert", EXAMPLE, ds, "--chunk-size", "256K", check=True)
    meta = (ds / "_metadata.json").read_bytes()
    chunk = next(p for p in sorted((ds / "data").rglob("0000*")) if p.is_file())
    # a FIFO named _metadata.json: stats must not wait for a writer
    (ds / "_metadata.json").unlink()
    os.mkfifo(ds / "_metadata.json")
    t = time.monotonic()
    assert_one_line_error(run("stats", ds), 1, "not a regular file")
    assert time.monotonic() - t < 20
    (ds / "_metadata.json").unlink()
    (ds / "_metadata.json").write_bytes(meta)
    # a FIFO chunk: to-bam must not hang
    chunk.unlink()
    os.mkfifo(chunk)
    assert_one_line_error(run("to-bam", ds, tmp_path / "o.bam"), 1, "not a regular file")
    assert not (tmp_path / "o.bam").exists()
    # a chunk that is a character device (a /dev/zero node made here) or a link to /dev/zero
    chunk.unlink()
    os.mknod(chunk, 0o20666, os.makedev(1, 5))
    assert_one_line_error(run("query", ds, "chr1:1-100000"), 1, "not a regular file")
    chunk.unlink()
    chunk.symlink_to("/dev/zero")
    assert_one_line_error(run("query", ds, "chr1:1-100000"), 1, "symbolic link")


# ------------------------------------------------------------------ concurrent writers


def _feed_later(fifo: pathlib.Path, data: bytes, release: threading.Event):
    """Write the first 64 KiB (the converter reads that far before writing anything), then the
    rest once ``release`` is set."""
    with open(fifo, "wb") as f:
        f.write(data[: 1 << 16])
        f.flush()
        release.wait(60)
        f.write(data[1 << 16 :])


def _two_at_once(tmp_path, dest: str, *extra: str) -> list[subprocess.CompletedProcess]:
    data = pathlib.Path(EXAMPLE).read_bytes()
    release = threading.Event()
    procs, feeders = [], []
    for i in range(2):
        fifo = tmp_path / f"in{i}.bam"
        os.mkfifo(fifo)
        procs.append(subprocess.Popen([BAMS3, "convert", str(fifo), dest, "--chunk-size", "256K", *extra],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        t = threading.Thread(target=_feed_later, args=(fifo, data, release), daemon=True)
        t.start()
        feeders.append(t)
    # both have looked at the destination and marked their runs before either goes on
    store = bams3.storage.open_store(dest, create=True)
    deadline = time.monotonic() + 60
    while sum(k.endswith("/_run") for k, _ in store.list("data/")) < 2 + (1 if extra else 0):
        assert time.monotonic() < deadline, "the two conversions did not start"
        time.sleep(0.05)
    release.set()
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    for t in feeders:
        t.join()
    return out


@pytest.mark.parametrize("where", ["local", "s3"])
@pytest.mark.parametrize("replace", [False, True], ids=["new", "force"])
def test_two_conversions_at_once_exactly_one_publishes(tmp_path, s3_server, where, replace):
    dest = str(tmp_path / "d.bams3") if where == "local" else \
        f"s3://{s3_server['bucket']}/{uuid.uuid4().hex[:8]}/d.bams3"
    extra = []
    if replace:
        bams3.convert(EXAMPLE, dest, chunk_size="1M")
        extra = ["--force"]
    results = _two_at_once(tmp_path, dest, *extra)
    codes = sorted(p.returncode for p in results)
    assert codes == [0, 1], [p.stderr.decode() for p in results]
    loser = next(p for p in results if p.returncode)
    assert_one_line_error(loser, 1, "another conversion published")
    assert verify(dest, deep=True).ok
    ds = bams3.open(dest)
    assert ds.count("chr1") == 10719 and sum(len(b) for b in ds.batches()) == ds.stats["n_records"]
    store = bams3.storage.open_store(dest)
    assert {k.split("/")[1] for k, _ in store.list("data/")} == {ds.meta.data_prefix.split("/")[1]}


# ------------------------------------------------------------------ object keys


def test_object_keys_are_kept_exactly_as_named(s3_server):
    client, bucket = s3_server["client"], s3_server["bucket"]
    base = uuid.uuid4().hex[:8]
    names = ["run?1.bams3", "run?2.bams3", "run#1.bams3", "a%20b.bams3", "a b.bams3", "a%2Fb.bams3"]
    for i, name in enumerate(names):
        bams3.convert(EXAMPLE, f"s3://{bucket}/{base}/{name}", chunk_size=["256K", "1M"][i % 2])
    for i, name in enumerate(names):
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=f"{base}/{name}/")["Contents"]]
        assert f"{base}/{name}/_metadata.json" in keys
        assert bams3.open(f"s3://{bucket}/{base}/{name}").meta.chunk_size == [1 << 18, 1 << 20][i % 2]
    # --force on one leaves its neighbour whole
    bams3.convert(EXAMPLE, f"s3://{bucket}/{base}/run?1.bams3", chunk_size="1M", force=True)
    assert verify(f"s3://{bucket}/{base}/run?2.bams3", deep=True).ok
    assert bams3.open(f"s3://{bucket}/{base}/run?2.bams3").meta.chunk_size == 1 << 20
    assert bams3.open(f"s3://{bucket}/{base}/run?1.bams3").meta.chunk_size == 1 << 20
    for bad in (f"s3://{bucket}/{base}//x", f"s3://{bucket}/{base}/../x", f"s3://{bucket}/./x"):
        assert_one_line_error(run("convert", EXAMPLE, bad), 2, "segments")


# ------------------------------------------------------------------ full and read-only disks


def _in_private_mount(tmp_path, mount_opts: str, *args) -> subprocess.CompletedProcess:
    """Run bams3 in a private mount namespace (unshare) where ``tmp_path/mnt`` is a fresh tmpfs
    with ``mount_opts``: nothing outside the test's directory is mounted or touched."""
    mnt = tmp_path / "mnt"
    mnt.mkdir(exist_ok=True)
    script = f'mount -t tmpfs -o {mount_opts} tmpfs "$1" && shift && exec "$@"'
    return subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", str(mnt), BAMS3, *map(str, args)],
                          capture_output=True)


def test_a_full_disk_is_one_line_naming_the_object(tmp_path):
    p = _in_private_mount(tmp_path, "size=64k", "convert", EXAMPLE, tmp_path / "mnt" / "d.bams3")
    assert_one_line_error(p, 1, "No space left on device", "data/")


def test_a_read_only_disk_is_one_line(tmp_path):
    p = _in_private_mount(tmp_path, "ro,size=64k", "convert", EXAMPLE, tmp_path / "mnt" / "d.bams3")
    assert_one_line_error(p, 1, "Read-only file system")
    run("convert", EXAMPLE, tmp_path / "ds", check=True)
    p = _in_private_mount(tmp_path, "ro,size=64k", "to-bam", tmp_path / "ds", tmp_path / "mnt" / "o.bam")
    assert_one_line_error(p, 1, "Read-only file system")


def test_a_dataset_may_itself_be_a_link(tmp_path):
    """The path the user names may be a link (datasets on another disk, a prefix of links to them):
    it is followed; links inside a dataset never are."""
    real = tmp_path / "disk2" / "d.bams3"
    real.parent.mkdir()
    run("convert", EXAMPLE, real, check=True)
    prefix = tmp_path / "samples"
    prefix.mkdir()
    (prefix / "linked.bams3").symlink_to(real)
    n = int(run("query", prefix / "linked.bams3", "chr1", "-c", check=True).stdout)
    assert n == 10719
    listing = run("ls", prefix, check=True).stdout.decode()
    assert "linked.bams3" in listing and "13,462" in listing
