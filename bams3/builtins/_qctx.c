/* Scheme 3 of bams3's qual codec: each quality in the context of the one before it in its read
 * (in sequencing order), of its cycle (in 16s) and of the read's place in its pair:
 *
 *     ctx = (p * 32 + min(cycle / 16, 31)) * 2 + read2      p: the previous quality's symbol,
 *                                                           or A at a read's first cycle
 *
 * Real instruments' qualities depend on the quality before them far more than on the cycle
 * (Illumina's: a fifth to a third smaller coded so), where simulated ones may not; the codec
 * chooses per chunk. The symbols are coded in groups of four records (the last group may hold
 * fewer): cycle by cycle, and in a cycle the group's records in order, skipping those that have
 * ended; symbol t (in that order) with state t % 32 of static rANS with 16-bit renormalisation
 * (scheme 2's coder). A context is known only once the symbol before it in its read is decoded,
 * so four reads at a time give the decoder four independent chains.
 *
 * counts(q, l_seq_i64, flag_u16, lut, A, max_n) -> (counts by scheme 3 context, counts by scheme 2
 *     context, n): int64 [(A + 1) * 64][A] and [1024][A] over the first records, whole, that hold
 *     at most max_n qualities (at least one record);
 * encode(q, l_seq_i64, flag_u16, lut, freqs_u16, rows_i32, A) -> the stream: 32 u32 states, then
 *     u16 words (rows: context id -> row of freqs, -1: none);
 * decode(stream, l_seq_i64, flag_u16, freqs_u16, vals, rows_i32, A, n) -> the qualities, stored
 *     order (A <= 64). ValueError when the stream is not one the encoder writes for these records.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define SCALE 12
#define M (1u << SCALE)
#define WL (1u << 16)
#define NW 32
#define CYCLES 32
#define GROUP 4 /* reads coded cycle by cycle together: four chains of contexts to decode at once */

static inline Py_ssize_t ctx_of(int p, Py_ssize_t c, int g) {
    Py_ssize_t b = c >> 4;
    return (((Py_ssize_t)p * CYCLES + (b < CYCLES - 1 ? b : CYCLES - 1)) << 1) | g;
}

/* The records' layout, checked: lengths >= 0 summing to n. */
static int check_records(const int64_t *l_seq, Py_ssize_t nr, Py_ssize_t n) {
    Py_ssize_t s = 0;
    for (Py_ssize_t r = 0; r < nr; r++) {
        if (l_seq[r] < 0 || l_seq[r] > n - s) return -1;
        s += l_seq[r];
    }
    return s == n ? 0 : -1;
}

/* Every byte value maps to a symbol below A (the values absent map anywhere below it). */
static int lut_fits(const uint8_t *lut, Py_ssize_t a) {
    for (int v = 0; v < 256; v++)
        if (lut[v] >= a) return 0;
    return 1;
}

#define STORED(s, L, rev, c) ((rev) ? (s) + (L) - 1 - (c) : (s) + (c))

