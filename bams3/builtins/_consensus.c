/* The consensus codec's per-base work (consensus.py holds the payload and docs/format.md
 * §6.4 the definition): which bases are aligned and where, the chunk's consensus, and the
 * bases that differ from it, in one walk over the CIGARs per pass, the GIL released.
 *
 * A base is aligned when its record is usable (a CIGAR whose query length is l_seq, flag
 * 0x4 clear, pos >= 0) and its operation is M, = or X; its reference position is pos plus
 * the reference length of the operations before it, as int32 (a position that wraps
 * negative is not aligned: the numpy definition this replaces stored them so).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t ACGT[4] = {1, 2, 4, 8};
#define QCONS(op) ((op) == 0 || (op) == 1 || (op) == 4 || (op) == 7 || (op) == 8)
#define RCONS(op) ((op) == 0 || (op) == 2 || (op) == 3 || (op) == 7 || (op) == 8)
#define ALIGNED(op) ((op) == 0 || (op) == 7 || (op) == 8)

typedef struct {
    Py_ssize_t n;           /* records */
    const int64_t *l_seq, *pos, *n_ops;
    const uint16_t *flag;
    const uint32_t *cigar;
    Py_ssize_t n_cigar;
    int64_t *op_start;      /* n + 1: each record's first operation */
    int64_t *base_start;    /* n + 1: each record's first base */
    uint8_t *usable;        /* n */
} Records;

static int records_init(Records *r) {
    r->op_start = malloc((r->n + 1) * sizeof(int64_t));
    r->base_start = malloc((r->n + 1) * sizeof(int64_t));
    r->usable = malloc(r->n ? r->n : 1);
    if (!r->op_start || !r->base_start || !r->usable) return -1;
    int64_t o = 0, b = 0;
    for (Py_ssize_t i = 0; i < r->n; i++) {
        r->op_start[i] = o;
        r->base_start[i] = b;
        int64_t no = r->n_ops[i], ls = r->l_seq[i];
        if (no < 0 || ls < 0 || o + no > r->n_cigar) return -2;
        int64_t q = 0;
        for (int64_t k = 0; k < no; k++) {
            uint32_t c = r->cigar[o + k], op = c & 15;
            if (QCONS(op)) q += c >> 4;
        }
        r->usable[i] = no > 0 && q == ls && !(r->flag[i] & 4) && r->pos[i] >= 0;
        o += no;
        b += ls;
    }
    r->op_start[r->n] = o;
    r->base_start[r->n] = b;
    return 0;
}

static void records_free(Records *r) {
    free(r->op_start);
    free(r->base_start);
    free(r->usable);
}

/* FOR_EACH_RUN runs BODY for every run of bases, in order: `base` (the first base's index in
 * the chunk), `len`, and `refpos`: the reference position of the first (the run's bases are at
 * refpos, refpos + 1, ...), or -1 for bases that are not aligned. An aligned operation whose
 * positions would leave [0, 2^31) is visited base by base, with each position wrapped to int32. */
#define FOR_EACH_RUN(R, BODY)                                                                        \
    for (Py_ssize_t i_ = 0; i_ < (R)->n; i_++) {                                                      \
        int64_t b_ = (R)->base_start[i_], bend_ = (R)->base_start[i_ + 1];                            \
        if (!(R)->usable[i_]) {                                                                       \
            if (bend_ > b_) { int64_t base = b_, len = bend_ - b_, refpos = -1; BODY }                \
            continue;                                                                                 \
        }                                                                                             \
        int64_t rw_ = 0;                                                                              \
        for (int64_t k_ = (R)->op_start[i_]; k_ < (R)->op_start[i_ + 1]; k_++) {                      \
            uint32_t c_ = (R)->cigar[k_], op_ = c_ & 15;                                              \
            int64_t l_ = c_ >> 4;                                                                     \
            if (l_ && ALIGNED(op_)) {                                                                 \
                int64_t s_ = (R)->pos[i_] + rw_;                                                      \
                if (s_ >= 0 && s_ + l_ - 1 <= INT32_MAX) {                                            \
                    int64_t base = b_, len = l_, refpos = s_; BODY                                    \
                } else {                                                                              \
                    for (int64_t j_ = 0; j_ < l_; j_++) {                                             \
                        int64_t base = b_ + j_, len = 1, refpos = (int32_t)(uint32_t)(s_ + j_);       \
                        if (refpos < 0) refpos = -1;                                                  \
                        BODY                                                                          \
                    }                                                                                 \
                }                                                                                     \
                b_ += l_;                                                                             \
            } else if (l_ && QCONS(op_)) {                                                            \
                int64_t base = b_, len = l_, refpos = -1; BODY                                        \
                b_ += l_;                                                                             \
            }                                                                                         \
            if (RCONS(op_)) rw_ += l_;                                                                \
        }                                                                                             \
    }

