/* Static rANS for bams3's qual codec: byte-wise renormalisation, 32-bit states,
 * 4-way interleaved (symbol i uses state i % 4), 12-bit frequencies, one model
 * per context. The symbols arrive grouped by context: group k is
 * symbols[bounds[k]:bounds[k+1]] and is coded with frequency row k.
 * Both directions release the GIL. After "rANS coding" by F. Giesen (ryg_rans,
 * public domain), whose byte-wise coder this follows.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SCALE_BITS 12
#define M (1u << SCALE_BITS)
#define RANS_L (1u << 23)
#define NSTATE 4

/* Checks the frequency table: every row sums to M. Fills cum (K x (A+1)). */
static int build_cum(const uint16_t *freq, Py_ssize_t k, Py_ssize_t a, uint32_t *cum) {
    for (Py_ssize_t r = 0; r < k; r++) {
        uint32_t c = 0;
        for (Py_ssize_t s = 0; s < a; s++) {
            cum[r * (a + 1) + s] = c;
            c += freq[r * a + s];
        }
        cum[r * (a + 1) + a] = c;
        if (c != M) return -1;
    }
    return 0;
}

static int check_bounds(const int64_t *bounds, Py_ssize_t k, Py_ssize_t n) {
    if (bounds[0] != 0 || bounds[k] != n) return -1;
    for (Py_ssize_t r = 0; r < k; r++)
        if (bounds[r + 1] < bounds[r]) return -1;
    return 0;
}

