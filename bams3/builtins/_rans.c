/* Static rANS for bams3's qual codec: 32-bit states, 12-bit frequencies, one model per
 * context. The symbols arrive grouped by context: group k is symbols[bounds[k]:bounds[k+1]]
 * and is coded with frequency row k. Two schemes:
 *   1: byte-wise renormalisation (states in [2^23, 2^31)), 4 states (symbol i uses state i % 4);
 *   2: 16-bit renormalisation (states in [2^16, 2^32), at most one word per symbol, so a step
 *      takes its word without a loop or a branch), 32 states (symbol i uses state i % 32):
 *      enough independent work for four 8-lane AVX2 registers, which decode where the CPU has
 *      AVX2 (a scalar decoder, 8 states at a time, elsewhere; both give the same bytes).
 * Both directions release the GIL. After "rANS coding" by F. Giesen (ryg_rans, public
 * domain), whose byte-wise and word-wise coders these follow.
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
#define WL (1u << 16) /* scheme 2 */
#define NW 32
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define HAVE_PTHREAD_SCRATCH 1
#endif
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define HAVE_AVX2_PATH 1
#include <immintrin.h>
#endif

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

#ifdef HAVE_AVX2_PATH
/* Scheme 2 encoding of 32 symbols at once (AVX-512): s[0..31] with states x[0..31], exactly as
 * the scalar loop does them (symbol 31 first, each pushing its word below ptr). T[v] is the
 * current context's freq | cum << 16 for the byte value v (0: no frequency). The words of the
 * lanes that renormalise are compacted in registers with the valid ones at the top, and stored
 * ending at ptr (the store's low bytes land in the free space below). The quotient x / f is a
 * double division: x < 2^32 and f <= 4096, so the correctly rounded quotient truncates to the
 * exact one. Returns -1 when a symbol has no frequency. */
static int have_avx512;

__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi2")))
static int encode_block32(uint32_t *x, const uint8_t *s, const uint32_t *T, uint8_t **pptr) {
    uint8_t *ptr = *pptr;
    __m512i xv[2], fv[2], cv[2];
    __mmask16 m[2];
    for (int h = 0; h < 2; h++) {
        __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(s + 16 * h)));
        __m512i t = _mm512_i32gather_epi32(idx, (const void *)T, 4);
        fv[h] = _mm512_and_si512(t, _mm512_set1_epi32(0xffff));
        if (_mm512_test_epi32_mask(fv[h], fv[h]) != 0xffff) return -1;
        cv[h] = _mm512_srli_epi32(t, 16);
        xv[h] = _mm512_loadu_si512((const void *)(x + 16 * h));
        m[h] = _mm512_cmpge_epu32_mask(_mm512_srli_epi32(xv[h], 32 - SCALE_BITS), fv[h]);
    }
    const __m256i iota = _mm256_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int h = 1; h >= 0; h--) {
        int k = __builtin_popcount(m[h]);
        if (!k) continue;
        __m256i w = _mm256_maskz_compress_epi16(m[h], _mm512_cvtepi32_epi16(xv[h]));
        w = _mm256_permutexvar_epi16(_mm256_sub_epi16(iota, _mm256_set1_epi16((short)(16 - k))), w);
        _mm256_storeu_si256((__m256i *)(ptr - 32), w);
        ptr -= 2 * k;
        xv[h] = _mm512_mask_srli_epi32(xv[h], m[h], xv[h], 16);
    }
    for (int h = 0; h < 2; h++) {
        __m256i q0 = _mm512_cvttpd_epu32(_mm512_div_pd(_mm512_cvtepu32_pd(_mm512_castsi512_si256(xv[h])),
                                                       _mm512_cvtepu32_pd(_mm512_castsi512_si256(fv[h]))));
        __m256i q1 = _mm512_cvttpd_epu32(_mm512_div_pd(_mm512_cvtepu32_pd(_mm512_extracti64x4_epi64(xv[h], 1)),
                                                       _mm512_cvtepu32_pd(_mm512_extracti64x4_epi64(fv[h], 1))));
        __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(q0), q1, 1);
        __m512i r = _mm512_sub_epi32(xv[h], _mm512_mullo_epi32(q, fv[h]));
        __m512i nx = _mm512_add_epi32(_mm512_add_epi32(_mm512_slli_epi32(q, SCALE_BITS), r), cv[h]);
        _mm512_storeu_si512((void *)(x + 16 * h), nx);
    }
    *pptr = ptr;
    return 0;
}

/* The same 32 steps with AVX2 (four registers of eight states), for CPUs without AVX-512:
 * the same bytes. The words of the lanes that renormalise are written one by one, lane 31
 * first, as the scalar loop writes them; each quotient x / f is floor(x / f) of doubles (exact,
 * as above), taken 2^31 down to fit a signed 32-bit conversion and put back. */
static int have_avx2;

