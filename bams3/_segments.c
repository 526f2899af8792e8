/* pysam AlignedSegment objects for raw BAM records, in one C loop.
 *
 * pysam makes an AlignedSegment from htslib's bam1_t with makeAlignedSegment, which it exports to
 * other extensions (Cython's __pyx_capi__; the caller passes the capsule). For each record this
 * fills a bam1_t exactly as htslib's bam_read1 would from the same bytes (the name padded with
 * NULs to a multiple of 4 bytes, the bin recomputed from the CIGAR) and calls it: no pipe, no
 * BGZF framing, no parse by htslib, one GIL hold per batch.
 *
 * A record that bam_read1 or sam_read1 would change in other ways (a CIGAR kept in a CG tag, a
 * name without its NUL) or refuse (sizes that do not add up, a CIGAR whose query length is not
 * l_seq, a reference id outside the header) is not made here: make() then returns None for the
 * whole batch and the caller has htslib read it, as pysam would.
 *
 * bam1_t is htslib's (>= 1.10, 64-bit positions) layout; bams3/_pysam.py checks it against pysam
 * once per process on a record whose every field differs, and uses htslib when it does not hold.
 *
 * sam() fills the same bam1_t and has htslib's own sam_format1 (its address from pysam's
 * libchtslib, through ctypes: bams3/_pysam.py) write the SAM line samtools view would write,
 * stopping before the first record parse() leaves to htslib's reader.
 *
 * The records are not tracked by the cycle collector: an AlignedSegment (no instance dict) refers
 * only to its header and to its cache of strings and arrays (an _AlignedSegment_Cache, untracked
 * too), none of which can refer back to it, so it can never be part of a reference cycle. CPython
 * untracks its own containers of atomic values for the same reason (tuples, dicts). Tracked, a
 * megabase of records (132,883 reads, each with its cache) cost ~0.1 s of collections in pysam's
 * own iteration; untracked, nothing. Reference counting frees them as before.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>

typedef struct {
    int64_t pos;
    int32_t tid;
    uint16_t bin;
    uint8_t qual;
    uint8_t l_extranul;
    uint16_t flag;
    uint16_t l_qname;
    uint32_t n_cigar;
    int32_t l_qseq;
    int32_t mtid;
    int64_t mpos;
    int64_t isize;
} bam1_core_t;

typedef struct {
    bam1_core_t core;
    uint64_t id;
    uint8_t *data;
    int l_data;
    uint32_t m_data;
    uint32_t mempolicy : 2, : 30;
} bam1_t;

typedef PyObject *(*make_fn)(bam1_t *, PyObject *);

static PyTypeObject *cache_type; /* pysam's _AlignedSegment_Cache, as the caller passes it */

static int untrack_cache(PyObject *o, void *arg) {
    (void)arg;
    if (o && Py_TYPE(o) == cache_type && PyObject_GC_IsTracked(o)) PyObject_GC_UnTrack(o);
    return 0;
}

/* Untracks a segment and its cache where the segment's type has no instance dict (so nothing
 * else can be attached to it) and traverses only what pysam declares. */
static void untrack(PyObject *seg) {
    PyTypeObject *t = Py_TYPE(seg);
    if (!cache_type || t->tp_dictoffset != 0 || !PyType_IS_GC(t) || !t->tp_traverse) return;
    t->tp_traverse(seg, untrack_cache, NULL);
    if (PyObject_GC_IsTracked(seg)) PyObject_GC_UnTrack(seg);
}

static const char SIGNATURE[] =
    "struct __pyx_obj_5pysam_18libcalignedsegment_AlignedSegment *(bam1_t *, "
    "struct __pyx_obj_5pysam_17libcalignmentfile_AlignmentHeader *)";

static inline uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* htslib's hts_reg2bin(beg, end, 14, 5) */
static int reg2bin(int64_t beg, int64_t end) {
    int l, s = 14, t = ((1 << 15) - 1) / 7;
    for (--end, l = 5; l > 0; --l, s += 3, t -= 1 << ((l << 1) + l))
        if (beg >> s == end >> s) return t + (int)(beg >> s);
    return 0;
}

/* Parses record bytes p (block_size, then the block) into b (core only) and checks that
 * bam_read1 and sam_read1 would give the record unchanged but for the name's padding and the
 * bin. Returns 0, or -1 when htslib must read it. */
