/* The tags codec's transform (bams3/builtins/tags.py): a chunk's aux column, every record's
 * optional fields one after another, split by tag into streams that each hold one kind of value.
 *
 * split(data) -> None (not a well-formed field stream: the codec stores it as it is) or
 *   (tags, preds, ids, [types, ints, bytes] * T)
 *     tags   2 bytes per distinct tag, in order of first appearance (T <= 255)
 *     preds  1 byte per tag: 0, or 1 + the tag whose latest integer value its integers are
 *            stored relative to (itself: its previous value), chosen per chunk from the first
 *            fields by the bits their values would take
 *     ids    1 byte per field: its tag's index
 *     types  per tag, 1 byte per field: the type character
 *     ints   per tag, 4 bytes per c/C/s/S/i/I/f field, shuffled (every first byte, then every
 *            second ...): an integer as zigzag(value - the predictor's latest value) mod 2^32,
 *            the value sign- or zero-extended from its type; a float's bits as they are
 *     bytes  per tag: A, Z, H (with its NUL) and B (subtype, count, values) values as they are
 * join(n, tags, preds, ids, [types, ints, bytes] * T[, implied]) -> the column (exactly n bytes),
 *   or raises. implied (T bytes): 1 for a tag whose types stream is empty, each field's type
 *   being the one its integer value implies (implied_type, below).
 * implicit_types(data) -> T bytes (or None, as split): 1 for a tag whose every field is an
 *   integer of the type its value implies, as SAM text's "i" becomes in htslib (and so in
 *   samtools and minimap2's BAMs): C, S or I for a value >= 0, else c, s or i, the smallest
 *   that holds it.
 * All release the GIL. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TAGS 255
#define COST_FIELDS 8192 /* the fields the predictor choice looks at */
#define COST_TAGS 32      /* candidates: the first this many tags */

static int int_width(uint8_t t) {
    switch (t) {
    case 'c': case 'C': return 1;
    case 's': case 'S': return 2;
    case 'i': case 'I': return 4;
    default: return 0;
    }
}

/* The type of an integer value held as x (its 32 bits, as read_int gives them): the smallest
 * of C, S, I (x as int32 >= 0) or of c, s, i (< 0). A value of I above INT32_MAX implies i. */
static uint8_t implied_type(uint32_t x) {
    int32_t v = (int32_t)x;
    if (v >= 0) return v <= 255 ? 'C' : v <= 65535 ? 'S' : 'I';
    return v >= -128 ? 'c' : v >= -32768 ? 's' : 'i';
}

static int array_width(uint8_t t) { return t == 'f' ? 4 : int_width(t); }

static uint32_t read_int(const uint8_t *p, uint8_t t) {
    switch (t) {
    case 'c': return (uint32_t)(int32_t)(int8_t)p[0];
    case 'C': return p[0];
    case 's': return (uint32_t)(int32_t)(int16_t)(p[0] | p[1] << 8);
    case 'S': return (uint32_t)(p[0] | p[1] << 8);
    default: return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    }
}

static uint32_t zigzag(uint32_t d) { return (d << 1) ^ (uint32_t)(-(int32_t)(d >> 31)); }
static uint32_t unzigzag(uint32_t z) { return (z >> 1) ^ (uint32_t)(-(int32_t)(z & 1)); }

static int bitlen(uint32_t v) { return v ? 32 - __builtin_clz(v) : 0; }

/* One field at p (of n): its value's size (after the 3-byte tag and type) or -1. */
static Py_ssize_t value_size(const uint8_t *d, Py_ssize_t p, Py_ssize_t n) {
    if (p + 3 > n) return -1;
    uint8_t t = d[p + 2];
    Py_ssize_t v = p + 3, rest = n - v;
    int w = int_width(t);
    if (w) return w <= rest ? w : -1;
    switch (t) {
    case 'f': return rest >= 4 ? 4 : -1;
    case 'A': return rest >= 1 ? 1 : -1;
    case 'Z': case 'H': {
        const uint8_t *z = memchr(d + v, 0, rest);
        return z ? (z - (d + v)) + 1 : -1;
    }
    case 'B': {
        if (rest < 5) return -1;
        int aw = array_width(d[v]);
        if (!aw) return -1;
        uint64_t count = (uint64_t)d[v + 1] | (uint64_t)d[v + 2] << 8 | (uint64_t)d[v + 3] << 16 |
                         (uint64_t)d[v + 4] << 24;
        uint64_t size = 5 + count * (uint64_t)aw;
        return size <= (uint64_t)rest ? (Py_ssize_t)size : -1;
    }
    default: return -1;
    }
}