__attribute__((target("avx2")))
static int encode_block32_avx2(uint32_t *x, const uint8_t *s, const uint32_t *T, uint8_t **pptr) {
    uint8_t *ptr = *pptr;
    __m256i xv[4], fv[4], cv[4];
    unsigned renorm = 0;
    const __m256i low16 = _mm256_set1_epi32(0xffff);
    for (int h = 0; h < 4; h++) {
        __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(s + 8 * h)));
        __m256i t = _mm256_i32gather_epi32((const int *)T, idx, 4);
        fv[h] = _mm256_and_si256(t, low16);
        if (_mm256_movemask_epi8(_mm256_cmpeq_epi32(fv[h], _mm256_setzero_si256()))) return -1;
        cv[h] = _mm256_srli_epi32(t, 16);
        xv[h] = _mm256_loadu_si256((const __m256i *)(x + 8 * h));
        /* x >= f << 20, as x >> 20 >= f (both below 2^12 + 1: a signed compare is exact) */
        __m256i keep = _mm256_cmpgt_epi32(fv[h], _mm256_srli_epi32(xv[h], 32 - SCALE_BITS));
        unsigned m = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(keep)) ^ 0xffu;
        renorm |= m << (8 * h);
        xv[h] = _mm256_blendv_epi8(_mm256_srli_epi32(xv[h], 16), xv[h], keep);
    }
    if (renorm) {
        for (int j = 31; j >= 0; j--) {
            if (renorm >> j & 1) {
                uint32_t w = x[j];  /* the state before its shift: its low word goes out */
                ptr -= 2;
                ptr[0] = (uint8_t)(w & 0xff); ptr[1] = (uint8_t)((w >> 8) & 0xff);
            }
        }
    }
    const __m256d two31 = _mm256_set1_pd(2147483648.0);
    const __m128i top = _mm_set1_epi32((int)0x80000000u);
    for (int h = 0; h < 4; h++) {
        __m128i half[2] = {_mm256_castsi256_si128(xv[h]), _mm256_extracti128_si256(xv[h], 1)};
        __m128i fh[2] = {_mm256_castsi256_si128(fv[h]), _mm256_extracti128_si256(fv[h], 1)};
        __m128i q[2];
        for (int g = 0; g < 2; g++) {
            __m256d xd = _mm256_add_pd(_mm256_cvtepi32_pd(_mm_xor_si128(half[g], top)), two31);  /* unsigned */
            __m256d qd = _mm256_floor_pd(_mm256_div_pd(xd, _mm256_cvtepi32_pd(fh[g])));
            q[g] = _mm_xor_si128(_mm256_cvttpd_epi32(_mm256_sub_pd(qd, two31)), top);
        }
        __m256i qv = _mm256_inserti128_si256(_mm256_castsi128_si256(q[0]), q[1], 1);
        __m256i r = _mm256_sub_epi32(xv[h], _mm256_mullo_epi32(qv, fv[h]));
        __m256i nx = _mm256_add_epi32(_mm256_add_epi32(_mm256_slli_epi32(qv, SCALE_BITS), r), cv[h]);
        _mm256_storeu_si256((__m256i *)(x + 8 * h), nx);
    }
    *pptr = ptr;
    return 0;
}
#endif

