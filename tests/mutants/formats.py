"""Eight output-format bugs, each a change to a correct tiny format ("tsv": the SAM fields of
each record, tab-separated, written through htslib as bams3's own JSON format is)."""

from __future__ import annotations

from bams3.plugin_api import HtslibWriter


def _rows(af):
    for rec in af:
        yield rec.to_string().split("\t")


def _comp(seq: str) -> str:
    return seq[::-1].translate(str.maketrans("ACGTN", "TGCAN"))


def correct(c):
    return c


def pos_zero_based(c):
    return c[:3] + [str(max(0, int(c[3]) - 1))] + c[4:]


def qual_offset_64(c):
    return c[:10] + ["".join(chr(ord(q) + 31) for q in c[10]) if c[10] != "*" else "*"] + c[11:]


def seq_reverse_complemented(c):
    return c[:9] + [_comp(c[9]) if int(c[1]) & 16 else c[9]] + c[10:]


def tags_dropped(c):
    return c[:11]


def tlen_unsigned(c):
    return c[:8] + [str(abs(int(c[8])))] + c[9:]


def mate_reference_as_own(c):
    return c[:6] + ["="] + c[7:]


MUTANTS = {"pos-zero-based": pos_zero_based, "qual-offset-64": qual_offset_64,
           "seq-reverse-complemented": seq_reverse_complemented, "tags-dropped": tags_dropped,
           "tlen-unsigned": tlen_unsigned, "mate-reference-as-own": mate_reference_as_own,
           "closes-the-callers-file": correct, "drops-the-last-record-of-each-batch": correct}


def open_tsv(name: str):
    change = MUTANTS.get(name, correct)

    def emit(af, out):
        lines = ["\t".join(change(c)) for c in _rows(af)]
        if name == "drops-the-last-record-of-each-batch" and lines:
            lines = lines[:-1]
        out.write("".join(line + "\n" for line in lines).encode())

    def open_(out, header, options):
        writer = HtslibWriter(out, header, emit)
        if name == "closes-the-callers-file":
            close = writer.close

            def close_and_close_out():
                close()
                out.close()

            writer.close = close_and_close_out
        return writer

    return open_


def read_back(path: str) -> list[dict]:
    from bams3.conformance.formats import sam_row

    with open(path) as f:
        return [sam_row(line) for line in f if line.strip()]


def open_fastq(out, header, options):
    """A lossy format, FASTQ as samtools fastq writes it: primary records only, reads as
    sequenced (reverse-strand ones reverse-complemented back)."""

    def emit(af, out):
        parts = []
        for rec in af:
            if rec.flag & 0x900:
                continue
            seq, qual = rec.query_sequence or "", "".join(chr(q + 33) for q in (rec.query_qualities or []))
            if rec.flag & 16:
                seq, qual = _comp(seq), qual[::-1]
            parts.append(f"@{rec.query_name}\n{seq}\n+\n{qual}\n")
        out.write("".join(parts).encode())

    return HtslibWriter(out, header, emit)


def read_fastq(path: str) -> list[dict]:
    with open(path) as f:
        lines = f.read().splitlines()
    return [{"name": lines[i][1:], "seq": lines[i + 1], "qual": lines[i + 3]} for i in range(0, len(lines), 4)]