static PyObject *rans_encode(PyObject *self, PyObject *args) {
    Py_buffer sym, bnd, frq;
    Py_ssize_t a;
    if (!PyArg_ParseTuple(args, "y*y*y*n", &sym, &bnd, &frq, &a)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = sym.len, k = bnd.len / 8 - 1;
    const uint8_t *s = sym.buf;
    const int64_t *bounds = bnd.buf;
    const uint16_t *freq = frq.buf;
    uint32_t *cum = NULL;
    uint8_t *out = NULL;
    if (a < 1 || a > 256 || k < 0 || frq.len != (Py_ssize_t)(k * a * 2) || check_bounds(bounds, k, n)) {
        PyErr_SetString(PyExc_ValueError, "rans: bad arguments");
        goto done;
    }
    cum = malloc(sizeof(uint32_t) * (size_t)(k * (a + 1) + 1));
    size_t cap = (size_t)n * 2 + 64;
    out = malloc(cap);
    if (!cum || !out) { PyErr_NoMemory(); goto done; }
    if (build_cum(freq, k, a, cum)) { PyErr_SetString(PyExc_ValueError, "rans: a frequency row does not sum to 4096"); goto done; }
    int bad = 0;
    uint8_t *end = out + cap, *ptr = end;
    Py_BEGIN_ALLOW_THREADS
    uint32_t x[NSTATE];
    for (int j = 0; j < NSTATE; j++) x[j] = RANS_L;
    Py_ssize_t r = k - 1;
    for (Py_ssize_t i = n - 1; i >= 0 && !bad; i--) {
        while (r > 0 && i < bounds[r]) r--;
        uint32_t sy = s[i];
        if (sy >= (uint32_t)a) { bad = 1; break; }
        uint32_t f = freq[r * a + sy], c = cum[r * (a + 1) + sy];
        if (!f) { bad = 1; break; }
        uint32_t *xs = &x[i & (NSTATE - 1)];
        uint32_t xv = *xs, xmax = ((RANS_L >> SCALE_BITS) << 8) * f;
        while (xv >= xmax) { *--ptr = (uint8_t)(xv & 0xff); xv >>= 8; }
        *xs = ((xv / f) << SCALE_BITS) + (xv % f) + c;
    }
    for (int j = NSTATE - 1; j >= 0; j--) {
        ptr -= 4;
        ptr[0] = (uint8_t)(x[j] >> 0); ptr[1] = (uint8_t)(x[j] >> 8);
        ptr[2] = (uint8_t)(x[j] >> 16); ptr[3] = (uint8_t)(x[j] >> 24);
    }
    Py_END_ALLOW_THREADS
    if (bad) { PyErr_SetString(PyExc_ValueError, "rans: a symbol has no frequency in its context"); goto done; }
    result = PyBytes_FromStringAndSize((const char *)ptr, end - ptr);
done:
    free(cum); free(out);
    PyBuffer_Release(&sym); PyBuffer_Release(&bnd); PyBuffer_Release(&frq);
    return result;
}

/* Decoding puts each quality in its place in the record order. The symbols are decoded as
 * values, not symbol ids (one table entry per slot holds the value, the frequency and the
 * start of the symbol's range, so a step is one load), context after context, and then moved
 * to their records: for fixed-length reads by blocks of records, so that what is read and
 * what is written stay in the L1 cache.
 *   fixed-length reads (L bases each): the context ids `used` are cycle * 2 + read2; group g
 *     lists the records of read2 == g in stored order, each as rec * L * 2 + reversed, and the
 *     cycle c of record rec lands at rec * L + (reversed ? L - 1 - c : c);
 *   otherwise `dst` gives every grouped symbol's place. */
#define STEP(X, OUT)                                                               \
    do {                                                                           \
        uint32_t m_ = (X) & (M - 1), e_ = tab[m_];                                 \
        (OUT) = (uint8_t)(e_ >> 24);                                               \
        (X) = ((e_ & 0xFFFu) + 1) * ((X) >> SCALE_BITS) + m_ - ((e_ >> 12) & 0xFFFu); \
        while ((X) < RANS_L) {                                                     \
            if (ptr >= end) { bad = 1; break; }                                    \
            (X) = ((X) << 8) | *ptr++;                                             \
        }                                                                          \
    } while (0)

/* Four steps, one per state, for the body of the stream (at least 8 bytes left). A valid state
 * is >= RANS_L before a step and >= 2^11 after it, so it takes n = (x < 2^23) + (x < 2^15)
 * bytes: the four states step in parallel, their bytes' places follow by a prefix sum of the
 * four n, and each takes its bytes without a branch. A state still below RANS_L cannot come
 * from the encoder. */
#define DEC(X, OUT)                                                                \
    do {                                                                           \
        uint32_t m_ = (X) & (M - 1), e_ = tab[m_];                                 \
        (OUT) = (uint8_t)(e_ >> 24);                                               \
        (X) = ((e_ & 0xFFFu) + 1) * ((X) >> SCALE_BITS) + m_ - ((e_ >> 12) & 0xFFFu); \
    } while (0)
#define TAKE(X, N, P)                                                              \
    do {                                                                           \
        uint32_t w_ = ((uint32_t)(P)[0] << 8) | (P)[1];                            \
        (X) = ((X) << (8 * (N))) | (w_ >> (16 - 8 * (N)));                         \
    } while (0)

static PyObject *rans_decode(PyObject *self, PyObject *args) {
    Py_buffer dat, bnd, frq, val, usd, g0, g1, dst;
    Py_ssize_t n, len;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*ny*y*y*n", &dat, &bnd, &frq, &val, &usd, &len, &g0, &g1, &dst, &n))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t k = bnd.len / 8 - 1, a = val.len;
    const int64_t *bounds = bnd.buf;
    const uint16_t *freq = frq.buf, *used = usd.buf;
    const uint8_t *vals = val.buf;
    const int64_t *grp[2] = {g0.buf, g1.buf}, *dest = dst.buf;
    Py_ssize_t ng[2] = {g0.len / 8, g1.len / 8};
    int fixed = len > 0;
    uint32_t *cum = NULL, *tab = NULL;
    uint8_t *grouped = NULL;
    int64_t *rowstart = NULL;
    if (a < 1 || a > 256 || k < 0 || n < 0 || frq.len != (Py_ssize_t)(k * a * 2) || check_bounds(bounds, k, n)
        || (fixed ? usd.len != k * 2 : dst.len != n * 8)) {
        PyErr_SetString(PyExc_ValueError, "rans: bad arguments");
        goto done;
    }
    if (fixed) {  /* every (cycle, group) of a group that has records: exactly once, at its size */
        rowstart = malloc(sizeof(int64_t) * 2 * (size_t)len);
        if (!rowstart) { PyErr_NoMemory(); goto done; }
        for (Py_ssize_t j = 0; j < 2 * len; j++) rowstart[j] = -1;
        int ok = 1;
        for (Py_ssize_t r = 0; r < k && ok; r++) {
            Py_ssize_t size = bounds[r + 1] - bounds[r], id = used[r];
            if ((id >> 1) >= len || ng[id & 1] != size || rowstart[id] >= 0) ok = 0;
            else rowstart[id] = bounds[r];
        }
        for (Py_ssize_t j = 0; j < 2 * len && ok; j++)
            if (rowstart[j] < 0 && ng[j & 1] > 0) ok = 0;
        if (!ok) { PyErr_SetString(PyExc_ValueError, "rans: the contexts do not match the records"); goto done; }
    }
    cum = malloc(sizeof(uint32_t) * (size_t)(k * (a + 1) + 1));
    tab = malloc(sizeof(uint32_t) * M);
    grouped = malloc((size_t)n + 1);
    result = PyBytes_FromStringAndSize(NULL, n);
    if (!cum || !tab || !grouped || !result) { Py_CLEAR(result); if (!PyErr_Occurred()) PyErr_NoMemory(); goto done; }
    if (build_cum(freq, k, a, cum)) {
        Py_CLEAR(result);
        PyErr_SetString(PyExc_ValueError, "rans: a frequency row does not sum to 4096");
        goto done;
    }
    uint8_t *o = (uint8_t *)PyBytes_AS_STRING(result);
    const uint8_t *ptr = dat.buf, *end = ptr + dat.len;
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS
    uint32_t x[NSTATE];
    if (end - ptr < 4 * NSTATE) bad = 1;
    for (int j = 0; j < NSTATE && !bad; j++) {
        x[j] = (uint32_t)ptr[0] | ((uint32_t)ptr[1] << 8) | ((uint32_t)ptr[2] << 16) | ((uint32_t)ptr[3] << 24);
        ptr += 4;
    }
    for (Py_ssize_t r = 0; r < k && !bad; r++) {
        const uint16_t *f = freq + r * a;
        const uint32_t *c = cum + r * (a + 1);
        for (Py_ssize_t sy = 0; sy < a; sy++) {
            uint32_t entry = ((uint32_t)vals[sy] << 24) | (c[sy] << 12) | (uint32_t)(f[sy] - 1), *p = tab + c[sy];
            for (uint32_t m = 0; m < f[sy]; m++) p[m] = entry;
        }
        Py_ssize_t i = bounds[r], e = bounds[r + 1];
        uint8_t *t = grouped;
        for (; i < e && (i & (NSTATE - 1)) && !bad; i++) STEP(x[i & (NSTATE - 1)], t[i]);
        uint32_t x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3];
        for (; i + NSTATE <= e && !bad && end - ptr >= 2 * NSTATE; i += NSTATE) {
            DEC(x0, t[i]);
            DEC(x1, t[i + 1]);
            DEC(x2, t[i + 2]);
            DEC(x3, t[i + 3]);
            uint32_t n0 = (x0 < RANS_L) + (x0 < (RANS_L >> 8)), n1 = (x1 < RANS_L) + (x1 < (RANS_L >> 8));
            uint32_t n2 = (x2 < RANS_L) + (x2 < (RANS_L >> 8)), n3 = (x3 < RANS_L) + (x3 < (RANS_L >> 8));
            const uint8_t *p1 = ptr + n0, *p2 = p1 + n1, *p3 = p2 + n2;
            TAKE(x0, n0, ptr);
            TAKE(x1, n1, p1);
            TAKE(x2, n2, p2);
            TAKE(x3, n3, p3);
            ptr = p3 + n3;
            bad |= ((x0 < RANS_L) | (x1 < RANS_L) | (x2 < RANS_L) | (x3 < RANS_L)) << 1;
        }
        for (; i + NSTATE <= e && !bad; i += NSTATE) {
            STEP(x0, t[i]);
            STEP(x1, t[i + 1]);
            STEP(x2, t[i + 2]);
            STEP(x3, t[i + 3]);
        }
        x[0] = x0; x[1] = x1; x[2] = x2; x[3] = x3;
        for (; i < e && !bad; i++) STEP(x[i & (NSTATE - 1)], t[i]);
    }
    if (!bad && fixed) {
        for (int gi = 0; gi < 2; gi++) {
            /* record by record, its bases in order: the writes are sequential and the reads, one
             * per row of the group's cycles, stay in the rows' cache lines for 64 records */
            const int64_t *g = grp[gi];
            for (Py_ssize_t j = 0; j < ng[gi]; j++) {
                uint8_t *dst = o + (g[j] >> 1);
                const uint8_t *src = grouped + j;
                const int64_t *rs = rowstart + gi;
                if (g[j] & 1)
                    for (Py_ssize_t cy = 0; cy < len; cy++) dst[len - 1 - cy] = src[rs[2 * cy]];
                else
                    for (Py_ssize_t cy = 0; cy < len; cy++) dst[cy] = src[rs[2 * cy]];
            }
        }
    } else if (!bad) {
        for (Py_ssize_t i = 0; i < n; i++) o[dest[i]] = grouped[i];
    }
    /* The encoder started every state at RANS_L and consumed the whole stream. */
    for (int j = 0; j < NSTATE && !bad; j++)
        if (x[j] != RANS_L) bad = 2;
    if (!bad && ptr != end) bad = 2;
    Py_END_ALLOW_THREADS
    if (bad) {
        Py_CLEAR(result);
        PyErr_SetString(PyExc_ValueError, bad == 1 ? "rans: the coded stream ends early"
                                                   : "rans: the coded stream does not decode to its end");
    }
done:
    free(cum); free(tab); free(grouped); free(rowstart);
    PyBuffer_Release(&dat); PyBuffer_Release(&bnd); PyBuffer_Release(&frq); PyBuffer_Release(&val);
    PyBuffer_Release(&usd); PyBuffer_Release(&g0); PyBuffer_Release(&g1); PyBuffer_Release(&dst);
    return result;
}

static PyMethodDef methods[] = {
    {"encode", rans_encode, METH_VARARGS, "encode(symbols, bounds_i64, freqs_u16, A) -> bytes"},
    {"decode", rans_decode, METH_VARARGS,
     "decode(data, bounds_i64, freqs_u16, values_u8, used_u16, L, group0_i64, group1_i64, dst_i64, n) -> qualities in record order"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_rans", "Static interleaved rANS (bams3 qual codec).", -1, methods};

PyMODINIT_FUNC PyInit__rans(void) { return PyModule_Create(&module); }