static PyObject *rans_encode(PyObject *self, PyObject *args) {
    Py_buffer sym, bnd, frq, lutb = {0};
    Py_ssize_t a;
    int scheme = 1, simd = 1;
    if (!PyArg_ParseTuple(args, "y*y*y*n|iz*p", &sym, &bnd, &frq, &a, &scheme, &lutb, &simd)) return NULL;
    const uint8_t *lut = lutb.buf && lutb.len == 256 ? lutb.buf : NULL; /* values -> symbols */
    PyObject *result = NULL;
    Py_ssize_t n = sym.len, k = bnd.len / 8 - 1;
    const uint8_t *s = sym.buf;
    const int64_t *bounds = bnd.buf;
    const uint16_t *freq = frq.buf;
    uint32_t *cum = NULL;
    uint8_t *out = NULL;
    if (a < 1 || a > 256 || k < 0 || frq.len != (Py_ssize_t)(k * a * 2) || check_bounds(bounds, k, n)
        || (scheme != 1 && scheme != 2) || (lutb.buf && !lut)) {
        PyErr_SetString(PyExc_ValueError, "rans: bad arguments");
        goto done;
    }
    cum = malloc(sizeof(uint32_t) * (size_t)(k * (a + 1) + 1));
    size_t cap = (size_t)n * 2 + 4 * NW + 64;  /* at most a word per symbol, and the states */
    out = malloc(cap);
    if (!cum || !out) { PyErr_NoMemory(); goto done; }
    if (build_cum(freq, k, a, cum)) { PyErr_SetString(PyExc_ValueError, "rans: a frequency row does not sum to 4096"); goto done; }
    int bad = 0;
    uint8_t *end = out + cap, *ptr = end;
    Py_BEGIN_ALLOW_THREADS
    int ns = scheme == 2 ? NW : NSTATE;
    uint32_t x[NW];
    for (int j = 0; j < ns; j++) x[j] = scheme == 2 ? WL : RANS_L;
    Py_ssize_t r = k - 1;
#ifdef HAVE_AVX2_PATH
    int vec = scheme == 2 && (have_avx512 || have_avx2) && simd, wide = have_avx512;
    Py_ssize_t t_row = -1;
    uint32_t T[256];
#endif
    for (Py_ssize_t i = n - 1; i >= 0 && !bad; i--) {
        while (r > 0 && i < bounds[r]) r--;
#ifdef HAVE_AVX2_PATH
        if (vec && (i & 31) == 31 && i - 31 >= bounds[r]) { /* a whole block of states, in one context */
            if (r != t_row) {
                for (int v = 0; v < 256; v++) {
                    uint32_t sv = lut ? lut[v] : (uint32_t)v, fv = sv < (uint32_t)a ? freq[r * a + sv] : 0;
                    T[v] = fv ? fv | cum[r * (a + 1) + sv] << 16 : 0;
                }
                t_row = r;
            }
            if ((wide ? encode_block32(x, s + i - 31, T, &ptr) : encode_block32_avx2(x, s + i - 31, T, &ptr)) < 0) {
                bad = 1;
                break;
            }
            i -= 31;
            continue;
        }
#endif
        uint32_t sy = lut ? lut[s[i]] : s[i];
        if (sy >= (uint32_t)a) { bad = 1; break; }
        uint32_t f = freq[r * a + sy], c = cum[r * (a + 1) + sy];
        if (!f) { bad = 1; break; }
        uint32_t *xs = &x[i & (ns - 1)], xv = *xs;
        if (scheme == 2) {
            if ((uint64_t)xv >= ((uint64_t)f << (32 - SCALE_BITS))) {  /* one word: xv < 2^16 after it */
                ptr -= 2;
                ptr[0] = (uint8_t)(xv & 0xff); ptr[1] = (uint8_t)((xv >> 8) & 0xff);
                xv >>= 16;
            }
        } else {
            uint32_t xmax = ((RANS_L >> SCALE_BITS) << 8) * f;
            while (xv >= xmax) { *--ptr = (uint8_t)(xv & 0xff); xv >>= 8; }
        }
        *xs = ((xv / f) << SCALE_BITS) + (xv % f) + c;
    }
    for (int j = ns - 1; j >= 0; j--) {
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
    if (lutb.buf) PyBuffer_Release(&lutb);
    return result;
}

/* Decoding puts each quality in its place in the record order. The symbols are decoded as
 * values, not symbol ids (one table entry per slot holds the value, the frequency and the
 * start of the symbol's range, so a step is one load), context after context, and then moved
 * to their records:
 *   fixed-length reads (L bases each): the context ids `used` are cycle * 2 + read2; group g
 *     lists the records of read2 == g in stored order, each as rec * L * 2 + reversed, and the
 *     cycle c of record rec lands at rec * L + (reversed ? L - 1 - c : c). The cycles of a group
 *     are the rows of a matrix (one column per record) that is transposed 16 x 16 bytes at a
 *     time in SSE2 registers, a reversed record's 16 bytes reversed in the register;
 *   otherwise `dst` gives every grouped symbol's place. */
#define STEP(X, OUT)                                                               \
    do {                                                                           \
        DEC(X, OUT);                                                               \
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
        uint32_t e_ = tab[(X) & (M - 1)], q_ = (X) >> SCALE_BITS;                  \
        (OUT) = (uint8_t)(e_ >> 24);                                               \
        (X) = ((e_ >> SCALE_BITS) & (M - 1)) * q_ + q_ + (e_ & (M - 1));           \
    } while (0)
#define TAKE(X, N, P)                                                              \
    do {                                                                           \
        uint32_t w_ = ((uint32_t)(P)[0] << 8) | (P)[1];                            \
        (X) = ((X) << (8 * (N))) | (w_ >> (16 - 8 * (N)));                         \
    } while (0)

/* Scheme 2: a valid state is >= 2^16 before a step and >= 2^4 after it, so one 16-bit word
 * (little-endian) brings it back: WTAKE takes it without a branch (the body of the stream, at
 * least 16 bytes left); WSTEP checks the end of the stream. */
#define WTAKE(X)                                                                   \
    do {                                                                           \
        uint32_t c_ = (X) < WL, y_ = ((X) << 16) | load16(ptr);                    \
        (X) = c_ ? y_ : (X); /* both sides computed: a conditional move */         \
        ptr += 2 * c_;                                                             \
    } while (0)
#define WSTEP(X, OUT)                                                              \
    do {                                                                           \
        DEC(X, OUT);                                                               \
        if ((X) < WL) {                                                            \
            if (end - ptr < 2) { bad = 1; break; }                                 \
            (X) = ((X) << 16) | load16(ptr);                                       \
            ptr += 2;                                                              \
        }                                                                          \
    } while (0)

/* The decoding table of one context: for slot m (of M) in the range [c, c + f) of symbol s,
 * tab[m] = value << 24 | (f - 1) << 12 | (m - c); a step is x = f * (x >> 12) + (m - c). */
static void fill_table(uint32_t *tab, const uint16_t *f, const uint32_t *c, const uint8_t *vals, Py_ssize_t a) {
    for (Py_ssize_t sy = 0; sy < a; sy++) {
        uint32_t *p = tab + c[sy], hi = ((uint32_t)vals[sy] << 24) | ((uint32_t)(f[sy] - 1) << SCALE_BITS);
        for (uint32_t m = 0; m < f[sy]; m++) p[m] = hi | m;
    }
}

static inline uint32_t load16(const uint8_t *p) {  /* little-endian */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint16_t w;
    memcpy(&w, p, 2);
    return w;
#else
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8);
#endif
}

/* Scheme 1 (byte-wise, 4 states): the groups, in order, into `t`. */
static int decode_bytewise(const uint8_t **pp, const uint8_t *end, uint32_t *x, uint8_t *t, const int64_t *bounds,
                           Py_ssize_t k, const uint16_t *freq, const uint32_t *cum, const uint8_t *vals, Py_ssize_t a,
                           uint32_t *tab) {
    const uint8_t *ptr = *pp;
    int bad = 0;
    for (Py_ssize_t r = 0; r < k && !bad; r++) {
        fill_table(tab, freq + r * a, cum + r * (a + 1), vals, a);
        Py_ssize_t i = bounds[r], e = bounds[r + 1];
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
    *pp = ptr;
    return bad;
}

#ifdef HAVE_AVX2_PATH
/* For an 8-bit mask of the lanes that take a word: lane j takes word number (set bits below j). */
static uint32_t renorm_perm[256][8];

static void init_renorm_perm(void) {
    for (int b = 0; b < 256; b++)
        for (int j = 0, r = 0; j < 8; j++) {
            renorm_perm[b][j] = (b >> j) & 1 ? (uint32_t)r : 0;
            r += (b >> j) & 1;
        }
}

/* Eight states (one register) take a step: the table entries gathered, the new states, the
 * eight values stored. */
#define AVX2_STEP(X, OUT)                                                           \
    do {                                                                            \
        __m256i e_ = _mm256_i32gather_epi32((const int *)tab, _mm256_and_si256((X), mmask), 4); \
        __m256i q_ = _mm256_srli_epi32((X), SCALE_BITS);                            \
        __m256i f1_ = _mm256_and_si256(_mm256_srli_epi32(e_, SCALE_BITS), mmask);   \
        (X) = _mm256_add_epi32(_mm256_add_epi32(_mm256_mullo_epi32(f1_, q_), q_), _mm256_and_si256(e_, mmask)); \
        __m256i v_ = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(e_, topbytes), pick); \
        _mm_storel_epi64((__m128i *)(OUT), _mm256_castsi256_si128(v_));             \
    } while (0)