static PyObject *q_counts(PyObject *self, PyObject *args) {
    Py_buffer qb, lb, fb, lutb;
    Py_ssize_t a, max_n;
    if (!PyArg_ParseTuple(args, "y*y*y*y*nn", &qb, &lb, &fb, &lutb, &a, &max_n)) return NULL;
    Py_ssize_t nr = lb.len / 8;
    PyObject *c3 = NULL, *c2 = NULL, *res = NULL;
    if (a < 1 || a > 256 || lutb.len != 256 || fb.len != 2 * nr || check_records(lb.buf, nr, qb.len) ||
        !lut_fits(lutb.buf, a)) {
        PyErr_SetString(PyExc_ValueError, "qualities and records do not match");
        goto done;
    }
    c3 = PyBytes_FromStringAndSize(NULL, 8 * (a + 1) * CYCLES * 2 * a);
    c2 = PyBytes_FromStringAndSize(NULL, 8 * 1024 * a);
    if (!c3 || !c2) goto done;
    int64_t *k3 = (int64_t *)PyBytes_AS_STRING(c3), *k2 = (int64_t *)PyBytes_AS_STRING(c2);
    memset(k3, 0, 8 * (a + 1) * CYCLES * 2 * a);
    memset(k2, 0, 8 * 1024 * a);
    const uint8_t *q = qb.buf, *lut = lutb.buf;
    const int64_t *l_seq = lb.buf;
    const uint16_t *flag = fb.buf;
    Py_ssize_t s = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < nr && (r == 0 || s + l_seq[r] <= max_n); r++) {
        Py_ssize_t L = l_seq[r];
        int rev = (flag[r] >> 4) & 1, g = (flag[r] >> 7) & 1, p = (int)a;
        for (Py_ssize_t c = 0; c < L; c++) {
            int sym = lut[q[STORED(s, L, rev, c)]];
            k3[ctx_of(p, c, g) * a + sym]++;
            k2[((c < 511 ? c : 511) * 2 + g) * a + sym]++;
            p = sym;
        }
        s += L;
    }
    Py_END_ALLOW_THREADS
    res = Py_BuildValue("(OOn)", c3, c2, s);
done:
    Py_XDECREF(c3); Py_XDECREF(c2);
    PyBuffer_Release(&qb); PyBuffer_Release(&lb); PyBuffer_Release(&fb); PyBuffer_Release(&lutb);
    return res;
}

/* Frequencies (K x A, each row summing to M) -> cumulative (K x (A + 1)); -1 if a row does not. */
static int build_cum(const uint16_t *f, Py_ssize_t k, Py_ssize_t a, uint32_t *cum) {
    for (Py_ssize_t r = 0; r < k; r++) {
        uint32_t c = 0;
        for (Py_ssize_t s = 0; s < a; s++) { cum[r * (a + 1) + s] = c; c += f[r * a + s]; }
        cum[r * (a + 1) + a] = c;
        if (c != M) return -1;
    }
    return 0;
}

