"""The count index (``convert --count-index``, docs/format.md "The count index"): the chunks'
count prefixes again, together, in table order, so that a count of any region reads the
metadata and one range of the index. Counts equal samtools' with it and without it, by the
Python API, the full command and the quick path; on the S3 test server a count that cuts
several chunks, and a cohort count, take two requests a sample (without the index, one more
for each chunk cut). The index is
checked as everything else is: verify finds a part missing, damaged, or unlike its chunks; a
count never reads a wrong one as right; a metadata whose parts do not tile the table is
refused; cp and a sharded conversion keep it."""

from __future__ import annotations

import json
import os
import pathlib
import random
import subprocess
import sys
import zlib

import pytest

import bams3
import bams3.converter
import bams3.transfer
import bams3.shards
from bams3.conformance.proxy import CountingProxy
from bams3.dataset import Dataset
from bams3.errors import CorruptDatasetError
from bams3.format import encode_metadata
from bams3.verify import verify

from .oracle import view_count
from .synth import random_regions, write_bam

BAMS3 = pathlib.Path(sys.executable).with_name("bams3")
CUT = "chrA:9,000-31,000"  # cuts several 4K-window chunks, holds the ones between whole


@pytest.fixture(scope="module")
def bam(tmp_path_factory):
    return write_bam(str(tmp_path_factory.mktemp("count-index") / "in.bam"), n=6000, seed=41)


@pytest.fixture(scope="module")
def indexed(bam, tmp_path_factory):
    """The BAM as a dataset of many small chunks with a count index in several parts (a part is
    written once its prefixes reach 20 KB here), and without one."""
    root = tmp_path_factory.mktemp("count-index-ds")
    saved = bams3.converter.COUNT_INDEX_PART
    bams3.converter.COUNT_INDEX_PART = 20_000
    try:
        with_index = bams3.convert(bam, str(root / "index.bams3"), chunk_size="4K", count_index=True)
    finally:
        bams3.converter.COUNT_INDEX_PART = saved
    bams3.convert(bam, str(root / "plain.bams3"), chunk_size="4K")
    assert len(with_index.count_index) >= 3
    return str(root / "index.bams3"), str(root / "plain.bams3")


def _meta(ds: str) -> dict:
    return json.loads(open(os.path.join(ds, "_metadata.json"), "rb").read())


def _write_meta(ds: str, obj: dict) -> None:
    obj.pop("checksum", None)
    with open(os.path.join(ds, "_metadata.json"), "wb") as f:
        f.write(encode_metadata(obj))


def test_each_part_is_its_chunks_count_prefixes_in_table_order(indexed):
    ds = Dataset.open(indexed[0])
    t, parts = ds.chunks, ds.meta.count_index
    assert parts[0]["first"] == 0 and parts[-1]["first"] + parts[-1]["n"] == len(t) > 20
    for part in parts:
        want = b"".join(ds.store.get(ds.source.key(i))[:int(t.count_nbytes[i])]
                        for i in range(part["first"], part["first"] + part["n"]))
        got = ds.store.get(part["object"])
        assert got == want and (part["nbytes"], part["crc32"]) == (len(got), zlib.crc32(got))
    plain = Dataset.open(indexed[1])
    assert plain.meta.count_index is None and "count_index" not in _meta(indexed[1])
    for i in range(len(t)):  # the chunks themselves are the same
        assert ds.store.get(ds.source.key(i)) == plain.store.get(plain.source.key(i))


def test_counts_equal_samtools_with_and_without_the_index(bam, indexed, tmp_path):
    rng = random.Random(5)
    with_index, plain = Dataset.open(indexed[0]), Dataset.open(indexed[1])
    asks = [[r] for r in random_regions(rng, 60)] + [random_regions(rng, 4) for _ in range(10)] + [[CUT], []]
    for regions in asks:
        want = view_count(bam, *regions)
        assert with_index.count(regions or None) == plain.count(regions or None) == want, regions
    multi = ["chrA:1-40,000", "chrA:20,000-60,000", "chrB:5-9,000"]
    assert with_index.count(multi, multi=True) == view_count(bam, *multi, flags=("-M",))
    bed = tmp_path / "t.bed"
    bed.write_text("".join(f"chrA\t{b}\t{b + 700}\nchrB\t{b}\t{b + 50}\n" for b in range(0, 150_000, 9_000)))
    assert with_index.count(None, bed=str(bed)) == view_count(bam, flags=("-L", str(bed)))
    for regions in ([CUT], ["chrB:1-50,000", "chrA:33-34"], ["chrC"]):
        for quick in ("1", "0"):
            p = subprocess.run([str(BAMS3), "query", indexed[0], *regions, "-c"], capture_output=True, text=True,
                               timeout=60, env={**os.environ, "BAMS3_QUICK": quick})
            assert (p.returncode, p.stdout, p.stderr) == (0, f"{view_count(bam, *regions)}\n", ""), (regions, quick)


