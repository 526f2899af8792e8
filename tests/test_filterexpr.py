"""samtools' filter expressions (bams3.filterexpr) against samtools itself (pysam's, 1.24): the
count of ``samtools view -c -e EXPR`` and which records pass, on a BAM with every kind of read
and tag (tests/filterbam.py) and on HTSlib's corpus; hand-written expressions for every
operator, name, function and null rule (and htslib's quirks), random expression trees, and the
expressions we refuse.

Where samtools fails on an expression (a syntax error, arithmetic on a string, a B array tag),
we must raise UsageError too; where it gives a count, ours must be the same, or (only for the
few constructs the module refuses, named in ``REFUSALS``) a UsageError saying "not supported".
"""

from __future__ import annotations

import types

import numpy as np
import pysam
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bams3.bgzf import BgzfWriter
from bams3.errors import InputError, UsageError
from bams3.fields import NEEDS, Fields
from bams3.filterexpr import compile_expression
from bams3.inputs import open_input
from bams3.records import RecordBatch

from . import filterbam
from .conftest import CORPUS

# the refusals (UsageError "... not supported") allowed where samtools gives a count
REFUSALS = ("different patterns", "comparing qual", "matching qual", "not a string literal")


def load(path: str) -> types.SimpleNamespace:
    """A file's header, records and Fields, read by bams3."""
    inp = open_input(path)
    try:
        header, batch = inp.header, RecordBatch.concat(list(inp.batches))
    finally:
        inp.close()
    return types.SimpleNamespace(path=path, header=header, batch=batch, fields=Fields.of_batch(batch))


def samtools_count(expr: str, path: str) -> int | None:
    """``samtools view -c -e EXPR``, None if samtools fails."""
    try:
        return int(pysam.view("-c", "-e", expr, path))
    except pysam.SamtoolsError:
        return None


def our_mask(expr: str, data) -> np.ndarray:
    mask = compile_expression(expr).mask(data.fields, data.header)
    assert mask.dtype == bool and mask.shape == (data.fields.n,)
    return mask


def agree(expr: str, data, refusals: tuple[str, ...] = ()) -> str:
    """Assert that we agree with samtools on ``expr``; returns the outcome ("count", "error" or
    "refused")."""
    want = samtools_count(expr, data.path)
    try:
        got = int(our_mask(expr, data).sum())
    except UsageError as exc:
        msg = str(exc)
        assert "\n" not in msg, msg
        if want is None:
            return "error"
        assert "not supported" in msg and any(k in msg for k in refusals), \
            f"{expr!r}: samtools counts {want}, we raise: {msg}"
        return "refused"
    assert want is not None, f"{expr!r}: samtools fails, we count {got}"
    assert got == want, f"{expr!r}: samtools counts {want}, we count {got}"
    return "count"


@pytest.fixture(scope="module")
def fb(tmp_path_factory):
    return load(filterbam.write(str(tmp_path_factory.mktemp("filterexpr") / "f.bam")))


