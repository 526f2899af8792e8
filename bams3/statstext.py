"""The texts ``bams3 stats`` prints (its block, ``--flagstat`` as samtools flagstat prints it,
``--idxstats`` as samtools idxstats), from the stored statistics. Only the standard library:
the quick path (:mod:`bams3._quick`) prints them before numpy or click is imported."""

from __future__ import annotations


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def stats_block(dest: str, m, s: dict) -> str:
    """The statistics as the original BAMS3 printed them (scripts grep these labels): a banner,
    Format and Source, then Statistics, Structure and Storage, every value exact. ``m``: the
    metadata (its ``source``, ``codecs`` (``name``, ``level``), ``format_version``,
    ``references``, ``chunk_size`` and ``count_index``); ``s``: its statistics."""
    total = s["n_records"]
    mapped = sum(s["flagstat"]["mapped"])
    src = m.source
    src_size = src.get("size")
    codecs = ", ".join(f"{c.name}" + (f" level {c.level}" if c.level is not None else "") for c in m.codecs)
    pct = (lambda n: f" ({100 * n / total:.2f}%)") if total else (lambda n: "")
    stored, raw = s["stored_bytes"], s["raw_bytes"]
    rule = "=" * 43
    lines = [
        rule, "BAMS3 Dataset Statistics", rule, "",
        f"Format: bams3 v{m.format_version}",
        f"Source: {src.get('name', '?')} ({src.get('format', '?')}"
        + (f", {src_size:,} bytes)" if src_size else ")"),
        f"Dataset: {dest}",
        "",
        "Statistics:",
        f"  Total reads: {total:,}",
        f"  Mapped reads: {mapped:,}{pct(mapped)}",
        f"  Unmapped reads: {total - mapped:,}{pct(total - mapped)}",
        f"  Total bases: {s['total_bases']:,}",
        f"  Mean coverage: {s['mean_coverage']:.2f}x",
        "",
        "Structure:",
        f"  References: {len(m.references):,} ({s['genome_length']:,} bp)",
        f"  Chunk size: {m.chunk_size} bp",
        f"  Total chunks: {s['n_chunks']:,}",
        f"  Compression: {codecs}",
        *count_index_line(m.count_index),
        "",
        "Storage:",
        f"  Total size: {human_bytes(stored)} ({stored:,} bytes)",
        f"  Compression ratio: {raw / stored:.2f}x" if stored else "  Compression ratio: n/a",
    ]
    if stored and src_size:
        lines.append(f"  Size vs source: {stored / src_size:.2f}x")
    return "\n".join(lines) + "\n"


def stats_json(dest: str, m, s: dict, io: dict | None = None) -> str:
    """``bams3 stats --json``: the metadata's statistics and structure (``m`` and ``s`` as for
    :func:`stats_block`), and the traced requests (``io``, with ``--trace``)."""
    import json

    return json.dumps({
        "dataset": dest, "format": "bams3", "format_version": m.format_version, "source": m.source,
        "references": [list(r) for r in m.references], "chunk_size": m.chunk_size,
        "codecs": [{"name": c.name, "level": c.level} for c in m.codecs], "stats": s,
        **({"count_index": {"parts": [dict(p) for p in m.count_index]}} if m.count_index else {}),
        **({"io": io} if io is not None else {}),
    }, indent=1) + "\n"


def count_index_line(parts) -> list[str]:
    """The Structure line of a dataset with a count index (none without one)."""
    if not parts:
        return []
    n = sum(p["nbytes"] for p in parts)
    return [f"  Count index: {human_bytes(n)} ({n:,} bytes) in {len(parts):,} part{'s' if len(parts) > 1 else ''}"]


def _pct(a: int, b: int) -> str:
    return f"{100.0 * a / b:.2f}%" if b else "N/A"


def flagstat_text(fs: dict[str, list[int]]) -> str:
    """The text ``samtools flagstat`` prints, from stored counts."""
    g = lambda k: fs[k]  # noqa: E731
    lines = [
        ("total", "in total (QC-passed reads + QC-failed reads)"),
        ("primary", "primary"),
        ("secondary", "secondary"),
        ("supplementary", "supplementary"),
        ("duplicates", "duplicates"),
        ("primary_duplicates", "primary duplicates"),
    ]
    out = [f"{g(k)[0]} + {g(k)[1]} {label}" for k, label in lines]
    t, pt = g("total"), g("primary")
    m, pm = g("mapped"), g("primary_mapped")
    out.append(f"{m[0]} + {m[1]} mapped ({_pct(m[0], t[0])} : {_pct(m[1], t[1])})")
    out.append(f"{pm[0]} + {pm[1]} primary mapped ({_pct(pm[0], pt[0])} : {_pct(pm[1], pt[1])})")
    p = g("paired")
    for k, label in (("paired", "paired in sequencing"), ("read1", "read1"), ("read2", "read2")):
        out.append(f"{g(k)[0]} + {g(k)[1]} {label}")
    pp = g("properly_paired")
    out.append(f"{pp[0]} + {pp[1]} properly paired ({_pct(pp[0], p[0])} : {_pct(pp[1], p[1])})")
    out.append(f"{g('both_mapped')[0]} + {g('both_mapped')[1]} with itself and mate mapped")
    s = g("singletons")
    out.append(f"{s[0]} + {s[1]} singletons ({_pct(s[0], p[0])} : {_pct(s[1], p[1])})")
    d, d5 = g("mate_diff_chr"), g("mate_diff_chr_mapq5")
    out.append(f"{d[0]} + {d[1]} with mate mapped to a different chr")
    out.append(f"{d5[0]} + {d5[1]} with mate mapped to a different chr (mapQ>=5)")
    return "\n".join(out) + "\n"


def idxstats_text(rows) -> str:
    return "".join(f"{n}\t{l}\t{m}\t{u}\n" for n, l, m, u in rows)
