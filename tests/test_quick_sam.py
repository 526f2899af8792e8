"""The quick path's records (bams3/_quicksam.py): ``bams3 query DATASET REGION`` of a local
dataset answered before numpy, click, attrs or pluggy is imported. It must write what samtools
view writes, byte for byte, or step aside (and the full command writes it, or reports the
damage): for every region, layout, corpus file and damage."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys

import pysam
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bams3
import bams3.shards
from bams3 import _quick, _quicksam
from bams3.dataset import Dataset

from .conftest import sorted_corpus
from .oracle import view
from .synth import REFS, write_bam
from .test_quick import BAMS3, _chunk_file, _cli, _flip, _outcome


@pytest.fixture(scope="module")
def bam(tmp_path_factory):
    path = write_bam(str(tmp_path_factory.mktemp("qsam") / "in.bam"), n=5000, seed=31)
    pysam.index(path)
    return path


@pytest.fixture(scope="module")
def datasets(bam, tmp_path_factory):
    """The layouts the quick path reads: an inline table, an external one, a sharded (v3)
    conversion, the high compression (scheme 3 qualities where they code smaller); and count
    slots, which it leaves to the full command."""
    from bams3.format import metadata

    d = tmp_path_factory.mktemp("qsam-ds")
    out = {k: str(d / f"{k}.bams3") for k in ("inline", "external", "sharded", "high", "slots")}
    bams3.convert(bam, out["inline"], chunk_size="32K")
    mp = pytest.MonkeyPatch()
    mp.setattr(metadata, "INLINE_TABLE_MAX", 256)
    try:
        bams3.convert(bam, out["external"], chunk_size="64K")
    finally:
        mp.undo()
    bams3.shards.convert(bam, out["sharded"], engine="local", shard_bp="96K", chunk_size="32K", max_chunk_raw=200_000)
    bams3.convert(bam, out["high"], chunk_size="32K", compression="high")
    bams3.convert(bam, out["slots"], chunk_size="64K", slots=True)
    return out


def _region(rng: random.Random) -> str:
    name, length = rng.choice(REFS)
    kind = rng.random()
    if kind < 0.05:
        return name
    beg = rng.randint(1, length)
    return f"{name}:{beg}" if kind < 0.1 else f"{name}:{beg:,}-{min(length + 50, beg + rng.randint(0, 4000)):,}"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_a_regions_records_are_samtools_views(bam, datasets, seed):
    region = _region(random.Random(seed))
    want = view(bam, region).encode()
    for name in ("inline", "external", "sharded", "high"):
        got = _outcome(lambda: _quicksam.sam(datasets[name], [region]))  # noqa: B023
        assert got == want or got is _quick._Refused, (name, region)


def test_most_regions_are_answered(bam, datasets):
    """Refusing is allowed, not the rule: a region of a few kilobases is answered (the synthetic
    reads' deletions of up to 20 kb make a region reach chunks before it)."""
    rng = random.Random(8)
    regions = [_region(rng) for _ in range(60)]
    for name in ("inline", "external", "sharded", "high"):
        answered = 0
        for region in regions:
            got = _outcome(lambda: _quicksam.sam(datasets[name], [region]))  # noqa: B023
            assert got == view(bam, region).encode() or got is _quick._Refused
            answered += isinstance(got, bytes)
        assert answered >= 45, (name, answered)
    assert _outcome(lambda: _quicksam.sam(datasets["slots"], ["chrA:1-1000"])) is _quick._Refused
    assert _outcome(lambda: _quicksam.sam(datasets["inline"], ["chrA"])) is _quick._Refused  # more than MAX_CHUNKS


def test_the_cli_writes_them_without_numpy_and_as_the_full_command(bam, datasets):
    ds = datasets["inline"]
    for args in ([ds, "chrA:1,000-3,000"], [ds, "chrB"], [ds, "chrEmpty:1-100"], [ds, "chrA:5000-4000"],
                 [ds, "chrA:1-100", "chrB"], [ds, "*"], [ds, "chrA:1-1000", "-h"], [ds, "chrA:1-1000", "-F", "4"],
                 [ds, "nope:1-10"], [ds], [datasets["slots"], "chrA:1-1000"]):
        q, f = _cli("query", *args), _cli("query", *args, quick=False)
        assert (q.returncode, q.stdout, q.stderr) == (f.returncode, f.stdout, f.stderr), args
    probe = ("import sys; sys.argv = ['bams3', 'query', sys.argv[1], 'chrA:100,000-103,000']; "
             "from bams3._main import main; code = main(); "
             "print(sorted(m for m in ('numpy', 'click', 'attrs', 'pluggy', 'zstandard', 'pysam') if m in sys.modules), "
             "code, file=sys.stderr)")
    for name in ("inline", "high"):
        r = subprocess.run([sys.executable, "-c", probe, datasets[name]], capture_output=True, timeout=60)
        assert r.stdout == view(bam, "chrA:100,000-103,000").encode() and r.stdout.count(b"\n") > 10
        assert r.stderr.decode().strip() == "[] 0", r.stderr


def test_a_record_htslib_would_change_is_left_to_the_full_command(tmp_path):
    """A CIGAR kept in a CG tag (htslib moves it into place as it reads the record): the quick
    path steps aside for a region holding it, and answers one that does not."""
    from .synth import write_cg_bam

    bam = write_cg_bam(str(tmp_path / "cg.bam"))
    ds = str(tmp_path / "cg.bams3")
    bams3.convert(bam, ds)
    assert _outcome(lambda: _quicksam.sam(ds, ["chr1:250-300"])) is _quick._Refused  # read 17, at 270
    assert _quicksam.sam(ds, ["chr1:100-200"]) == view(bam, "chr1:100-200").encode() != b""
    for region in ("chr1:250-300", "chr1"):
        q, f = _cli("query", ds, region), _cli("query", ds, region, quick=False)
        assert (q.returncode, q.stdout, q.stderr) == (f.returncode, f.stdout, f.stderr), region
        assert q.stdout == view(bam, region) and "\t4M2I4M\t" in q.stdout


def _full(ds: str, region: str, path) -> bytes:
    with open(path, "wb") as out:
        Dataset.open(ds).write(out, region)
    return path.read_bytes()


def test_every_byte_of_a_chunk_flipped(datasets, tmp_path):
    """Bytes of a chunk the region cuts flipped in turn (the header and directory each, the
    columns every 7th): the quick path writes the full reader's records or steps aside, and
    steps aside wherever the full reader refuses."""
    ds = tmp_path / "d.bams3"
    shutil.copytree(datasets["inline"], ds)
    table = Dataset.open(str(ds)).chunks
    i = 3
    name = REFS[int(table.ref_id[i])][0]
    region = f"{name}:{int(table.min_pos[i]) + 200}-{int(table.max_pos[i])}"
    chunk = _chunk_file(ds, i)
    good = chunk.read_bytes()
    head = Dataset.open(str(ds)).source.chunk(i).extent("pos")[0]
    refused = answered = 0
    for at in [*range(head), *range(head, len(good), 7)]:
        _flip(ds, i, at, 0x24)
        quick = _outcome(lambda: _quicksam.sam(str(ds), [region]))  # noqa: B023
        full = _outcome(lambda: _full(str(ds), region, tmp_path / "full.sam"))  # noqa: B023
        chunk.write_bytes(good)
        assert quick == full if isinstance(quick, bytes) else quick is _quick._Refused, at
        refused += not isinstance(full, bytes)
        answered += isinstance(quick, bytes)
    assert answered == 0 and refused > 0.9 * (head + (len(good) - head) // 7)
    assert _quicksam.sam(str(ds), [region]) == _full(str(ds), region, tmp_path / "full.sam") != b""


def _references(bam) -> list[str]:
    with pysam.AlignmentFile(str(bam), check_sq=False) as f:
        return list(f.references)


_CORPUS = [p for p, s in sorted_corpus().items() if s is not None and _references(s)]


@pytest.mark.parametrize("src", _CORPUS, ids=lambda p: p.name)
def test_htslibs_corpus(src, tmp_path):
    """Each reference of every sortable corpus file, whole and its first kilobase: the quick
    path's SAM is samtools view's, or it steps aside (a record htslib's reader would change, a
    name samtools' region syntax reads otherwise)."""
    bam = str(sorted_corpus()[src])
    pysam.index(bam)
    dest = str(tmp_path / "ds.bams3")
    bams3.convert(bam, dest)
    compared = 0
    for ref in _references(bam)[:3]:
        for region in (ref, f"{ref}:1-1000"):
            try:
                want = view(bam, region).encode(errors="surrogateescape")
            except pysam.SamtoolsError:
                continue
            got = _outcome(lambda: _quicksam.sam(dest, [region]))  # noqa: B023
            assert got == want or not isinstance(got, bytes), region  # (an error: the full command says it)
            compared += 1
    assert compared


def test_the_quick_paths_widths_are_the_formats():
    from bams3.format.columns import FIXED

    assert _quick.WIDTH == {c.id: c.itemsize for c in FIXED}
    assert BAMS3.exists()