# ---------------------------------------------------------------------------- hand-written
FIELDS = [
    "endpos", "endpos == pos", "endpos - pos > 100", "flag", "flag & 0x10", "flag.paired", "flag.proper_pair",
    "flag.unmap", "flag.munmap", "flag.reverse", "flag.mreverse", "flag.read1", "flag.read2 == 128",
    "flag.secondary", "flag.qcfail", "flag.dup", "flag.supplementary", "flag.paired && flag.proper_pair",
    "hclen", "hclen > 20", "library", 'library == "libX"', 'library == ""', "mapq", "mapq == 255", "mapq > 30",
    "mpos", "mpos == 0", "mpos > pos", "pnext == mpos", "mrefid", "mrefid < 0", "refid == mrefid", "mrname",
    'mrname == "*"', "rnext", 'rnext == "*"', 'rnext == "="', "rname == rnext", 'rname == "chr2"', "ncigar > 1",
    "pos", "pos == 0", "pos < 1000", "qlen", "qlen == 0", "qlen != length(seq)", "rlen", "rlen > qlen", "sclen",
    "sclen > 5", "qname", 'qname < "r01"', 'qname >= "read"', "seq", 'seq == ""', "qual", "tlen", "tlen < 0",
    "tlen > 200", "refid", "cigar", 'cigar == "*"', "cigar =~ \"^[0-9]+M$\"", "ncigar",
]
TAGS = [
    "[NM]", "![XS]", "!![XS]", "[XS] < 0", "[NM] == 0", "[NM] != 0", "[AS] >= 100 && [NM] <= 2",
    "[AS] >= 100 || [NM] <= 2", '[XT] == "U"', '[XT] =~ "U|M"', "[ZF] > 0", "[ZF] * 2 == 2.5", '[CB] == "x"',
    '[CB] != "x"', '[RG] == "grpA"', "exists([RG]) && library == \"libY\"", "[NM] & [AS]", "[ZB]", "[ZB] || 1",
    "[ZZ]", "![ZZ]", "!![ZZ]", "[ZZ] == 0", "[ZZ] != 0", "[ZZ] || 1", "[ZZ] || 0", "[ZZ] && 1", "!([ZZ] || 0)",
    "([ZZ] && 1) == 0", "[NM] | [ZZ]", "[NM] + [ZZ]", "[ZZ] + [NM]", "-[ZZ]", "+[ZZ]", "~[ZZ]", "[XT] + 1",
    "[NM] =~ \"1\"", '[CB] =~ "A"', '[ZZ] =~ "x"', '!([ZZ] =~ "x")', '[ZZ] !~ "x"',
]
FUNCTIONS = [
    "length(qname)", "length(5)", "length([CB])", "length([ZZ])", "length([NM])", "length(seq) == length(qual)",
    "min([ZZ])", "max([ZZ])", "avg([ZZ])", "max(seq) > 70", "avg(qual) > 25", "min(qual) < 10", "min(qual) == 2",
    "max(qual) == 255", "min(mapq)", "pow(2, 10) == 1024", "pow([NM], 2) > 4", "pow(-8, 0.5)", "pow(0, -1)",
    "pow(qname, 2)", "exp(0) == 1", "exp(1)", "exp(1000) > 1e308", "log(exp(2)) == 2", "log(0) < 0", "log(-1)",
    "log([ZZ])", "sqrt(4)", "sqrt(mapq) > 5", "sqrt(-1)", "sqrt([ZZ])", "exists(sqrt([ZZ]))", "exists([NM])",
    "!exists([NM])", "exists([ZZ])", "exists([ZZ] + 1)", "exists(qname)", "default([NM],1)", "default([NM], 7) == 7",
    "default([ZZ], 7) == 7", "default([ZZ], [YY])", 'default([ZZ], "q") == "q"', "default( [NM],1)",
    "default([NM] ,1)", "length (qname)", "length(qname", "pow(2)", "sqrt(4, 2)", "abs(1)",
]
OPERATORS = [
    "1", "0", "-mapq", "--5", "- -5", "-+5", "!0.5", "!mapq", "!!mapq", "~flag & 4", "~~mapq == mapq", "- mapq < -20",
    "-(mapq) < -20", "mapq * -1 < -20", "mapq % 7 == 3", "-5 % 3 == -2", "5 % -3 == 2", "mapq % 0 == 0",
    "[ZZ] % 3", "mapq / 4 > 10", "10 / 4 == 2.5", "1 / 0 > 1e308", "3 - 2 - 1", "2 * 3 % 4", "1 + 2 * 3 == 7",
    "flag ^ 3", "flag | 1 == 1", "3 & 2 & 1", "1 | 2 ^ 3 & 4", "(mapq > 10) + (flag & 1)", "((((mapq))))",
    "5 > 3 > 1", "1 < 2 < 3", "1 == 1 == 1", "2 == 2 == 2", "mapq == mapq", "qname == qname", "nan", "nan == nan",
    "inf", "INF > 1e308", "0x10", "0X1f == 31", "0x1p3 == 8", "1e2 == 100", ".5 == 0.5", "5. == 5", "007 == 7",
    '"abc"', '""', '"a" < "b"', '"b" <= "a"', '"\\"" == "\\""', '"a\\tb" =~ "a.b"', '"a\\\\b" == "a\\\\b"',
    '"a\\qb" == "a\\\\qb"', 'qname =~ "\\."', '"abc" == length("abc")', "[NM] - [NM] + !0",
    "1 | length(qname) | [YY]", "[ZZ] * qname", "qname == length(qname) + 1", "qname + 1", "1 + qname", "-qname",
    "!qname", '"x" > 1', '"x" != 1', "1 != \"x\"", "flag =~ \"1\"", "mapq\t>\t30",
]
REGEXES = [
    'cigar =~ "D"', 'cigar =~ "[SH]"', 'cigar =~ "[[:digit:]]+N"', 'qname =~ "r0{3}1"', 'qname =~ "(read|u0)"',
    'qname =~ "r0+[1-3]$"', 'qname !~ "^r0"', 'qname =~ "^read:"', 'seq =~ "^A"', 'seq =~ "A{2,3}C"',
    'seq =~ "[^ACGT]"', 'seq =~ "^(AC|GT)*$"', 'qname =~ "[]r]0"', 'qname =~ "r0[-0]"', 'library =~ "^lib[X-Y]$"',
    'rname =~ "chr[[:alpha:]]"', 'qname =~ ""', 'qname =~ "("', 'qname =~ "x" == 1',
    '[XT] =~ "U" && [CB] =~ "U"', 'qname =~ "r" || qname =~ "d"', '[CB] =~ "A" || [XT] =~ "A"',
]
SYNTAX = [
    "", " ", "1 1", "mapq>", "flag.dupx", "flag.", "mapqq", "1 << 2", "mapq >> 2", "'abc'", "1 ? 2 : 3", "a",
    "(mapq", "mapq)", '"abc', "[NM", "[N]", "mapq = 1", "mapq === 1", "-!mapq", "--mapq", "mapq !", "&& 1",
    "1 &&& 1", "1 ||| 1", "pos(1)", "length",
]


