/* The tags codec's transform (bams3/builtins/tags.py): a chunk's aux column, every record's
 * optional fields one after another, split by tag into streams that each hold one kind of value.
 *
 * split(data, implied=False) -> None (not a well-formed field stream: the codec stores it as it
 *   is) or (tags, preds, ids, [types, ints, bytes] * T), with implied=True also
 *   implicit_types(data), found in the same walk
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
 * join(n, tags, preds, ids, [types, ints, bytes] * T[, implied[, coded]]) -> the column (exactly
 *   n bytes), or raises. implied (T bytes): 1 for a tag whose types stream is empty, each field's
 *   type being the one its integer value implies (implied_type, below); coded (T bytes): 1 for a
 *   tag whose ints stream is code_numbers' payload.
 * code_numbers(data, preds) -> None (as split) or T items: None, or a tag's numbers range-coded
 *   in a context (form 4, below), for up to 16 of the most numerous number tags.
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
#include <math.h>

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

/* The index of the tag of the field at p, in order of first appearance (index: tag -> index,
 * -1 for none yet); a new tag takes the next, *nt grows; -1 past MAX_TAGS. */
static int tag_of(int16_t *index, const uint8_t *d, Py_ssize_t p, int *nt) {
    int key = d[p] | d[p + 1] << 8, k = index[key];
    if (k < 0) {
        if (*nt == MAX_TAGS) return -1;
        k = index[key] = (int16_t)(*nt)++;
    }
    return k;
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
    int want_implied = 0;
    if (!PyArg_ParseTuple(args, "y*|p", &in, &want_implied)) return NULL;
    const uint8_t *d = in.buf;
    Py_ssize_t n = in.len, n_fields = 0, n_ints = 0;
    Py_ssize_t max_fields = n / 4 + 1; /* a field takes at least 4 bytes */
    int16_t *index = malloc(sizeof(int16_t) * 65536);
    Stream *st = calloc(MAX_TAGS, sizeof(Stream));
    uint64_t *cost = calloc((size_t)MAX_TAGS * (COST_TAGS + 1), sizeof(uint64_t));
    uint8_t *fk = malloc(max_fields);                        /* each field's tag index (the ids) */
    uint32_t *fs = malloc(sizeof(uint32_t) * max_fields);    /* each field's value size */
    uint8_t tags[2 * MAX_TAGS], preds[MAX_TAGS], has_int[MAX_TAGS], implied[MAX_TAGS];
    uint32_t *ints = NULL;
    int nt = 0, ok = 1;
    if (!index || !st || !cost || !fk || !fs) {
        free(index); free(st); free(cost); free(fk); free(fs);
        PyBuffer_Release(&in);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    memset(index, 0xff, sizeof(int16_t) * 65536);
    memset(has_int, 0, sizeof has_int); memset(preds, 0, sizeof preds);
    /* pass 1: the tags, each field's tag and size, every stream's size, and whether each tag's
     * types are the ones its values imply (implicit_types, below) */
    for (Py_ssize_t p = 0; p < n;) {
        Py_ssize_t s = value_size(d, p, n);
        if (s < 0) { ok = 0; break; }
        int before = nt, k = tag_of(index, d, p, &nt);
        if (k < 0) { ok = 0; break; }
        if (nt > before) { tags[2 * k] = d[p]; tags[2 * k + 1] = d[p + 1]; implied[k] = 1; }
        uint8_t t = d[p + 2];
        st[k].n_types++;
        int w = int_width(t);
        if (w) {
            st[k].n_ints++;
            has_int[k] = 1;
            if (implied[k] && implied_type(read_int(d + p + 3, t)) != t) implied[k] = 0;
        } else {
            implied[k] = 0;
            if (t == 'f') st[k].n_ints++;
            else st[k].n_bytes += s;
        }
        fk[n_fields] = (uint8_t)k;
        fs[n_fields++] = (uint32_t)s;
        p += 3 + s;
    }
    /* pass 2: each integer tag's predictor, by the bits its first values would take */
    if (ok) {
        int nc = nt < COST_TAGS ? nt : COST_TAGS;
        uint32_t last[MAX_TAGS];
        memset(last, 0, sizeof last);
        Py_ssize_t p = 0;
        for (Py_ssize_t f = 0; f < n_fields && f < COST_FIELDS; f++) {
            int k = fk[f];
            uint8_t t = d[p + 2];
            if (int_width(t)) {
                uint32_t v = read_int(d + p + 3, t);
                uint64_t *row = cost + (size_t)k * (COST_TAGS + 1);
                row[0] += bitlen(zigzag(v));
                for (int c = 0; c < nc; c++) row[c + 1] += bitlen(zigzag(v - last[c]));
                last[k] = v;
            }
            p += 3 + fs[f];
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
    memcpy(ids, fk, n_fields);
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
    Py_BEGIN_ALLOW_THREADS
    /* pass 3: the streams, from pass 1's tags and sizes (bounded by its stream sizes, should the
     * buffer change under us) */
    Py_ssize_t p = 0;
    for (Py_ssize_t f = 0; f < n_fields; f++) {
        Py_ssize_t s = fs[f];
        uint8_t t = d[p + 2];
        Stream *k = st + fk[f];
        const uint8_t *v = d + p + 3;
        int w = int_width(t);
        if ((w ? w : t == 'f' ? 4 : 0) > s ||
            k->n_types >= k->cap_types || (is_number(t) ? k->n_ints >= k->cap_ints : k->n_bytes + s > k->cap_bytes)) {
            ok = 0;
            break;
        }
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
    for (int k = 0; ok && k < nt; k++)
        if (st[k].n_types != st[k].cap_types || st[k].n_ints != st[k].cap_ints || st[k].n_bytes != st[k].cap_bytes)
            ok = 0;
    if (!ok) {
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
    if (want_implied)
        res = Py_BuildValue("(y#y#OOy#)", (const char *)tags, (Py_ssize_t)(2 * nt), (const char *)preds, (Py_ssize_t)nt,
                            ids_obj, streams, (const char *)implied, (Py_ssize_t)nt);
    else
        res = Py_BuildValue("(y#y#OO)", (const char *)tags, (Py_ssize_t)(2 * nt), (const char *)preds, (Py_ssize_t)nt,
                            ids_obj, streams);
done:
    Py_XDECREF(streams); Py_XDECREF(ids_obj);
    free(index); free(st); free(ints); free(fk); free(fs);
    PyBuffer_Release(&in);
    return res;
}

/* ---------------------------------------------------------------- context-coded numbers (form 4)
 * A tag's numbers (as the numbers stream holds them: zigzagged integer residuals, float bits)
 * range-coded with adaptive frequencies, in a context: the latest integer value v of a context
 * tag (itself: its previous value; or none), as ctx = 0 for v < 0 or none, else
 * min(1 + (v >> shift), NCTX - 1). Dictionary mode (D <= 256 distinct numbers): each number is
 * its index in a table of D values, one model per context. Planes mode: a class (number >> 8
 * below 1024, else 4) in a model per context, then below 1024 the low byte in a model per
 * context and class, else the 4 bytes in a model each (no context).
 *
 * Payload: u8 mode (0 planes, 1 dictionary), u8 context (0: none, 1 + a tag index), u8 shift
 * (0-31), u32 count of numbers, [mode 1: u8 D - 1, D u32 values (ascending)], then the range
 * coder's bytes: Subbotin's carry-less range coder (32-bit low and range, renormalised a byte
 * at a time while the top byte is settled or the range is below 2^16), with models that keep
 * their symbols roughly sorted by frequency (a symbol's frequency grows by 16 each use; all are
 * halved once the total passes 2^16 - 32; a symbol passing the one before it swaps with it), as
 * in J. Bonfield's fqzcomp and htscodecs. */
#define NCTX 64
#define MAX_CODED 16 /* tags coded so in one chunk (bounds a decoder's models: ~0.4 MB each) */
#define MIN_CODED 256 /* the numbers below which a writer does not try */
#define RC_TOP (1u << 24)
#define RC_BOT (1u << 16)
#define M_STEP 16
#define M_MAX ((1u << 16) - 32)

typedef struct { uint16_t freq, sym; } SymFreq;
typedef struct { uint32_t tot; uint32_t nsym; SymFreq f[257]; } Model; /* f[0]: a sentinel */

static Model *model_new(uint32_t nsym) {
    Model *m = malloc(sizeof(Model));
    if (!m) return NULL;
    m->nsym = nsym; m->tot = nsym;
    m->f[0].freq = 0xffff; m->f[0].sym = 0;
    for (uint32_t i = 0; i < nsym; i++) { m->f[i + 1].freq = 1; m->f[i + 1].sym = (uint16_t)i; }
    return m;
}

static void model_update(Model *m, uint32_t j) {
    m->f[j].freq += M_STEP;
    m->tot += M_STEP;
    if (m->tot > M_MAX) {
        m->tot = 0;
        for (uint32_t i = 1; i <= m->nsym; i++) { m->f[i].freq -= m->f[i].freq >> 1; m->tot += m->f[i].freq; }
    }
    if (m->f[j].freq > m->f[j - 1].freq) { SymFreq t = m->f[j]; m->f[j] = m->f[j - 1]; m->f[j - 1] = t; }
}

typedef struct {
    uint32_t low, range, code;
    uint8_t *out; size_t n, cap; /* encoder */
    const uint8_t *in, *end; int over; /* decoder */
} RC;

static int rc_put(RC *rc, uint8_t b) {
    if (rc->n == rc->cap) {
        size_t cap = rc->cap ? 2 * rc->cap : 4096;
        uint8_t *o = realloc(rc->out, cap);
        if (!o) return -1;
        rc->out = o; rc->cap = cap;
    }
    rc->out[rc->n++] = b;
    return 0;
}

static int rc_encode(RC *rc, uint32_t cum, uint32_t freq, uint32_t tot) {
    rc->range /= tot;
    rc->low += cum * rc->range;
    rc->range *= freq;
    while ((rc->low ^ (rc->low + rc->range)) < RC_TOP || (rc->range < RC_BOT && ((rc->range = -rc->low & (RC_BOT - 1)), 1))) {
        if (rc_put(rc, rc->low >> 24) < 0) return -1;
        rc->low <<= 8; rc->range <<= 8;
    }
    return 0;
}

static int rc_finish(RC *rc) {
    for (int i = 0; i < 4; i++) { if (rc_put(rc, rc->low >> 24) < 0) return -1; rc->low <<= 8; }
    return 0;
}

static uint8_t rc_get(RC *rc) {
    if (rc->in < rc->end) return *rc->in++;
    rc->over = 1;
    return 0;
}

static void rc_start(RC *rc, const uint8_t *in, const uint8_t *end) {
    rc->in = in; rc->end = end; rc->over = 0; rc->low = 0; rc->range = 0xffffffffu; rc->code = 0;
    for (int i = 0; i < 4; i++) rc->code = rc->code << 8 | rc_get(rc);
}

/* -1 on an error (damaged input), else the symbol */
static int model_decode(Model *m, RC *rc) {
    rc->range /= m->tot;
    uint32_t v = (rc->code - rc->low) / rc->range;
    if (v >= m->tot) return -1;
    uint32_t acc = 0, j = 1;
    for (; j <= m->nsym; j++) {
        if (acc + m->f[j].freq > v) break;
        acc += m->f[j].freq;
    }
    if (j > m->nsym) return -1;
    rc->low += acc * rc->range;
    rc->range *= m->f[j].freq;
    while ((rc->low ^ (rc->low + rc->range)) < RC_TOP || (rc->range < RC_BOT && ((rc->range = -rc->low & (RC_BOT - 1)), 1))) {
        rc->code = rc->code << 8 | rc_get(rc);
        rc->low <<= 8; rc->range <<= 8;
    }
    int s = m->f[j].sym;
    model_update(m, j);
    return s;
}

static int model_encode(Model *m, RC *rc, uint32_t sym) {
    uint32_t acc = 0, j = 1;
    while (j <= m->nsym && m->f[j].sym != sym) acc += m->f[j++].freq;
    if (j > m->nsym) return -1;
    if (rc_encode(rc, acc, m->f[j].freq, m->tot) < 0) return -1;
    model_update(m, j);
    return 0;
}

typedef struct {
    int mode, ctag, shift, D, plain; /* plain: integers as their values (zigzagged), the predictor unused */
    uint32_t dict[256];
    uint32_t map_key[1024]; int16_t map_idx[1024]; /* the encoder's: number -> its index in dict */
    Model *cls[NCTX], *lo[NCTX * 4], *raw[4], *d[NCTX];
    RC rc;
    uint32_t count, done;
} Coder;

static void coder_free(Coder *c) {
    if (!c) return;
    for (int i = 0; i < NCTX; i++) { free(c->cls[i]); free(c->d[i]); }
    for (int i = 0; i < NCTX * 4; i++) free(c->lo[i]);
    for (int i = 0; i < 4; i++) free(c->raw[i]);
    free(c->rc.out);
}

static int ctx_of(uint32_t last, int shift) {
    int32_t v = (int32_t)last;
    if (v < 0) return 0;
    uint32_t c = 1 + ((uint32_t)v >> shift);
    return c < NCTX ? (int)c : NCTX - 1;
}

static Model *slot(Model **s, uint32_t nsym) { return *s ? *s : (*s = model_new(nsym)); }

static uint32_t slot_of(uint32_t u) { return (u * 0x9E3779B1u) >> 22; }

static void dict_map(Coder *c) {
    for (int q = 0; q < 1024; q++) c->map_idx[q] = -1;
    for (int j = 0; j < c->D; j++) {
        uint32_t q = slot_of(c->dict[j]);
        while (c->map_idx[q] >= 0) q = (q + 1) & 1023;
        c->map_key[q] = c->dict[j]; c->map_idx[q] = (int16_t)j;
    }
}

static int dict_index(const Coder *c, uint32_t u) {
    for (uint32_t q = slot_of(u);; q = (q + 1) & 1023) {
        if (c->map_idx[q] < 0) return -1;
        if (c->map_key[q] == u) return c->map_idx[q];
    }
}

static int coder_put(Coder *c, int ctx, uint32_t u) {
    Model *m;
    if (c->mode == 1) {
        int i = dict_index(c, u);
        return i < 0 || !(m = slot(&c->d[ctx], c->D)) ? -1 : model_encode(m, &c->rc, (uint32_t)i);
    }
    uint32_t cl = u < 1024 ? u >> 8 : 4;
    if (!(m = slot(&c->cls[ctx], 5)) || model_encode(m, &c->rc, cl) < 0) return -1;
    if (cl < 4) return !(m = slot(&c->lo[ctx * 4 + cl], 256)) ? -1 : model_encode(m, &c->rc, u & 255);
    for (int b = 0; b < 4; b++)
        if (!(m = slot(&c->raw[b], 256)) || model_encode(m, &c->rc, u >> (8 * b) & 255) < 0) return -1;
    return 0;
}

/* 0, or -1 (damaged input, or no memory: *nomem) */
static int coder_get(Coder *c, int ctx, uint32_t *u, int *nomem) {
    Model *m;
    int s;
    if (c->mode == 1) {
        if (!(m = slot(&c->d[ctx], c->D))) { *nomem = 1; return -1; }
        if ((s = model_decode(m, &c->rc)) < 0) return -1;
        *u = c->dict[s];
        return 0;
    }
    if (!(m = slot(&c->cls[ctx], 5))) { *nomem = 1; return -1; }
    if ((s = model_decode(m, &c->rc)) < 0) return -1;
    if (s < 4) {
        uint32_t cl = (uint32_t)s;
        if (!(m = slot(&c->lo[ctx * 4 + cl], 256))) { *nomem = 1; return -1; }
        if ((s = model_decode(m, &c->rc)) < 0) return -1;
        *u = cl << 8 | (uint32_t)s;
        return 0;
    }
    uint32_t x = 0;
    for (int b = 0; b < 4; b++) {
        if (!(m = slot(&c->raw[b], 256))) { *nomem = 1; return -1; }
        if ((s = model_decode(m, &c->rc)) < 0) return -1;
        x |= (uint32_t)s << (8 * b);
    }
    if (x < 1024) return -1; /* (a writer codes it by its class) */
    *u = x;
    return 0;
}

#define SAMPLE 4096 /* the number fields the choice of context looks at */
#define CAND 32     /* context candidates: the first this many tags */
#define HSLOTS 16384
#define DISTINCT_TAGS 64 /* the tags a writer may code (of the first this many) */

typedef struct { uint64_t key; uint32_t n, gen; } Cell;

/* The estimated bits of coding xs (n numbers) in contexts cs, one adaptive model per context:
 * the empirical conditional entropy, plus 8 bits for each (context, number) first seen. */
static double estimate(const uint32_t *xs, const uint8_t *cs, Py_ssize_t n, Cell *h, uint32_t *used, uint32_t gen,
                       const double *nl) {
    uint32_t per_ctx[NCTX] = {0};
    double cost = 0;
    Py_ssize_t cells = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t key = (uint64_t)cs[i] << 32 | xs[i];
        uint32_t s = (uint32_t)((key * 0x9E3779B97F4A7C15ULL) >> 50) & (HSLOTS - 1);
        while (h[s].gen == gen && h[s].key != key) s = (s + 1) & (HSLOTS - 1);
        if (h[s].gen != gen) { h[s].gen = gen; h[s].key = key; h[s].n = 0; used[cells++] = s; }
        h[s].n++;
        per_ctx[cs[i]]++;
    }
    for (int c = 0; c < NCTX; c++) cost += nl[per_ctx[c]];
    for (Py_ssize_t i = 0; i < cells; i++) cost -= nl[h[used[i]].n];
    return cost + 8.0 * (double)cells;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static PyObject *t_code_numbers(PyObject *self, PyObject *args) {
    Py_buffer in, predsb;
    if (!PyArg_ParseTuple(args, "y*y*", &in, &predsb)) return NULL;
    const uint8_t *d = in.buf, *preds = predsb.buf;
    Py_ssize_t n = in.len, nf = 0, nt_pred = predsb.len;
    PyObject *res = NULL;
    int16_t *index = malloc(sizeof(int16_t) * 65536);
    Py_ssize_t cap = n / 4 + 1;
    uint32_t *us = malloc(sizeof(uint32_t) * cap), *vs = malloc(sizeof(uint32_t) * cap);
    uint8_t *tk = malloc(cap), *isint = malloc(cap);
    int32_t *snap = malloc(sizeof(int32_t) * (size_t)SAMPLE * CAND);
    Coder *coders = calloc(MAX_CODED, sizeof(Coder));
    Cell *h = calloc(HSLOTS, sizeof(Cell));
    double *nl = malloc(sizeof(double) * (SAMPLE + 1));
    uint32_t *xs = malloc(sizeof(uint32_t) * SAMPLE);
    uint8_t *cs = malloc(SAMPLE);
    uint32_t *used = malloc(sizeof(uint32_t) * SAMPLE), *at = malloc(sizeof(uint32_t) * SAMPLE);
    uint32_t *set = malloc(sizeof(uint32_t) * DISTINCT_TAGS * 2 * 1024);
    uint8_t *inset = malloc(DISTINCT_TAGS * 2 * 1024);
    uint32_t *distinct = malloc(sizeof(uint32_t) * DISTINCT_TAGS * 2 * 256);
    int n_distinct[DISTINCT_TAGS][2];
    memset(n_distinct, 0, sizeof n_distinct);
    int coded_of[MAX_TAGS], nt = 0, ok = 1, n_coded = 0, nomem = 0;
    Py_ssize_t count[MAX_TAGS] = {0};
    uint8_t has_int[MAX_TAGS] = {0}, has_float[MAX_TAGS] = {0}, many[MAX_TAGS] = {0};
    uint32_t last[MAX_TAGS] = {0};
    if (!index || !us || !vs || !tk || !isint || !snap || !coders || !h || !nl || !xs || !cs || !used || !at || !set || !inset ||
        !distinct) {
        nomem = 1;
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    memset(index, 0xff, sizeof(int16_t) * 65536);
    for (int k = 0; k < MAX_TAGS; k++) coded_of[k] = -1;
    nl[0] = 0;
    for (Py_ssize_t i = 1; i <= SAMPLE; i++) nl[i] = (double)i * log2((double)i);
    /* the numbers as the numbers streams hold them, in field order */
    for (Py_ssize_t p = 0; p < n;) {
        Py_ssize_t s = value_size(d, p, n);
        if (s < 0) { ok = 0; break; }
        int k = tag_of(index, d, p, &nt);
        if (k < 0 || nt > nt_pred) { ok = 0; break; }
        uint8_t t = d[p + 2];
        if (is_number(t)) {
            if (nf >= cap) { ok = 0; break; }
            if (nf < SAMPLE)
                for (int c = 0; c < CAND; c++) snap[nf * CAND + c] = (int32_t)last[c];
            int pk = preds[k] ? preds[k] - 1 : -1;
            if (int_width(t)) {
                uint32_t value = read_int(d + p + 3, t);
                us[nf] = zigzag(value - (pk >= 0 ? last[pk] : 0));
                vs[nf] = zigzag(value);
                last[k] = value;
                isint[nf] = 1;
                has_int[k] = 1;
            } else {
                us[nf] = vs[nf] = read_int(d + p + 3, 'I');
                isint[nf] = 0;
                has_float[k] = 1;
            }
            tk[nf++] = (uint8_t)k;
            count[k]++;
        }
        p += 3 + s;
    }
    if (ok && nt != nt_pred) ok = 0;
    /* each tag's distinct numbers (of the first DISTINCT_TAGS tags; 257: more than 256), against
     * its predictor and plain, by sets of 1024 slots */
    if (ok) {
        memset(inset, 0, (size_t)DISTINCT_TAGS * 2 * 1024);
        for (Py_ssize_t f = 0; f < nf; f++) {
            int k = tk[f];
            if (k >= DISTINCT_TAGS) continue;
            for (int plain = 0; plain < 2; plain++) {
                if (n_distinct[k][plain] > 256) continue;
                uint32_t u = plain ? vs[f] : us[f], q = slot_of(u);
                uint8_t *in_k = inset + ((size_t)k * 2 + plain) * 1024;
                uint32_t *set_k = set + ((size_t)k * 2 + plain) * 1024;
                while (in_k[q] && set_k[q] != u) q = (q + 1) & 1023;
                if (in_k[q]) continue;
                if (n_distinct[k][plain] == 256) { n_distinct[k][plain] = 257; continue; }
                in_k[q] = 1; set_k[q] = u;
                distinct[((size_t)k * 2 + plain) * 256 + n_distinct[k][plain]++] = u;
            }
        }
    }
    /* the tags to code: the most numerous (of MIN_CODED or more), each with its distinct numbers */
    uint32_t gen = 0;
    while (ok && n_coded < MAX_CODED) {
        int best = -1;
        for (int k = 0; k < nt; k++)
            if (k < DISTINCT_TAGS && coded_of[k] < 0 && !many[k] && count[k] >= MIN_CODED && n_distinct[k][0] > 1 && (best < 0 || count[k] > count[best])) best = k;
        if (best < 0) break;
        Coder *c = coders + n_coded;
        c->rc.range = 0xffffffffu;
        c->ctag = -1;
        double least = 0;
        int have = 0;
        static const int shifts[] = {0, 2, 4, 6};
        /* its numbers against its predictor, or plain (a context may tell more than a predictor);
         * for each, in the context of least estimated bits on the sample */
        for (int plain = 0; plain < 2; plain++) {
            const uint32_t *src = plain ? vs : us;
            if (plain && (!has_int[best] || !preds[best])) break; /* (no predictor: the same numbers) */
            int D = n_distinct[best][plain];
            const uint32_t *dict = distinct + ((size_t)best * 2 + plain) * 256;
            if (D > 256 && has_float[best]) continue; /* float bits of many values */
            int mode = D <= 256;
            Py_ssize_t m = 0;
            for (Py_ssize_t f = 0; f < nf && f < SAMPLE; f++)
                if (tk[f] == best) { at[m] = (uint32_t)f; xs[m++] = mode ? src[f] : (src[f] < 1024 ? src[f] : 1024); }
            for (int cand = -1; cand < CAND && cand < nt; cand++) {
                if (cand >= 0 && !has_int[cand]) continue;
                for (int si = 0; si < (cand < 0 ? 1 : 4); si++) {
                    int differ = 0;
                    for (Py_ssize_t j = 0; j < m; j++) {
                        cs[j] = cand < 0 ? 0 : (uint8_t)ctx_of((uint32_t)snap[at[j] * CAND + cand], shifts[si]);
                        differ |= cs[j] != cs[0];
                    }
                    if (cand >= 0 && !differ) break; /* one context: as none (and coarser shifts too) */
                    double e = estimate(xs, cs, m, h, used, ++gen, nl);
                    if (!have || e < least) {
                        have = 1;
                        least = e; c->ctag = cand; c->shift = cand < 0 ? 0 : shifts[si]; c->plain = plain;
                        c->mode = mode; c->D = mode ? D : 0;
                        if (mode) memcpy(c->dict, dict, sizeof(uint32_t) * D);
                    }
                }
            }
        }
        if (!have) { many[best] = 1; continue; } /* floats of many values */
        if (c->mode) { qsort(c->dict, c->D, sizeof(uint32_t), cmp_u32); dict_map(c); }
        coded_of[best] = n_coded++;
    }
    /* code them, in field order, each in its context */
    if (ok && n_coded) {
        memset(last, 0, sizeof last);
        for (Py_ssize_t f = 0; f < nf && ok; f++) {
            int k = tk[f], ci = coded_of[k];
            if (ci >= 0) {
                Coder *c = coders + ci;
                if (coder_put(c, c->ctag >= 0 ? ctx_of(last[c->ctag], c->shift) : 0, c->plain ? vs[f] : us[f]) < 0) {
                    nomem = 1;
                    ok = 0;
                }
                c->count++;
            }
            if (isint[f]) {
                int pk = preds[k] ? preds[k] - 1 : -1;
                last[k] = unzigzag(us[f]) + (pk >= 0 ? last[pk] : 0);
            }
        }
        for (int i = 0; i < n_coded && ok; i++)
            if (rc_finish(&coders[i].rc) < 0) { nomem = 1; ok = 0; }
    }
    Py_END_ALLOW_THREADS
    if (nomem) { PyErr_NoMemory(); goto done; }
    if (!ok) { Py_INCREF(Py_None); res = Py_None; goto done; }
    if (!(res = PyList_New(nt))) goto done;
    for (int k = 0; k < nt; k++) {
        PyObject *item;
        if (coded_of[k] < 0) { Py_INCREF(Py_None); item = Py_None; }
        else {
            Coder *c = coders + coded_of[k];
            Py_ssize_t head = 7 + (c->mode ? 1 + 4 * c->D : 0);
            uint8_t *o;
            item = new_bytes(head + (Py_ssize_t)c->rc.n, &o);
            if (!item) { Py_CLEAR(res); goto done; }
            o[0] = (uint8_t)(c->mode | c->plain << 1); o[1] = (uint8_t)(c->ctag + 1); o[2] = (uint8_t)c->shift;
            for (int b = 0; b < 4; b++) o[3 + b] = c->count >> (8 * b) & 0xff;
            if (c->mode) {
                o[7] = (uint8_t)(c->D - 1);
                for (int j = 0; j < c->D; j++)
                    for (int b = 0; b < 4; b++) o[8 + 4 * j + b] = c->dict[j] >> (8 * b) & 0xff;
            }
            memcpy(o + head, c->rc.out, c->rc.n);
        }
        PyList_SET_ITEM(res, k, item);
    }
done:
    for (int i = 0; coders && i < MAX_CODED; i++) coder_free(coders + i);
    free(index); free(us); free(vs); free(tk); free(isint); free(snap); free(coders); free(h); free(nl); free(xs); free(cs);
    free(used); free(at); free(set); free(inset); free(distinct);
    PyBuffer_Release(&in); PyBuffer_Release(&predsb);
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
    Coder *coder; /* form 4: its numbers range-coded */
    int base; /* the tag whose latest value its integers are relative to (-1: none; plain coded: none) */
} Source;

/* A coded tag's payload (its numbers section) into c: its head checked, its coder started. */
static const char *coder_open(Coder *c, const uint8_t *p, Py_ssize_t len, Py_ssize_t nt, Py_ssize_t max_count) {
    if (len < 7 || p[0] > 3 || p[1] > nt || p[2] > 31) return "a tag's coded numbers are malformed";
    c->mode = p[0] & 1; c->plain = p[0] >> 1; c->ctag = p[1] - 1; c->shift = p[2];
    c->count = (uint32_t)p[3] | (uint32_t)p[4] << 8 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 24;
    if ((Py_ssize_t)c->count > max_count) return "a tag's coded numbers are malformed";
    Py_ssize_t o = 7;
    if (c->mode) {
        if (len < 8) return "a tag's coded numbers are malformed";
        c->D = p[7] + 1;
        o = 8 + 4 * (Py_ssize_t)c->D;
        if (len < o) return "a tag's coded numbers are malformed";
        for (int j = 0; j < c->D; j++)
            c->dict[j] = (uint32_t)p[8 + 4 * j] | (uint32_t)p[9 + 4 * j] << 8 | (uint32_t)p[10 + 4 * j] << 16 |
                         (uint32_t)p[11 + 4 * j] << 24;
    }
    rc_start(&c->rc, p + o, p + len);
    return NULL;
}

/* A tag's next number, from its stream or its coder (in its context); NULL, or what is wrong. */
static inline const char *next_number(Source *src, Source *t, uint32_t *u, int *nomem) {
    Coder *c = t->coder;
    if (!c) {
        if (t->at_int >= t->n_ints) return "the streams run out";
        *u = t->ints[t->at_int++];
        return NULL;
    }
    if (c->done >= c->count) return "the streams run out";
    int ctx = c->ctag >= 0 ? ctx_of(src[c->ctag].last, c->shift) : 0;
    if (coder_get(c, ctx, u, nomem) < 0) return *nomem ? "no memory" : "a tag's coded numbers are damaged";
    c->done++;
    return NULL;
}

static PyObject *t_join(PyObject *self, PyObject *args) {
    Py_ssize_t n;
    Py_buffer tagsb, predsb, idsb, impb = {0}, codedb = {0};
    PyObject *streams;
    if (!PyArg_ParseTuple(args, "ny*y*y*O!|y*y*", &n, &tagsb, &predsb, &idsb, &PyList_Type, &streams, &impb, &codedb))
        return NULL;
    Py_ssize_t nt = predsb.len;
    const uint8_t *implied = impb.buf && impb.len ? impb.buf : NULL, *coded = codedb.buf && codedb.len ? codedb.buf : NULL;
    Coder *coders = NULL;
    int n_coded = 0, nomem = 0;
    Py_buffer sb[3 * MAX_TAGS];
    int got = 0;
    const char *err = NULL;
    PyObject *result = NULL;
    Source *src = NULL;
    uint32_t *ints = NULL;
    if (n < 0 || nt < 1 || nt > MAX_TAGS || tagsb.len != 2 * nt || PyList_GET_SIZE(streams) != 3 * nt ||
        (implied && impb.len != nt) || (coded && codedb.len != nt))
        err = "the tag table and the streams do not match";
    for (; !err && got < 3 * nt; got++)
        if (PyObject_GetBuffer(PyList_GET_ITEM(streams, got), &sb[got], PyBUF_SIMPLE) < 0) goto done;
    Py_ssize_t total_ints = 0;
    for (Py_ssize_t k = 0; !err && k < nt; k++) {
        int is_coded = coded && coded[k];
        if (coded && coded[k] > 1) err = "a tag's coded numbers are malformed";
        else if (((const uint8_t *)predsb.buf)[k] > nt || (!is_coded && sb[3 * k + 1].len % 4))
            err = "a tag's predictor or integers are malformed";
        if (is_coded && ++n_coded > MAX_CODED) err = "more tags' numbers are coded than a writer codes";
        if (!is_coded) total_ints += sb[3 * k + 1].len / 4;
    }
    if (!err && n_coded && !(coders = calloc(MAX_CODED, sizeof(Coder)))) { PyErr_NoMemory(); goto done; }
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
        for (Py_ssize_t k = 0, ci = 0; k < nt; k++) { /* each tag's numbers, unshuffled (or a coder) */
            Source *t = src + k;
            const uint8_t *in = sb[3 * k + 1].buf;
            Py_ssize_t m = coded && coded[k] ? 0 : sb[3 * k + 1].len / 4;
            if (coded && coded[k]) {
                t->coder = coders + ci++;
                const char *e = coder_open(t->coder, in, sb[3 * k + 1].len, nt, idsb.len);
                if (e && !err) err = e;
            }
            uint32_t *x = ints + at;
            for (Py_ssize_t j = 0; j < m; j++)
                x[j] = (uint32_t)in[j] | (uint32_t)in[m + j] << 8 | (uint32_t)in[2 * m + j] << 16 | (uint32_t)in[3 * m + j] << 24;
            t->ints = x; t->n_ints = m; at += m;
            t->types = sb[3 * k].buf; t->n_types = sb[3 * k].len;
            t->bytes = sb[3 * k + 2].buf; t->n_bytes = sb[3 * k + 2].len;
            t->pred = preds[k] - 1;
            t->base = t->coder && t->coder->plain ? -1 : t->pred;
            t->tag0 = tags[2 * k]; t->tag1 = tags[2 * k + 1];
        }
        for (Py_ssize_t k = 0; k < nt && implied; k++)
            if (implied[k] > 1 || (implied[k] && src[k].n_types)) { err = "a tag's implied types are malformed"; break; }
        for (Py_ssize_t f = 0; f < idsb.len && !err; f++) {
            int k = ids[f];
            if (k >= nt) { err = "a field names a tag the table lacks"; break; }
            Source *t = src + k;
            if (implied && implied[k]) { /* an integer, of the type its value implies */
                uint32_t u;
                if (w + 3 > n) { err = "the streams run out"; break; }
                if (!t->coder && t->at_int < t->n_ints) u = t->ints[t->at_int++]; /* (the common case) */
                else if ((err = next_number(src, t, &u, &nomem))) break;
                uint32_t x = unzigzag(u) + (t->base >= 0 ? src[t->base].last : 0);
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
                uint32_t x;
                if (w + size > n) { err = "the streams run out"; break; }
                if (!t->coder && t->at_int < t->n_ints) x = t->ints[t->at_int++]; /* (the common case) */
                else if ((err = next_number(src, t, &x, &nomem))) break;
                if (iw) {
                    x = unzigzag(x) + (t->base >= 0 ? src[t->base].last : 0);
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
        for (Py_ssize_t k = 0; !err && k < nt; k++) {
            Coder *c = src[k].coder;
            if (src[k].at_type != src[k].n_types || src[k].at_int != src[k].n_ints || src[k].at_byte != src[k].n_bytes ||
                (c && (c->done != c->count || c->rc.over || c->rc.in != c->rc.end)))
                err = "a stream holds more than its fields";
        }
        if (!err && w != n) err = "the fields do not fill the column";
        Py_END_ALLOW_THREADS
    }
done:
    for (int i = 0; i < got; i++) PyBuffer_Release(&sb[i]);
    PyBuffer_Release(&tagsb); PyBuffer_Release(&predsb); PyBuffer_Release(&idsb);
    if (impb.obj) PyBuffer_Release(&impb);
    if (codedb.obj) PyBuffer_Release(&codedb);
    for (int i = 0; coders && i < MAX_CODED; i++) coder_free(coders + i);
    free(src); free(ints); free(coders);
    if (nomem && err) { Py_CLEAR(result); PyErr_NoMemory(); return NULL; }
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
        int before = nt, k = tag_of(index, d, p, &nt);
        if (k < 0) { ok = 0; break; }
        if (nt > before) flags[k] = 1;
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
    {"split", t_split, METH_VARARGS, "split(aux, implied=False) -> None or (tags, preds, ids, [types, ints, bytes] * T"
     "[, implicit_types(aux)])"},
    {"join", t_join, METH_VARARGS, "join(n, tags, preds, ids, streams[, implied]) -> bytes: the inverse of split"},
    {"code_numbers", t_code_numbers, METH_VARARGS, "code_numbers(aux, preds) -> None or [payload or None] * T: "
     "the numbers of the most numerous tags, range-coded in a context (form 4)"},
    {"implicit_types", t_implicit_types, METH_VARARGS, "implicit_types(aux) -> None or T bytes: 1, a tag whose "
     "fields are integers of the types their values imply"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_tags", "The tags codec's transform.", -1, methods};

PyMODINIT_FUNC PyInit__tags(void) { return PyModule_Create(&module); }
