/* The names codec's transform: a chunk's read names (each ending in a NUL) as
 *   codes   a byte per name: d (1-255) when it is the name d names back, else 0;
 *   shapes  each other name with its numbers taken out (each a byte 0x01), ending in a NUL;
 *   numbers the numbers, u32 each, in one stream per place in the name (the first number of a
 *           name, its second, ..., the 16th and later all in the last), shuffled by byte.
 * A number is a run of up to 9 digits that does not start with 0 (or is "0"): it prints back as
 * it was. Both reads of a pair carry one name, a few records apart; the rest of a name (an
 * instrument, a run, a tile) repeats, and its numbers code better as numbers than as text.
 *
 * With the records' positions and next_pos (the paired form), a record whose mate the positions
 * name (predict(), below) takes instead one byte of
 *   oks     1 when its name is its mate's, else 0 (and then a code, as above).
 * The second read of a pair then costs nothing: which record its mate is, the mates codec has
 * already said with next_pos.
 *
 * split(column) -> None (not names ending in a NUL, or a name holding 0x01) or
 *     (codes, shapes, [numbers] * 16)
 * join(column_size, codes, shapes, numbers) -> the column: the inverse; ValueError when the
 *     streams do not make exactly that many bytes of names.
 * split_paired(column, pos_i64, next_pos_i64) -> None (as split, or not a name per record) or
 *     (codes, oks, shapes, [numbers] * 16)
 * join_paired(column_size, pos_i64, next_pos_i64, codes, oks, shapes, numbers) -> the column
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define REACH 255
#define PLACES 16
#define MARK 1

static uint64_t hash(const uint8_t *s, Py_ssize_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (Py_ssize_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ULL;
    return h;
}

/* Each record's predicted mate (-1: none), from positions alone: the earliest of the records at
 * most REACH before it, not yet anyone's mate nor a mate themselves, whose position is this
 * record's next_pos and whose next_pos is this record's position (mod 2^32). In a chunk sorted
 * by position (within int32) those are the run of records placed at the next_pos, found by
 * bisection. */
static void predict(const int64_t *pos, const int64_t *npos, Py_ssize_t n, int32_t *pred, uint8_t *taken) {
    if (n <= 0) return;
    int sorted = 1;
    for (Py_ssize_t i = 0; i < n && sorted; i++)
        sorted = pos[i] >= INT32_MIN && pos[i] <= INT32_MAX && (i == 0 || pos[i - 1] <= pos[i]);
    for (Py_ssize_t i = 0; i < n; i++) taken[i] = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t p = (uint32_t)pos[i], q = (uint32_t)npos[i];
        int64_t target = (int64_t)(int32_t)q;
        Py_ssize_t lo = i > REACH ? i - REACH : 0, best = -1;
        if (sorted) { /* the first record placed at next_pos, by bisection; then that run of them */
            if (i == lo || pos[i - 1] < target || pos[lo] > target) { pred[i] = -1; continue; } /* none there */
            const int64_t *base = pos + lo; /* (branch-free: a mispredicted branch a step cost more) */
            Py_ssize_t len = i - lo;
            while (len > 1) {
                Py_ssize_t half = len / 2;
                base = base[half] < target ? base + half : base;
                len -= half;
            }
            Py_ssize_t a = (base - pos) + (*base < target);
            for (Py_ssize_t j = a; j < i && pos[j] == target; j++)
                if (!taken[j] && (uint32_t)npos[j] == p) { best = j; break; }
        } else {
            for (Py_ssize_t j = i - 1; j >= lo; j--)
                if (!taken[j] && (uint32_t)pos[j] == q && (uint32_t)npos[j] == p) best = j;
        }
        pred[i] = (int32_t)best;
        if (best >= 0) taken[best] = taken[i] = 1;
    }
}

static int is_number(const uint8_t *s, Py_ssize_t n) { return n <= 9 && (n == 1 || s[0] != '0'); }

static PyObject *shuffled(const uint32_t *x, Py_ssize_t m) {
    PyObject *b = PyBytes_FromStringAndSize(NULL, 4 * m);
    if (!b) return NULL;
    uint8_t *o = (uint8_t *)PyBytes_AS_STRING(b);
    for (Py_ssize_t j = 0; j < m; j++) {
        o[j] = x[j] & 0xff; o[m + j] = x[j] >> 8 & 0xff; o[2 * m + j] = x[j] >> 16 & 0xff; o[3 * m + j] = x[j] >> 24;
    }
    return b;
}