@pytest.mark.parametrize("expr", FIELDS + TAGS + FUNCTIONS + OPERATORS + REGEXES + SYNTAX)
def test_same_count_as_samtools(fb, expr):
    agree(expr, fb)


def test_the_table_exercises_both_outcomes(fb):
    outcomes = [agree(e, fb) for e in OPERATORS + TAGS]
    assert outcomes.count("count") > 80 and outcomes.count("error") >= 8 and "refused" not in outcomes


@pytest.mark.parametrize("expr, needs", [
    ("mapq > 30 && flag.dup", {"mapq", "flag"}),
    ("[NM] == 0 || library == \"x\"", {"aux"}),
    ("endpos", {"end"}),
    ("qlen + rlen + sclen + hclen + length(cigar)", {"cigar"}),
    ("ncigar", {"cigar"}),  # the whole CIGAR, to see a long one kept in a CG tag
    ('qname =~ "x"', {"qname"}),
    ("length(seq) + avg(qual)", {"seq", "qual"}),
    ("pos + mpos + pnext + tlen", {"pos", "mpos", "tlen"}),
    ('rname == mrname || refid == mrefid || rnext == "*"', {"tid", "mtid"}),
    ("1 + 2", set()),
])
def test_fields(expr, needs):
    fields = compile_expression(expr).fields
    assert fields == needs and fields <= set(NEEDS)


@pytest.mark.parametrize("expr", [
    "mapq > 30 && !flag.dup", '[XT] == "U" || [NM] > 3', 'library == "libY" && cigar =~ "[ID]"', "sclen > 0",
    "!([ZZ] =~ \"x\") && endpos - pos > 100", "default([XS], -1) < 0", "[ZZ] % 3 == -2",
])
def test_same_records(fb, expr):
    """The records that pass are the ones samtools prints (name, flag, position), in order."""
    lines = pysam.view("-e", expr, fb.path).splitlines()
    want = [tuple(line.split("\t")[0:2]) + (line.split("\t")[3],) for line in lines]
    idx = np.flatnonzero(our_mask(expr, fb))
    f = fb.fields
    got = [(f.names()[i].decode(), str(f.flag[i]), str(f.pos[i] + 1)) for i in idx]
    assert got == want and len(got) > 0


