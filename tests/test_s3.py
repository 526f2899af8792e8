"""Datasets on S3: the same exactness as on local disk, against a real S3 server over HTTP."""

from __future__ import annotations

import json
import os
import random
import subprocess
import uuid

import pytest

import bams3
from bams3.errors import StorageError

from .oracle import raw_bam, view, view_count
from .synth import random_regions, write_bam
from .test_cli import BAMS3, EXAMPLE, assert_one_line_error


def _url(s3, name: str) -> str:
    return f"s3://{s3['bucket']}/{uuid.uuid4().hex[:8]}/{name}"


@pytest.fixture(scope="module")
def synth_s3(s3_server, tmp_path_factory):
    bam = write_bam(str(tmp_path_factory.mktemp("s3synth") / "synth.bam"), n=3000, seed=7)
    url = _url(s3_server, "synth.bams3")
    bams3.convert(bam, url, chunk_size=4096)
    return bam, url


def test_no_local_files_written(s3_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = _url(s3_server, "ex.bams3")
    bams3.convert(EXAMPLE, url, chunk_size="256K")
    assert list(tmp_path.iterdir()) == []
    keys = [o["Key"] for o in s3_server["client"].list_objects_v2(Bucket=s3_server["bucket"],
                                                                  Prefix=url.split("/", 3)[3])["Contents"]]
    assert any(k.endswith("_metadata.json") for k in keys) and len(keys) > 1


def test_round_trip_over_s3(synth_s3, tmp_path):
    bam, url = synth_s3
    out = tmp_path / "back.bam"
    bams3.open(url).to_bam(str(out))
    assert raw_bam(str(out)) == raw_bam(bam)


def test_exact_regions_over_s3(synth_s3, tmp_path):
    bam, url = synth_s3
    ds = bams3.open(url)
    regions = random_regions(random.Random(3), 60)
    for region in regions:
        assert ds.count(region) == view_count(bam, region), region
    for region in regions[:15]:
        out = tmp_path / "o.sam"
        with open(out, "wb") as f:
            ds.write(f, region)
        assert out.read_text() == view(bam, region), region


def test_input_streamed_from_s3(s3_server, synth_s3, tmp_path):
    """BAM and SAM inputs on S3 are read as streams, with the same result as local files."""
    bam, _ = synth_s3
    prefix = _url(s3_server, "")
    key = prefix.split("/", 3)[3]
    s3_server["client"].upload_file(bam, s3_server["bucket"], key + "in.bam")
    sam = tmp_path / "in.sam"
    sam.write_text(view(bam, flags=("-h",)))
    s3_server["client"].upload_file(str(sam), s3_server["bucket"], key + "in.sam")
    for name in ("in.bam", "in.sam"):
        dest = prefix + name + ".bams3"
        bams3.convert(prefix + name, dest, chunk_size=4096)
        out = tmp_path / f"{name}.back.bam"
        bams3.open(dest).to_bam(str(out))
        assert raw_bam(str(out))[1] == raw_bam(bam)[1]
    with pytest.raises(bams3.InputError, match="no such object"):
        bams3.convert(prefix + "missing.bam", prefix + "x.bams3")


def test_stats_over_s3_equal_local(synth_s3, tmp_path):
    bam, url = synth_s3
    bams3.convert(bam, str(tmp_path / "local"), chunk_size=4096)
    assert bams3.open(url).stats == bams3.open(str(tmp_path / "local")).stats


def test_cli_over_s3(s3_server):
    url = _url(s3_server, "cli.bams3")
    env = {**os.environ, **s3_server["env"]}
    run = lambda *a: subprocess.run([BAMS3, *a], capture_output=True, env=env)  # noqa: E731
    assert run("convert", EXAMPLE, url).returncode == 0
    assert int(run("query", url, "chr1:1-30000", "-c").stdout) == view_count(EXAMPLE, "chr1:1-30000")
    assert b"Total reads:" in run("stats", url).stdout
    assert_one_line_error(run("convert", EXAMPLE, url), 1, "--force")


def test_endpoint_url_option(s3_server):
    url = _url(s3_server, "opt.bams3")
    bams3.convert(EXAMPLE, url)
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    p = subprocess.run([BAMS3, "query", url, "chrM", "-c", "--endpoint-url", s3_server["endpoint"]],
                       capture_output=True, env=env)
    assert p.returncode == 0, p.stderr
    assert int(p.stdout) == view_count(EXAMPLE, "chrM")
    anonymous = {k: v for k, v in env.items() if not k.startswith("AWS_ACCESS_KEY_ID") and k != "AWS_SECRET_ACCESS_KEY"}
    # unsigned requests reach the server, which refuses them on this private bucket: one clear line
    p = subprocess.run([BAMS3, "stats", url, "--no-sign-request", "--endpoint-url", s3_server["endpoint"]],
                       capture_output=True, env=anonymous)
    assert_one_line_error(p, 1, "access denied")


def test_trace_shows_every_request(s3_server):
    url = _url(s3_server, "trace.bams3")
    bams3.convert(EXAMPLE, url, chunk_size="4K")
    env = {**os.environ, **s3_server["env"]}
    p = subprocess.run([BAMS3, "query", url, "chr1:10,000-20,000", "-c", "--json", "--trace"],
                       capture_output=True, env=env)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["count"] == view_count(EXAMPLE, "chr1:10000-20000")
    lines = p.stderr.decode().splitlines()
    gets = [line for line in lines if line.startswith("trace: GET ")]
    assert gets[0].startswith(f"trace: GET {url}/_metadata.json")
    assert gets[1:] and all(" range=" in line for line in gets[1:])  # counts read only byte ranges of chunks
    assert lines[-1] == (f"trace: total {out['io']['requests']} requests, {out['io']['bytes_in']:,} B in, 0 B out")
    assert out["io"]["requests"] == len(gets)
    for secret in s3_server["env"]["AWS_SECRET_ACCESS_KEY"], s3_server["env"]["AWS_ACCESS_KEY_ID"]:
        assert secret not in p.stderr.decode() + p.stdout.decode()


def test_named_profile_from_aws_files(s3_server, tmp_path):
    url = _url(s3_server, "profile.bams3")
    bams3.convert(EXAMPLE, url)
    (tmp_path / "credentials").write_text(
        "[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n"
        f"[lab]\naws_access_key_id = {s3_server['env']['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {s3_server['env']['AWS_SECRET_ACCESS_KEY']}\n")
    (tmp_path / "config").write_text(f"[profile lab]\nregion = us-east-1\nendpoint_url = {s3_server['endpoint']}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"), AWS_CONFIG_FILE=str(tmp_path / "config"),
               AWS_PROFILE="lab")
    p = subprocess.run([BAMS3, "query", url, "chrM", "-c"], capture_output=True, env=env)
    assert p.returncode == 0, p.stderr
    assert int(p.stdout) == view_count(EXAMPLE, "chrM")
    p = subprocess.run([BAMS3, "stats", url], capture_output=True, env={**env, "AWS_PROFILE": "nope"})
    assert_one_line_error(p, 1, "profile 'nope'")
    assert b"wrong" not in p.stderr