/* split or split_paired (posb, nposb non-NULL) */
static PyObject *split_impl(Py_buffer *posb, Py_buffer *nposb, Py_buffer *inb) {
    Py_buffer in = *inb;
    const uint8_t *d = in.buf;
    Py_ssize_t len = in.len, n = 0;
    PyObject *res = NULL, *list = NULL;
    Py_ssize_t *start = NULL, *table = NULL;
    uint8_t *codes = NULL, *shapes = NULL;
    uint32_t *all = NULL; /* every number, in order, and its place */
    uint8_t *places = NULL, *oks = NULL, *taken = NULL;
    int32_t *pred = NULL;
    Py_ssize_t n_nums[PLACES] = {0}, n_all = 0, n_shapes = 0, n_codes = 0, n_oks = 0;
    int ok = len > 0 && d[len - 1] == 0 && !memchr(d, MARK, len);
    if (!ok) goto none;
    for (Py_ssize_t i = 0; i < len; i++) n += d[i] == 0;
    if (posb && (posb->len != 8 * n || nposb->len != 8 * n || n > INT32_MAX)) goto none;
    if (posb) {
        pred = malloc(sizeof(int32_t) * n);
        taken = malloc(n);
        oks = malloc(n);
        if (!pred || !taken || !oks) { PyErr_NoMemory(); goto done; }
    }
    Py_ssize_t size = 1;
    while (size < 2 * n) size <<= 1;
    start = malloc(sizeof(Py_ssize_t) * (n + 1));
    table = malloc(sizeof(Py_ssize_t) * size);
    codes = malloc(n);
    shapes = malloc(len);
    all = malloc(sizeof(uint32_t) * (len / 2 + 1)); /* a number takes a byte and the next is not one */
    places = malloc(len / 2 + 1);
    if (!start || !table || !codes || !shapes || !all || !places) { PyErr_NoMemory(); goto done; }
    Py_BEGIN_ALLOW_THREADS
    if (pred) predict(posb->buf, nposb->buf, n, pred, taken);
    start[0] = 0;
    for (Py_ssize_t k = 0, p = 0; p < len; p++)
        if (d[p] == 0) start[++k] = p + 1;
    for (Py_ssize_t s = 0; s < size; s++) table[s] = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint8_t *s = d + start[i];
        Py_ssize_t m = start[i + 1] - start[i] - 1; /* without its NUL */
        uint64_t h = hash(s, m);
        Py_ssize_t slot = (Py_ssize_t)(h & (uint64_t)(size - 1)), found = -1;
        int probes = 0;
        while (table[slot] >= 0 && probes++ < 64) { /* (names made to collide: stored as text) */
            Py_ssize_t j = table[slot];
            if (start[j + 1] - start[j] - 1 == m && !memcmp(d + start[j], s, m)) { found = j; break; }
            slot = (slot + 1) & (size - 1);
        }
        if (found >= 0 || table[slot] < 0) table[slot] = i; /* the latest record of this name */
        if (pred && pred[i] >= 0) {
            Py_ssize_t k = pred[i];
            int same = start[k + 1] - start[k] - 1 == m && !memcmp(d + start[k], s, m);
            oks[n_oks++] = (uint8_t)same;
            if (same) continue;
        }
        if (found >= 0 && i - found <= REACH) { codes[n_codes++] = (uint8_t)(i - found); continue; }
        codes[n_codes++] = 0;
        int place = 0;
        for (Py_ssize_t a = 0; a < m;) {
            Py_ssize_t b = a;
            if (s[a] >= '0' && s[a] <= '9') {
                while (b < m && s[b] >= '0' && s[b] <= '9') b++;
                if (is_number(s + a, b - a)) {
                    uint32_t v = 0;
                    for (Py_ssize_t c = a; c < b; c++) v = v * 10 + (s[c] - '0');
                    int k = place < PLACES - 1 ? place : PLACES - 1;
                    all[n_all] = v;
                    places[n_all++] = (uint8_t)k;
                    n_nums[k]++;
                    place++;
                    shapes[n_shapes++] = MARK;
                    a = b;
                    continue;
                }
            } else {
                while (b < m && !(s[b] >= '0' && s[b] <= '9')) b++;
            }
            memcpy(shapes + n_shapes, s + a, b - a);
            n_shapes += b - a;
            a = b;
        }
        shapes[n_shapes++] = 0;
    }
    Py_END_ALLOW_THREADS
    if (!(list = PyList_New(PLACES))) goto done;
    for (int k = 0; k < PLACES; k++) { /* each place's numbers, in order, then shuffled */
        uint32_t *x = malloc(sizeof(uint32_t) * (n_nums[k] ? n_nums[k] : 1));
        if (!x) { PyErr_NoMemory(); goto done; }
        Py_ssize_t m = 0;
        for (Py_ssize_t j = 0; j < n_all; j++)
            if (places[j] == k) x[m++] = all[j];
        PyObject *b = shuffled(x, m);
        free(x);
        if (!b) goto done;
        PyList_SET_ITEM(list, k, b);
    }
    if (pred)
        res = Py_BuildValue("(y#y#y#O)", (const char *)codes, n_codes, (const char *)oks, n_oks, (const char *)shapes,
                            n_shapes, list);
    else
        res = Py_BuildValue("(y#y#O)", (const char *)codes, n_codes, (const char *)shapes, n_shapes, list);
    goto done;
