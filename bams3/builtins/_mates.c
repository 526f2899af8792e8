/* The mates codec's transform: a chunk's next_pos column (stored as next_pos - pos, 4 bytes a
 * record, shuffled by byte) told from the positions of the chunk's own records.
 *
 * Most reads' mates lie a few records later in the same chunk: a read's next_pos is then the
 * position of a record d records on (1 <= d <= 255), and that record's own next_pos is usually
 * this read's position. So each record is either
 *   - pointed at by an earlier record k (the decoder knows which): one byte, 1 when its value is
 *     pos[k] - pos[i] (the common case), else 0 and its value is stored as it is;
 *   - or not: one byte d, the record this one points at (its value is pos[i + d] - pos[i]), or
 *     0 and its value is stored as it is.
 * A record is pointed at by at most one other. The encoder prefers, of the records d can name,
 * the one whose own value points back; any other choice is exact too, only larger. Arithmetic is
 * mod 2**32 (as the column's values are), so any column and any positions come back exactly.
 *
 * split(column, pos_i64) -> None (not 4 bytes a record) or (codes, oks, values): the bytes of the
 *     records that point, the bytes of the records pointed at, and the values stored as they
 *     are (4 bytes each, shuffled by byte).
 * join(column_size, pos_i64, codes, oks, values) -> the column: the inverse; ValueError when the
 *     streams do not describe a column of that size over those positions.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define REACH 255

static void unshuffle4(const uint8_t *in, Py_ssize_t m, uint32_t *x) {
    for (Py_ssize_t j = 0; j < m; j++)
        x[j] = (uint32_t)in[j] | (uint32_t)in[m + j] << 8 | (uint32_t)in[2 * m + j] << 16 | (uint32_t)in[3 * m + j] << 24;
}

static void shuffle4(const uint32_t *x, Py_ssize_t m, uint8_t *o) {
    for (Py_ssize_t j = 0; j < m; j++) {
        o[j] = x[j] & 0xff; o[m + j] = x[j] >> 8 & 0xff; o[2 * m + j] = x[j] >> 16 & 0xff; o[3 * m + j] = x[j] >> 24;
    }
}

static PyObject *m_split(PyObject *self, PyObject *args) {
    Py_buffer col, posb;
    if (!PyArg_ParseTuple(args, "y*y*", &col, &posb)) return NULL;
    Py_ssize_t n = col.len / 4;
    if (col.len % 4 || n > PY_SSIZE_T_MAX / 8 || posb.len != 8 * n || n == 0 || n > INT32_MAX) {
        PyBuffer_Release(&col); PyBuffer_Release(&posb);
        Py_RETURN_NONE;
    }
    const int64_t *pos = posb.buf;
    uint32_t *v = malloc(sizeof(uint32_t) * n), *expl = malloc(sizeof(uint32_t) * n);
    int32_t *ptr = malloc(sizeof(int32_t) * n);
    uint8_t *codes = malloc(n), *oks = malloc(n);
    PyObject *res = NULL;
    if (!v || !expl || !ptr || !codes || !oks) { PyErr_NoMemory(); goto done; }
    Py_ssize_t nc = 0, no = 0, ne = 0;
    Py_BEGIN_ALLOW_THREADS
    unshuffle4(col.buf, n, v);
    int sorted = 1;
    for (Py_ssize_t i = 1; i < n && sorted; i++) sorted = pos[i - 1] <= pos[i];
    for (Py_ssize_t i = 0; i < n; i++) ptr[i] = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t pi = (uint32_t)pos[i];
        if (ptr[i] >= 0) {
            if (v[i] == (uint32_t)pos[ptr[i]] - pi) oks[no++] = 1;
            else { oks[no++] = 0; expl[ne++] = v[i]; }
            continue;
        }
        uint32_t t = pi + v[i];
        int64_t target = (int64_t)(int32_t)t;
        Py_ssize_t best = -1, lim = i + REACH < n - 1 ? i + REACH : n - 1;
        for (Py_ssize_t j = i + 1; j <= lim; j++) {
            if (sorted && pos[j] > target) break;
            if (ptr[j] >= 0 || (uint32_t)pos[j] != t) continue;
            if (v[j] == pi - (uint32_t)pos[j]) { best = j; break; } /* its mate: it points back */
            if (best < 0) best = j;
        }
        if (best < 0) { codes[nc++] = 0; expl[ne++] = v[i]; }
        else { codes[nc++] = (uint8_t)(best - i); ptr[best] = (int32_t)i; }
    }
    Py_END_ALLOW_THREADS
    PyObject *vals = PyBytes_FromStringAndSize(NULL, 4 * ne);
    if (!vals) goto done;
    shuffle4(expl, ne, (uint8_t *)PyBytes_AS_STRING(vals));
    res = Py_BuildValue("(y#y#N)", (const char *)codes, nc, (const char *)oks, no, vals);