def test_one_group_of_prefixes_is_read_on_the_calling_thread(bam, indexed, monkeypatch):
    """A count whose cut chunks' prefixes are one group (one ranged read: what a cohort count
    does once a sample) reads it on the calling thread, with no pool started; groups far apart
    are still read on the pool's threads. Both counts equal samtools'."""
    import threading

    from bams3.source import ChunkSource

    seen = []
    real = ChunkSource.prefixes

    def prefixes(self, group):
        seen.append(threading.current_thread())
        return real(self, group)

    monkeypatch.setattr(ChunkSource, "prefixes", prefixes)
    ds = Dataset.open(indexed[0])
    assert len(ds.source.prefix_groups([i for i in range(len(ds.chunks)) if ds.chunks.ref_id[i] == 0][:3])) == 1
    assert ds.count("chrA:9,000-9,100") == view_count(bam, "chrA:9,000-9,100")
    assert seen == [threading.current_thread()]
    seen.clear()
    far = ["chrA:9,000-9,100", "chrC:190,000-190,100"]  # in the index's first part and its last
    assert ds.count(far) == view_count(bam, *far)
    assert len(seen) == 2 and threading.current_thread() not in seen


@pytest.fixture(scope="module")
def remote(bam, s3_server):
    bucket = s3_server["bucket"]
    urls = {name: f"s3://{bucket}/count-index/{name}.bams3" for name in ("index", "plain")}
    bams3.convert(bam, urls["index"], chunk_size="4K", count_index=True, force=True)
    bams3.convert(bam, urls["plain"], chunk_size="4K", force=True)
    proxy = CountingProxy(s3_server["endpoint"])
    saved = os.environ["AWS_ENDPOINT_URL"]
    os.environ["AWS_ENDPOINT_URL"] = proxy.endpoint
    yield urls, proxy, {**os.environ, **s3_server["env"], "AWS_ENDPOINT_URL": proxy.endpoint}
    os.environ["AWS_ENDPOINT_URL"] = saved
    proxy.close()


def _cut(url: str) -> int:
    """How many chunks CUT cuts (long reads from earlier windows reach it too)."""
    t = bams3.open(url).chunks
    return sum(1 for i in range(len(t)) if t.ref_id[i] == 0 and t.min_pos[i] < 31_000 and t.max_end[i] > 8_999
               and not (t.min_pos[i] >= 8_999 and t.max_pos[i] < 31_000))


def test_a_count_on_s3_is_two_requests_with_the_index_one_a_cut_chunk_more_without(bam, remote):
    urls, proxy, env = remote
    want, cut = view_count(bam, CUT), _cut(urls["plain"])
    assert cut >= 3
    for name, gets in (("index", 2), ("plain", 1 + cut)):
        proxy.reset()
        assert bams3.open(urls[name]).count(CUT) == want
        assert len(proxy.gets()) == gets, (name, proxy.gets())
        for quick in ("1", "0"):
            proxy.reset()
            p = subprocess.run([str(BAMS3), "query", urls[name], CUT, "-c"], capture_output=True, text=True,
                               timeout=60, env={**env, "BAMS3_QUICK": quick})
            assert (p.returncode, p.stdout) == (0, f"{want}\n"), p.stderr
            assert len(proxy.gets()) == gets, (name, quick, proxy.gets())
    proxy.reset()  # a whole reference's count, cut at no chunk: the metadata alone
    assert bams3.open(urls["index"]).count("chrB") == view_count(bam, "chrB") and len(proxy.gets()) == 1


