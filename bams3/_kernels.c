/* Bulk kernels over raw BAM record bytes: find record boundaries, split records into
 * columns, lay them out and join them back, shuffle fixed-width columns. One pass of memcpy
 * per field, no Python object per record, the GIL released throughout. Every kernel checks
 * the sizes it is given against its buffers: hostile sizes or offsets are a ValueError (or,
 * for layout, None), never a read or write outside them. tests/test_kernels.py holds the
 * numpy definitions layout, join and shuffle replaced.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define CORE 36

/* scan(data, out_offsets) -> (n, end): record starts found in data (each record is a
 * little-endian int32 block_size then block_size bytes); stops before an incomplete
 * record. n = -1 - i when record i has block_size < 32 (corrupt). */
static PyObject *k_scan(PyObject *self, PyObject *args) {
    Py_buffer data, offs;
    if (!PyArg_ParseTuple(args, "y*w*", &data, &offs)) return NULL;
    const uint8_t *d = data.buf;
    Py_ssize_t len = data.len, cap = offs.len / 8, n = 0, o = 0;
    int64_t *out = offs.buf;
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS
    while (o + 4 <= len && n < cap) {
        int32_t bs = (int32_t)((uint32_t)d[o] | ((uint32_t)d[o + 1] << 8) | ((uint32_t)d[o + 2] << 16) |
                               ((uint32_t)d[o + 3] << 24));
        if (bs < 32) { bad = 1; break; }
        if (o + 4 + (Py_ssize_t)bs > len) break;
        out[n++] = o;
        o += 4 + bs;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyBuffer_Release(&offs);
    if (bad) return Py_BuildValue("nn", -1 - n, o);
    return Py_BuildValue("nn", n, o);
}

/* split(body, offsets, seg, core_out, c1..c5): body holds records back to back; offsets
 * (N+1 int64) where each starts relative to body; seg (N x 6 int64) the byte lengths
 * of core, name, cigar, seq, qual, aux. The caller sized every output exactly. */
static PyObject *k_split(PyObject *self, PyObject *args) {
    Py_buffer body, offs, seg, out[6];
    if (!PyArg_ParseTuple(args, "y*y*y*w*w*w*w*w*w*", &body, &offs, &seg, &out[0], &out[1], &out[2], &out[3],
                          &out[4], &out[5]))
        return NULL;
    Py_ssize_t n = offs.len / 8 - 1;
    const int64_t *o = offs.buf, *s = seg.buf;
    const uint8_t *b = body.buf;
    int bad = (n < 0 || seg.len != n * 6 * 8);
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t pos[6] = {0, 0, 0, 0, 0, 0};
    for (Py_ssize_t i = 0; i < n && !bad; i++) {
        Py_ssize_t p = o[i];
        for (int k = 0; k < 6; k++) {
            Py_ssize_t l = s[i * 6 + k];
            if (l < 0 || p + l > body.len || pos[k] + l > out[k].len) { bad = 1; break; }
            memcpy((uint8_t *)out[k].buf + pos[k], b + p, l);
            pos[k] += l;
            p += l;
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&body); PyBuffer_Release(&offs); PyBuffer_Release(&seg);
    for (int k = 0; k < 6; k++) PyBuffer_Release(&out[k]);
    if (bad) { PyErr_SetString(PyExc_ValueError, "split: record sizes exceed the buffers"); return NULL; }
    Py_RETURN_NONE;
}

/* gather(data, offsets_i64, out): out[i*w : (i+1)*w] = data[offsets[i] : offsets[i]+w] for each of
 * the N offsets, w = len(out) / N (a record's fixed fields, copied out of the records). */
static PyObject *k_gather(PyObject *self, PyObject *args) {
    Py_buffer data, offs, out;
    if (!PyArg_ParseTuple(args, "y*y*w*", &data, &offs, &out)) return NULL;
    Py_ssize_t n = offs.len / 8;
    const int64_t *o = offs.buf;
    const uint8_t *d = data.buf;
    uint8_t *w = out.buf;
    Py_ssize_t width = n ? out.len / n : 0;
    int bad = offs.len % 8 || (n && out.len != width * n) || (!n && out.len);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n && !bad; i++) {
        if (o[i] < 0 || width > data.len || o[i] > data.len - width) { bad = 1; break; }
        memcpy(w + i * width, d + o[i], width);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data); PyBuffer_Release(&offs); PyBuffer_Release(&out);
    if (bad) { PyErr_SetString(PyExc_ValueError, "gather: an offset is outside the data"); return NULL; }
    Py_RETURN_NONE;
}

/* pieces(data, starts_i64, lens_i64, out): data[starts[i] : starts[i] + lens[i]] for every i,
 * back to back into out (exactly their total size): the records a mask keeps, in one pass. */
static PyObject *k_pieces(PyObject *self, PyObject *args) {
    Py_buffer data, st, ln, out;
    if (!PyArg_ParseTuple(args, "y*y*y*w*", &data, &st, &ln, &out)) return NULL;
    Py_ssize_t n = st.len / 8;
    const int64_t *a = st.buf, *l = ln.buf;
    const uint8_t *d = data.buf;
    uint8_t *w = out.buf;
    int bad = st.len % 8 || ln.len != st.len;
    Py_ssize_t p = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n && !bad; i++) {
        if (a[i] < 0 || l[i] < 0 || a[i] > data.len || l[i] > data.len - a[i] || l[i] > out.len - p) { bad = 1; break; }
        memcpy(w + p, d + a[i], (size_t)l[i]);
        p += l[i];
    }
    Py_END_ALLOW_THREADS
    bad = bad || p != out.len;
    PyBuffer_Release(&data); PyBuffer_Release(&st); PyBuffer_Release(&ln); PyBuffer_Release(&out);
    if (bad) { PyErr_SetString(PyExc_ValueError, "pieces: a piece is outside the data or the sizes disagree"); return NULL; }
    Py_RETURN_NONE;
}

