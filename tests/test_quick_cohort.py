"""The quick path of a cohort count (bams3/_quickcohort.py): ``bams3 cohort count REGION ...
--from FILE`` answered without numpy or click, each sample by the quick count or, where that
steps aside, by the full command's own count of the sample. Against the full command
(``BAMS3_QUICK=0``) on moto's S3 server behind a counting proxy: the same table, message and
status, in as many requests (a sample handed to the full command is not read twice, a failed
request is not retried more often), counts equal to samtools'; a command line it does not take
is the full command's; Ctrl-C ends it at once."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

import bams3
from bams3.conformance.proxy import CountingProxy

from .oracle import view_count
from .synth import write_bam
from .test_faults import interrupt_when_stalled

BAMS3 = pathlib.Path(sys.executable).with_name("bams3")
REGIONS = ["chrA:1,000-50,000", "chrB:10-20", "chrC", "chrA:30,001-30,001"]


@pytest.fixture(scope="module")
def cohort(s3_server, tmp_path_factory):
    """Samples on the S3 server (with a count index, without one, with count slots: the last is
    the full command's), a local one, one that is missing, and the BAM they all came from."""
    root = tmp_path_factory.mktemp("quick-cohort")
    bam = write_bam(str(root / "in.bam"), n=5000, seed=31)
    base = f"s3://{s3_server['bucket']}/quick-cohort"
    urls = {"index": f"{base}/index.bams3", "plain": f"{base}/plain.bams3", "slots": f"{base}/slots.bams3",
            "local": str(root / "local.bams3"), "missing": f"{base}/missing.bams3"}
    bams3.convert(bam, urls["index"], chunk_size="4K", count_index=True, force=True)
    bams3.convert(bam, urls["plain"], chunk_size="4K", force=True)
    bams3.convert(bam, urls["slots"], chunk_size="64K", slots=True, force=True)
    bams3.convert(bam, urls["local"], chunk_size="4K")
    proxy = CountingProxy(s3_server["endpoint"])
    samples = root / "samples.txt"
    samples.write_text("".join(f"{name}\t{url}\n" for name, url in urls.items() if name != "missing"))
    with_missing = root / "with-missing.txt"
    with_missing.write_text("# a sample list\n" + "".join(f"{url}\n" for url in urls.values()))
    yield {"bam": bam, "urls": urls, "proxy": proxy, "root": root, "samples": str(samples),
           "with_missing": str(with_missing),
           "env": {**os.environ, **s3_server["env"], "AWS_ENDPOINT_URL": proxy.endpoint}}
    proxy.close()


def _both(cohort, *args: str, **env) -> list[tuple]:
    """(status, stdout, stderr, requests) of ``bams3 cohort count ARGS``, quick and full."""
    out = []
    for quick in ("1", "0"):
        cohort["proxy"].reset()
        p = subprocess.run([str(BAMS3), "cohort", "count", *args], capture_output=True, text=True, timeout=120,
                           env={**cohort["env"], "BAMS3_QUICK": quick, **env}, cwd=cohort["root"])
        out.append((p.returncode, p.stdout, p.stderr, len(cohort["proxy"].log)))
    return out


def test_the_table_equals_the_full_commands_and_samtools_in_as_many_requests(cohort):
    quick, full = _both(cohort, *REGIONS, "--from", cohort["samples"], "-@", "3", "--no-progress")
    assert quick == full and quick[0] == 0 and quick[2] == "", (quick, full)
    rows = [line.split("\t") for line in quick[1].splitlines()]
    assert rows[0] == ["sample", "region", "count", "note", "error"]
    want = {r: str(view_count(cohort["bam"], r)) for r in REGIONS}
    assert [(r[0], r[1]) for r in rows[1:]] == [(s, r) for s in ("index", "plain", "slots", "local") for r in REGIONS]
    assert all(r[2] == want[r[1]] and r[3:] == ["", ""] for r in rows[1:]), rows
    # a missing sample and a reference some samples lack: rows noted and failed as the full command's
    quick, full = _both(cohort, "chrA:1-90,000", "chrZ:1-10", "--from", cohort["with_missing"], "--no-progress")
    assert quick == full and quick[0] == 0, (quick, full)
    rows = [line.split("\t") for line in quick[1].splitlines()[1:]]
    assert [r[2:4] for r in rows if r[0] != "missing"] == [[str(view_count(cohort["bam"], "chrA:1-90,000")), ""],
                                                          ["0", "missing_reference"]] * 4
    assert [r[2] for r in rows if r[0] == "missing"] == ["NA", "NA"] and all(r[4] for r in rows if r[0] == "missing")
    assert quick[2] == "bams3: 1 sample(s) failed (see the error column): missing\n"


def test_it_imports_no_numpy_or_click(cohort, tmp_path):
    """Samples the quick count answers: neither numpy nor click is imported, nor what writing a
    file (bams3.output) or reading an AWS profile (configparser) needs, and one S3 client is
    made (none for streaming); one it leaves to the full command's count of the sample (count
    slots) imports numpy for that sample."""
    probe = ("import sys; sys.argv = ['bams3', 'cohort', 'count', 'chrA:1-90000', '--from', sys.argv[1]]; "
             "from bams3._main import main; code = main(); from bams3.builtins.cloud import _CLIENTS; "
             "print(sorted(m for m in ('numpy', 'click', 'pysam', 'bams3.output', 'configparser') if m in sys.modules),"
             " code, len(_CLIENTS), file=sys.stderr)")
    for names, imported in ((("index", "plain", "local"), "[] 0 1"), (("index", "slots"), "['numpy'] 0 1")):
        samples = tmp_path / "s.txt"
        samples.write_text("".join(f"{n}\t{cohort['urls'][n]}\n" for n in names))
        r = subprocess.run([sys.executable, "-c", probe, str(samples)], capture_output=True, text=True, timeout=60,
                           env=cohort["env"])
        want = "".join(f"{n}\tchrA:1-90000\t{view_count(cohort['bam'], 'chrA:1-90000')}\t\t\n" for n in names)
        assert (r.stdout, r.stderr.strip()) == ("sample\tregion\tcount\tnote\terror\n" + want, imported), names


def test_a_command_line_it_does_not_take_is_the_full_commands(cohort, tmp_path):
    bed = tmp_path / "t.bed"
    bed.write_text("chrA\t100\t5000\n")
    samples = cohort["samples"]
    for args in (["chrA", "--from", samples, "--progress"], ["chrA", "--from", samples, "-o", str(tmp_path / "t.csv")],
                 ["chrA", "--from", samples, "--sample-name", "rg"], ["-L", str(bed), "--from", samples],
                 ["chrA", "--from", samples, "-F", "4"], ["chrA", "--from", samples, "--from", samples],
                 ["chrA", "--from", str(tmp_path / "none.txt")], ["--from", samples], ["chrA", "--from", samples, "-@", "0"],
                 ["chrA", "--from", samples, "-@", "x"], ["chrA", "--from=" + samples, "-@4", "--workers=2"]):
        quick, full = _both(cohort, *args)
        assert quick == full, (args, quick, full)
    assert _both(cohort, "chrA", "--from=" + samples, "-@4")[0][0] == 0


def test_a_failed_request_is_retried_as_often_as_by_the_full_command(cohort, tmp_path):
    """The count index answers 503 (after the store's 2 attempts): the sample's row fails as the
    full command's does, after as many requests (the quick attempt is the first of three); the
    503s spent, the next attempt of the sample succeeds in both."""
    proxy = cohort["proxy"]
    samples = tmp_path / "s.txt"
    samples.write_text(f"index\t{cohort['urls']['index']}\n")
    for faults, ok in ((["503"] * 1000, False), (["503"] * 2, True)):
        results = []
        for quick in ("1", "0"):
            proxy.faults, proxy.fault_match = list(faults), "_counts"
            try:
                proxy.reset()
                p = subprocess.run([str(BAMS3), "cohort", "count", "chrA:1,000-50,000", "--from", str(samples)],
                                   capture_output=True, text=True, timeout=120,
                                   env={**cohort["env"], "BAMS3_QUICK": quick, "AWS_MAX_ATTEMPTS": "2"})
            finally:
                proxy.faults, proxy.fault_match = [], None
            results.append((p.returncode, p.stdout, p.stderr, len(proxy.log)))
        assert results[0] == results[1], (faults[:1], results)
        row = results[0][1].splitlines()[1].split("\t")
        assert (row[2] == str(view_count(cohort["bam"], "chrA:1,000-50,000"))) == ok and bool(row[4]) != ok, row
    assert results[0][3] == 5  # the metadata, two reads of the count index answered 503; then both again


def test_ctrl_c_ends_it_at_once(cohort):
    proxy = cohort["proxy"]
    proxy.stall_seconds = 8
    proxy.faults, proxy.fault_match = ["stall"] * 1000, "_counts"
    try:
        code, out, err, took = interrupt_when_stalled(
            proxy, [str(BAMS3), "cohort", "count", "chrA:1,000-50,000", "--from", cohort["samples"], "-@", "2"],
            {**cohort["env"], "AWS_MAX_ATTEMPTS": "6", "BAMS3_TIMEOUT": "6", "BAMS3_QUICK": "1"})
    finally:
        proxy.faults, proxy.fault_match = [], None
        proxy.stall_seconds = 10.0
    assert (code, err, out) == (130, "bams3: interrupted\n", "")
    assert took < 3, took


def test_a_samples_single_reads_are_made_on_its_own_thread(cohort, monkeypatch):
    """On a cohort's thread, a read asked alone (the metadata, one group of count prefixes) is
    made on that thread, with no thread started for it; the rows are the full command's."""
    import threading

    from bams3 import _quickcohort, cohort as full

    started = []
    real_start = threading.Thread.start

    def start(self):
        started.append(self.name)
        return real_start(self)

    url = cohort["urls"]["index"]
    rows = []
    worker = threading.Thread(target=lambda: rows.append(_quickcohort.count_sample("s", url, REGIONS)))
    monkeypatch.setattr(threading.Thread, "start", start)
    real_start(worker)
    worker.join()
    assert started == []
    assert rows == [full.count_sample("s", url, REGIONS)]
    assert [r[2] for r in rows[0]] == [view_count(cohort["bam"], r) for r in REGIONS]