def test_a_cohort_count_takes_two_requests_a_sample(bam, remote, tmp_path):
    urls, proxy, env = remote
    samples = tmp_path / "samples.txt"
    samples.write_text(f"a\t{urls['index']}\nb\t{urls['index']}\nc\t{urls['plain']}\n")
    want, cut = view_count(bam, CUT), _cut(urls["plain"])
    proxy.reset()
    p = subprocess.run([sys.executable, "-m", "bams3.cli", "cohort", "count", CUT, "--from", str(samples),
                        "--no-progress"], capture_output=True, text=True, timeout=120, env=env)
    gets = proxy.gets()
    assert p.returncode == 0, p.stderr
    assert [line.split("\t")[:3] for line in p.stdout.splitlines()[1:]] == [[s, CUT, str(want)] for s in "abc"]
    assert len(gets) == 2 + 2 + 1 + cut, "\n".join(map(str, gets))


def test_verify_finds_a_part_missing_damaged_or_unlike_its_chunks(indexed, tmp_path):
    src = indexed[0]
    assert verify(src).ok
    parts = Dataset.open(src).meta.count_index
    for how in ("missing", "damaged", "unlike"):
        ds = str(tmp_path / how)
        subprocess.run(["cp", "-r", src, ds], check=True)
        path = os.path.join(ds, parts[1]["object"])
        data = bytearray(open(path, "rb").read())
        data[len(data) // 2] ^= 0xFF
        if how == "missing":
            os.remove(path)
        else:
            open(path, "wb").write(bytes(data))
        if how == "unlike":  # its recorded checksum made to match: still not its chunks' prefixes
            obj = _meta(ds)
            obj["count_index"]["parts"][1]["crc32"] = zlib.crc32(bytes(data))
            _write_meta(ds, obj)
        rep = verify(ds)
        assert not rep.ok
        if how == "missing":
            assert rep.missing == [parts[1]["object"]] and not rep.corrupt
        else:
            reasons = dict(rep.corrupt)
            assert list(reasons) == [parts[1]["object"]], rep.corrupt
            assert reasons[parts[1]["object"]] == ("checksum mismatch" if how == "damaged"
                                                  else "differs from the count prefixes of its chunks")
        # a count that reads the part fails: never a number from bytes that are not the chunks'
        first, t = parts[1]["first"], Dataset.open(ds).chunks
        names = ("chrA", "chrB", "chrC", "chrEmpty")
        bed = tmp_path / f"{how}.bed"  # a base inside each chunk of the part: every one is an edge
        bed.write_text("".join(f"{names[int(t.ref_id[i])]}\t{int(t.min_pos[i])}\t{int(t.min_pos[i]) + 1}\n"
                               for i in range(first, first + parts[1]["n"])))
        with pytest.raises(CorruptDatasetError):
            Dataset.open(ds).count(None, bed=str(bed))


@pytest.mark.parametrize("change, error", [
    (lambda parts: parts.__setitem__(1, {**parts[1], "first": parts[1]["first"] + 1}), "do not follow"),
    (lambda parts: parts.__setitem__(0, {**parts[0], "object": "data/x/_counts.0"}), "bad count index part"),
    (lambda parts: parts.__setitem__(0, {**parts[0], "object": parts[0]["object"] + "/../../x"}),
     "bad count index part"),
    (lambda parts: parts.__setitem__(0, {**parts[0], "nbytes": parts[0]["nbytes"] + 1}), "size differs"),
    (lambda parts: parts.pop(), "does not hold every chunk"),
    (lambda parts: parts.__setitem__(0, {**parts[0], "n": True}), "bad count index part n"),
    ("v1", "needs format version 2"),  # no head_crc to check the prefixes against
])
def test_a_metadata_whose_parts_do_not_tile_the_table_is_refused(indexed, tmp_path, change, error):
    ds = str(tmp_path / "ds")
    subprocess.run(["cp", "-r", indexed[0], ds], check=True)
    obj = _meta(ds)
    if change == "v1":
        obj["format_version"] = 1
    else:
        change(obj["count_index"]["parts"])
    _write_meta(ds, obj)
    with pytest.raises(CorruptDatasetError, match=error):
        Dataset.open(ds).count(CUT)
    assert "chunks_ref" not in obj  # an inline table: checked against the parts on opening
    for args in ([CUT, "-c"], ["stats"], ["stats", "--flagstat"], ["stats", "--json"]):
        argv = [str(BAMS3), "query", ds, *args] if args[0] == CUT else [str(BAMS3), *args[:1], ds, *args[1:]]
        for quick in ("1", "0"):  # the quick path refuses it as the full command does, whatever it answers
            p = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={**os.environ, "BAMS3_QUICK": quick})
            assert p.returncode != 0 and p.stdout == "" and error in p.stderr and len(p.stderr.splitlines()) == 1, \
                (args, quick, p.stderr)