/* shuffle(raw, w) -> bytes: every value's byte 0, then every byte 1, ... (w-byte values);
 * unshuffle(raw, w) -> bytes: the inverse. len(raw) must be a multiple of w. */
static PyObject *shuffle_impl(PyObject *args, int inverse) {
    Py_buffer in;
    Py_ssize_t w;
    if (!PyArg_ParseTuple(args, "y*n", &in, &w)) return NULL;
    if (w < 1 || in.len % w) {
        PyBuffer_Release(&in);
        PyErr_SetString(PyExc_ValueError, "shuffle: the data is not a whole number of values");
        return NULL;
    }
    PyObject *res = PyBytes_FromStringAndSize(NULL, in.len);
    if (!res) { PyBuffer_Release(&in); return NULL; }
    const uint8_t *a = in.buf;
    uint8_t *b = (uint8_t *)PyBytes_AS_STRING(res);
    Py_ssize_t n = in.len / w;
    Py_BEGIN_ALLOW_THREADS
    if (w == 1 || n == 0) memcpy(b, a, (size_t)in.len);
    else if (inverse && w == 4) {
        const uint8_t *p0 = a, *p1 = a + n, *p2 = a + 2 * n, *p3 = a + 3 * n;
        for (Py_ssize_t i = 0; i < n; i++) {
            b[4 * i] = p0[i]; b[4 * i + 1] = p1[i]; b[4 * i + 2] = p2[i]; b[4 * i + 3] = p3[i];
        }
    } else if (inverse && w == 2) {
        const uint8_t *p0 = a, *p1 = a + n;
        for (Py_ssize_t i = 0; i < n; i++) { b[2 * i] = p0[i]; b[2 * i + 1] = p1[i]; }
    } else if (!inverse && w == 4) {
        uint8_t *p0 = b, *p1 = b + n, *p2 = b + 2 * n, *p3 = b + 3 * n;
        for (Py_ssize_t i = 0; i < n; i++) {
            p0[i] = a[4 * i]; p1[i] = a[4 * i + 1]; p2[i] = a[4 * i + 2]; p3[i] = a[4 * i + 3];
        }
    } else if (!inverse && w == 2) {
        uint8_t *p0 = b, *p1 = b + n;
        for (Py_ssize_t i = 0; i < n; i++) { p0[i] = a[2 * i]; p1[i] = a[2 * i + 1]; }
    } else {
        for (Py_ssize_t k = 0; k < w; k++)
            for (Py_ssize_t i = 0; i < n; i++) {
                if (inverse) b[i * w + k] = a[k * n + i];
                else b[k * n + i] = a[i * w + k];
            }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&in);
    return res;
}

