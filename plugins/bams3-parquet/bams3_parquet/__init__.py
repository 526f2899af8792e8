"""bams3 output format ``rawparquet``: records as Apache Parquet with their raw BAM fields (CIGAR as
BAM-encoded integers, tags as raw BAM bytes), built column-wise from raw BAM bytes. bams3's own
``parquet`` format writes the typed SAM schema (docs/frames.md); this one is an example of an
outside plugin."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bams3.plugin_api import OutputFormat, RecordBatch, hookimpl, segment_lengths, split_columns

_SEQ = np.frombuffer(b"=ACMGRSVTWYHKDBN", dtype=np.uint8)


def _offsets(lengths: np.ndarray) -> pa.Buffer:
    off = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=off[1:])
    return pa.py_buffer(off)


def batch_table(batch, header) -> pa.Table:
    core = batch.core
    seg = segment_lengths(core)
    names, cigar, seq, qual, aux = split_columns(batch, seg)
    n = len(core)
    l_name = core["l_read_name"].astype(np.int64)
    keep = np.ones(len(names), dtype=bool)
    keep[np.cumsum(l_name) - 1] = False  # the NUL that ends each name
    name_arr = pa.StringArray.from_buffers(n, _offsets(l_name - 1), pa.py_buffer(names[keep]))
    l_seq = core["l_seq"].astype(np.int64)
    both = np.empty(len(seq) * 2, dtype=np.uint8)
    both[0::2], both[1::2] = seq >> 4, seq & 15
    pad = np.ones(len(both), dtype=bool)
    odd = (l_seq & 1) == 1
    pad[(np.cumsum((l_seq + 1) // 2) * 2 - 1)[odd]] = False
    seq_arr = pa.StringArray.from_buffers(n, _offsets(l_seq), pa.py_buffer(_SEQ[both[pad]]))
    qual_arr = pa.BinaryArray.from_buffers(pa.binary(), n, [None, _offsets(l_seq), pa.py_buffer(qual)])
    n_ops = core["n_cigar_op"].astype(np.int64)
    cigar_arr = pa.ListArray.from_arrays(pa.array(np.cumsum(np.concatenate([[0], n_ops])).astype(np.int32)),
                                         pa.array(cigar.view("<u4")))
    aux_arr = pa.BinaryArray.from_buffers(pa.binary(), n, [None, _offsets(seg[:, 5]), pa.py_buffer(aux)])
    refs = pa.array([name for name, _ in header.references], type=pa.string())

    def ref_column(ids):
        ids = np.asarray(ids, dtype=np.int32)
        return pa.DictionaryArray.from_arrays(pa.array(ids, mask=ids < 0), refs)

    return pa.table({
        "name": name_arr,
        "flag": pa.array(core["flag"]),
        "reference": ref_column(core["refid"]),
        "pos": pa.array(core["pos"].astype(np.int32) + 1),
        "mapq": pa.array(core["mapq"]),
        "cigar": cigar_arr,
        "mate_reference": ref_column(core["next_refid"]),
        "mate_pos": pa.array(core["next_pos"].astype(np.int32) + 1),
        "tlen": pa.array(core["tlen"]),
        "seq": seq_arr,
        "qual": qual_arr,
        "aux": aux_arr,
    })


class ParquetWriter:
    def __init__(self, out, header, options):
        self._out, self._header, self._writer = out, header, None

    def write(self, batch) -> None:
        table = batch_table(batch, self._header)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._out, table.schema, compression="zstd")
        self._writer.write_table(table)

    def close(self) -> None:
        if self._writer is None:  # no records: an empty file with the schema
            empty = RecordBatch(np.zeros(0, np.uint8), np.zeros(1, np.int64))
            self._writer = pq.ParquetWriter(self._out, batch_table(empty, self._header).schema, compression="zstd")
        self._writer.close()

    def abort(self) -> None:
        pass


@hookimpl
def bams3_register_output_formats(register):
    register(OutputFormat(name="rawparquet", extensions=(".raw.parquet",), open=ParquetWriter,
                                description="Apache Parquet of the raw BAM fields, one row per record (bams3-parquet)"))