def test_cp_and_a_sharded_conversion_keep_it(bam, indexed, tmp_path):
    copy = str(tmp_path / "copy.bams3")
    bams3.transfer.copy(indexed[0], copy)
    a, b = Dataset.open(indexed[0]), Dataset.open(copy)
    assert b.meta.data_prefix != a.meta.data_prefix
    assert [p["object"][len(b.meta.data_prefix):] for p in b.meta.count_index] == \
        [p["object"][len(a.meta.data_prefix):] for p in a.meta.count_index]
    assert [b.store.get(p["object"]) for p in b.meta.count_index] == [a.store.get(p["object"])
                                                                      for p in a.meta.count_index]
    assert verify(copy).ok and b.count(CUT) == view_count(bam, CUT)
    sharded = str(tmp_path / "sharded.bams3")
    meta = bams3.shards.convert(bam, sharded, engine="local", shard_bp="12K", chunk_size="4K", count_index=True)
    s = Dataset.open(sharded)
    assert meta.format_version == 3 and len(meta.count_index) > 1  # a part per shard
    whole = b"".join(a.store.get(p["object"]) for p in a.meta.count_index)
    assert b"".join(s.store.get(p["object"]) for p in meta.count_index) == whole
    rep = verify(sharded, deep=True)
    assert rep.ok and rep.stats_match
    rng = random.Random(9)
    for region in random_regions(rng, 20) + [CUT]:
        assert s.count(region) == view_count(bam, region), region


def test_cohort_convert_gives_each_dataset_an_index(bam, tmp_path):
    p = subprocess.run([sys.executable, "-m", "bams3.cli", "cohort", "convert", bam, "--to", str(tmp_path / "out"),
                        "--chunk-size", "4K", "--count-index", "--no-progress"], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    ds = Dataset.open(str(tmp_path / "out" / "in.bams3"))
    assert ds.meta.count_index and verify(str(tmp_path / "out" / "in.bams3")).ok
    assert ds.count(CUT) == view_count(bam, CUT)


def test_stats_says_whether_a_dataset_has_one(indexed):
    parts = Dataset.open(indexed[0]).meta.count_index
    size = sum(p["nbytes"] for p in parts)
    for quick in ("1", "0"):
        env = {**os.environ, "BAMS3_QUICK": quick}
        texts = [subprocess.run([str(BAMS3), "stats", ds], capture_output=True, text=True, timeout=60, env=env).stdout
                 for ds in indexed]
        assert f"  Count index: {size / 1000:.1f} KB ({size:,} bytes) in {len(parts)} parts\n" in texts[0], quick
        assert "Count index" not in texts[1]
    got = json.loads(subprocess.run([str(BAMS3), "stats", indexed[0], "--json"], capture_output=True, text=True,
                                    timeout=60).stdout)
    assert got["count_index"]["parts"] == list(parts)
    assert "count_index" not in json.loads(subprocess.run([str(BAMS3), "stats", indexed[1], "--json"],
                                                          capture_output=True, text=True, timeout=60).stdout)


def test_prefixes_far_apart_are_read_apart(bam, indexed, monkeypatch, tmp_path):
    """Count prefixes further apart in the index than a read may span are fetched in reads of
    their own (a count holds no more than that decoded at once), and count the same."""
    import bams3.source

    monkeypatch.setattr(bams3.source, "COUNT_INDEX_SPAN", 3_000)
    ds = Dataset.open(indexed[0])
    t = ds.chunks
    groups = ds.source.prefix_groups(range(len(t)))
    assert len(groups) > len(ds.meta.count_index)
    assert all(b - a <= 3_000 or len(members) == 1 for _, members, a, b in groups)
    assert sorted(i for _, members, _, _ in groups for i in members) == list(range(len(t)))
    bed = tmp_path / "spread.bed"
    bed.write_text("".join(f"chrA\t{b}\t{b + 300}\n" for b in range(0, 150_000, 4_000)))
    assert ds.count(None, bed=str(bed)) == view_count(bam, flags=("-L", str(bed)))