static PyObject *k_shuffle(PyObject *self, PyObject *args) { return shuffle_impl(args, 0); }
static PyObject *k_unshuffle(PyObject *self, PyObject *args) { return shuffle_impl(args, 1); }

/* layout(core, l_aux_i64, offsets_out_i64) -> (name, cigar, seq, qual, aux) totals, or None when
 * a record's sizes are negative or add up past 2^63 (corrupt): each record's size from its core fields (36-byte BAM cores,
 * as records.CORE) and its aux length, written as block_size (mod 2^32, as numpy's assignment
 * wraps) into the cores and as running offsets (N+1) into offsets_out; the totals are what each
 * variable column must hold. One pass instead of numpy's segment_lengths and sums. */
static PyObject *k_layout(PyObject *self, PyObject *args) {
    Py_buffer core, aux, offs;
    if (!PyArg_ParseTuple(args, "w*y*w*", &core, &aux, &offs)) return NULL;
    Py_ssize_t n = core.len / CORE;
    int bad = core.len % CORE || aux.len != n * 8 || offs.len != (n + 1) * 8;
    if (bad) {
        PyBuffer_Release(&core); PyBuffer_Release(&aux); PyBuffer_Release(&offs);
        PyErr_SetString(PyExc_ValueError, "layout: the cores, aux lengths and offsets disagree in number");
        return NULL;
    }
    uint8_t *c = core.buf;
    const int64_t *la = aux.buf;
    int64_t *o = offs.buf, t[5] = {0, 0, 0, 0, 0};
    int negative = 0;
    Py_BEGIN_ALLOW_THREADS
    o[0] = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint8_t *r = c + i * CORE;
        int64_t name = r[12];
        int64_t cig = 4 * (int64_t)((uint32_t)r[16] | ((uint32_t)r[17] << 8));
        int32_t l_seq;
        memcpy(&l_seq, r + 20, 4);
        int64_t seqb = ((int64_t)l_seq + 1) / 2, qual = l_seq, lx = la[i];
        if (l_seq < 0 || lx < 0 || lx > (INT64_MAX >> 2)) { negative = 1; break; }
        int64_t size = CORE + name + cig + seqb + qual + lx;
        if (size > INT64_MAX - o[i]) { negative = 1; break; } /* the totals are each at most o[n] */
        uint32_t bs = (uint32_t)(size - 4);
        memcpy(r, &bs, 4);
        o[i + 1] = o[i] + size;
        t[0] += name; t[1] += cig; t[2] += seqb; t[3] += qual; t[4] += lx;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&core); PyBuffer_Release(&aux); PyBuffer_Release(&offs);
    if (negative) Py_RETURN_NONE;
    return Py_BuildValue("LLLLL", (long long)t[0], (long long)t[1], (long long)t[2], (long long)t[3],
                         (long long)t[4]);
}

/* join(out, offsets, core, name, cigar, seq, qual, aux[, keep]): the inverse of split, the records
 * laid out by layout(), each its core then its five variable fields, back to back into out; with
 * keep (one byte a record), only the records whose byte is not 0, in order (out holds exactly
 * their size; the columns are still walked past the others). */
