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

static PyObject *rans_decode(PyObject *self, PyObject *args) {
    Py_buffer dat, bnd, frq;
    Py_ssize_t a, n;
    if (!PyArg_ParseTuple(args, "y*y*y*nn", &dat, &bnd, &frq, &a, &n)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t k = bnd.len / 8 - 1;
    const int64_t *bounds = bnd.buf;
    const uint16_t *freq = frq.buf;
    uint32_t *cum = NULL;
    uint8_t *lut = NULL;
    if (a < 1 || a > 256 || k < 0 || n < 0 || frq.len != (Py_ssize_t)(k * a * 2) || check_bounds(bounds, k, n)) {
        PyErr_SetString(PyExc_ValueError, "rans: bad arguments");
        goto done;
    }
    cum = malloc(sizeof(uint32_t) * (size_t)(k * (a + 1) + 1));
    lut = malloc((size_t)k * M + 1);
    result = PyBytes_FromStringAndSize(NULL, n);
    if (!cum || !lut || !result) { Py_CLEAR(result); if (!PyErr_Occurred()) PyErr_NoMemory(); goto done; }
    if (build_cum(freq, k, a, cum)) {
        Py_CLEAR(result);
        PyErr_SetString(PyExc_ValueError, "rans: a frequency row does not sum to 4096");
        goto done;
    }
    uint8_t *o = (uint8_t *)PyBytes_AS_STRING(result);
    const uint8_t *ptr = dat.buf, *end = ptr + dat.len;
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < k; r++)
        for (Py_ssize_t sy = 0; sy < a; sy++)
            memset(lut + r * M + cum[r * (a + 1) + sy], (int)sy, freq[r * a + sy]);
    uint32_t x[NSTATE];
    if (end - ptr < 4 * NSTATE) bad = 1;
    for (int j = 0; j < NSTATE && !bad; j++) {
        x[j] = (uint32_t)ptr[0] | ((uint32_t)ptr[1] << 8) | ((uint32_t)ptr[2] << 16) | ((uint32_t)ptr[3] << 24);
        ptr += 4;
    }
    Py_ssize_t i = 0;
    for (Py_ssize_t r = 0; r < k && !bad; r++) {
        const uint8_t *l = lut + r * M;
        const uint16_t *f = freq + r * a;
        const uint32_t *c = cum + r * (a + 1);
        for (; i < bounds[r + 1]; i++) {
            uint32_t *xs = &x[i & (NSTATE - 1)];
            uint32_t xv = *xs, m = xv & (M - 1), sy = l[m];
            o[i] = (uint8_t)sy;
            xv = f[sy] * (xv >> SCALE_BITS) + m - c[sy];
            while (xv < RANS_L) {
                if (ptr >= end) { bad = 1; break; }
                xv = (xv << 8) | *ptr++;
            }
            *xs = xv;
            if (bad) break;
        }
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
    free(cum); free(lut);
    PyBuffer_Release(&dat); PyBuffer_Release(&bnd); PyBuffer_Release(&frq);
    return result;
}

static PyMethodDef methods[] = {
    {"encode", rans_encode, METH_VARARGS, "encode(symbols, bounds_i64, freqs_u16, A) -> bytes"},
    {"decode", rans_decode, METH_VARARGS, "decode(data, bounds_i64, freqs_u16, A, n) -> bytes of symbols"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_rans", "Static interleaved rANS (bams3 qual codec).", -1, methods};

PyMODINIT_FUNC PyInit__rans(void) { return PyModule_Create(&module); }
