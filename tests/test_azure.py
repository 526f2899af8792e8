"""Datasets on Azure Blob Storage (az://): the command line against a real Azure server over
HTTP (Azurite on 127.0.0.1), configured only through the AZURE_* environment variables obstore
reads, with samtools as the oracle."""

from __future__ import annotations

import json
import os
import random
import subprocess
import uuid

import pytest

from bams3.storage import open_store

from .oracle import raw_bam, view, view_count
from .synth import random_regions, write_bam
from .test_cli import BAMS3, EXAMPLE, assert_one_line_error


def _url(azure, name: str) -> str:
    return f"az://{azure['container']}/{uuid.uuid4().hex[:8]}/{name}"


def _run(azure, *args, **env):
    """``bams3 ARGS`` in a process of its own whose only Azure settings are the server's AZURE_* ones."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "AZURITE_"))}
    return subprocess.run([BAMS3, *map(str, args)], capture_output=True, env={**base, **azure["env"], **env})


@pytest.fixture(scope="module")
def synth_az(azure_server, tmp_path_factory):
    """A synthetic BAM (3,050 reads, edge cases included) converted to az:// by the command line."""
    bam = write_bam(str(tmp_path_factory.mktemp("azsynth") / "synth.bam"), n=3000, seed=7)
    url = _url(azure_server, "synth.bams3")
    p = _run(azure_server, "convert", bam, url, "--chunk-size", "4K")
    assert p.returncode == 0, p.stderr.decode()
    assert url.encode() in p.stderr  # "wrote az://…: N records in M chunks"
    return bam, url


def test_query_count_verify_equal_samtools(azure_server, synth_az, tmp_path):
    bam, url = synth_az
    for region in ["chrA", "chrB:1-1000", "chrEmpty", "*", *random_regions(random.Random(5), 8)]:
        p = _run(azure_server, "query", url, region, "--count")
        assert p.returncode == 0, p.stderr.decode()
        assert int(p.stdout) == view_count(bam, region), region
    for region in ("chrA:1,000-30,000", "chrB"):
        p = _run(azure_server, "query", url, region)
        assert p.returncode == 0, p.stderr.decode()
        assert p.stdout.decode() == view(bam, region.replace(",", "")), region
    p = _run(azure_server, "query", url, "chrC", "-h", "--no-PG")
    assert p.stdout.decode() == view(bam, "chrC", flags=("-h",))
    p = _run(azure_server, "verify", url, "--deep", "--json")
    assert p.returncode == 0, p.stderr.decode()
    assert json.loads(p.stdout)["ok"] is True
    out = tmp_path / "back.bam"
    p = _run(azure_server, "to-bam", url, out, "--no-PG")
    assert p.returncode == 0, p.stderr.decode()
    assert raw_bam(str(out)) == raw_bam(bam)


def test_stats_and_trace_over_azure(azure_server, synth_az, tmp_path):
    bam, url = synth_az
    local = tmp_path / "local.bams3"
    assert _run(azure_server, "convert", bam, local, "--chunk-size", "4K").returncode == 0
    p = _run(azure_server, "stats", url, "--json")
    assert p.returncode == 0, p.stderr.decode()
    here, there = json.loads(p.stdout), json.loads(_run(azure_server, "stats", local, "--json").stdout)
    assert here.pop("dataset") == url and {**here, "dataset": str(local)} == there
    p = _run(azure_server, "query", url, "chrA:10,000-20,000", "-c", "--json", "--trace")
    assert p.returncode == 0, p.stderr.decode()
    out = json.loads(p.stdout)
    assert out["count"] == view_count(bam, "chrA:10000-20000")
    gets = [line for line in p.stderr.decode().splitlines() if line.startswith("trace: GET ")]
    assert gets[0].startswith(f"trace: GET {url}/_metadata.json") and len(gets) == out["io"]["requests"]
    assert azure_server["env"]["AZURE_STORAGE_ACCOUNT_KEY"] not in p.stderr.decode() + p.stdout.decode()


def test_input_streamed_from_azure_and_cp(azure_server, synth_az, tmp_path):
    """A BAM on az:// is converted as a stream; `bams3 cp` copies a dataset to az:// and back."""
    bam, _ = synth_az
    src = _url(azure_server, "in.bam")
    store = open_store(src.rsplit("/", 1)[0], create=True)
    with open(bam, "rb") as f:
        store.put("in.bam", f.read())
    dest = src + ".bams3"
    p = _run(azure_server, "convert", src, dest)
    assert p.returncode == 0, p.stderr.decode()
    assert int(_run(azure_server, "query", dest, "chrA", "-c").stdout) == view_count(bam, "chrA")
    copy = _url(azure_server, "copy.bams3")
    assert _run(azure_server, "cp", dest, copy).returncode == 0
    assert _run(azure_server, "cp", copy, tmp_path / "back.bams3").returncode == 0
    p = _run(azure_server, "verify", tmp_path / "back.bams3")
    assert p.returncode == 0, p.stderr.decode()
    assert int(_run(azure_server, "query", tmp_path / "back.bams3", "chrC", "-c").stdout) == view_count(bam, "chrC")


def test_publish_is_conditional_on_azure(azure_server):
    """A second conversion to the same place is refused (--force replaces), as on S3."""
    url = _url(azure_server, "ex.bams3")
    assert _run(azure_server, "convert", EXAMPLE, url).returncode == 0
    assert_one_line_error(_run(azure_server, "convert", EXAMPLE, url), 1, "--force")
    assert _run(azure_server, "convert", EXAMPLE, url, "--force").returncode == 0
    assert int(_run(azure_server, "query", url, "chrM", "-c").stdout) == view_count(EXAMPLE, "chrM")


def test_azure_errors_are_one_line(azure_server):
    key = azure_server["env"]["AZURE_STORAGE_ACCOUNT_KEY"]
    p = _run(azure_server, "convert", EXAMPLE, "az://no-such-container/x.bams3")
    assert_one_line_error(p, 1, "container does not exist")
    p = _run(azure_server, "stats", f"az://{azure_server['container']}/nothing-here")
    assert_one_line_error(p, 1, "no bams3 dataset")
    # nothing listens on port 9: the variable is what points obstore at the server (every store takes
    # its attempts from AWS_MAX_ATTEMPTS)
    p = _run(azure_server, "stats", f"az://{azure_server['container']}/x",
             AZURITE_BLOB_STORAGE_URL="http://127.0.0.1:9", AWS_MAX_ATTEMPTS="2")
    assert_one_line_error(p, 1, "cannot reach")
    wrong = "d3JvbmcK" * 11  # a well-formed key that is not the account's
    p = _run(azure_server, "convert", EXAMPLE, _url(azure_server, "denied.bams3"), AZURE_STORAGE_ACCOUNT_KEY=wrong)
    assert_one_line_error(p, 1, "denied")
    for secret in (key, wrong):
        assert secret.encode() not in p.stderr + p.stdout
