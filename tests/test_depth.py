"""`bams3 depth` and `bams3 coverage --exact/--by` against samtools depth and samtools coverage
(pysam's), line for line, on a BAM with every kind of read (tests/filterbam.py), the synthetic
BAM of long deletions and introns (tests/synth.py) and the benchmark sample; and what depth reads."""

from __future__ import annotations

import pysam
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bams3
from bams3 import storage
from bams3.cli import main
from bams3.storage import start_trace

from . import filterbam, synth


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """{name: (BAM, dataset, BED)} in small chunks, so windows and regions cut chunks."""
    d = tmp_path_factory.mktemp("depth")
    out = {}
    for name, make in (("fb", lambda p: filterbam.write(p)), ("syn", lambda p: synth.write_bam(p, n=600))):
        bam = make(str(d / f"{name}.bam"))
        if not pysam.idxstats(bam):
            pysam.index(bam)
        dest = str(d / f"{name}.bams3")
        bams3.convert(bam, dest, chunk_size=16 << 10)
        refs = [(r, length) for r, length in zip(pysam.AlignmentFile(bam).references,
                                                 pysam.AlignmentFile(bam).lengths)]
        bed = d / f"{name}.bed"
        r0, l0 = refs[0]
        r1, l1 = refs[1]
        bed.write_text(f"{r0}\t100\t200\n{r0}\t150\t2500\n{r1}\t0\t10\n{r0}\t{l0 - 50}\t{l0}\n")
        out[name] = (bam, dest, str(bed), refs)
    return out


def bams3_cli(capfd, *args) -> tuple[int, str, str]:
    capfd.readouterr()
    code = main([str(a) for a in args])
    out, err = capfd.readouterr()
    return code, out, err


def samtools_depth(*args) -> str:
    return pysam.depth(*map(str, args))


DEPTH_CASES = [
    [], ["-a"], ["-a", "-a"], ["-r", "{r0}"], ["-a", "-r", "{r0}"], ["-a", "-r", "{r0}:{end_near}-{past}"],
    ["-q", "25", "-r", "{r0}"], ["-a", "-q", "25", "-r", "{r1}"], ["-Q", "30", "-a"], ["-b", "{bed}"],
    ["-a", "-b", "{bed}"], ["-a", "-b", "{bed}", "-r", "{r1}"], ["-J", "-a", "-r", "{r0}:1000-50000"],
    ["-G", "0", "-a", "-r", "{r0}"], ["-G", "SUPPLEMENTARY,READ2", "-r", "{r0}"], ["-g", "UNMAP", "-a"],
    ["-g", "DUP,QCFAIL", "-J", "-r", "{r1}"], ["--incl-flags", "READ1", "-a", "-r", "{r1}"],
    ["--require-flags", "0x3", "-r", "{r0}"], ["-H", "-r", "{r1}:1-200"], ["-a", "-r", "{r1}:5-5"],
]


@pytest.mark.parametrize("name", ["fb", "syn"])
@pytest.mark.parametrize("case", DEPTH_CASES, ids=[" ".join(c) or "defaults" for c in DEPTH_CASES])
def test_depth_prints_what_samtools_depth_prints(files, name, case, capfd):
    bam, dest, bed, refs = files[name]
    (r0, l0), (r1, _) = refs[0], refs[1]
    args = [a.format(r0=r0, r1=r1, bed=bed, end_near=l0 - 10, past=l0 + 5000) for a in case]
    want = samtools_depth(*args, bam)
    code, out, err = bams3_cli(capfd, "depth", dest, *args)
    assert code == 0, err
    assert out.replace(dest, bam) == want


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), name=st.sampled_from(["fb", "syn"]), a=st.integers(0, 2), mapq=st.sampled_from([0, 1, 20, 60]),
       bq=st.sampled_from([0, 0, 13, 30]), dele=st.booleans())
def test_generated_depth_equals_samtools(files, capfd, data, name, a, mapq, bq, dele):
    bam, dest, _, refs = files[name]
    ref, length = data.draw(st.sampled_from(refs[:2]))
    beg = data.draw(st.integers(1, length))
    end = data.draw(st.integers(beg, min(length + 3000, beg + 40_000)))
    args = ["-a"] * a + ["-Q", mapq, "-q", bq] + (["-J"] if dele else []) + ["-r", f"{ref}:{beg}-{end}"]
    if bq:
        args += ["-G", "SECONDARY"]  # samtools reads qualities out of bounds for SEQ '*' with -q (see depth.py)
    code, out, err = bams3_cli(capfd, "depth", dest, *args)
    assert code == 0, err
    assert out == samtools_depth(*args, bam)


def test_depth_of_10kb_of_the_sample(sample_dir, sample_dataset, capfd):
    bam = str(sample_dir / "sample.bam")
    ref = pysam.AlignmentFile(bam).references[0]
    for args in (["-a", "-r", f"{ref}:1,000,001-1,010,000"], ["-r", f"{ref}:3,000,001-3,010,000", "-Q", "20",
                                                               "-q", "20"]):
        code, out, err = bams3_cli(capfd, "depth", sample_dataset, *args)
        assert code == 0, err
        assert out == samtools_depth(*[a.replace(",", "") for a in args], bam)


def test_depth_reads_no_sequence_or_quality_without_q(files, monkeypatch):
    """Positions, CIGARs, flags and MAPQ only (no names, sequences, qualities or tags)."""
    _, dest, _, refs = files["fb"]
    monkeypatch.setattr(storage, "_traced", None)
    start_trace()
    ds = bams3.open(dest)
    list(ds.depth(refs[0][0]))
    log = [entry for store in storage._traced for entry in store.counter.log]
    ranges = [e for e in log if e[1] and "data/" in e[1]]
    read = sum(e[3] for e in ranges)
    assert ranges and read < 0.5 * int(ds.chunks.nbytes.sum())