def test_batches_are_independent(fb):
    """A mask over part of the records is that part of the mask over all (nothing carries over
    between calls), and no records make an empty mask."""
    n = fb.fields.n
    for expr in ('qname =~ "^r0" && [NM] > 1', "1 | length(qname) + [NM]", "avg(qual) > 20 || [ZZ] % 3"):
        whole = our_mask(expr, fb)
        parts = []
        for sel in (np.arange(n) < n // 3, np.arange(n) >= n // 3):
            part = fb.batch.select(sel)
            parts.append(compile_expression(expr).mask(Fields.of_batch(part), fb.header))
        assert np.array_equal(np.concatenate(parts), whole)
        empty = fb.batch.select(np.zeros(n, dtype=bool))
        assert compile_expression(expr).mask(Fields.of_batch(empty), fb.header).shape == (0,)


def test_read_names_end_at_their_first_nul(fb, tmp_path):
    """htslib reads a name as a C string: one with a NUL inside (l_read_name unchanged) is
    only what comes before it."""
    data = fb.batch.data[fb.batch.offsets[0]:fb.batch.offsets[-1]].copy()
    data[36 + 2] = 0  # the first record's name (after its 36 fixed bytes): "r0" NUL ...
    path = str(tmp_path / "nul.bam")
    with open(path, "wb") as fh:
        w = BgzfWriter(fh)
        w.write(fb.header.to_bam_bytes())
        w.write(data.tobytes())
        w.close()
    nul = load(path)
    head = fb.fields.names()[0][:2].decode()
    for expr in (f'qname == "{head}"', "length(qname) == 2", f'qname =~ "^{head}$"'):
        assert agree(expr, nul) == "count" and our_mask(expr, nul)[0]


def test_long_cigars_in_cg_tags(tmp_path):
    """A CIGAR of over 65535 operations, which a BAM keeps in a CG tag: Fields puts it back (and
    hides the tag) as htslib does as it reads, so every CIGAR field agrees."""
    path = str(tmp_path / "cg.bam")
    with pysam.AlignmentFile(path, "wb", header={"SQ": [{"SN": "c", "LN": 10**6}]}) as out:
        for k, n in enumerate((70_001, 3)):
            a = pysam.AlignedSegment(out.header)
            a.query_name, a.reference_id, a.reference_start, a.mapping_quality = f"q{k}", 0, 10, 5
            a.cigartuples = [(0, 1), (1, 1)] * (n // 2) + [(0, 1)]
            a.query_sequence = "A" * (n // 2 * 2 + 1)
            out.write(a)
    data = load(path)
    assert [agree(e, data) for e in ("qlen > 100", "rlen > 100", "endpos > 100", "mapq")] == ["count"] * 4
    for expr in ("ncigar > 3", "ncigar == 70001", "length(cigar) > 1000", "sclen", "hclen", "exists([CG])",
                 "!exists([CG])"):
        assert agree(expr, data) == "count", expr


@pytest.mark.parametrize("expr, what", [
    ('qual == ""', "comparing qual"),
    ('"x" == length(qual) + 1', "comparing qual"),
    ('[CB] =~ "A" || qname =~ "r0"', "different patterns"),
    ('default([CB], "x") =~ "A" || qname =~ "r0"', "different patterns"),
    ("qname =~ [CB]", "not a string literal"),
    ('qname =~ "\\d"', "escape"),
    ('qname =~ "a**"', "here"),
    ('qname =~ "a{1"', "here"),
    ('qname =~ "(a|)"', "empty"),
    ('qname =~ "[[=a=]]"', "class"),
    ('qname =~ "[z-a]"', "range"),
    ('qname =~ "\u00e9"', "non-ASCII"),
    ("mapq % 0.5", "crashes"),
    ("[ZZ] % -1", "crashes"),
    ("mapq >\n30", "white space"),
    ("mapq\0", "NUL"),
])
def test_refused(fb, expr, what):
    """Refused, in one line that says what: at compile time or when a record needs it."""
    with pytest.raises(UsageError) as exc:
        our_mask(expr, fb)
    msg = str(exc.value)
    assert "not supported" in msg and what in msg and "\n" not in msg


def test_htslib_regex_cache_mixes_patterns_up(fb):
    """Why several patterns are refused when an earlier site may be skipped: samtools does not
    count the records that match either (though it agrees with us on each alone)."""
    for a, b in (('[XT] =~ "U"', 'qname =~ "Q"'), ('[CB] =~ "A"', 'qname =~ "r0"')):
        assert agree(a, fb) == agree(b, fb) == "count"
        right = int((our_mask(a, fb) | our_mask(b, fb)).sum())
        assert samtools_count(f"{a} || {b}", fb.path) != right


# ---------------------------------------------------------------------------- HTSlib's corpus
CORPUS_FILES = [
    "auxf#values.sam", "c1#clip.sam", "c1#noseq.sam", "c1#pad2.sam", "c1#unknown.sam", "ce#1000.sam", "ce#5b.sam",
    "ce#large_seq.sam", "ce#supp.sam", "ce#unmap.sam", "ce#unmap2.sam", "colons.bam", "fieldarith.sam", "md#1.sam",
    "range.bam", "xx#blank.sam", "xx#large_aux2.sam", "xx#pair.sam", "xx#rg.sam", "xx#tlen.sam", "xx#triplet.sam",
    "no_hdr_sq_1.bam", "mpileup/small.bam", "base_mods/MM-pileup.sam",
]
CORPUS_EXPRS = [
    "flag & 4", "mapq >= 30", "pos > 100", "endpos - pos", "rlen", "qlen", "qlen != length(seq)", "hclen", "sclen",
    "ncigar", 'cigar =~ "[IDP]"', 'cigar == "*"', "rname == rnext", 'mrname == "*"', "mrefid == refid", "mpos",
    "pnext > pos", "tlen < 0", 'qname =~ "[0-9]$"', 'seq =~ "^[ACGT]+$"', "length(qual)", "avg(qual) > 20",
    "min(qual)", "max(qual) == 255", "library", 'library == ""', "[RG]", "[NM] > 0", '[MD] =~ "\\^"',
    '[XT] == "U"', "exists([AS])", "[Zn]", "min([Zn])", "[Hn]", "length([Z0])", "[I9] + [i9] == 0",
    "[F3] > 0 && [F4] < 0", '[H1] == "dead00beef"', "[BC]", '[A!] == "!"', "[IA] | 1", "[iB] % 7", "[I8] * [i8]",
    "flag.paired && !flag.proper_pair", "flag.read1 || flag.read2", "flag.secondary + flag.supplementary",
]


def _corpus_cases() -> list:
    """The corpus files samtools reads and bams3 accepts (bams3 refuses SAM without a header),
    decided here, at collection, by opening them."""
    cases = []
    for name in CORPUS_FILES:
        path = str(CORPUS / name)
        try:
            pysam.view("-c", path)
            data = load(path)
        except (pysam.SamtoolsError, InputError):
            continue
        cases.append(pytest.param(data, id=name))
    return cases


CORPUS_CASES = _corpus_cases()


def test_corpus_cases_are_most_of_the_list():
    assert len(CORPUS_CASES) >= len(CORPUS_FILES) - 3


@pytest.mark.parametrize("data", CORPUS_CASES)
def test_corpus(data):
    outcomes = [agree(expr, data) for expr in CORPUS_EXPRS]
    assert outcomes.count("count") >= len(CORPUS_EXPRS) - 3 or data.fields.n <= 2


# ---------------------------------------------------------------------------- random expressions
NUMBERS = [
    "flag", "flag.paired", "flag.reverse", "flag.read2", "flag.secondary", "flag.dup", "mapq", "pos", "endpos",
    "mpos", "pnext", "tlen", "qlen", "rlen", "refid", "mrefid", "ncigar", "hclen", "sclen", "min(qual)",
    "avg(qual)", "length(qual)", "0", "1", "2", "3", "7", "30", "60", "100", "255", "1000", "0.5", "2.5", "-1",
    "0x10", "1e2", "nan", "inf",
]
TAG_NAMES = ["[NM]", "[AS]", "[XS]", "[XT]", "[ZF]", "[CB]", "[RG]", "[ZZ]", "[ZB]"]
STRINGS = ["qname", "rname", "rnext", "mrname", "library", "cigar", "seq", '"libX"', '"chr1"', '"r0"', '"x"',
           '"AAAC-1"', '""', '"U"', '"*"', '"grpA"']
BINARY = ["*", "/", "+", "-", "&", "^", "|", "<", "<=", ">", ">=", "==", "!=", "&&", "||"]
COMPARE = ["<", "<=", ">", ">=", "==", "!="]
PATTERNS = ['"^r0"', '"1$"', '"[0-9]+M"', '"A|C"', '"x"', '"^chr[12]"', '"lib[XY]"', '"D"', '"(GG|TT)+"', '"."']


def _num(term) -> str:
    """A (kind, text) term where a number belongs: a string through length()."""
    kind, text = term
    return f"length({text})" if kind == "s" else text


def _str(term, fallback: str) -> str:
    """A term where a string belongs: a number replaced by ``fallback``, a string."""
    kind, text = term
    return fallback if kind == "n" else text


def _grow(sub):
    """(kind, text) terms around terms ("n" number, "s" string, "t" tag or either), mostly
    without parentheses, so precedence and the right-recursive comparisons matter; one rule
    ignores kinds, for the errors. ``%`` only by literals samtools cannot crash on."""
    words, pick = st.sampled_from(STRINGS), st.sampled_from

    def n(strategy):
        return strategy.map(lambda text: ("n", text))
    return st.one_of(
        n(st.builds(lambda a, op, b: f"{_num(a)} {op} {_num(b)}", sub, pick(BINARY), sub)),
        n(st.builds(lambda a, op, b, x, y: f"{_str(a, x)} {op} {_str(b, y)}", sub, pick(COMPARE), sub, words, words)),
        n(st.builds(lambda op, a: f"{op}{_num(a)}", pick(["!", "~", "-", "+", "!!", "- "]), sub)),
        n(st.builds(lambda a, x, op, p: f"{_str(a, x)} {op} {p}", sub, words, pick(["=~", "!~"]), pick(PATTERNS))),
        n(st.builds(lambda a, k: f"{_num(a)} % {k}", sub, pick(["2", "3", "7", "-3", "0"]))),
        n(st.builds(lambda f, a, x: f"{f}({_str(a, x)})", pick(["length", "min", "max", "avg"]), sub, words)),
        n(st.builds(lambda f, a: f"{f}({_num(a)})", pick(["sqrt", "log", "exp", "exists", "!exists"]), sub)),
        n(st.builds(lambda a, b: f"pow({_num(a)}, {_num(b)})", sub, sub)),
        st.builds(lambda a, b: (a[0] if a[0] == b[0] else "t", f"default({a[1]}, {b[1]})"), sub, sub),
        sub.map(lambda term: (term[0], f"({term[1]})")),
        n(st.builds(lambda a, op, b: f"{a[1]} {op} {b[1]}", sub, pick(BINARY + ["=~"]), sub)),
    )


LEAVES = st.one_of(st.sampled_from(NUMBERS).map(lambda t: ("n", t)), st.sampled_from(STRINGS).map(lambda t: ("s", t)),
                   st.sampled_from(TAG_NAMES).map(lambda t: ("t", t)))
EXPRESSIONS = st.recursive(LEAVES, _grow, max_leaves=8).map(lambda term: term[1])


@settings(max_examples=150, deadline=None, database=None)
@given(expr=EXPRESSIONS)
def test_random_expressions(fb, expr):
    agree(expr, fb, REFUSALS)