/* The lanes below 2^16 take the next words, in lane order. */
#define AVX2_TAKE(X)                                                                \
    do {                                                                            \
        __m256i low_ = _mm256_cmpeq_epi32(_mm256_srli_epi32((X), 16), zero);        \
        int b_ = _mm256_movemask_ps(_mm256_castsi256_ps(low_));                     \
        __m256i w_ = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)ptr));  \
        w_ = _mm256_permutevar8x32_epi32(w_, _mm256_loadu_si256((const __m256i *)renorm_perm[b_])); \
        (X) = _mm256_blendv_epi8((X), _mm256_or_si256(_mm256_slli_epi32((X), 16), w_), low_); \
        ptr += 2 * __builtin_popcount((unsigned)b_);                                \
    } while (0)

__attribute__((target("avx2,popcnt")))
static Py_ssize_t wordwise_body_avx2(const uint8_t **pp, const uint8_t *end, uint32_t *x, uint8_t *t, Py_ssize_t i,
                                     Py_ssize_t e, const uint32_t *tab, int *bad) {
    const uint8_t *ptr = *pp;
    const __m256i mmask = _mm256_set1_epi32(M - 1), zero = _mm256_setzero_si256();
    const __m256i topbytes = _mm256_setr_epi8(3, 7, 11, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                              3, 7, 11, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256i pick = _mm256_setr_epi32(0, 4, 1, 1, 1, 1, 1, 1);
    __m256i x0 = _mm256_loadu_si256((const __m256i *)x), x1 = _mm256_loadu_si256((const __m256i *)(x + 8));
    __m256i x2 = _mm256_loadu_si256((const __m256i *)(x + 16)), x3 = _mm256_loadu_si256((const __m256i *)(x + 24));
    __m256i low = zero;
    for (; i + NW <= e && end - ptr >= 2 * NW; i += NW) {
        AVX2_STEP(x0, t + i);
        AVX2_STEP(x1, t + i + 8);
        AVX2_STEP(x2, t + i + 16);
        AVX2_STEP(x3, t + i + 24);
        AVX2_TAKE(x0);
        AVX2_TAKE(x1);
        AVX2_TAKE(x2);
        AVX2_TAKE(x3);
        low = _mm256_or_si256(low, _mm256_cmpeq_epi32(_mm256_srli_epi32(_mm256_min_epu32(_mm256_min_epu32(x0, x1),
                                                                                          _mm256_min_epu32(x2, x3)), 16), zero));
        if (_mm256_movemask_ps(_mm256_castsi256_ps(low))) { *bad = 2; break; }
    }
    _mm256_storeu_si256((__m256i *)x, x0); _mm256_storeu_si256((__m256i *)(x + 8), x1);
    _mm256_storeu_si256((__m256i *)(x + 16), x2); _mm256_storeu_si256((__m256i *)(x + 24), x3);
    *pp = ptr;
    return i;
}
#endif

/* Scheme 2 (16-bit words, 32 states): the groups, in order, into `t`. In the body, blocks of 32
 * symbols: with AVX2, four registers of eight states; otherwise eight states at a time, which
 * step together and then take their words in order. */
static int decode_wordwise(const uint8_t **pp, const uint8_t *end, uint32_t *x, uint8_t *t, const int64_t *bounds,
                           Py_ssize_t k, const uint16_t *freq, const uint32_t *cum, const uint8_t *vals, Py_ssize_t a,
                           uint32_t *tab, int simd) {
    const uint8_t *ptr = *pp;
    int bad = 0;
    for (Py_ssize_t r = 0; r < k && !bad; r++) {
        fill_table(tab, freq + r * a, cum + r * (a + 1), vals, a);
        Py_ssize_t i = bounds[r], e = bounds[r + 1];
        for (; i < e && (i & (NW - 1)) && !bad; i++) WSTEP(x[i & (NW - 1)], t[i]);
#ifdef HAVE_AVX2_PATH
        if (simd && have_avx2 && !bad) {
            *pp = ptr;
            i = wordwise_body_avx2(pp, end, x, t, i, e, tab, &bad);
            ptr = *pp;
        }
#else
        (void)simd;
#endif
        for (; i + NW <= e && !bad && end - ptr >= 2 * NW; i += NW) {
            for (int s = 0; s < NW; s += 8) {
                uint32_t *xs = x + s, x0 = xs[0], x1 = xs[1], x2 = xs[2], x3 = xs[3], x4 = xs[4], x5 = xs[5],
                         x6 = xs[6], x7 = xs[7];
                uint8_t *o = t + i + s;
                DEC(x0, o[0]); DEC(x1, o[1]); DEC(x2, o[2]); DEC(x3, o[3]);
                DEC(x4, o[4]); DEC(x5, o[5]); DEC(x6, o[6]); DEC(x7, o[7]);
                WTAKE(x0); WTAKE(x1); WTAKE(x2); WTAKE(x3);
                WTAKE(x4); WTAKE(x5); WTAKE(x6); WTAKE(x7);
                bad |= ((x0 < WL) | (x1 < WL) | (x2 < WL) | (x3 < WL) | (x4 < WL) | (x5 < WL) | (x6 < WL) | (x7 < WL)) << 1;
                xs[0] = x0; xs[1] = x1; xs[2] = x2; xs[3] = x3; xs[4] = x4; xs[5] = x5; xs[6] = x6; xs[7] = x7;
            }
        }
        for (; i < e && !bad; i++) WSTEP(x[i & (NW - 1)], t[i]);
    }
    *pp = ptr;
    return bad;
}

#if defined(__SSE2__)
/* r[i] (row i, 16 bytes) -> r[j] holding byte j of every row: unpacking bytes, then pairs,
 * quads and halves of the rows two by two. */
static inline void transpose16(__m128i *r) {
    __m128i a[16], b[16], c[16];
    for (int p = 0; p < 8; p++) {  /* a[2p + h]: columns 8h.., rows 2p and 2p + 1 */
        a[2 * p] = _mm_unpacklo_epi8(r[2 * p], r[2 * p + 1]);
        a[2 * p + 1] = _mm_unpackhi_epi8(r[2 * p], r[2 * p + 1]);
    }
    for (int q = 0; q < 4; q++)  /* b[4q + 2h + l]: columns 8h + 4l.., rows 4q.. */
        for (int h = 0; h < 2; h++) {
            b[4 * q + 2 * h] = _mm_unpacklo_epi16(a[4 * q + h], a[4 * q + 2 + h]);
            b[4 * q + 2 * h + 1] = _mm_unpackhi_epi16(a[4 * q + h], a[4 * q + 2 + h]);
        }
    for (int s = 0; s < 2; s++)  /* c[8s + 4h + 2l + m]: columns 8h + 4l + 2m.., rows 8s.. */
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 2; l++) {
                c[8 * s + 4 * h + 2 * l] = _mm_unpacklo_epi32(b[8 * s + 2 * h + l], b[8 * s + 4 + 2 * h + l]);
                c[8 * s + 4 * h + 2 * l + 1] = _mm_unpackhi_epi32(b[8 * s + 2 * h + l], b[8 * s + 4 + 2 * h + l]);
            }
    for (int h = 0; h < 2; h++)  /* r[8h + 4l + 2m + o]: column 8h + 4l + 2m + o, every row */
        for (int l = 0; l < 2; l++)
            for (int m = 0; m < 2; m++) {
                int j = 4 * h + 2 * l + m;
                r[2 * j] = _mm_unpacklo_epi64(c[j], c[8 + j]);
                r[2 * j + 1] = _mm_unpackhi_epi64(c[j], c[8 + j]);
            }
}