/* The span of aligned positions [lo, hi] and the count of aligned bases. */
static void aligned_span(Records *r, int64_t *lo, int64_t *hi, int64_t *n_aligned) {
    int64_t l = INT64_MAX, h = -1, n = 0;
    FOR_EACH_RUN(r, if (refpos >= 0) {
        if (refpos < l) l = refpos;
        if (refpos + len - 1 > h) h = refpos + len - 1;
        n += len;
    } (void)base;)
    *lo = l, *hi = h, *n_aligned = n;
}

static inline uint8_t nibble(const uint8_t *p, int64_t nib) { return nib & 1 ? p[nib >> 1] & 15 : p[nib >> 1] >> 4; }

/* The records' arrays from Python buffers (checked sizes). */
static int get_records(Py_buffer *l_seq, Py_buffer *pos, Py_buffer *flag, Py_buffer *n_ops, Py_buffer *cigar,
                       Records *r) {
    Py_ssize_t n = l_seq->len / 8;
    if (pos->len != n * 8 || flag->len != n * 2 || n_ops->len != n * 8 || cigar->len % 4) return -1;
    r->n = n;
    r->l_seq = l_seq->buf;
    r->pos = pos->buf;
    r->flag = flag->buf;
    r->n_ops = n_ops->buf;
    r->cigar = cigar->buf;
    r->n_cigar = cigar->len / 4;
    return 0;
}

/* Each record's codes are nibbles of its own bytes; base b of record i is nibble
 * (2 * byte_start[i] + (b - base_start[i])). */
typedef struct { const uint8_t *p; int64_t *byte_start; } Packed;

static int packed_init(Packed *pk, const uint8_t *p, Records *r, Py_ssize_t len) {
    pk->p = p;
    pk->byte_start = malloc((r->n + 1) * sizeof(int64_t));
    if (!pk->byte_start) return -1;
    int64_t o = 0;
    for (Py_ssize_t i = 0; i < r->n; i++) { pk->byte_start[i] = o; o += (r->l_seq[i] + 1) / 2; }
    pk->byte_start[r->n] = o;
    return o == len ? 0 : -2;
}

/* encode(packed, l_seq_i64, pos_i64, flag_u16, n_ops_i64, cigar_u32)
 *   -> (consensus 2-bit packed, gaps u32, mismatch codes, unaligned codes, pads) */