static PyObject *k_join(PyObject *self, PyObject *args) {
    Py_buffer outb, offs, in[6], keep = {0};
    if (!PyArg_ParseTuple(args, "w*y*y*y*y*y*y*y*|y*", &outb, &offs, &in[0], &in[1], &in[2], &in[3], &in[4], &in[5],
                          &keep))
        return NULL;
    Py_ssize_t n = offs.len / 8 - 1;
    const int64_t *o = offs.buf;
    const uint8_t *c = in[0].buf, *k = keep.buf;
    uint8_t *out = outb.buf;
    int bad = n < 0 || offs.len % 8 || in[0].len != n * CORE || (k && keep.len != n) || o[0] != 0 ||
              (!k && outb.len != o[n]);
    Py_ssize_t pos[5] = {0, 0, 0, 0, 0}, p = 0;
    Py_BEGIN_ALLOW_THREADS
    /* every comparison as a subtraction that cannot overflow: 0 <= p <= outb.len and
     * 0 <= pos[j] <= in[j + 1].len throughout, and offsets rise from 0 */
    for (Py_ssize_t i = 0; i < n && !bad; i++) {
        const uint8_t *r = c + i * CORE;
        int32_t l_seq;
        memcpy(&l_seq, r + 20, 4);
        if (o[i + 1] < o[i] || o[i + 1] - o[i] < CORE || l_seq < 0) { bad = 1; break; }
        Py_ssize_t len[5] = {r[12], 4 * (Py_ssize_t)((uint32_t)r[16] | ((uint32_t)r[17] << 8)),
                             ((Py_ssize_t)l_seq + 1) / 2, l_seq, 0};
        Py_ssize_t size = o[i + 1] - o[i];
        len[4] = size - CORE - len[0] - len[1] - len[2] - len[3];
        int take = !k || k[i];
        if (len[4] < 0 || (take && size > outb.len - p)) { bad = 1; break; }
        if (take) { memcpy(out + p, r, CORE); p += CORE; }
        for (int j = 0; j < 5; j++) {
            if (len[j] > in[j + 1].len - pos[j]) { bad = 1; break; }
            if (take) { memcpy(out + p, (const uint8_t *)in[j + 1].buf + pos[j], (size_t)len[j]); p += len[j]; }
            pos[j] += len[j];
        }
    }
    Py_END_ALLOW_THREADS
    bad = bad || p != outb.len;
    PyBuffer_Release(&outb); PyBuffer_Release(&offs);
    for (int j = 0; j < 6; j++) PyBuffer_Release(&in[j]);
    if (k) PyBuffer_Release(&keep);
    if (bad) { PyErr_SetString(PyExc_ValueError, "join: record sizes exceed the columns"); return NULL; }
    Py_RETURN_NONE;
}

/* SAM text of many records at once: one pass to size, one to write; '*' for a record without
 * any. Offsets (N+1 int64) are written into out_off; the text is returned as bytes. */
static const char SEQ_CHARS[] = "=ACMGRSVTWYHKDBN";
static const char CIGAR_CHARS[] = "MIDNSHP=XB??????";

/* seq_text(packed, off_i64, qlen_i64, out_off_i64) -> bytes: 4-bit packed bases (record i at
 * packed[off[i]:off[i+1]], (qlen + 1) / 2 bytes) as letters. */
