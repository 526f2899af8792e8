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
    (NEW). Every case runs, and each prints what the other prints."""
    bams3 = pathlib.Path(sys.executable).with_name("bams3")
    full = tmp_path / "full-bams3"
    full.write_text(f'#!/bin/sh\nBAMS3_QUICK=0 exec "{bams3}" "$@"\n')
    full.chmod(0o755)
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "ab.py"), str(full), str(bams3), str(sample_dir),
                        "--repeat", "1"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = p.stdout.splitlines()[1:]
    spec = importlib.util.spec_from_file_location("ab", ROOT / "bench" / "ab.py")
    ab = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ab)
    assert len(rows) == len(ab.cases("ds", "bam")) >= 10 and all(r.endswith("  identical") for r in rows), p.stdout