static PyObject *q_encode(PyObject *self, PyObject *args) {
    Py_buffer qb, lb, fb, lutb, frb, rowb;
    Py_ssize_t a;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*n", &qb, &lb, &fb, &lutb, &frb, &rowb, &a)) return NULL;
    Py_ssize_t nr = lb.len / 8, n = qb.len, k = a > 0 ? frb.len / (2 * a) : 0, nctx = (a + 1) * CYCLES * 2;
    const char *err = NULL;
    PyObject *res = NULL;
    uint32_t *cum = NULL;
    uint8_t *buf = NULL;
    if (a < 1 || a > 256 || lutb.len != 256 || fb.len != 2 * nr || rowb.len != 4 * nctx || frb.len != 2 * k * a ||
        check_records(lb.buf, nr, n) || !lut_fits(lutb.buf, a))
        err = "qualities, records and tables do not match";
    else if (!(cum = malloc(sizeof(uint32_t) * (k * (a + 1) + 1))) || !(buf = malloc(2 * n + 4 * NW))) {
        PyErr_NoMemory();
        goto done;
    } else if (build_cum(frb.buf, k, a, cum))
        err = "a frequency row does not sum to 4096";
    if (err) goto done;
    const uint8_t *q = qb.buf, *lut = lutb.buf;
    const int64_t *l_seq = lb.buf;
    const uint16_t *flag = fb.buf, *freq = frb.buf;
    const int32_t *rows = rowb.buf;
    uint8_t *end = buf + 2 * n + 4 * NW, *ptr = end;
    Py_BEGIN_ALLOW_THREADS
    uint32_t x[NW];
    for (int j = 0; j < NW; j++) x[j] = WL;
    Py_ssize_t t = n, gs = n; /* gs: where the group's qualities start */
    /* backwards (the decoder reads forwards): groups last to first, in each cycles last to
     * first, and in a cycle the group's records last to first */
    for (Py_ssize_t g0 = nr ? (nr - 1) / GROUP * GROUP : -1; g0 >= 0 && !err; g0 -= GROUP) {
        int m = nr - g0 < GROUP ? (int)(nr - g0) : GROUP;
        Py_ssize_t offs[GROUP], maxl = 0, total = 0;
        for (int i = 0; i < m; i++) {
            total += l_seq[g0 + i];
            if (l_seq[g0 + i] > maxl) maxl = l_seq[g0 + i];
        }
        gs -= total;
        Py_ssize_t off = 0;
        for (int i = 0; i < m; i++) { offs[i] = gs + off; off += l_seq[g0 + i]; }
        for (Py_ssize_t c = maxl - 1; c >= 0 && !err; c--) {
            for (int i = m - 1; i >= 0; i--) {
                Py_ssize_t L = l_seq[g0 + i], st = offs[i];
                if (c >= L) continue;
                int rev = (flag[g0 + i] >> 4) & 1, g = (flag[g0 + i] >> 7) & 1;
                t--;
                int sym = lut[q[STORED(st, L, rev, c)]];
                int p = c ? lut[q[STORED(st, L, rev, c - 1)]] : (int)a;
                int32_t row = rows[ctx_of(p, c, g)];
                if (sym >= a || row < 0 || row >= k) { err = "a quality has no frequency"; break; }
                uint32_t f = freq[row * a + sym], start = cum[row * (a + 1) + sym];
                if (!f) { err = "a quality has no frequency"; break; }
                uint32_t *xs = &x[t % NW];
                if ((uint64_t)*xs >= ((uint64_t)(WL >> SCALE) << 16) * f) { /* (2^32 when f = M: never) */
                    ptr -= 2;
                    ptr[0] = *xs & 0xff; ptr[1] = (*xs >> 8) & 0xff;
                    *xs >>= 16;
                }
                *xs = ((*xs / f) << SCALE) + (*xs % f) + start;
            }
        }
    }
    for (int j = NW - 1; j >= 0 && !err; j--) {
        ptr -= 4;
        ptr[0] = x[j] & 0xff; ptr[1] = (x[j] >> 8) & 0xff; ptr[2] = (x[j] >> 16) & 0xff; ptr[3] = x[j] >> 24;
    }
    Py_END_ALLOW_THREADS
    if (!err) res = PyBytes_FromStringAndSize((const char *)ptr, end - ptr);
done:
    free(cum); free(buf);
    PyBuffer_Release(&qb); PyBuffer_Release(&lb); PyBuffer_Release(&fb); PyBuffer_Release(&lutb);
    PyBuffer_Release(&frb); PyBuffer_Release(&rowb);
    if (err) { PyErr_SetString(PyExc_ValueError, err); return NULL; }
    return res;
}

/* A context's row for decoding: its cumulative frequencies as int16 (padded to a multiple of 8
 * with 0x7fff, which no slot reaches) and its frequencies. The symbol of slot m is the number of
 * cum[s] <= m, less one: counted 8 at a time with SSE2, without a branch (a scalar loop elsewhere). 256 bytes a
 * row keep every row of a chunk in the first-level cache, where a table per slot would not be. */
typedef struct {
    int16_t cum[64];
    uint16_t f[64];
} Row;

static void fill_row(Row *row, const uint16_t *f, const uint32_t *c, Py_ssize_t a) {
    for (Py_ssize_t sy = 0; sy < 64; sy++) {
        row->cum[sy] = sy < a ? (int16_t)c[sy] : 0x7fff;
        row->f[sy] = sy < a ? f[sy] : 0;
    }
}

static inline int symbol_of(const Row *row, uint32_t m, int blocks) {
#if defined(__SSE2__)
    __m128i mv = _mm_set1_epi16((short)m), zero = _mm_setzero_si128(), gt = zero;
    for (int b = 0; b < blocks; b++) /* each lane: minus the count of cum > m */
        gt = _mm_add_epi16(gt, _mm_cmpgt_epi16(_mm_loadu_si128((const __m128i *)(row->cum + 8 * b)), mv));
    /* the eight counts (0-8) as bytes, summed by SAD */
    __m128i sum = _mm_sad_epu8(_mm_packus_epi16(_mm_sub_epi16(zero, gt), zero), zero);
    return 8 * blocks - _mm_cvtsi128_si32(sum) - 1;
#else
    int le = 0;
    for (int s = 0; s < 8 * blocks; s++) le += row->cum[s] <= (int)m;
    return le - 1;
#endif
}