static inline __m128i reverse16(__m128i x) {
    x = _mm_shuffle_epi32(x, _MM_SHUFFLE(0, 1, 2, 3));
    x = _mm_shufflelo_epi16(x, _MM_SHUFFLE(2, 3, 0, 1));
    x = _mm_shufflehi_epi16(x, _MM_SHUFFLE(2, 3, 0, 1));
    return _mm_or_si128(_mm_slli_epi16(x, 8), _mm_srli_epi16(x, 8));
}
#endif

/* Group gi's qualities (cycle cy of its record j at grouped[rs[2 * cy] + j]) into their records;
 * with keep (a byte a record), only the records it keeps (and those beside them, 16 at a time). */
static void place_fixed(uint8_t *o, const uint8_t *grouped, const int64_t *rs, const int64_t *g, Py_ssize_t ng,
                        Py_ssize_t len, int simd, const uint8_t *keep) {
    Py_ssize_t j = 0;
#define KEPT(J) (!keep || keep[(g[J] >> 1) / len])
#if defined(__SSE2__)
    Py_ssize_t cfull = len & ~(Py_ssize_t)15;
    for (; simd && j + 16 <= ng; j += 16) {
        int any = !keep;
        for (int t = 0; t < 16 && !any; t++) any = KEPT(j + t);
        if (!any) continue;
        for (Py_ssize_t c0 = 0; c0 < cfull; c0 += 16) {
            __m128i v[16];
            for (int t = 0; t < 16; t++) v[t] = _mm_loadu_si128((const __m128i *)(grouped + rs[2 * (c0 + t)] + j));
            transpose16(v);
            for (int t = 0; t < 16; t++) {
                uint8_t *dst = o + (g[j + t] >> 1);
                if (g[j + t] & 1) _mm_storeu_si128((__m128i *)(dst + len - 16 - c0), reverse16(v[t]));
                else _mm_storeu_si128((__m128i *)(dst + c0), v[t]);
            }
        }
        for (int t = 0; t < 16; t++) {
            uint8_t *dst = o + (g[j + t] >> 1);
            const uint8_t *src = grouped + j + t;
            if (g[j + t] & 1)
                for (Py_ssize_t cy = cfull; cy < len; cy++) dst[len - 1 - cy] = src[rs[2 * cy]];
            else
                for (Py_ssize_t cy = cfull; cy < len; cy++) dst[cy] = src[rs[2 * cy]];
        }
    }
#else
    (void)simd;
#endif
    /* record by record, its bases in order: the writes are sequential and the reads, one per row
     * of the group's cycles, stay in the rows' cache lines for 64 records */
    for (; j < ng; j++) {
        if (!KEPT(j)) continue;
        uint8_t *dst = o + (g[j] >> 1);
        const uint8_t *src = grouped + j;
        if (g[j] & 1)
            for (Py_ssize_t cy = 0; cy < len; cy++) dst[len - 1 - cy] = src[rs[2 * cy]];
        else
            for (Py_ssize_t cy = 0; cy < len; cy++) dst[cy] = src[rs[2 * cy]];
    }
#undef KEPT
}

/* The grouped symbols of a decode go to a buffer each thread keeps (freed when the thread ends):
 * a chunk's qualities are ~2 MB, and fresh pages for them on every decode cost more than the
 * decoding where page faults are dear (6 us a page in a small VM). */