static PyObject *k_seq_text(PyObject *self, PyObject *args) {
    Py_buffer pk, of, ql, oo;
    if (!PyArg_ParseTuple(args, "y*y*y*w*", &pk, &of, &ql, &oo)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = ql.len / 8;
    const int64_t *off = of.buf, *qlen = ql.buf;
    int64_t *out_off = oo.buf;
    const uint8_t *p = pk.buf;
    if (of.len != (n + 1) * 8 || oo.len != (n + 1) * 8) { PyErr_SetString(PyExc_ValueError, "seq_text: bad sizes"); goto done; }
    int64_t total = 0;
    out_off[0] = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (qlen[i] < 0 || off[i] < 0 || off[i + 1] > pk.len || off[i + 1] - off[i] != (qlen[i] + 1) / 2) {
            PyErr_SetString(PyExc_ValueError, "seq_text: sequences disagree with their lengths");
            goto done;
        }
        total += qlen[i] ? qlen[i] : 1;
        out_off[i + 1] = total;
    }
    result = PyBytes_FromStringAndSize(NULL, total);
    if (!result) goto done;
    char *o = PyBytes_AS_STRING(result);
    char SEQ_PAIRS[256][2];  /* a byte's two bases */
    for (int v = 0; v < 256; v++) { SEQ_PAIRS[v][0] = SEQ_CHARS[v >> 4]; SEQ_PAIRS[v][1] = SEQ_CHARS[v & 15]; }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        char *t = o + out_off[i];
        const uint8_t *b = p + off[i];
        int64_t l = qlen[i];
        if (!l) { *t = '*'; continue; }
        int64_t j = 0;
        for (; j + 1 < l; j += 2) memcpy(t + j, SEQ_PAIRS[b[j >> 1]], 2);
        if (j < l) t[j] = SEQ_CHARS[b[j >> 1] >> 4];
    }
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&pk); PyBuffer_Release(&of); PyBuffer_Release(&ql); PyBuffer_Release(&oo);
    return result;
}

static int digits(uint32_t v) {
    int d = 1;
    while (v >= 10) { v /= 10; d++; }
    return d;
}

/* cigar_text(ops_u32, off_i64, out_off_i64) -> bytes: record i's operations ops[off[i]:off[i+1]]
 * (length << 4 | op) as SAM text. */
static PyObject *k_cigar_text(PyObject *self, PyObject *args) {
    Py_buffer op, of, oo;
    if (!PyArg_ParseTuple(args, "y*y*w*", &op, &of, &oo)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = of.len / 8 - 1, nops = op.len / 4;
    const int64_t *off = of.buf;
    const uint32_t *ops = op.buf;
    int64_t *out_off = oo.buf;
    if (n < 0 || oo.len != (n + 1) * 8) { PyErr_SetString(PyExc_ValueError, "cigar_text: bad sizes"); goto done; }
    int64_t total = 0;
    out_off[0] = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (off[i] < 0 || off[i + 1] < off[i] || off[i + 1] > nops) {
            PyErr_SetString(PyExc_ValueError, "cigar_text: offsets exceed the operations");
            goto done;
        }
        int64_t l = off[i + 1] == off[i];
        for (int64_t j = off[i]; j < off[i + 1]; j++) l += digits(ops[j] >> 4) + 1;
        total += l;
        out_off[i + 1] = total;
    }
    result = PyBytes_FromStringAndSize(NULL, total);
    if (!result) goto done;
    char *o = PyBytes_AS_STRING(result);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        char *t = o + out_off[i];
        if (off[i + 1] == off[i]) { *t = '*'; continue; }
        for (int64_t j = off[i]; j < off[i + 1]; j++) {
            uint32_t v = ops[j] >> 4;
            int d = digits(v);
            for (int k = d - 1; k >= 0; k--) { t[k] = (char)('0' + v % 10); v /= 10; }
            t[d] = CIGAR_CHARS[ops[j] & 15];
            t += d + 1;
        }
    }
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&op); PyBuffer_Release(&of); PyBuffer_Release(&oo);
    return result;
}

/* count_overlaps(pos_deltas_i32, span_i32, intervals[, keep]) -> int: records [pos, pos + span)
 * that overlap [beg, end), summed over the (beg, end) pairs of intervals (a record in two counts
 * twice), with pos the running sum (mod 2^32, as int32) of the stored deltas: a count's edge
 * chunk straight from its pos and span columns (unshuffled, little-endian). keep (a byte a
 * record, keep_mask's): only the records where it is not 0. The quick count
 * (bams3/_quick.py) uses it without numpy; tests/test_kernels.py holds the numpy definition. */