static int parse(const uint8_t *p, Py_ssize_t avail, Py_ssize_t nref, bam1_t *b, int64_t *rlen_out) {
    if (avail < 36) return -1;
    int32_t block_len = (int32_t)rd32(p);
    if (block_len < 32 || block_len != avail - 4) return -1; /* as the batch's offsets say */
    const uint8_t *x = p + 4;
    bam1_core_t *c = &b->core;
    uint32_t x2 = rd32(x + 8), x3 = rd32(x + 12);
    c->tid = (int32_t)rd32(x);
    c->pos = (int32_t)rd32(x + 4);
    c->bin = (uint16_t)(x2 >> 16);
    c->qual = (uint8_t)(x2 >> 8 & 0xff);
    uint32_t l_qname = x2 & 0xff;
    c->l_extranul = (uint8_t)(l_qname % 4 ? 4 - l_qname % 4 : 0);
    c->flag = (uint16_t)(x3 >> 16);
    c->n_cigar = x3 & 0xffff;
    c->l_qseq = (int32_t)rd32(x + 16);
    c->mtid = (int32_t)rd32(x + 20);
    c->mpos = (int32_t)rd32(x + 24);
    c->isize = (int32_t)rd32(x + 28);
    uint64_t l_data = (uint64_t)block_len - 32 + c->l_extranul;
    if (c->l_qseq < 0 || l_qname < 1) return -1;
    if (((uint64_t)c->n_cigar << 2) + l_qname + c->l_extranul + (((uint64_t)c->l_qseq + 1) >> 1) + (uint64_t)c->l_qseq
        > l_data)
        return -1;
    const uint8_t *var = x + 32;
    if (var[l_qname - 1] != '\0') return -1; /* htslib would repair the name */
    const uint8_t *cig = var + l_qname;
    int64_t rlen = 0, qlen = 0;
    for (uint32_t k = 0; k < c->n_cigar; k++) {
        uint32_t op = rd32(cig + 4 * k), type = (0x3C1A7u >> ((op & 0xf) << 1)) & 3;
        if (type & 1) qlen += op >> 4;
        if (type & 2) rlen += op >> 4;
    }
    if (c->n_cigar > 0) {
        uint32_t op0 = rd32(cig);
        if (c->tid >= 0 && c->pos >= 0 && (op0 & 0xf) == 4 && (int64_t)(op0 >> 4) == c->l_qseq)
            return -1; /* the real CIGAR may be in a CG tag: htslib moves it */
        if (c->l_qseq > 0 && !(c->flag & 4) && qlen != c->l_qseq) return -1; /* htslib refuses it */
        if ((c->flag & 4) || rlen == 0) rlen = 1;
        c->bin = (uint16_t)reg2bin(c->pos, c->pos + rlen);
    }
    if (c->tid >= nref || c->tid < -1 || c->mtid >= nref || c->mtid < -1) return -1; /* sam_read1 refuses it */
    c->l_qname = (uint16_t)(l_qname + c->l_extranul);
    if (c->l_qname < l_qname) return -1; /* does not fit htslib's 16 bits */
    b->l_data = (int)l_data;
    *rlen_out = rlen;
    return 0;
}

/* The data of record bytes p that parse() accepted into b, laid out as bam_read1 lays it out in
 * b->data: the name padded with NULs to b->core.l_qname, then the rest (b->l_data bytes in all). */
static void fill(uint8_t *dst, const uint8_t *p, const bam1_t *b) {
    uint32_t l_qname = b->core.l_qname - b->core.l_extranul;
    const uint8_t *var = p + 36;
    memcpy(dst, var, l_qname);
    memset(dst + l_qname, 0, b->core.l_extranul);
    memcpy(dst + b->core.l_qname, var + l_qname, (size_t)(b->l_data - b->core.l_qname));
}

/* make(data_u8, offsets_i64, maker_capsule, header, nref, cache_type) -> list of AlignedSegment, or
 * None; cache_type None: the records stay tracked */