static PyObject *c_encode(PyObject *self, PyObject *args) {
    Py_buffer seq, l_seq, pos, flag, n_ops, cigar;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*", &seq, &l_seq, &pos, &flag, &n_ops, &cigar)) return NULL;
    Records r = {0};
    Packed pk = {0};
    PyObject *result = NULL;
    uint32_t *counts = NULL, *gaps = NULL;
    uint8_t *covered = NULL, *cons = NULL, *stored = NULL, *mism = NULL, *unal = NULL, *pads = NULL, *codes = NULL;
    int err = 0;
    int64_t n_cov = 0, n_mism = 0, n_unal = 0, n_pads = 0;
    if (get_records(&l_seq, &pos, &flag, &n_ops, &cigar, &r) < 0) { err = 1; goto done; }
    Py_BEGIN_ALLOW_THREADS
    int rc = records_init(&r);
    if (rc == 0) rc = packed_init(&pk, seq.buf, &r, seq.len);
    if (rc < 0) err = 1;
    int64_t n_bases = !err && r.n ? r.base_start[r.n] : 0;
    int64_t lo = 0, hi = -1, n_aligned = 0;
    if (!err) aligned_span(&r, &lo, &hi, &n_aligned);
    int64_t span = hi >= lo ? hi - lo + 1 : 0;
    /* a record aligns at most one base to a position: under 2^16 records no count exceeds 65535,
     * and a position's four counts are the 16-bit fields of one word */
    const int packed = r.n < 65536;
    if (!err) {
        counts = packed ? calloc(span ? span * 2 : 2, sizeof(uint32_t))  /* as span u64 (below) */
                        : calloc(span ? span * 4 : 1, sizeof(uint32_t));
        covered = calloc(span ? span : 1, 1);
        cons = malloc(span ? span : 1);
        stored = malloc((span + 3) / 4 + 1);
        gaps = malloc((n_aligned ? n_aligned : 1) * sizeof(uint32_t));
        mism = malloc(n_aligned ? n_aligned : 1);
        unal = malloc(n_bases - n_aligned + 1);
        pads = malloc(r.n + 1);
        if (!counts || !covered || !cons || !stored || !gaps || !mism || !unal || !pads) err = 2;
    }
    if (!err && !(codes = malloc(n_bases + 8))) err = 2;
    if (!err) {
        const uint8_t *p = pk.p;
        /* every base's code, one per byte (records start on a byte) */
        for (Py_ssize_t i = 0; i < r.n; i++) {
            const uint8_t *src = p + pk.byte_start[i];
            uint8_t *dst = codes + r.base_start[i];
            int64_t ls = r.l_seq[i], whole = ls / 2;
            for (int64_t t = 0; t < whole; t++) { dst[2 * t] = src[t] >> 4; dst[2 * t + 1] = src[t] & 15; }
            if (ls & 1) dst[ls - 1] = src[whole] >> 4;
        }
        static const int8_t IDX[16] = {-1, 0, 1, -1, 2, -1, -1, -1, 3, -1, -1, -1, -1, -1, -1, -1};
        memset(stored, 0, (span + 3) / 4 + 1);
        if (packed) {  /* a base adds its field's 1 (A C G T; 0 for any other code) without a branch */
            static const uint64_t INC[16] = {0, 1, 1ull << 16, 0, 1ull << 32, 0, 0, 0, 1ull << 48,
                                             0, 0, 0, 0, 0, 0, 0};
            uint64_t *c64 = (uint64_t *)counts;  /* span * 4 u32: room for span u64 */
            FOR_EACH_RUN(&r, if (refpos >= 0) {
                const uint8_t *cb = codes + base;
                uint64_t *k = c64 + (refpos - lo);
                memset(covered + (refpos - lo), 1, len);
                for (int64_t j = 0; j < len; j++) k[j] += INC[cb[j]];
            })
        } else {
            FOR_EACH_RUN(&r, if (refpos >= 0) {
                const uint8_t *cb = codes + base;
                uint32_t *k = counts + (refpos - lo) * 4;
                memset(covered + (refpos - lo), 1, len);
                for (int64_t j = 0; j < len; j++, k += 4) {
                    int8_t x = IDX[cb[j]];
                    if (x >= 0) k[x]++;
                }
            })
        }
        /* each position's consensus: the most counted base, the first of A C G T on a tie */
        const uint64_t *c64 = (const uint64_t *)counts;
        for (int64_t x = 0; x < span; x++) {
            uint32_t k[4];
            if (packed) {
                uint64_t w = c64[x];
                k[0] = (uint32_t)(w & 0xffff); k[1] = (uint32_t)(w >> 16 & 0xffff);
                k[2] = (uint32_t)(w >> 32 & 0xffff); k[3] = (uint32_t)(w >> 48);
            } else {
                memcpy(k, counts + x * 4, sizeof k);
            }
            uint8_t best = 0;
            for (uint8_t t = 1; t < 4; t++) if (k[t] > k[best]) best = t;
            cons[x] = ACGT[best];
            if (covered[x]) {
                stored[n_cov >> 2] |= best << (6 - 2 * (n_cov & 3));
                n_cov++;
            }
        }
        /* the aligned bases that differ (as gaps between their ordinals), and the unaligned bases */
        int64_t k_al = 0, prev = 0;
        FOR_EACH_RUN(&r, {
            const uint8_t *cb = codes + base;
            if (refpos >= 0) {
                const uint8_t *cc = cons + (refpos - lo);
                int64_t j = 0;
                while (j < len) {
                    if (j + 8 <= len) { /* eight bases at once: most equal the consensus */
                        uint64_t u;
                        uint64_t v;
                        memcpy(&u, cb + j, 8);
                        memcpy(&v, cc + j, 8);
                        if (u == v) { j += 8; continue; }
                    }
                    int64_t e = j + 8 < len ? j + 8 : len;
                    for (; j < e; j++) {
                        if (cb[j] != cc[j]) {
                            gaps[n_mism] = (uint32_t)(k_al + j - prev);
                            mism[n_mism++] = cb[j];
                            prev = k_al + j;
                        }
                    }
                }
                k_al += len;
            } else {
                memcpy(unal + n_unal, cb, len);
                n_unal += len;
            }
        })
        for (Py_ssize_t i = 0; i < r.n; i++)
            if (r.l_seq[i] & 1) pads[n_pads++] = p[pk.byte_start[i + 1] - 1] & 15;
    }
    Py_END_ALLOW_THREADS
    if (err == 1) { PyErr_SetString(PyExc_ValueError, "record lengths do not match the sequence column"); goto done; }
    if (err == 2) { PyErr_NoMemory(); goto done; }
    result = Py_BuildValue("y#y#y#y#y#", (char *)stored, (Py_ssize_t)((n_cov + 3) / 4), (char *)gaps,
                           (Py_ssize_t)(n_mism * 4), (char *)mism, (Py_ssize_t)n_mism, (char *)unal,
                           (Py_ssize_t)n_unal, (char *)pads, (Py_ssize_t)n_pads);
done:
    free(counts); free(covered); free(cons); free(stored); free(gaps); free(mism); free(unal); free(pads);
    free(codes); free(pk.byte_start);
    records_free(&r);
    PyBuffer_Release(&seq); PyBuffer_Release(&l_seq); PyBuffer_Release(&pos); PyBuffer_Release(&flag);
    PyBuffer_Release(&n_ops); PyBuffer_Release(&cigar);
    return result;
}