#define STEP(I)                                                                     \
    do {                                                                            \
        const Row *rw = crow[(Py_ssize_t)pv[I] * (CYCLES * 2) + (bin << 1) + gv[I]]; \
        if (!rw) { err = "a quality's context has no frequencies"; goto stop; }    \
        uint32_t v = x[j], mm = v & (M - 1);                                        \
        int sy = symbol_of(rw, mm, blocks);                                         \
        v = rw->f[sy] * (v >> SCALE) + mm - (uint32_t)rw->cum[sy];                  \
        if (v < WL) {                                                               \
            if (end - ptr < 2) { err = "the stream ends early"; goto stop; }        \
            v = (v << 16) | ptr[0] | (uint32_t)ptr[1] << 8;                         \
            ptr += 2;                                                               \
        }                                                                           \
        x[j] = v;                                                                   \
        j = (j + 1) & (NW - 1);                                                     \
        pv[I] = (uint32_t)sy;                                                       \
        o[I][d[I] * c] = vals[sy];                                                  \
    } while (0)

static PyObject *q_decode(PyObject *self, PyObject *args) {
    Py_buffer db, lb, fb, frb, vb, rowb;
    Py_ssize_t a, n;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*nn", &db, &lb, &fb, &frb, &vb, &rowb, &a, &n)) return NULL;
    Py_ssize_t nr = lb.len / 8, k = a > 0 ? frb.len / (2 * a) : 0, nctx = (a + 1) * CYCLES * 2;
    const char *err = NULL;
    PyObject *res = NULL;
    uint32_t *cum = NULL;
    Row *rows_ = NULL;
    const Row **crow = NULL; /* context id -> its row, or NULL */
    if (a < 1 || a > 64 || vb.len != a || fb.len != 2 * nr || rowb.len != 4 * nctx || frb.len != 2 * k * a ||
        n < 0 || check_records(lb.buf, nr, n))
        err = "the stream's tables do not match the records";
    else if (!(cum = malloc(sizeof(uint32_t) * (k * (a + 1) + 1))) || !(rows_ = malloc(sizeof(Row) * (k ? k : 1))) ||
             !(crow = calloc(nctx, sizeof(Row *)))) {
        PyErr_NoMemory();
        goto done;
    } else if (build_cum(frb.buf, k, a, cum))
        err = "a frequency row does not sum to 4096";
    if (!err && db.len < 4 * NW) err = "the stream ends early";
    if (err) goto done;
    for (Py_ssize_t i = 0; i < nctx; i++) {
        int32_t row = ((const int32_t *)rowb.buf)[i];
        if (row < -1 || row >= k) { err = "the stream's tables do not match the records"; goto done; }
        if (row >= 0) crow[i] = rows_ + row;
    }
    if (!(res = PyBytes_FromStringAndSize(NULL, n))) goto done;
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(res);
    const uint8_t *ptr = db.buf, *end = ptr + db.len, *vals = vb.buf;
    const int64_t *l_seq = lb.buf;
    const uint16_t *flag = fb.buf;
    int blocks = (int)((a + 7) / 8);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < k; r++) fill_row(rows_ + r, (const uint16_t *)frb.buf + r * a, cum + r * (a + 1), a);
    uint32_t x[NW];
    for (int i = 0; i < NW; i++, ptr += 4)
        x[i] = (uint32_t)ptr[0] | (uint32_t)ptr[1] << 8 | (uint32_t)ptr[2] << 16 | (uint32_t)ptr[3] << 24;
    int j = 0;
    Py_ssize_t gs = 0;
    for (Py_ssize_t g0 = 0; g0 < nr; g0 += GROUP) {
        int m = nr - g0 < GROUP ? (int)(nr - g0) : GROUP;
        Py_ssize_t maxl = 0, minl = PY_SSIZE_T_MAX, len_[GROUP];
        uint8_t *o[GROUP];
        Py_ssize_t d[GROUP];
        uint32_t pv[GROUP], gv[GROUP];
        for (int i = 0; i < m; i++) {
            Py_ssize_t L = len_[i] = l_seq[g0 + i];
            int rev = (flag[g0 + i] >> 4) & 1;
            o[i] = out + gs + (rev ? L - 1 : 0);
            d[i] = rev ? -1 : 1;
            pv[i] = (uint32_t)a;
            gv[i] = (flag[g0 + i] >> 7) & 1;
            gs += L;
            if (L > maxl) maxl = L;
            if (L < minl) minl = L;
        }
        Py_ssize_t c = 0;
        if (m == GROUP) /* the cycles all four reads have: four steps a cycle, no checks */
            for (; c < minl; c++) {
                Py_ssize_t bin = c >> 4 < CYCLES - 1 ? c >> 4 : CYCLES - 1;
                STEP(0); STEP(1); STEP(2); STEP(3);
            }
        for (; c < maxl; c++) {
            Py_ssize_t bin = c >> 4 < CYCLES - 1 ? c >> 4 : CYCLES - 1;
            for (int i = 0; i < m; i++)
                if (c < len_[i]) STEP(i);
        }
    }
    for (int i = 0; i < NW && !err; i++)
        if (x[i] != WL) err = "the stream does not end where its states began";
    if (!err && ptr != end) err = "the stream has bytes after its qualities";
