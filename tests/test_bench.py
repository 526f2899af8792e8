"""The benchmark script runs end to end (one repetition) on the benchmark sample, and
every output it compares is identical to samtools'. Its timings are printed, never
asserted: speed is shown by the script, not by the tests."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import subprocess
import sys

from .conftest import ROOT


def _identical(obj) -> list[bool]:
    if isinstance(obj, dict):
        return [v for k, v in obj.items() if k in ("identical", "records_identical")] + \
            [x for v in obj.values() for x in _identical(v)]
    return []


def test_bench_runs_and_every_output_is_identical(sample_dir, tmp_path):
    out = tmp_path / "bench.json"
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "bench.py"), str(sample_dir), "--repeat", "1",
                        "--json", str(out), "--tmp", str(tmp_path), "--cohort-samples", "6"], capture_output=True,
                       text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    result = json.loads(out.read_text())
    checks = _identical(result)
    assert len(checks) >= 14 and all(checks), result
    assert result["s3"]["convert"]["returncode"] == 0
    assert "ratio" in p.stdout
    cohort = result["cohort"]  # every sample counted right, in 2 requests each with the count index
    assert all(cohort[who]["correct"] == 6 and not cohort[who]["failed"] for who in cohort["order"]), cohort
    assert cohort["bams3"]["requests"] == 2 * 6 < cohort["bams3-no-index"]["requests"], cohort
    assert "count, 6 samples, count index" in p.stdout


def test_ab_interleaves_two_programs_and_compares_their_outputs(sample_dir, tmp_path):
    """bench/ab.py with two programs: this checkout's bams3 with the quick path off (OLD) and on
    (NEW), with --bed. Every case runs (the BED's two too), and each prints what the other prints."""
    bams3 = pathlib.Path(sys.executable).with_name("bams3")
    full = tmp_path / "full-bams3"
    full.write_text(f'#!/bin/sh\nBAMS3_QUICK=0 exec "{bams3}" "$@"\n')
    full.chmod(0o755)
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "ab.py"), str(full), str(bams3), str(sample_dir),
                        "--repeat", "1", "--bed"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = p.stdout.splitlines()[1:]
    spec = importlib.util.spec_from_file_location("ab", ROOT / "bench" / "ab.py")
    ab = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ab)
    assert len(rows) == len(ab.cases("ds", "bam")) + 2 >= 12 and all(r.endswith("  identical") for r in rows), p.stdout
    assert [r.split()[:2] for r in rows[-2:]] == [["BED,", "records"], ["BED,", "-c"]]
    assert all(len(r.split("  identical")[0].split()[-3:]) == 3 for r in rows)  # and the CPU of each (ms)


def test_ab_with_own_datasets_lets_each_program_read_what_it_wrote(sample_dir, tmp_path):
    """bench/ab.py --own-datasets (for a change of format OLD cannot read): OLD converts the
    sample too, and every case of OLD's reads OLD's dataset."""
    bams3 = pathlib.Path(sys.executable).with_name("bams3")
    log = tmp_path / "old.log"
    old = tmp_path / "old-bams3"
    old.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\nexec "{bams3}" "$@"\n')
    old.chmod(0o755)
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "ab.py"), str(old), str(bams3), str(sample_dir),
                        "--repeat", "1", "--own-datasets"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    calls = log.read_text().splitlines()
    assert calls[0].startswith("convert ") and calls[0].split()[2].endswith("/old.bams3")
    runs = [c for c in calls[1:] if c != "--version"]
    assert runs and all("/old.bams3" in c for c in runs), calls
    # (stats names the dataset it read: two datasets, two outputs)
    rows = [r for r in p.stdout.splitlines()[1:] if r.split("  ")[0].strip() not in ("stats", "stats --json")]
    assert rows and all(r.endswith("  identical") for r in rows), p.stdout


def test_ab_convert_times_conversions_and_compares_their_datasets(sample_dir, tmp_path):
    """bench/ab.py --convert: the default and high conversions of two programs and samtools'
    CRAMs, interleaved; the datasets are identical when the chunk objects are (the same
    program), and differ when one program cuts other chunks."""
    bams3 = pathlib.Path(sys.executable).with_name("bams3")
    small = tmp_path / "small-chunks-bams3"
    small.write_text(f'#!/bin/sh\nexec "{bams3}" "$@" --max-chunk-raw 64K\n')
    small.chmod(0o755)
    for old, verdict in ((bams3, "identical"), (small, "DIFFER")):
        p = subprocess.run([sys.executable, str(ROOT / "bench" / "ab.py"), str(old), str(bams3), str(sample_dir),
                            "--repeat", "1", "--convert"], capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-2000:]
        rows = p.stdout.splitlines()[1:]
        assert len(rows) == 2 and rows[0].startswith("convert ") and rows[1].startswith("convert high ")
        assert len(rows) == 2 and all(r.endswith("  " + verdict) for r in rows), p.stdout
        assert all(r.split()[-2].endswith("x") for r in rows), p.stdout
