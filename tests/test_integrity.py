"""Answers that could be plausible and wrong: hand-edited or oversized metadata, a reference
named twice, depth counted past a reference's end. Each is refused or answered exactly."""

from __future__ import annotations

import json
import pathlib
import shutil

import pysam
import pytest

import bams3
from bams3.bgzf import BgzfWriter
from bams3.records import Header

from .oracle import raw_bam
from .synth import REFS, write_bam
from .test_cli import EXAMPLE, assert_one_line_error, run
from .test_hostile import _measured, refused


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> pathlib.Path:
    dest = tmp_path_factory.mktemp("integrity") / "d.bams3"
    run("convert", EXAMPLE, dest, "--chunk-size", "256K", "--count-slots", check=True)
    return dest


def test_metadata_edited_without_its_checksum_is_refused(ds, tmp_path):
    """The issue's wrong counts came from one-digit edits to chunk_size, count_slot_bp or a
    reference length: every such edit is now refused before any field is used."""
    copy = tmp_path / "c.bams3"
    shutil.copytree(ds, copy)
    body = (copy / "_metadata.json").read_bytes()
    for old, new in ((b'"chunk_size":262144', b'"chunk_size":262145'), (b'"count_slot_bp":16384',
                                                                        b'"count_slot_bp":16385'),
                     (b'["chr1",5000000]', b'["chr1",5000001]')):
        assert old in body, old
        (copy / "_metadata.json").write_bytes(body.replace(old, new))
        for verb in (["stats"], ["query", "-c"], ["query"]):
            args = [verb[0], copy, *verb[1:]] + (["chr1:100000-200000"] if verb[0] == "query" else [])
            assert_one_line_error(run(*args), 1, "checksum")
    (copy / "_metadata.json").write_bytes(body.replace(b'"checksum":"sha256:', b'"checksun":"sha256:'))
    assert_one_line_error(run("stats", copy), 1, "lost its checksum")


def test_an_oversized_metadata_object_is_refused_without_reading_it(ds, tmp_path):
    copy = tmp_path / "c.bams3"
    shutil.copytree(ds, copy)
    body = (copy / "_metadata.json").read_bytes()
    with open(copy / "_metadata.json", "wb") as f:  # 600 MB, sparse: the 1.27 GB case
        f.write(body)
        f.truncate(600 << 20)
    r = _measured("stats", copy)
    refused(r, 1, "_metadata.json is 629,145,600 bytes")
    assert r.rss_mb < 100


def test_writers_refuse_metadata_beyond_what_readers_accept(tmp_path, monkeypatch):
    from bams3 import converter, format

    monkeypatch.setattr(converter, "MAX_METADATA_BYTES", 17 << 20)
    monkeypatch.setattr(format, "MAX_METADATA_BYTES", 17 << 20)
    header, records = raw_bam(EXAMPLE)
    big = Header(header.text + "".join(f"@CO\t{'x' * 1000}\n" for _ in range(2000)), header.references)
    src = tmp_path / "big-header.bam"
    with open(src, "wb") as f:
        w = BgzfWriter(f)
        w.write(big.to_bam_bytes() + records)
        w.close()
    with pytest.raises(bams3.errors.InputError, match="too large"):
        bams3.convert(str(src), str(tmp_path / "d"))
    assert not (tmp_path / "d").exists()


def _duplicate_sq_bam(path: pathlib.Path) -> None:
    header, records = raw_bam(EXAMPLE)
    refs = list(header.references)
    refs[1] = (refs[0][0], refs[1][1])  # the second reference renamed to the first's name
    lines = header.text.splitlines(keepends=True)
    sq = [i for i, line in enumerate(lines) if line.startswith("@SQ")]
    lines[sq[1]] = lines[sq[1]].replace(f"SN:{header.references[1][0]}\t", f"SN:{refs[0][0]}\t")
    with open(path, "wb") as f:
        w = BgzfWriter(f)
        w.write(Header("".join(lines), tuple(refs)).to_bam_bytes() + records)
        w.close()


def test_a_reference_named_twice_is_refused_as_samtools_refuses_it(tmp_path):
    bam = tmp_path / "dup.bam"
    _duplicate_sq_bam(bam)
    with pytest.raises(pysam.SamtoolsError):  # the oracle refuses the file
        pysam.samtools.view(str(bam), catch_stdout=True)
    assert_one_line_error(run("convert", bam, tmp_path / "d"), 1, "twice")
    assert not (tmp_path / "d").exists()
    sam = tmp_path / "dup.sam"
    sam.write_text("@SQ\tSN:chrA\tLN:100\n@SQ\tSN:chrA\tLN:200\nr1\t0\tchrA\t5\t60\t4M\t*\t0\t0\tACGT\t####\n")
    p = run("convert", sam, tmp_path / "d2")
    assert p.returncode == 1 and p.stderr.decode().count("\n") == 1, p.stderr
    assert not (tmp_path / "d2").exists()


def test_a_metadata_that_names_a_reference_twice_is_refused(ds, tmp_path):
    from bams3.format import encode_metadata

    copy = tmp_path / "c.bams3"
    shutil.copytree(ds, copy)
    meta = json.loads((copy / "_metadata.json").read_bytes())
    meta.pop("checksum")
    meta["header"]["references"][1][0] = meta["header"]["references"][0][0]
    (copy / "_metadata.json").write_bytes(encode_metadata(meta))  # signed: the reader's own check
    assert_one_line_error(run("query", copy, "chr1", "-c"), 1, "twice")


def test_coverage_stops_at_reference_ends_as_samtools_depth(tmp_path):
    """Reads run past the ends of chrB (5 kbp) and the other references; the last bin's mean is
    the mean over the reference's own positions, as `samtools depth -a` reports them."""
    bam = write_bam(str(tmp_path / "s.bam"), n=4000, seed=3)
    dest = tmp_path / "d"
    bams3.convert(bam, str(dest))
    ds = bams3.open(str(dest))
    past = 0
    with pysam.AlignmentFile(bam) as f:
        for r in f.fetch(until_eof=True):
            if not r.is_unmapped and r.reference_end > dict(REFS)[r.reference_name] and not r.flag & 0x704:
                past += 1
    assert past > 10  # the case is really there
    for name, length in REFS:
        rows = ds.coverage(name)
        last = rows[-1]
        assert last[2] == length
        text = pysam.depth("-a", "-r", f"{name}:{last[1] + 1}-{last[2]}", bam, catch_stdout=True)
        total = sum(int(line.split("\t")[2]) for line in text.splitlines())
        assert last[3] == pytest.approx(total / (last[2] - last[1]), abs=1e-12), name