static PyObject *s_make(PyObject *self, PyObject *args) {
    Py_buffer data, offs;
    PyObject *capsule, *header, *ctype;
    Py_ssize_t nref;
    if (!PyArg_ParseTuple(args, "y*y*OOnO", &data, &offs, &capsule, &header, &nref, &ctype)) return NULL;
    cache_type = PyType_Check(ctype) ? (PyTypeObject *)ctype : NULL;
    PyObject *result = NULL;
    uint8_t *scratch = NULL;
    const uint8_t *d = data.buf;
    const int64_t *off = offs.buf;
    Py_ssize_t n = offs.len / 8 - 1;
    make_fn make = (make_fn)PyCapsule_GetPointer(capsule, SIGNATURE);
    if (!make) goto done;
    if (n < 0) { PyErr_SetString(PyExc_ValueError, "segments: no offsets"); goto done; }
    bam1_t b;
    memset(&b, 0, sizeof b);
    int64_t rlen, longest = 0;
    for (Py_ssize_t i = 0; i < n; i++) {  /* every record first: the batch is made here or by htslib */
        if (off[i] < 0 || off[i + 1] < off[i] || off[i + 1] > data.len
            || parse(d + off[i], off[i + 1] - off[i], nref, &b, &rlen) < 0) {
            result = Py_None;
            Py_INCREF(result);
            goto done;
        }
        if (b.l_data > longest) longest = b.l_data;
    }
    scratch = malloc((size_t)longest + 8);
    result = PyList_New(n);
    if (!scratch || !result) { Py_CLEAR(result); if (!PyErr_Occurred()) PyErr_NoMemory(); goto done; }
    b.data = scratch;
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint8_t *p = d + off[i];
        parse(p, off[i + 1] - off[i], nref, &b, &rlen);
        fill(scratch, p, &b);
        b.m_data = (uint32_t)b.l_data;
        PyObject *seg = make(&b, header);
        if (!seg) { Py_CLEAR(result); goto done; }
        untrack(seg);
        PyList_SET_ITEM(result, i, seg);
    }
done:
    free(scratch);
    PyBuffer_Release(&data);
    PyBuffer_Release(&offs);
    return result;
}

typedef struct {
    size_t l, m;
    char *s;
} kstring_t;

typedef int (*format_fn)(const void *, const bam1_t *, kstring_t *);

/* Writes all of buf to fd with the GIL released (the caller released it). A write a signal cut
 * short (EINTR, or fewer bytes than asked: Linux returns what a blocked pipe write had copied)
 * takes the GIL back to run Python's signal handlers, so one Ctrl-C stops a write to a reader
 * that never reads. Returns 0, or -1 with errno set (or with a Python exception set: *raised = 1). */
static int write_all(int fd, const char *buf, size_t n, int *raised, PyThreadState **save) {
    while (n > 0) {
        size_t want = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t w = write(fd, buf, want);
        if (w < 0 && errno != EINTR) return -1;
        if (w < 0 || (size_t)w < want) {
            PyEval_RestoreThread(*save);
            int bad = PyErr_CheckSignals();
            *save = PyEval_SaveThread();
            if (bad < 0) { *raised = 1; return -1; }
        }
        if (w > 0) {
            buf += w;
            n -= (size_t)w;
        }
    }
    return 0;
}

/* The aux fields of a record walk cleanly to the record's end with types sam_format1 prints:
 * else the record goes to samtools view, which says what is wrong (one message, not two). */
static int aux_ok(const uint8_t *p, const uint8_t *end) {
    while (p < end) {
        if (end - p < 3) return 0;
        uint8_t type = p[2];
        p += 3;
        size_t size;
        switch (type) {
        case 'A': case 'c': case 'C': size = 1; break;
        case 's': case 'S': size = 2; break;
        case 'i': case 'I': case 'f': size = 4; break;
        case 'Z': case 'H': {
            const uint8_t *nul = memchr(p, 0, (size_t)(end - p));
            if (!nul) return 0;
            p = nul + 1;
            continue;
        }
        case 'B': {
            if (end - p < 5) return 0;
            uint8_t sub = p[0];
            uint32_t count = rd32(p + 1);
            p += 5;
            size = sub == 'c' || sub == 'C' ? 1 : sub == 's' || sub == 'S' ? 2
                 : sub == 'i' || sub == 'I' || sub == 'f' ? 4 : 0;
            if (!size || (uint64_t)count * size > (uint64_t)(end - p)) return 0;
            p += (size_t)count * size;
            continue;
        }
        default: return 0;
        }
        if ((size_t)(end - p) < size) return 0;
        p += size;
    }
    return 1;
}

#define SAM_BUFFER (1 << 20)

/* sam(data_u8, offsets_i64, start, sam_format1_address, sam_hdr_address, nref, fd) -> end
 *
 * Writes to fd the SAM lines of records start.. of a batch, each formatted by htslib's own
 * sam_format1 (the caller passes its address and a header whose references are the dataset's)
 * from a bam1_t filled as bam_read1 fills it: the lines samtools view writes for the same
 * records. Stops before the first record that parse() leaves to htslib's reader or that
 * sam_format1 refuses, and returns it (the caller has samtools view write it and the rest);
 * every line before it is written. The GIL is released throughout; lines go out through a 1 MiB
 * buffer. A failed write raises OSError (BrokenPipeError when the reader has gone). */