none:
    Py_INCREF(Py_None);
    res = Py_None;
done:
    Py_XDECREF(list);
    free(start); free(table); free(codes); free(shapes); free(all); free(places); free(pred); free(taken); free(oks);
    return res;
}

static PyObject *n_split(PyObject *self, PyObject *args) {
    Py_buffer in;
    if (!PyArg_ParseTuple(args, "y*", &in)) return NULL;
    PyObject *res = split_impl(NULL, NULL, &in);
    PyBuffer_Release(&in);
    return res;
}

static PyObject *n_split_paired(PyObject *self, PyObject *args) {
    Py_buffer in, posb, nposb;
    if (!PyArg_ParseTuple(args, "y*y*y*", &in, &posb, &nposb)) return NULL;
    PyObject *res = split_impl(&posb, &nposb, &in);
    PyBuffer_Release(&in); PyBuffer_Release(&posb); PyBuffer_Release(&nposb);
    return res;
}

/* join, or join_paired (posb non-NULL: n records, n = posb->len / 8) */
static PyObject *join_impl(Py_ssize_t size, Py_buffer *posb, Py_buffer *nposb, Py_buffer *codesb_, Py_buffer *oksb,
                           Py_buffer *shapesb_, PyObject *streams) {
    Py_buffer codesb = *codesb_, shapesb = *shapesb_;
    Py_buffer nb[PLACES];
    int got = 0;
    const char *err = NULL;
    PyObject *result = NULL;
    uint32_t *nums[PLACES] = {0};
    Py_ssize_t n_nums[PLACES] = {0}, at_num[PLACES] = {0}, *start = NULL;
    Py_ssize_t n = posb ? posb->len / 8 : codesb.len;
    int32_t *pred = NULL;
    uint8_t *taken = NULL;
    if (size < 1 || n < 1 || n > size || PyList_GET_SIZE(streams) != PLACES ||
        (posb && (posb->len % 8 || nposb->len != posb->len || codesb.len > n || oksb->len > n || n > INT32_MAX)))
        err = "the names streams do not match the column";
    for (; !err && got < PLACES; got++)
        if (PyObject_GetBuffer(PyList_GET_ITEM(streams, got), &nb[got], PyBUF_SIMPLE) < 0) goto done;
    for (int k = 0; !err && k < PLACES; k++) {
        if (nb[k].len % 4 || nb[k].len / 4 > size) { err = "the names streams do not match the column"; break; }
        n_nums[k] = nb[k].len / 4;
        if (!(nums[k] = malloc(sizeof(uint32_t) * (n_nums[k] ? n_nums[k] : 1)))) { PyErr_NoMemory(); goto done; }
    }
    if (!err) {
        start = malloc(sizeof(Py_ssize_t) * (n + 1));
        result = PyBytes_FromStringAndSize(NULL, size);
        if (posb) { pred = malloc(sizeof(int32_t) * n); taken = malloc(n); }
        if (!start || !result || (posb && (!pred || !taken))) { Py_CLEAR(result); if (!PyErr_Occurred()) PyErr_NoMemory(); goto done; }
        uint8_t *o = (uint8_t *)PyBytes_AS_STRING(result);
        const uint8_t *codes = codesb.buf, *sh = shapesb.buf, *oks = posb ? oksb->buf : NULL;
        Py_ssize_t w = 0, at = 0, n_sh = shapesb.len, ic = 0, io = 0, nc = codesb.len, no = posb ? oksb->len : 0;
        Py_BEGIN_ALLOW_THREADS
        if (posb) predict(posb->buf, nposb->buf, n, pred, taken);
        for (int k = 0; k < PLACES; k++) {
            const uint8_t *in = nb[k].buf;
            Py_ssize_t m = n_nums[k];
            for (Py_ssize_t j = 0; j < m; j++)
                nums[k][j] = (uint32_t)in[j] | (uint32_t)in[m + j] << 8 | (uint32_t)in[2 * m + j] << 16 |
                             (uint32_t)in[3 * m + j] << 24;
        }
        for (Py_ssize_t i = 0; i < n && !err; i++) {
            start[i] = w;
            if (pred && pred[i] >= 0) {
                if (io >= no) { err = "the names streams run out"; break; }
                uint8_t same = oks[io++];
                if (same > 1) { err = "a names flag is neither 0 nor 1"; break; }
                if (same) {
                    Py_ssize_t j = pred[i], m = start[j + 1] - start[j];
                    if (w + m > size) { err = "the names are longer than the column"; break; }
                    memcpy(o + w, o + start[j], m);
                    w += m;
                    continue;
                }
            }
            if (ic >= nc) { err = "the names streams run out"; break; }
            uint8_t code = codes[ic++];
            if (code) {
                if (code > i) { err = "a name repeats one before the chunk"; break; }
                Py_ssize_t j = i - code, m = start[j + 1] - start[j];
                if (w + m > size) { err = "the names are longer than the column"; break; }
                memcpy(o + w, o + start[j], m);
                w += m;
                continue;
            }
            int place = 0;
            for (;;) {
                if (at >= n_sh) { err = "the names streams run out"; break; }
                uint8_t c = sh[at++];
                if (c == MARK) {
                    int k = place < PLACES - 1 ? place : PLACES - 1;
                    place++;
                    if (at_num[k] >= n_nums[k]) { err = "the names streams run out"; break; }
                    uint32_t v = nums[k][at_num[k]++];
                    char digits[10];
                    int nd = 0;
                    do { digits[nd++] = (char)('0' + v % 10); v /= 10; } while (v);
                    if (w + nd > size) { err = "the names are longer than the column"; break; }
                    while (nd) o[w++] = (uint8_t)digits[--nd];
                    continue;
                }
                if (w >= size) { err = "the names are longer than the column"; break; }
                o[w++] = c;
                if (!c) break;
            }
        }
        start[n] = w;
        if (!err && w != size) err = "the names do not fill the column";
        if (!err && (at != n_sh || ic != nc || io != no)) err = "the names streams hold more than the column";
        for (int k = 0; !err && k < PLACES; k++)
            if (at_num[k] != n_nums[k]) err = "the names streams hold more than the column";
        Py_END_ALLOW_THREADS
    }
done:
    for (int i = 0; i < got; i++) PyBuffer_Release(&nb[i]);
    for (int k = 0; k < PLACES; k++) free(nums[k]);
    free(start); free(pred); free(taken);
    if (err) { Py_CLEAR(result); PyErr_SetString(PyExc_ValueError, err); return NULL; }
    if (PyErr_Occurred()) { Py_CLEAR(result); return NULL; }
    return result;
}