static PyObject *k_count_overlaps(PyObject *self, PyObject *args) {
    Py_buffer pd, sp, kp = {0};
    PyObject *ivs;
    if (!PyArg_ParseTuple(args, "y*y*O|y*", &pd, &sp, &ivs, &kp)) return NULL;
    PyObject *seq = PySequence_Fast(ivs, "count_overlaps: intervals must be a sequence");
    long long total = 0;
    Py_ssize_t n = pd.len / 4, k = seq ? PySequence_Fast_GET_SIZE(seq) : 0;
    if (!seq) goto fail;
    if (pd.len % 4 || sp.len != pd.len) {
        PyErr_SetString(PyExc_ValueError, "count_overlaps: pos and span are not as many int32 values");
        goto fail;
    }
    if (kp.obj && kp.len != n) {
        PyErr_SetString(PyExc_ValueError, "count_overlaps: keep is not a byte a record");
        goto fail;
    }
    for (Py_ssize_t j = 0; j < k; j++) {
        long long beg, end;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, j), "LL", &beg, &end)) goto fail;
        const uint8_t *a = pd.buf, *b = sp.buf, *keep = kp.obj ? kp.buf : NULL;
        long long c = 0;
        Py_BEGIN_ALLOW_THREADS
        uint32_t p = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            uint32_t d, s;
            memcpy(&d, a + 4 * i, 4);
            memcpy(&s, b + 4 * i, 4);
            p += d;
            long long x = (int32_t)p;
            c += (x < end) & (x + (long long)(int32_t)s > beg) & (!keep || keep[i] != 0);
        }
        Py_END_ALLOW_THREADS
        total += c;
    }
    Py_DECREF(seq);
    PyBuffer_Release(&pd);
    PyBuffer_Release(&sp);
    if (kp.obj) PyBuffer_Release(&kp);
    return PyLong_FromLongLong(total);
fail:
    Py_XDECREF(seq);
    PyBuffer_Release(&pd);
    PyBuffer_Release(&sp);
    if (kp.obj) PyBuffer_Release(&kp);
    return NULL;
}

/* overlap_mask(pos_i64, span_i32, beg, end) -> bytes: 1 where the record [pos, pos + span)
 * overlaps [beg, end) (pos < end and pos + span > beg, in 64 bits), 0 elsewhere: the records of
 * a region's edge chunk that the quick path's SAM (bams3/_quicksam.py) gives out. */
static PyObject *k_overlap_mask(PyObject *self, PyObject *args) {
    Py_buffer pb, sb;
    long long beg, end;
    if (!PyArg_ParseTuple(args, "y*y*LL", &pb, &sb, &beg, &end)) return NULL;
    PyObject *out = NULL;
    Py_ssize_t n = pb.len / 8;
    if (pb.len % 8 || sb.len != 4 * n) {
        PyErr_SetString(PyExc_ValueError, "overlap_mask: pos and span are not as many int64 and int32 values");
        goto done;
    }
    out = PyBytes_FromStringAndSize(NULL, n);
    if (!out) goto done;
    uint8_t *m = (uint8_t *)PyBytes_AS_STRING(out);
    const uint8_t *p = pb.buf, *s = sb.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t x;
        int32_t w;
        memcpy(&x, p + 8 * i, 8);
        memcpy(&w, s + 4 * i, 4);
        m[i] = (uint8_t)((long long)x < end && (long long)x + w > beg);
    }
done:
    PyBuffer_Release(&pb);
    PyBuffer_Release(&sb);
    return out;
}

/* keep_mask(n, flag, mapq, require, exclude, any_of, not_all, min_mapq) -> bytes: 1 where a
 * record passes samtools view's -f, -F, --rf, -G and -q (as bams3.filters.ReadFilter.mask
 * decides), 0 elsewhere. flag: n little-endian uint16 (unshuffled), or None when no flag
 * option is given; mapq: n bytes, or None when -q is 0. The quick count (bams3/_quick.py)
 * uses it without numpy; tests/test_quick.py compares it with ReadFilter.mask. */