static int is_number(uint8_t t) { return int_width(t) || t == 'f'; }

typedef struct {
    uint8_t *types, *bytes;
    uint32_t *ints;
    Py_ssize_t n_types, n_ints, n_bytes; /* sizes (pass 1), then where pass 3 writes */
    Py_ssize_t cap_types, cap_ints, cap_bytes; /* the sizes pass 1 found */
    uint32_t last;
    int pred; /* -1: none */
} Stream;

static PyObject *new_bytes(Py_ssize_t n, uint8_t **buf) {
    PyObject *b = PyBytes_FromStringAndSize(NULL, n);
    if (b) *buf = (uint8_t *)PyBytes_AS_STRING(b);
    return b;
}

static PyObject *t_split(PyObject *self, PyObject *args) {
    Py_buffer in;
    if (!PyArg_ParseTuple(args, "y*", &in)) return NULL;
    const uint8_t *d = in.buf;
    Py_ssize_t n = in.len, n_fields = 0, n_ints = 0;
    int16_t *index = malloc(sizeof(int16_t) * 65536);
    Stream *st = calloc(MAX_TAGS, sizeof(Stream));
    uint64_t *cost = calloc((size_t)MAX_TAGS * (COST_TAGS + 1), sizeof(uint64_t));
    uint8_t tags[2 * MAX_TAGS], preds[MAX_TAGS], has_int[MAX_TAGS];
    uint32_t *ints = NULL;
    int nt = 0, ok = 1;
    if (!index || !st || !cost) {
        free(index); free(st); free(cost);
        PyBuffer_Release(&in);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    memset(index, 0xff, sizeof(int16_t) * 65536);
    memset(has_int, 0, sizeof has_int); memset(preds, 0, sizeof preds);
    /* pass 1: the tags, and every stream's size */
    for (Py_ssize_t p = 0; p < n;) {
        Py_ssize_t s = value_size(d, p, n);
        if (s < 0) { ok = 0; break; }
        int key = d[p] | d[p + 1] << 8, k = index[key];
        if (k < 0) {
            if (nt == MAX_TAGS) { ok = 0; break; }
            k = index[key] = nt;
            tags[2 * nt] = d[p]; tags[2 * nt + 1] = d[p + 1];
            nt++;
        }
        uint8_t t = d[p + 2];
        st[k].n_types++;
        if (is_number(t)) { st[k].n_ints++; has_int[k] |= int_width(t) != 0; }
        else st[k].n_bytes += s;
        n_fields++;
        p += 3 + s;
    }
    /* pass 2: each integer tag's predictor, by the bits its first values would take */
    if (ok) {
        int nc = nt < COST_TAGS ? nt : COST_TAGS;
        uint32_t last[MAX_TAGS];
        memset(last, 0, sizeof last);
        Py_ssize_t f = 0;
        for (Py_ssize_t p = 0; p < n && f < COST_FIELDS; f++) {
            Py_ssize_t s = value_size(d, p, n);
            int k = index[d[p] | d[p + 1] << 8];
            uint8_t t = d[p + 2];
            if (int_width(t)) {
                uint32_t v = read_int(d + p + 3, t);
                uint64_t *row = cost + (size_t)k * (COST_TAGS + 1);
                row[0] += bitlen(zigzag(v));
                for (int c = 0; c < nc; c++) row[c + 1] += bitlen(zigzag(v - last[c]));
                last[k] = v;
            }
            p += 3 + s;
        }
        for (int k = 0; k < nt; k++) {
            st[k].pred = -1;
            n_ints += st[k].n_ints;
            if (!has_int[k]) continue;
            uint64_t *row = cost + (size_t)k * (COST_TAGS + 1), best = row[0];
            for (int c = 0; c < nc; c++)
                if (has_int[c] && row[c + 1] < best) { best = row[c + 1]; st[k].pred = c; }
            preds[k] = (uint8_t)(st[k].pred + 1);
        }
        ints = malloc(sizeof(uint32_t) * (n_ints ? n_ints : 1));
    }
    Py_END_ALLOW_THREADS
    free(cost);
    PyObject *res = NULL, *streams = NULL, *ids_obj = NULL;
    uint8_t *ids = NULL;
    if (!ok) { Py_INCREF(Py_None); res = Py_None; goto done; }
    if (!ints) { PyErr_NoMemory(); goto done; }
    /* the output objects, written in place */
    if (!(streams = PyList_New(3 * nt)) || !(ids_obj = new_bytes(n_fields, &ids))) goto done;
    Py_ssize_t at = 0;
    for (int k = 0; k < nt; k++) {
        uint8_t *ib;
        PyObject *a = new_bytes(st[k].n_types, &st[k].types), *b = new_bytes(4 * st[k].n_ints, &ib),
                 *c = new_bytes(st[k].n_bytes, &st[k].bytes);
        if (a) PyList_SET_ITEM(streams, 3 * k, a);
        if (b) PyList_SET_ITEM(streams, 3 * k + 1, b);
        if (c) PyList_SET_ITEM(streams, 3 * k + 2, c);
        if (!a || !b || !c) goto done;
        st[k].ints = ints + at;
        at += st[k].n_ints;
        st[k].cap_types = st[k].n_types; st[k].cap_ints = st[k].n_ints; st[k].cap_bytes = st[k].n_bytes;
        st[k].n_types = st[k].n_ints = st[k].n_bytes = 0;
    }
    Py_ssize_t f = 0;
    Py_BEGIN_ALLOW_THREADS
    /* pass 3: the streams (bounded by pass 1's sizes, should the buffer change under us) */
    for (Py_ssize_t p = 0; p < n;) {
        Py_ssize_t s = value_size(d, p, n);
        int ki = s < 0 ? -1 : index[d[p] | d[p + 1] << 8];
        if (ki < 0 || f >= n_fields) { ok = 0; break; }
        uint8_t t = d[p + 2];
        Stream *k = st + ki;
        const uint8_t *v = d + p + 3;
        int w = int_width(t);
        if (k->n_types >= k->cap_types || (is_number(t) ? k->n_ints >= k->cap_ints : k->n_bytes + s > k->cap_bytes)) {
            ok = 0;
            break;
        }
        ids[f++] = (uint8_t)ki;
        k->types[k->n_types++] = t;
        if (w) {
            uint32_t value = read_int(v, t);
            k->ints[k->n_ints++] = zigzag(value - (k->pred >= 0 ? st[k->pred].last : 0));
            k->last = value;
        } else if (t == 'f') {
            k->ints[k->n_ints++] = read_int(v, 'I');
        } else {
            memcpy(k->bytes + k->n_bytes, v, s);
            k->n_bytes += s;
        }
        p += 3 + s;
    }
    Py_END_ALLOW_THREADS
    if (!ok || f != n_fields) {
        PyErr_SetString(PyExc_ValueError, "the aux column changed while it was split");
        goto done;
    }
    for (int k = 0; k < nt; k++) { /* the numbers, shuffled */
        uint8_t *o = (uint8_t *)PyBytes_AS_STRING(PyList_GET_ITEM(streams, 3 * k + 1));
        const uint32_t *x = st[k].ints;
        Py_ssize_t m = st[k].n_ints;
        for (Py_ssize_t j = 0; j < m; j++) {
            o[j] = x[j] & 0xff; o[m + j] = x[j] >> 8 & 0xff; o[2 * m + j] = x[j] >> 16 & 0xff; o[3 * m + j] = x[j] >> 24;
        }
    }
    res = Py_BuildValue("(y#y#OO)", (const char *)tags, (Py_ssize_t)(2 * nt), (const char *)preds, (Py_ssize_t)nt,
                        ids_obj, streams);
done:
    Py_XDECREF(streams); Py_XDECREF(ids_obj);
    free(index); free(st); free(ints);
    PyBuffer_Release(&in);
    return res;
}

/* join(n, tags, preds, ids, streams) -> bytes: the inverse of split, exactly n bytes. */
typedef struct {
    const uint8_t *types, *bytes;
    const uint32_t *ints; /* unshuffled */
    Py_ssize_t n_types, n_ints, n_bytes, at_type, at_int, at_byte;
    uint32_t last;
    int pred;
    uint8_t tag0, tag1;
} Source;

static PyObject *t_join(PyObject *self, PyObject *args) {
    Py_ssize_t n;
    Py_buffer tagsb, predsb, idsb, impb = {0};
    PyObject *streams;
    if (!PyArg_ParseTuple(args, "ny*y*y*O!|y*", &n, &tagsb, &predsb, &idsb, &PyList_Type, &streams, &impb)) return NULL;
    Py_ssize_t nt = predsb.len;
    const uint8_t *implied = impb.buf && impb.len ? impb.buf : NULL;
    Py_buffer sb[3 * MAX_TAGS];
    int got = 0;
    const char *err = NULL;
    PyObject *result = NULL;
    Source *src = NULL;
    uint32_t *ints = NULL;
    if (n < 0 || nt < 1 || nt > MAX_TAGS || tagsb.len != 2 * nt || PyList_GET_SIZE(streams) != 3 * nt ||
        (implied && impb.len != nt))
        err = "the tag table and the streams do not match";
    for (; !err && got < 3 * nt; got++)
        if (PyObject_GetBuffer(PyList_GET_ITEM(streams, got), &sb[got], PyBUF_SIMPLE) < 0) goto done;
    Py_ssize_t total_ints = 0;
    for (Py_ssize_t k = 0; !err && k < nt; k++) {
        if (((const uint8_t *)predsb.buf)[k] > nt || sb[3 * k + 1].len % 4) err = "a tag's predictor or integers are malformed";
        total_ints += sb[3 * k + 1].len / 4;
    }
    uint8_t *o = NULL;
    if (!err) {
        src = calloc(nt, sizeof(Source));
        ints = malloc(sizeof(uint32_t) * (total_ints ? total_ints : 1));
        result = PyBytes_FromStringAndSize(NULL, n);
        if (!src || !ints || !result) { if (!PyErr_Occurred()) PyErr_NoMemory(); Py_CLEAR(result); goto done; }
        o = (uint8_t *)PyBytes_AS_STRING(result);
    }
    Py_ssize_t w = 0;
    if (!err) {
        Py_BEGIN_ALLOW_THREADS
        const uint8_t *tags = tagsb.buf, *preds = predsb.buf, *ids = idsb.buf;
        Py_ssize_t at = 0;
        for (Py_ssize_t k = 0; k < nt; k++) { /* each tag's numbers, unshuffled */
            Source *t = src + k;
            const uint8_t *in = sb[3 * k + 1].buf;
            Py_ssize_t m = sb[3 * k + 1].len / 4;
            uint32_t *x = ints + at;
            for (Py_ssize_t j = 0; j < m; j++)
                x[j] = (uint32_t)in[j] | (uint32_t)in[m + j] << 8 | (uint32_t)in[2 * m + j] << 16 | (uint32_t)in[3 * m + j] << 24;
            t->ints = x; t->n_ints = m; at += m;
            t->types = sb[3 * k].buf; t->n_types = sb[3 * k].len;
            t->bytes = sb[3 * k + 2].buf; t->n_bytes = sb[3 * k + 2].len;
            t->pred = preds[k] - 1;
            t->tag0 = tags[2 * k]; t->tag1 = tags[2 * k + 1];
        }
        for (Py_ssize_t k = 0; k < nt && implied; k++)
            if (implied[k] > 1 || (implied[k] && src[k].n_types)) { err = "a tag's implied types are malformed"; break; }
        for (Py_ssize_t f = 0; f < idsb.len && !err; f++) {
            int k = ids[f];
            if (k >= nt) { err = "a field names a tag the table lacks"; break; }
            Source *t = src + k;
            if (implied && implied[k]) { /* an integer, of the type its value implies */
                if (t->at_int >= t->n_ints || w + 3 > n) { err = "the streams run out"; break; }
                uint32_t x = unzigzag(t->ints[t->at_int++]) + (t->pred >= 0 ? src[t->pred].last : 0);
                t->last = x;
                uint8_t ty = implied_type(x);
                int size = int_width(ty);
                if (w + 3 + size > n) { err = "the streams run out"; break; }
                o[w] = t->tag0; o[w + 1] = t->tag1; o[w + 2] = ty;
                w += 3;
                for (int b = 0; b < size; b++) o[w + b] = x >> (8 * b) & 0xff;
                w += size;
                continue;
            }
            if (t->at_type >= t->n_types || w + 3 > n) { err = "the streams run out"; break; }
            uint8_t ty = t->types[t->at_type++];
            o[w] = t->tag0; o[w + 1] = t->tag1; o[w + 2] = ty;
            w += 3;
            int iw = int_width(ty);
            if (iw || ty == 'f') {
                int size = iw ? iw : 4;
                if (t->at_int >= t->n_ints || w + size > n) { err = "the streams run out"; break; }
                uint32_t x = t->ints[t->at_int++];
                if (iw) {
                    x = unzigzag(x) + (t->pred >= 0 ? src[t->pred].last : 0);
                    t->last = x;
                }
                for (int b = 0; b < size; b++) o[w + b] = x >> (8 * b) & 0xff; /* little-endian on any host */
                w += size;
            } else {
                Py_ssize_t a = t->at_byte, nb = t->n_bytes, sz;
                const uint8_t *by = t->bytes;
                if (ty == 'A') sz = 1;
                else if (ty == 'Z' || ty == 'H') {
                    const uint8_t *z = a < nb ? memchr(by + a, 0, nb - a) : NULL;
                    sz = z ? (z - (by + a)) + 1 : -1;
                } else if (ty == 'B') {
                    int aw = a + 5 <= nb ? array_width(by[a]) : 0;
                    uint64_t count = aw ? ((uint64_t)by[a + 1] | (uint64_t)by[a + 2] << 8 | (uint64_t)by[a + 3] << 16 |
                                           (uint64_t)by[a + 4] << 24) : 0;
                    sz = aw && 5 + count * aw <= (uint64_t)(nb - a) ? (Py_ssize_t)(5 + count * aw) : -1;
                } else { err = "a field has an unknown type"; break; }
                if (sz < 0 || a + sz > nb || w + sz > n) { err = "the streams run out"; break; }
                memcpy(o + w, by + a, sz);
                t->at_byte += sz;
                w += sz;
            }
        }
        for (Py_ssize_t k = 0; !err && k < nt; k++)
            if (src[k].at_type != src[k].n_types || src[k].at_int != src[k].n_ints || src[k].at_byte != src[k].n_bytes)
                err = "a stream holds more than its fields";
        if (!err && w != n) err = "the fields do not fill the column";
        Py_END_ALLOW_THREADS
    }
done:
    for (int i = 0; i < got; i++) PyBuffer_Release(&sb[i]);
    PyBuffer_Release(&tagsb); PyBuffer_Release(&predsb); PyBuffer_Release(&idsb);
    if (impb.obj) PyBuffer_Release(&impb);
    free(src); free(ints);
    if (err) { Py_CLEAR(result); PyErr_SetString(PyExc_ValueError, err); return NULL; }
    return result;
}

static PyObject *t_implicit_types(PyObject *self, PyObject *args) {
    Py_buffer in;
    if (!PyArg_ParseTuple(args, "y*", &in)) return NULL;
    const uint8_t *d = in.buf;
    Py_ssize_t n = in.len;
    int16_t *index = malloc(sizeof(int16_t) * 65536);
    uint8_t flags[MAX_TAGS];
    int nt = 0, ok = 1;
    if (!index) { PyBuffer_Release(&in); return PyErr_NoMemory(); }
    Py_BEGIN_ALLOW_THREADS
    memset(index, 0xff, sizeof(int16_t) * 65536);
    for (Py_ssize_t p = 0; p < n;) {
        Py_ssize_t s = value_size(d, p, n);
        if (s < 0) { ok = 0; break; }
        int key = d[p] | d[p + 1] << 8, k = index[key];
        if (k < 0) {
            if (nt == MAX_TAGS) { ok = 0; break; }
            k = index[key] = nt;
            flags[nt++] = 1;
        }
        uint8_t t = d[p + 2];
        if (!int_width(t) || implied_type(read_int(d + p + 3, t)) != t) flags[k] = 0;
        p += 3 + s;
    }
    Py_END_ALLOW_THREADS
    free(index);
    PyBuffer_Release(&in);
    if (!ok) Py_RETURN_NONE;
    return PyBytes_FromStringAndSize((const char *)flags, nt);
}

static PyMethodDef methods[] = {
    {"split", t_split, METH_VARARGS, "split(aux) -> None or (tags, preds, ids, [types, ints, bytes] * T)"},
    {"join", t_join, METH_VARARGS, "join(n, tags, preds, ids, streams[, implied]) -> bytes: the inverse of split"},
    {"implicit_types", t_implicit_types, METH_VARARGS, "implicit_types(aux) -> None or T bytes: 1, a tag whose "
     "fields are integers of the types their values imply"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_tags", "The tags codec's transform.", -1, methods};

PyMODINIT_FUNC PyInit__tags(void) { return PyModule_Create(&module); }