static PyObject *n_join(PyObject *self, PyObject *args) {
    Py_ssize_t size;
    Py_buffer codesb, shapesb;
    PyObject *streams;
    if (!PyArg_ParseTuple(args, "ny*y*O!", &size, &codesb, &shapesb, &PyList_Type, &streams)) return NULL;
    PyObject *res = join_impl(size, NULL, NULL, &codesb, NULL, &shapesb, streams);
    PyBuffer_Release(&codesb); PyBuffer_Release(&shapesb);
    return res;
}

static PyObject *n_join_paired(PyObject *self, PyObject *args) {
    Py_ssize_t size;
    Py_buffer posb, nposb, codesb, oksb, shapesb;
    PyObject *streams;
    if (!PyArg_ParseTuple(args, "ny*y*y*y*y*O!", &size, &posb, &nposb, &codesb, &oksb, &shapesb, &PyList_Type,
                          &streams))
        return NULL;
    PyObject *res = join_impl(size, &posb, &nposb, &codesb, &oksb, &shapesb, streams);
    PyBuffer_Release(&posb); PyBuffer_Release(&nposb); PyBuffer_Release(&codesb); PyBuffer_Release(&oksb);
    PyBuffer_Release(&shapesb);
    return res;
}

static PyMethodDef methods[] = {
    {"split", n_split, METH_VARARGS, "split(column) -> None or (codes, shapes, [numbers] * 16)"},
    {"join", n_join, METH_VARARGS, "join(column_size, codes, shapes, numbers) -> the column"},
    {"split_paired", n_split_paired, METH_VARARGS,
     "split_paired(column, pos_i64, next_pos_i64) -> None or (codes, oks, shapes, [numbers] * 16)"},
    {"join_paired", n_join_paired, METH_VARARGS,
     "join_paired(column_size, pos_i64, next_pos_i64, codes, oks, shapes, numbers) -> the column"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_names", "The names codec's transform.", -1, methods};

PyMODINIT_FUNC PyInit__names(void) { return PyModule_Create(&module); }