typedef struct {
    uint8_t *buf;
    size_t cap;
} scratch_t;

#ifdef HAVE_PTHREAD_SCRATCH
static pthread_key_t scratch_key;
static int scratch_ok;

static void scratch_free(void *p) {
    scratch_t *s = p;
    if (s) { free(s->buf); free(s); }
}

static uint8_t *scratch_get(size_t n) {
    if (!scratch_ok) return NULL;
    scratch_t *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) return NULL;
        if (pthread_setspecific(scratch_key, s)) { free(s); return NULL; }
    }
    if (s->cap < n) {
        uint8_t *b = realloc(s->buf, n);
        if (!b) return NULL;
        s->buf = b;
        s->cap = n;
    }
    return s->buf;
}
#endif

static PyObject *rans_decode(PyObject *self, PyObject *args) {
    Py_buffer dat, bnd, frq, val, usd, g0, g1, dst, kpb = {0};
    Py_ssize_t n, len;
    int scheme = 1, simd = 1;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*ny*y*y*n|iiy*", &dat, &bnd, &frq, &val, &usd, &len, &g0, &g1, &dst, &n,
                          &scheme, &simd, &kpb))
        return NULL;
    /* keep (fixed-length reads; a byte a record): only the kept records' qualities are placed, the
     * others' bytes are 0 (every symbol is decoded and checked all the same) */
    const uint8_t *keep = kpb.obj && len > 0 && kpb.len * len == n ? kpb.buf : NULL;
    PyObject *result = NULL;
    Py_ssize_t k = bnd.len / 8 - 1, a = val.len;
    const int64_t *bounds = bnd.buf;
    const uint16_t *freq = frq.buf, *used = usd.buf;
    const uint8_t *vals = val.buf;
    const int64_t *grp[2] = {g0.buf, g1.buf}, *dest = dst.buf;
    Py_ssize_t ng[2] = {g0.len / 8, g1.len / 8};
    int fixed = len > 0, nstate = scheme == 2 ? NW : NSTATE;
    uint32_t *cum = NULL, *tab = NULL;
    uint8_t *grouped = NULL, *owned = NULL;
    int64_t *rowstart = NULL;
    if (a < 1 || a > 256 || k < 0 || n < 0 || frq.len != (Py_ssize_t)(k * a * 2) || check_bounds(bounds, k, n)
        || (fixed ? usd.len != k * 2 : dst.len != n * 8) || (scheme != 1 && scheme != 2)) {
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
#ifdef HAVE_PTHREAD_SCRATCH
    grouped = scratch_get((size_t)n + 1);
#endif
    if (!grouped) grouped = owned = malloc((size_t)n + 1);
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
    uint32_t x[NW];
    uint32_t lower = scheme == 2 ? WL : RANS_L;
    if (end - ptr < 4 * nstate) bad = 1;
    for (int j = 0; j < nstate && !bad; j++) {
        x[j] = (uint32_t)ptr[0] | ((uint32_t)ptr[1] << 8) | ((uint32_t)ptr[2] << 16) | ((uint32_t)ptr[3] << 24);
        ptr += 4;
    }
    if (!bad)
        bad = scheme == 2 ? decode_wordwise(&ptr, end, x, grouped, bounds, k, freq, cum, vals, a, tab, simd)
                          : decode_bytewise(&ptr, end, x, grouped, bounds, k, freq, cum, vals, a, tab);
    if (!bad && fixed) {
        if (keep) memset(o, 0, (size_t)n);
        for (int gi = 0; gi < 2; gi++) place_fixed(o, grouped, rowstart + gi, grp[gi], ng[gi], len, simd, keep);
    } else if (!bad) {
        for (Py_ssize_t i = 0; i < n; i++) o[dest[i]] = grouped[i];
    }
    /* The encoder started every state at its lower bound and consumed the whole stream. */
    for (int j = 0; j < nstate && !bad; j++)
        if (x[j] != lower) bad = 2;
    if (!bad && ptr != end) bad = 2;
    Py_END_ALLOW_THREADS
    if (bad) {
        Py_CLEAR(result);
        PyErr_SetString(PyExc_ValueError, bad == 1 ? "rans: the coded stream ends early"
                                                   : "rans: the coded stream does not decode to its end");
    }
done:
    free(cum); free(tab); free(owned); free(rowstart);
    PyBuffer_Release(&dat); PyBuffer_Release(&bnd); PyBuffer_Release(&frq); PyBuffer_Release(&val);
    PyBuffer_Release(&usd); PyBuffer_Release(&g0); PyBuffer_Release(&g1); PyBuffer_Release(&dst);
    if (kpb.obj) PyBuffer_Release(&kpb);
    return result;
}

/* The encoder's grouping of fixed-length reads (L qualities each), the inverse of place_fixed:
 * row (c, g) holds cycle c (sequencing order: a reversed record's qualities read back to front)
 * of every record of group g (read2 flag), in stored order; rows go c = 0, 1, ... and within c
 * group 0 then group 1. Also the count of every value in every row (context c * 2 + g). */