/* layout(l_seq_i64, pos_i64, flag_u16, n_ops_i64, cigar_u32) -> (bases, aligned, covered, odd records) */
static PyObject *c_layout(PyObject *self, PyObject *args) {
    Py_buffer l_seq, pos, flag, n_ops, cigar;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*", &l_seq, &pos, &flag, &n_ops, &cigar)) return NULL;
    Records r = {0};
    PyObject *result = NULL;
    uint8_t *covered = NULL;
    int err = 0;
    int64_t n_bases = 0, n_aligned = 0, n_cov = 0, n_odd = 0;
    if (get_records(&l_seq, &pos, &flag, &n_ops, &cigar, &r) < 0) { err = 1; goto out; }
    Py_BEGIN_ALLOW_THREADS
    if (records_init(&r) < 0) err = 1;
    if (!err) {
        int64_t lo, hi;
        n_bases = r.base_start[r.n];
        aligned_span(&r, &lo, &hi, &n_aligned);
        int64_t span = hi >= lo ? hi - lo + 1 : 0;
        covered = calloc(span ? span : 1, 1);
        if (!covered) err = 2;
        else {
            FOR_EACH_RUN(&r, if (refpos >= 0) memset(covered + (refpos - lo), 1, len); (void)base;)
            for (int64_t x = 0; x < span; x++) n_cov += covered[x];
        }
        for (Py_ssize_t i = 0; i < r.n; i++) n_odd += r.l_seq[i] & 1;
    }
    Py_END_ALLOW_THREADS
out:
    if (err == 1) PyErr_SetString(PyExc_ValueError, "record lengths do not match the sequence column");
    else if (err == 2) PyErr_NoMemory();
    else result = Py_BuildValue("LLLL", (long long)n_bases, (long long)n_aligned, (long long)n_cov, (long long)n_odd);
    free(covered);
    records_free(&r);
    PyBuffer_Release(&l_seq); PyBuffer_Release(&pos); PyBuffer_Release(&flag); PyBuffer_Release(&n_ops);
    PyBuffer_Release(&cigar);
    return result;
}