# ---------------------------------------------------------------- coverage --exact / --by
def _samtools_mean(bam, region, *args) -> float:
    line = pysam.coverage("-r", region, *args, bam).splitlines()[1]
    return float(line.split("\t")[6])


@pytest.mark.parametrize("name", ["fb", "syn"])
def test_exact_coverage_equals_samtools_coverage(files, name, capfd):
    bam, dest, bed, refs = files[name]
    (r0, l0), (r1, l1) = refs[0], refs[1]
    for region, ours_args, theirs_args in [
        (f"{r0}:1000-2000", [], []), (f"{r0}", [], []), (f"{r1}:5-5", [], []), (f"{r0}:1-{l0}", ["-Q", "20"],
                                                                                ["-q", "20"]),
        (f"{r1}", ["--min-BQ", "25", "-G", "SECONDARY"], ["-Q", "25", "--ff", "UNMAP,SECONDARY,QCFAIL,DUP"]),
    ]:
        code, out, err = bams3_cli(capfd, "coverage", dest, "-r", region, "--exact", *ours_args)
        assert code == 0, err
        (line,) = out.splitlines()
        assert float(line.split("\t")[3]) == pytest.approx(_samtools_mean(bam, region, *theirs_args), abs=5e-5, rel=1e-5)
    code, out, err = bams3_cli(capfd, "coverage", dest, "--by", bed)
    assert code == 0, err
    for line in out.splitlines():
        ref, beg, end, mean = line.split("\t")
        assert float(mean) == pytest.approx(_samtools_mean(bam, f"{ref}:{int(beg) + 1}-{end}"), abs=5e-5, rel=1e-5)
    code, out, err = bams3_cli(capfd, "coverage", dest, "-r", r1, "--by", "1000")
    assert code == 0, err
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == -(-l1 // 1000)
    for ref, beg, end, mean in rows[:8]:
        assert float(mean) == pytest.approx(_samtools_mean(bam, f"{ref}:{int(beg) + 1}-{end}"), abs=5e-5, rel=1e-5)


def test_exact_coverage_of_a_window_inside_a_stored_bin(sample_dir, sample_dataset):
    """The issue's example: a 1 kb window is its own mean, not the stored 16 Kbp bin's."""
    bam = str(sample_dir / "sample.bam")
    ref = pysam.AlignmentFile(bam).references[0]
    ds = bams3.open(sample_dataset)
    (row,) = ds.exact_coverage(f"{ref}:1000-2000")
    assert row[3] == pytest.approx(_samtools_mean(bam, f"{ref}:1000-2000"), abs=5e-5, rel=1e-5)
    (binned,) = ds.coverage(f"{ref}:1000-2000")
    assert binned[2] - binned[1] == 16384


def test_coverage_refuses_mixed_options(files, capfd):
    _, dest, bed, refs = files["fb"]
    for args in (["--exact", "--bin", "64K"], ["-r", refs[0][0], "--by", bed], ["--by", "0"]):
        code, out, err = bams3_cli(capfd, "coverage", dest, *args)
        assert code == 2 and not out and err.count("\n") == 1, (args, err)


def test_cigars_kept_in_cg_tags_are_put_back(tmp_path, capfd):
    """Reads of over 65535 CIGAR operations (BAM keeps them in a CG tag behind a placeholder):
    depth, -m and CIGAR expressions use the real CIGAR, as htslib does; the tags are fetched only
    for the chunks that hold such a read."""
    from bams3.filters import from_options

    bam = str(tmp_path / "cg.bam")
    header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": "c", "LN": 10**6}]}
    with pysam.AlignmentFile(bam, "wb", header=header) as out:
        for k, n in enumerate((3, 70_001, 3, 70_001, 5)):
            a = pysam.AlignedSegment(out.header)
            a.query_name, a.reference_id, a.reference_start, a.mapping_quality = f"q{k}", 0, 10 + k, 5
            a.cigartuples = [(5, 3)] + [(0, 1), (1, 1)] * (n // 2) + [(0, 1)]
            a.query_sequence = "A" * (n // 2 * 2 + 1)
            a.set_tag("NM", k)
            out.write(a)
    pysam.index(bam)
    dest = str(tmp_path / "cg.bams3")
    bams3.convert(bam, dest, chunk_size=1024)
    code, out, err = bams3_cli(capfd, "depth", dest, "-a", "-r", "c:1-80000")
    assert code == 0, err
    assert out == samtools_depth("-a", "-r", "c:1-80000", bam)
    ds = bams3.open(dest)
    for kw, args in ((dict(min_qlen=100), ["-m", "100"]), (dict(expression="ncigar > 10"), ["-e", "ncigar > 10"]),
                     (dict(expression="exists([CG])"), ["-e", "exists([CG])"]), (dict(tag=["CG"]), ["-d", "CG"])):
        assert ds.count(filters=from_options(**kw)) == int(pysam.view("-c", *args, bam)), args
        assert ds.count("c:50000-60000", filters=from_options(**kw)) == int(pysam.view("-c", *args, bam,
                                                                                      "c:50000-60000")), args
    # and the bins stored at conversion count them too
    for stored, exact in zip(ds.coverage("c:1-65536"), ds.exact_coverage("c:1-65536", 16384)):
        assert stored[:3] == exact[:3] and stored[3] == pytest.approx(exact[3], abs=1e-12)