static PyObject *rans_group_fixed(PyObject *self, PyObject *args) {
    Py_buffer qb, revb, r2b;
    Py_ssize_t len;
    int simd = 1;
    if (!PyArg_ParseTuple(args, "y*ny*y*|i", &qb, &len, &revb, &r2b, &simd)) return NULL;
    PyObject *grouped = NULL, *counts = NULL, *result = NULL;
    int64_t *g[2] = {NULL, NULL};
    Py_ssize_t nrec = revb.len, n = qb.len;
    if (len < 1 || r2b.len != nrec || nrec * len != n) {
        PyErr_SetString(PyExc_ValueError, "rans: bad arguments");
        goto done;
    }
    const uint8_t *q = qb.buf, *rev = revb.buf, *r2 = r2b.buf;
    Py_ssize_t ng[2] = {0, 0};
    for (Py_ssize_t i = 0; i < nrec; i++) ng[r2[i] != 0]++;
    g[0] = malloc(sizeof(int64_t) * (size_t)(ng[0] + 1));
    g[1] = malloc(sizeof(int64_t) * (size_t)(ng[1] + 1));
    grouped = PyBytes_FromStringAndSize(NULL, n);
    counts = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(2 * len * 256 * sizeof(int64_t)));
    if (!g[0] || !g[1] || !grouped || !counts) { if (!PyErr_Occurred()) PyErr_NoMemory(); goto done; }
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(grouped);
    int64_t *cnt = (int64_t *)PyBytes_AS_STRING(counts);
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t k[2] = {0, 0};
    for (Py_ssize_t i = 0; i < nrec; i++) {  /* each record as rec * L * 2 + reversed, by group */
        int gi = r2[i] != 0;
        g[gi][k[gi]++] = (int64_t)i * len * 2 + (rev[i] != 0);
    }
    for (int gi = 0; gi < 2; gi++) {
        Py_ssize_t base = gi ? ng[0] : 0, j = 0;
        const int64_t *gr = g[gi];
#if defined(__SSE2__)
        Py_ssize_t cfull = len & ~(Py_ssize_t)15;
        for (; simd && j + 16 <= ng[gi]; j += 16) {
            for (Py_ssize_t c0 = 0; c0 < cfull; c0 += 16) {
                __m128i v[16];
                for (int t = 0; t < 16; t++) {
                    const uint8_t *src = q + (gr[j + t] >> 1);
                    v[t] = (gr[j + t] & 1) ? reverse16(_mm_loadu_si128((const __m128i *)(src + len - 16 - c0)))
                                           : _mm_loadu_si128((const __m128i *)(src + c0));
                }
                transpose16(v);
                for (int t = 0; t < 16; t++) _mm_storeu_si128((__m128i *)(out + (c0 + t) * nrec + base + j), v[t]);
            }
            for (int t = 0; t < 16; t++) {
                const uint8_t *src = q + (gr[j + t] >> 1);
                int r = (int)(gr[j + t] & 1);
                for (Py_ssize_t c = cfull; c < len; c++) out[c * nrec + base + j + t] = src[r ? len - 1 - c : c];
            }
        }
#endif
        for (; j < ng[gi]; j++) {
            const uint8_t *src = q + (gr[j] >> 1);
            if (gr[j] & 1)
                for (Py_ssize_t c = 0; c < len; c++) out[c * nrec + base + j] = src[len - 1 - c];
            else
                for (Py_ssize_t c = 0; c < len; c++) out[c * nrec + base + j] = src[c];
        }
    }
    /* counts per row, four histograms at a time so that equal neighbours do not wait on each other */
    memset(cnt, 0, (size_t)(2 * len * 256) * sizeof(int64_t));
    for (Py_ssize_t c = 0; c < len; c++)
        for (int gi = 0; gi < 2; gi++) {
            const uint8_t *row = out + c * nrec + (gi ? ng[0] : 0);
            Py_ssize_t m = ng[gi], i = 0;
            uint32_t h[4][256];
            memset(h, 0, sizeof h);
            for (; i + 4 <= m; i += 4) { h[0][row[i]]++; h[1][row[i + 1]]++; h[2][row[i + 2]]++; h[3][row[i + 3]]++; }
            for (; i < m; i++) h[0][row[i]]++;
            int64_t *dst = cnt + (2 * c + gi) * 256;
            for (int v = 0; v < 256; v++) dst[v] = (int64_t)h[0][v] + h[1][v] + h[2][v] + h[3][v];
        }
    Py_END_ALLOW_THREADS
    result = PyTuple_Pack(2, grouped, counts);
done:
    Py_XDECREF(grouped); Py_XDECREF(counts);
    free(g[0]); free(g[1]);
    PyBuffer_Release(&qb); PyBuffer_Release(&revb); PyBuffer_Release(&r2b);
    return result;
}

/* fixed_groups(flag_u16, L) -> (group0_i64, group1_i64): decode's record groups for fixed-length
 * reads of L qualities, as group_fixed makes them: each record as rec * L * 2 + reversed (flag
 * 0x10), in stored order, group 1 the second reads (flag 0x80). The decoder's half of
 * group_fixed, over the flag column alone (the quick path has no numpy to build them with). */
static PyObject *rans_fixed_groups(PyObject *self, PyObject *args) {
    Py_buffer fb;
    Py_ssize_t len;
    if (!PyArg_ParseTuple(args, "y*n", &fb, &len)) return NULL;
    PyObject *out[2] = {NULL, NULL}, *result = NULL;
    Py_ssize_t nrec = fb.len / 2, ng[2] = {0, 0};
    const uint8_t *f = fb.buf;
    if (len < 1 || fb.len % 2 || nrec > PY_SSIZE_T_MAX / 2 / len) {
        PyErr_SetString(PyExc_ValueError, "rans: bad arguments");
        goto done;
    }
    for (Py_ssize_t i = 0; i < nrec; i++) ng[(f[2 * i] & 0x80) != 0]++;
    for (int gi = 0; gi < 2; gi++)
        if (!(out[gi] = PyBytes_FromStringAndSize(NULL, ng[gi] * 8))) goto done;
    int64_t *g[2] = {(int64_t *)PyBytes_AS_STRING(out[0]), (int64_t *)PyBytes_AS_STRING(out[1])};
    Py_ssize_t k[2] = {0, 0};
    for (Py_ssize_t i = 0; i < nrec; i++) {
        int gi = (f[2 * i] & 0x80) != 0;
        g[gi][k[gi]++] = (int64_t)i * len * 2 + ((f[2 * i] & 0x10) != 0);
    }
    result = PyTuple_Pack(2, out[0], out[1]);
done:
    Py_XDECREF(out[0]);
    Py_XDECREF(out[1]);
    PyBuffer_Release(&fb);
    return result;
}