done:
    free(v); free(expl); free(ptr); free(codes); free(oks);
    PyBuffer_Release(&col); PyBuffer_Release(&posb);
    return res;
}

static PyObject *m_join(PyObject *self, PyObject *args) {
    Py_ssize_t size;
    Py_buffer posb, codesb, oksb, valsb;
    if (!PyArg_ParseTuple(args, "ny*y*y*y*", &size, &posb, &codesb, &oksb, &valsb)) return NULL;
    const char *err = NULL;
    Py_ssize_t n = size / 4, ne = valsb.len / 4;
    PyObject *result = NULL;
    uint32_t *v = NULL, *expl = NULL;
    int32_t *ptr = NULL;
    if (size < 4 || size % 4 || n > PY_SSIZE_T_MAX / 8 || n > INT32_MAX || posb.len != 8 * n || valsb.len % 4 ||
        codesb.len > n || oksb.len > n || ne > n)
        err = "the mates streams do not match the column";
    if (!err) {
        v = malloc(sizeof(uint32_t) * n);
        expl = malloc(sizeof(uint32_t) * (ne ? ne : 1));
        ptr = malloc(sizeof(int32_t) * n);
        result = PyBytes_FromStringAndSize(NULL, size);
        if (!v || !expl || !ptr || !result) { Py_CLEAR(result); if (!PyErr_Occurred()) PyErr_NoMemory(); goto done; }
        const int64_t *pos = posb.buf;
        const uint8_t *codes = codesb.buf, *oks = oksb.buf;
        Py_ssize_t nc = codesb.len, no = oksb.len, ic = 0, io = 0, ie = 0;
        Py_BEGIN_ALLOW_THREADS
        unshuffle4(valsb.buf, ne, expl);
        for (Py_ssize_t i = 0; i < n; i++) ptr[i] = -1;
        for (Py_ssize_t i = 0; i < n; i++) {
            uint32_t pi = (uint32_t)pos[i];
            if (ptr[i] >= 0) {
                if (io >= no) { err = "the mates streams run out"; break; }
                uint8_t ok = oks[io++];
                if (ok == 1) { v[i] = (uint32_t)pos[ptr[i]] - pi; continue; }
                if (ok != 0) { err = "a mates flag is neither 0 nor 1"; break; }
            } else {
                if (ic >= nc) { err = "the mates streams run out"; break; }
                Py_ssize_t d = codes[ic++];
                if (d) {
                    Py_ssize_t j = i + d;
                    if (j >= n || ptr[j] >= 0) { err = "a record points past the chunk or at a record already named"; break; }
                    ptr[j] = (int32_t)i;
                    v[i] = (uint32_t)pos[j] - pi;
                    continue;
                }
            }
            if (ie >= ne) { err = "the mates streams run out"; break; }
            v[i] = expl[ie++];
        }
        if (!err && (ic != nc || io != no || ie != ne)) err = "the mates streams hold more than the column";
        if (!err) shuffle4(v, n, (uint8_t *)PyBytes_AS_STRING(result));
        Py_END_ALLOW_THREADS
    }
done:
    free(v); free(expl); free(ptr);
    PyBuffer_Release(&posb); PyBuffer_Release(&codesb); PyBuffer_Release(&oksb); PyBuffer_Release(&valsb);
    if (err) { Py_CLEAR(result); PyErr_SetString(PyExc_ValueError, err); return NULL; }
    return result;
}

static PyMethodDef methods[] = {
    {"split", m_split, METH_VARARGS, "split(column, pos_i64) -> None or (codes, oks, values)"},
    {"join", m_join, METH_VARARGS, "join(column_size, pos_i64, codes, oks, values) -> the column"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_mates", "The mates codec's transform.", -1, methods};

PyMODINIT_FUNC PyInit__mates(void) { return PyModule_Create(&module); }