stop:
    Py_END_ALLOW_THREADS
done:
    free(rows_); free(crow); free(cum);
    PyBuffer_Release(&db); PyBuffer_Release(&lb); PyBuffer_Release(&fb); PyBuffer_Release(&frb);
    PyBuffer_Release(&vb); PyBuffer_Release(&rowb);
    if (err) {
        Py_CLEAR(res);
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, err);
        return NULL;
    }
    return res;
}

static PyObject *q_histogram(PyObject *self, PyObject *args) {
    Py_buffer qb;
    if (!PyArg_ParseTuple(args, "y*", &qb)) return NULL;
    int64_t h[256] = {0};
    uint32_t bank[4][256]; /* four counts per value: runs of one value do not wait on one counter */
    const uint8_t *q = qb.buf;
    Py_BEGIN_ALLOW_THREADS
    memset(bank, 0, sizeof bank);
    for (Py_ssize_t i = 0; i < qb.len;) {
        Py_ssize_t stop = qb.len - i > (1 << 30) ? i + (1 << 30) : qb.len; /* (no bank overflows) */
        for (; i + 4 <= stop; i += 4) { bank[0][q[i]]++; bank[1][q[i + 1]]++; bank[2][q[i + 2]]++; bank[3][q[i + 3]]++; }
        for (; i < stop; i++) bank[0][q[i]]++;
        for (int v = 0; v < 256; v++) {
            h[v] += (int64_t)bank[0][v] + bank[1][v] + bank[2][v] + bank[3][v];
            bank[0][v] = bank[1][v] = bank[2][v] = bank[3][v] = 0;
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&qb);
    return PyBytes_FromStringAndSize((const char *)h, sizeof h);
}

static PyMethodDef methods[] = {
    {"histogram", q_histogram, METH_VARARGS, "histogram(q) -> int64 [256]: how many of each byte"},
    {"counts", q_counts, METH_VARARGS, "counts(q, l_seq_i64, flag_u16, lut, A, max_n) -> (counts3, counts2, n)"},
    {"encode", q_encode, METH_VARARGS, "encode(q, l_seq_i64, flag_u16, lut, freqs_u16, rows_i32, A) -> stream"},
    {"decode", q_decode, METH_VARARGS, "decode(stream, l_seq_i64, flag_u16, freqs_u16, vals, rows_i32, A, n) -> q"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_qctx", "The qual codec's scheme 3.", -1, methods};

PyMODINIT_FUNC PyInit__qctx(void) { return PyModule_Create(&module); }