/* decode(out, cons_packed, gaps_u32, mism, unal, pads, l_seq, pos, flag, n_ops, cigar[, keep_u8]): the
 * packed sequences written into out (sized by the caller: sum((l_seq + 1) // 2)); the sections' sizes
 * were checked against layout() by the caller. With keep (a byte a record), only the records whose
 * byte is not 0 are written (the others' bytes are left as they are); every section is read and
 * checked all the same. Raises ValueError for values no writer makes. */
static PyObject *c_decode(PyObject *self, PyObject *args) {
    Py_buffer out, consb, gapsb, mismb, unalb, padsb, l_seq, pos, flag, n_ops, cigar, keepb = {0};
    if (!PyArg_ParseTuple(args, "w*y*y*y*y*y*y*y*y*y*y*|y*", &out, &consb, &gapsb, &mismb, &unalb, &padsb, &l_seq,
                          &pos, &flag, &n_ops, &cigar, &keepb))
        return NULL;
    const uint8_t *kp = keepb.obj ? keepb.buf : NULL;
    Records r = {0};
    uint8_t *full = NULL;
    const char *why = NULL;
    int nomem = 0;
    if (get_records(&l_seq, &pos, &flag, &n_ops, &cigar, &r) < 0) { why = "record lengths do not match"; goto out; }
    if (kp && keepb.len != r.n) { why = "the keep mask does not match the records"; goto out; }
    Py_BEGIN_ALLOW_THREADS
    if (records_init(&r) < 0) why = "record lengths do not match the sequence column";
    int64_t lo = 0, hi = -1, n_aligned = 0;
    uint8_t *scratch = NULL;
    if (!why) {
        aligned_span(&r, &lo, &hi, &n_aligned);
        int64_t span = hi >= lo ? hi - lo + 1 : 0, longest = 0;
        for (Py_ssize_t i = 0; i < r.n; i++) if (r.l_seq[i] > longest) longest = r.l_seq[i];
        full = calloc(span ? span : 1, 1);  /* 0: not covered; else the consensus code */
        scratch = malloc(longest + 1);
        if (!full || !scratch) nomem = 1;
    }
    if (!why && !nomem) {
        int64_t span = hi >= lo ? hi - lo + 1 : 0, n_cov = 0, total = 0;
        FOR_EACH_RUN(&r, if (refpos >= 0) memset(full + (refpos - lo), 1, len); (void)base;)
        const uint8_t *cp = consb.buf;
        for (int64_t x = 0; x < span; x++) n_cov += full[x];
        for (Py_ssize_t i = 0; i < r.n; i++) total += (r.l_seq[i] + 1) / 2;
        const uint32_t *g = gapsb.buf;
        const uint8_t *mc = mismb.buf, *uc = unalb.buf, *pc = padsb.buf;
        Py_ssize_t n_mism = gapsb.len / 4;
        int64_t n_odd = 0;
        for (Py_ssize_t i = 0; i < r.n; i++) n_odd += r.l_seq[i] & 1;
        if (total != out.len || (n_cov + 3) / 4 != consb.len || mismb.len != n_mism ||
            unalb.len != r.base_start[r.n] - n_aligned || padsb.len != n_odd)
            why = "a consensus payload section has the wrong size";
        for (Py_ssize_t x = 0; x < mismb.len && !why; x++) if (mc[x] > 15) why = "base code out of range";
        for (Py_ssize_t x = 0; x < unalb.len && !why; x++) if (uc[x] > 15) why = "base code out of range";
        for (Py_ssize_t x = 0; x < padsb.len && !why; x++) if (pc[x] > 15) why = "pad nibble out of range";
        for (int64_t x = 0, c = 0; x < span && !why; x++)
            if (full[x]) { full[x] = ACGT[(cp[c >> 2] >> (6 - 2 * (c & 3))) & 3]; c++; }
        /* the mismatches' ordinals among aligned bases: running sums of the gaps, rising after the first */
        int64_t next = n_mism ? (int64_t)g[0] : INT64_MAX, k_al = 0;
        Py_ssize_t m = 0, u = 0, pd = 0;
        uint8_t *o = out.buf;
        int64_t rec_byte = 0;
        Py_ssize_t cur = 0;
        if (!why) {
            /* records are filled in scratch, then packed; a record ends when the next begins */
#define FLUSH_UNTIL(LAST)                                                                           \
            for (; cur < (LAST); cur++) {                                                           \
                int64_t ls = r.l_seq[cur], t;                                                       \
                if (kp && !kp[cur]) { pd += ls & 1; rec_byte += (ls + 1) / 2; continue; }           \
                for (t = 0; t + 1 < ls; t += 2) o[rec_byte + t / 2] = scratch[t] << 4 | scratch[t + 1]; \
                if (ls & 1) o[rec_byte + ls / 2] = scratch[ls - 1] << 4 | pc[pd++];                 \
                rec_byte += (ls + 1) / 2;                                                           \
            }
            FOR_EACH_RUN(&r, {
                FLUSH_UNTIL(i_)
                uint8_t *sc = scratch + (base - r.base_start[i_]);
                if (kp && !kp[i_]) {  /* not written: the mismatches and unaligned bases it holds are passed */
                    if (refpos >= 0) {
                        while (next < k_al + len) {
                            m++;
                            if (m < n_mism) {
                                if (g[m] == 0) { why = "mismatch positions out of range"; next = INT64_MAX; break; }
                                next += g[m];
                            } else next = INT64_MAX;
                        }
                        k_al += len;
                    } else u += len;
                } else if (refpos >= 0) {
                    memcpy(sc, full + (refpos - lo), len);
                    while (next < k_al + len) {
                        sc[next - k_al] = mc[m++];
                        if (m < n_mism) {
                            if (g[m] == 0) { why = "mismatch positions out of range"; next = INT64_MAX; break; }
                            next += g[m];
                        } else next = INT64_MAX;
                    }
                    k_al += len;
                } else {
                    memcpy(sc, uc + u, len);
                    u += len;
                }
            })
            FLUSH_UNTIL(r.n)
#undef FLUSH_UNTIL
        }
        if (!why && (m != n_mism || next != INT64_MAX)) why = "mismatch positions out of range";
        if (!why && (pd != padsb.len || u != unalb.len)) why = "a consensus payload section has the wrong size";
    }
    free(scratch);
    Py_END_ALLOW_THREADS
out:
    free(full);
    records_free(&r);
    PyBuffer_Release(&out); PyBuffer_Release(&consb); PyBuffer_Release(&gapsb); PyBuffer_Release(&mismb);
    PyBuffer_Release(&unalb); PyBuffer_Release(&padsb); PyBuffer_Release(&l_seq); PyBuffer_Release(&pos);
    PyBuffer_Release(&flag); PyBuffer_Release(&n_ops); PyBuffer_Release(&cigar);
    if (keepb.obj) PyBuffer_Release(&keepb);
    if (nomem) return PyErr_NoMemory();
    if (why) { PyErr_SetString(PyExc_ValueError, why); return NULL; }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"encode", c_encode, METH_VARARGS, "encode(packed, l_seq, pos, flag, n_ops, cigar) -> 5 sections"},
    {"layout", c_layout, METH_VARARGS, "layout(l_seq, pos, flag, n_ops, cigar) -> (bases, aligned, covered, odd)"},
    {"decode", c_decode, METH_VARARGS, "decode(out, cons, gaps, mism, unal, pads, l_seq, pos, flag, n_ops, cigar)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_consensus", "The consensus codec's per-base work.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__consensus(void) { return PyModule_Create(&module); }