/* variable_layout(l_seq_i64, flag_u16, n) -> (sizes_i64[1024], dst_i64[n]): reads of many lengths
 * (n qualities in all): each quality's context, min(cycle, 511) * 2 + read2 (the cycle counted
 * from the read's end where flag 0x10 says its qualities are stored reversed), the qualities of
 * each context, and where each quality of the grouping (ascending context, stored order within
 * one) is in stored order: numpy's bincount and stable argsort of the contexts, in one pass.
 * The lengths are the caller's to check (non-negative, summing to n). */
static PyObject *rans_variable_layout(PyObject *self, PyObject *args) {
    Py_buffer lb, fb;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "y*y*n", &lb, &fb, &n)) return NULL;
    PyObject *sizes = NULL, *dst = NULL, *result = NULL;
    Py_ssize_t nrec = lb.len / 8;
    const int64_t *l_seq = lb.buf;
    const uint8_t *f = fb.buf;
    int64_t total = 0;
    int bad = lb.len % 8 || fb.len != 2 * nrec || n < 0;
    for (Py_ssize_t i = 0; i < nrec && !bad; i++) {
        if (l_seq[i] < 0 || l_seq[i] > n - total) bad = 1;
        else total += l_seq[i];
    }
    if (bad || total != n) {
        PyErr_SetString(PyExc_ValueError, "rans: bad arguments");
        goto done;
    }
    sizes = PyBytes_FromStringAndSize(NULL, 1024 * 8);
    dst = PyBytes_FromStringAndSize(NULL, n * 8);
    if (!sizes || !dst) goto done;
    int64_t *sz = (int64_t *)PyBytes_AS_STRING(sizes), *d = (int64_t *)PyBytes_AS_STRING(dst), start[1024];
    memset(sz, 0, 1024 * 8);
    for (Py_ssize_t i = 0; i < nrec; i++) {  /* contexts' sizes: cycles 0..min(L, 512) - 1 once each, the rest at 511 */
        int64_t len = l_seq[i], r2 = (f[2 * i] & 0x80) != 0;
        for (int64_t c = 0; c < len && c < 511; c++) sz[c * 2 + r2]++;
        if (len > 511) sz[511 * 2 + r2] += len - 511;
    }
    int64_t o = 0;
    for (int c = 0; c < 1024; c++) { start[c] = o; o += sz[c]; }
    int64_t q = 0;
    for (Py_ssize_t i = 0; i < nrec; i++) {
        int64_t len = l_seq[i], r2 = (f[2 * i] & 0x80) != 0, rev = (f[2 * i] & 0x10) != 0;
        for (int64_t j = 0; j < len; j++, q++) {
            int64_t cyc = rev ? len - 1 - j : j;
            int ctx = (int)((cyc < 511 ? cyc : 511) * 2 + r2);
            d[start[ctx]++] = q;
        }
    }
    result = PyTuple_Pack(2, sizes, dst);
done:
    Py_XDECREF(sizes);
    Py_XDECREF(dst);
    PyBuffer_Release(&lb);
    PyBuffer_Release(&fb);
    return result;
}

static PyMethodDef methods[] = {
    {"variable_layout", rans_variable_layout, METH_VARARGS,
     "variable_layout(l_seq_i64, flag_u16, n) -> (sizes_i64[1024], dst_i64[n]): contexts' sizes, the stable grouping"},
    {"fixed_groups", rans_fixed_groups, METH_VARARGS,
     "fixed_groups(flag_u16, L) -> (group0_i64, group1_i64): each record as rec * 2L + reversed, by read2"},
    {"encode", rans_encode, METH_VARARGS, "encode(symbols, bounds_i64, freqs_u16, A, scheme=1, lut=None, simd=True) -> bytes (lut: 256 bytes, value -> symbol; simd: AVX-512 where the CPU has it, the same bytes)"},
    {"group_fixed", rans_group_fixed, METH_VARARGS,
     "group_fixed(qualities, L, reversed_u8, read2_u8, simd=1) -> (grouped, counts_i64[2L][256])"},
    {"decode", rans_decode, METH_VARARGS,
     "decode(data, bounds_i64, freqs_u16, values_u8, used_u16, L, group0_i64, group1_i64, dst_i64, n, scheme=1, simd=1)"
     " -> qualities in record order (simd=0: the placement without SSE2)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_rans", "Static interleaved rANS (bams3 qual codec).", -1, methods};

PyMODINIT_FUNC PyInit__rans(void) {
#ifdef HAVE_PTHREAD_SCRATCH
    scratch_ok = pthread_key_create(&scratch_key, scratch_free) == 0;
#endif
#ifdef HAVE_AVX2_PATH
    init_renorm_perm();
    __builtin_cpu_init();
    have_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
    have_avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                  __builtin_cpu_supports("avx512vbmi2") && getenv("BAMS3_NO_AVX512") == NULL;
#endif
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "AVX2",
#ifdef HAVE_AVX2_PATH
                                     have_avx2
#else
                                     0
#endif
                                     ) < 0) Py_CLEAR(m);
    if (m && PyModule_AddIntConstant(m, "AVX512",
#ifdef HAVE_AVX2_PATH
                                     have_avx512
#else
                                     0
#endif
                                     ) < 0) Py_CLEAR(m);
    return m;
}