static PyObject *s_sam(PyObject *self, PyObject *args) {
    Py_buffer data, offs;
    Py_ssize_t start, nref;
    unsigned long long fn_addr, hdr_addr;
    int fd;
    if (!PyArg_ParseTuple(args, "y*y*nKKni", &data, &offs, &start, &fn_addr, &hdr_addr, &nref, &fd)) return NULL;
    PyObject *result = NULL;
    const uint8_t *d = data.buf;
    const int64_t *off = offs.buf;
    Py_ssize_t n = offs.len / 8 - 1, i = start;
    format_fn fmt = (format_fn)(uintptr_t)fn_addr;
    const void *hdr = (const void *)(uintptr_t)hdr_addr;
    if (n < 0 || start < 0 || start > n || !fn_addr || !hdr_addr || fd < 0) {
        PyErr_SetString(PyExc_ValueError, "sam: bad arguments");
        goto done;
    }
    char *out = malloc(SAM_BUFFER);
    if (!out) { PyErr_NoMemory(); goto done; }
    size_t used = 0;
    uint8_t *scratch = NULL;
    size_t scratch_cap = 0;
    kstring_t line = {0, 0, NULL};
    int nomem = 0, failed = 0, raised = 0, err = 0;
    bam1_t b;
    memset(&b, 0, sizeof b);
    PyThreadState *save = PyEval_SaveThread();
    for (; i < n; i++) {
        int64_t rlen;
        if (off[i] < 0 || off[i + 1] < off[i] || off[i + 1] > data.len
            || parse(d + off[i], off[i + 1] - off[i], nref, &b, &rlen) < 0)
            break;
        if ((size_t)b.l_data + 8 > scratch_cap) {
            size_t want = (size_t)b.l_data * 2 + 64;
            uint8_t *grown = realloc(scratch, want);
            if (!grown) { nomem = 1; break; }
            scratch = grown;
            scratch_cap = want;
        }
        fill(scratch, d + off[i], &b);
        b.data = scratch;
        b.m_data = (uint32_t)scratch_cap;
        const uint8_t *aux = scratch + b.core.l_qname + 4 * (size_t)b.core.n_cigar + (((size_t)b.core.l_qseq + 1) >> 1)
                             + (size_t)b.core.l_qseq;
        if (!aux_ok(aux, scratch + b.l_data)) break;
        if (fmt(hdr, &b, &line) < 0) break; /* samtools view says what is wrong with it */
        if (used + line.l + 1 > SAM_BUFFER) {
            if (write_all(fd, out, used, &raised, &save) < 0) { failed = 1; err = errno; break; }
            used = 0;
        }
        if (line.l + 1 > SAM_BUFFER) { /* a line longer than the buffer goes out as it is */
            if (write_all(fd, line.s, line.l, &raised, &save) < 0 || write_all(fd, "\n", 1, &raised, &save) < 0) {
                failed = 1;
                err = errno;
                break;
            }
            continue;
        }
        memcpy(out + used, line.s, line.l);
        out[used + line.l] = '\n';
        used += line.l + 1;
    }
    if (!failed && !nomem && used && write_all(fd, out, used, &raised, &save) < 0) { failed = 1; err = errno; }
    PyEval_RestoreThread(save);
    free(line.s); /* htslib grew it with the C library's realloc */
    free(scratch);
    free(out);
    if (raised) goto done;
    if (nomem) { PyErr_NoMemory(); goto done; }
    if (failed) { errno = err; PyErr_SetFromErrno(PyExc_OSError); goto done; }
    result = PyLong_FromSsize_t(i);
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&offs);
    return result;
}

static PyMethodDef methods[] = {
    {"make", s_make, METH_VARARGS,
     "make(data_u8, offsets_i64, maker_capsule, header, nref, cache_type) -> [AlignedSegment] (None: htslib must"
     " read the batch)"},
    {"sam", s_sam, METH_VARARGS,
     "sam(data_u8, offsets_i64, start, sam_format1_address, sam_hdr_address, nref, fd) -> end: writes to fd the"
     " SAM lines htslib's sam_format1 gives records start..end-1"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_segments",
                                    "pysam AlignedSegment objects for raw BAM records.", -1, methods};

PyMODINIT_FUNC PyInit__segments(void) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return PyModule_Create(&module);
#else
    PyErr_SetString(PyExc_ImportError, "bams3._segments reads little-endian records in place");
    return NULL;
#endif
}