def test_storage_errors_are_one_line(s3_server):
    env = {**os.environ, **s3_server["env"]}
    run = lambda *a, **e: subprocess.run([BAMS3, *a], capture_output=True, env={**env, **e})  # noqa: E731
    assert_one_line_error(run("stats", "s3://no-such-bucket/x.bams3"), 1, "bucket does not exist")
    assert_one_line_error(run("stats", f"s3://{s3_server['bucket']}/nothing-here"), 1, "no bams3 dataset")
    p = run("stats", "s3://bams3-test/x", AWS_ENDPOINT_URL="http://127.0.0.1:9")
    assert_one_line_error(p, 1, "cannot reach")
    for secret in (s3_server["env"]["AWS_SECRET_ACCESS_KEY"], s3_server["env"]["AWS_ACCESS_KEY_ID"]):
        assert secret.encode() not in p.stderr + p.stdout


def test_http_is_read_only():
    with pytest.raises(StorageError, match="read-only"):
        bams3.convert(EXAMPLE, "http://127.0.0.1:9/x.bams3")


def test_datasets_in_one_bucket_share_a_client_made_from_the_same_configuration(s3_server, monkeypatch):
    """Opening a dataset makes no new S3 client (~6 ms of the GIL, and new connections) when one
    of the same bucket and configuration exists; each store still sees only its own prefix's
    keys. A change of the configuration (here a credential in the environment) makes a new one."""
    from bams3.builtins import cloud
    from bams3.storage import open_store

    root = _url(s3_server, "")
    cloud._CLIENTS.clear()
    a, b = open_store(f"{root}one/a.bams3"), open_store(f"{root}two/b.bams3")
    assert a._store is b._store and len(cloud._CLIENTS) == 1  # the streaming client: on first use

    def streamed(store):
        store.put("whole", b"x" * 100)
        assert b"".join(store.stream("whole", piece=16)) == b"x" * 100
        store.delete("whole")
        return store._stream_store

    assert streamed(a) is streamed(b) is not a._store and len(cloud._CLIENTS) == 2
    a.put("data/r/x", b"1")
    b.put("data/r/x", b"22")
    assert (a.get("data/r/x"), b.get_range("data/r/x", 1, 2), b.size("data/r/x")) == (b"1", b"2", 2)
    assert list(a.list("")) == [("data/r/x", 1)] and a.list_dirs("") == ["data/"] and a.list_dirs("data/") == ["data/r/"]
    assert list(open_store(f"{root}one").list("")) == [("a.bams3/data/r/x", 1)]
    a.delete("data/r/x")
    assert a.head("data/r/x") is None and b.head("data/r/x")["size"] == 2
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "another")
    c = open_store(f"{root}one/a.bams3")
    assert c._store is not a._store and streamed(c) is not a._stream_store
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server["env"]["AWS_SECRET_ACCESS_KEY"])  # and back
    d = open_store(f"{root}one/a.bams3")
    assert d._store is a._store and streamed(d) is a._stream_store
    e = open_store(f"{root}one/a.bams3")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "another")  # changed between opening and a first stream:
    assert e._store is a._store and streamed(e) is c._stream_store  # made in (and of) the environment then