static PyObject *k_keep_mask(PyObject *self, PyObject *args) {
    Py_ssize_t n;
    PyObject *fo, *mo;
    long long require, exclude, any_of, not_all, min_mapq;
    if (!PyArg_ParseTuple(args, "nOOLLLLL", &n, &fo, &mo, &require, &exclude, &any_of, &not_all, &min_mapq))
        return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "keep_mask: a negative record count");
        return NULL;
    }
    Py_buffer fb = {0}, mb = {0};
    if (fo != Py_None && PyObject_GetBuffer(fo, &fb, PyBUF_SIMPLE) < 0) return NULL;
    if (mo != Py_None && PyObject_GetBuffer(mo, &mb, PyBUF_SIMPLE) < 0) {
        if (fb.buf) PyBuffer_Release(&fb);
        return NULL;
    }
    PyObject *out = NULL;
    if ((fb.obj && fb.len != 2 * n) || (mb.obj && mb.len != n)) {
        PyErr_SetString(PyExc_ValueError, "keep_mask: flag or mapq is not a value a record");
        goto done;
    }
    out = PyBytes_FromStringAndSize(NULL, n);
    if (!out) goto done;
    uint8_t *keep = (uint8_t *)PyBytes_AS_STRING(out);
    const uint8_t *f = fb.obj ? fb.buf : NULL, *m = mb.obj ? mb.buf : NULL;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        int ok = 1;
        if (f) {
            long long flag = (long long)f[2 * i] | ((long long)f[2 * i + 1] << 8);
            ok = (flag & require) == require && (flag & exclude) == 0
                 && (!not_all || (flag & not_all) != not_all) && (!any_of || (flag & any_of) != 0);
        }
        if (m && (long long)m[i] < min_mapq) ok = 0;
        keep[i] = (uint8_t)ok;
    }
    Py_END_ALLOW_THREADS
done:
    if (fb.obj) PyBuffer_Release(&fb);
    if (mb.obj) PyBuffer_Release(&mb);
    return out;
}

static PyMethodDef methods[] = {
    {"seq_text", k_seq_text, METH_VARARGS, "seq_text(packed, off_i64, qlen_i64, out_off_i64) -> bytes"},
    {"cigar_text", k_cigar_text, METH_VARARGS, "cigar_text(ops_u32, off_i64, out_off_i64) -> bytes"},
    {"scan", k_scan, METH_VARARGS, "scan(data, offsets_out_i64) -> (n, end)"},
    {"split", k_split, METH_VARARGS, "split(body, offsets_i64, seg_i64, core, name, cigar, seq, qual, aux)"},
    {"gather", k_gather, METH_VARARGS, "gather(data, offsets_i64, out): fixed-width pieces at offsets"},
    {"pieces", k_pieces, METH_VARARGS, "pieces(data, starts_i64, lens_i64, out): variable-width pieces back to back"},
    {"shuffle", k_shuffle, METH_VARARGS, "shuffle(raw, w) -> bytes: byte k of every w-byte value, k = 0 .. w-1"},
    {"unshuffle", k_unshuffle, METH_VARARGS, "unshuffle(raw, w) -> bytes: the inverse of shuffle"},
    {"layout", k_layout, METH_VARARGS, "layout(core, l_aux_i64, offsets_out_i64) -> column totals or None"},
    {"join", k_join, METH_VARARGS, "join(out, offsets_i64, core, name, cigar, seq, qual, aux[, keep_u8])"},
    {"count_overlaps", k_count_overlaps, METH_VARARGS,
     "count_overlaps(pos_deltas_i32, span_i32, intervals[, keep_u8]) -> records (kept) overlapping each (beg, end), "
     "summed"},
    {"overlap_mask", k_overlap_mask, METH_VARARGS,
     "overlap_mask(pos_i64, span_i32, beg, end) -> bytes: 1 where [pos, pos + span) overlaps [beg, end)"},
    {"keep_mask", k_keep_mask, METH_VARARGS,
     "keep_mask(n, flag_u16 | None, mapq_u8 | None, require, exclude, any_of, not_all, min_mapq) -> bytes"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", "Bulk kernels over raw BAM records.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
