/* host.c: see host.h. Kernels for a host CPU with SIMD, written for gcc's auto-vectorizer rather than for RV32's
 * registers (gemv.c, attention.c): contiguous rows, int32 accumulators, one reduction per loop.
 *
 * GEMV: the dot product of an int8 row with x is a sum of 16-bit products (|w * x| <= 2^14) into 32-bit lanes, the
 * shape of SSE2's pmaddwd / AVX2's vpmaddwd. gcc recognizes it (a dot-product reduction) when both operands are 16-bit
 * in memory: x is widened to int16 once per call (HOST_X_MAX columns on the stack; a longer x takes the same loop on
 * int8 x, which gcc vectorizes with 16-bit multiplies instead). The requantization is the definition in 64 bits
 * (kernels.requant_half_up): once per row, a small part of a row's work.
 */
#include "host.h"

#include "deeploy_kernels.h"

#define HOST_X_MAX 4096 /* columns widened on the stack: 8 KiB */

/* floor(acc * mult / 2^s + 1/2) clamped to [lo, hi], 0 <= s <= 62 (|acc * mult| < 2^62: the sum fits int64) */
static inline int32_t requant_half_up(int32_t acc, int32_t mult, int32_t s, int32_t lo, int32_t hi) {
    int64_t v = (int64_t)acc * mult;
    if (s > 0) v = (v + ((int64_t)1 << (s - 1))) >> s;
    return v < lo ? lo : v > hi ? hi : (int32_t)v;
}

/* sum_i w[i] * x[i], x widened: the loop gcc turns into vpmovsxbw + vpmaddwd + vpaddd */
static inline int32_t dot_i16(const int8_t *w, const int16_t *x, int32_t n) {
    int32_t acc = 0;
    for (int32_t i = 0; i < n; i++) acc += (int16_t)w[i] * x[i];
    return acc;
}

/* the four dot products of rows w, w + n, w + 2n, w + 3n with x in one pass: x loaded once for the four */
static inline void dot4_i16(int32_t *acc, const int8_t *w, const int16_t *x, int32_t n) {
    const int8_t *w1 = w + n, *w2 = w1 + n, *w3 = w2 + n;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (int32_t i = 0; i < n; i++) {
        a0 += (int16_t)w[i] * x[i];
        a1 += (int16_t)w1[i] * x[i];
        a2 += (int16_t)w2[i] * x[i];
        a3 += (int16_t)w3[i] * x[i];
    }
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
}

/* the eight dot products of rows w, w + n, ..., w + 7n with x in one pass */
static inline void dot8_i16(int32_t *acc, const int8_t *w, const int16_t *x, int32_t n) {
    const int8_t *w1 = w + n, *w2 = w1 + n, *w3 = w2 + n, *w4 = w3 + n, *w5 = w4 + n, *w6 = w5 + n, *w7 = w6 + n;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    for (int32_t i = 0; i < n; i++) {
        a0 += (int16_t)w[i] * x[i];
        a1 += (int16_t)w1[i] * x[i];
        a2 += (int16_t)w2[i] * x[i];
        a3 += (int16_t)w3[i] * x[i];
        a4 += (int16_t)w4[i] * x[i];
        a5 += (int16_t)w5[i] * x[i];
        a6 += (int16_t)w6[i] * x[i];
        a7 += (int16_t)w7[i] * x[i];
    }
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3, acc[4] = a4, acc[5] = a5, acc[6] = a6, acc[7] = a7;
}

/* the same on int8 x (n_in > HOST_X_MAX) */
static inline int32_t dot_i8(const int8_t *w, const int8_t *x, int32_t n) {
    int32_t acc = 0;
    for (int32_t i = 0; i < n; i++) acc += w[i] * x[i];
    return acc;
}

/* y[r] = q, the r-th of a block's results, as int8/int16/int32 (bits a constant after inlining) */
static inline __attribute__((always_inline)) void store(void *y, int bits, int32_t r, int32_t q) {
    if (bits == 8)
        ((int8_t *)y)[r] = (int8_t)q;
    else if (bits == 16)
        ((int16_t *)y)[r] = (int16_t)q;
    else
        ((int32_t *)y)[r] = q;
}

#define HOST_BLOCK 8 /* rows whose dot products are requantized together, in one vector */

/* y[o] = requant(W[o] . x) for every row: the dot products of a block of rows, then their requantization. For
 * 33 <= s <= 62 (most layers) the requantization is gemv.c's fast form, the same integers: with h the high word of
 * acc * mult, floor((acc * mult + 2^(s-1)) / 2^s) = (h + 2^(s-33)) >> (s-32); a loop over the block's rows that gcc
 * vectorizes. Other shifts, and a last partial block, take the definition row by row. */
static inline __attribute__((always_inline)) void gemv_rows(void *y, int bits, int32_t lo, int32_t hi,
                                                            const int8_t *x, const int8_t *w, const int32_t *mult,
                                                            const uint8_t *shift, int32_t n_in, int32_t n_out) {
    int16_t xs[HOST_X_MAX];
    const int32_t s = n_out > 0 ? shift[0] : 0, wide = n_in <= HOST_X_MAX, fast = s >= 33 && s <= 62;
    const int32_t t = s - 32, c = fast ? (int32_t)1 << (s - 33) : 0;
    const int32_t size = bits / 8;
    if (wide)
        for (int32_t i = 0; i < n_in; i++) xs[i] = x[i];
    for (int32_t o = 0; o < n_out; o += HOST_BLOCK, w += HOST_BLOCK * n_in, y = (char *)y + HOST_BLOCK * size) {
        const int32_t rows = n_out - o < HOST_BLOCK ? n_out - o : HOST_BLOCK;
        int32_t acc[HOST_BLOCK];
        int32_t r = 0;
        if (wide && rows == HOST_BLOCK)
            dot8_i16(acc, w, xs, n_in), r = HOST_BLOCK;
        if (wide)
            for (; r + 4 <= rows; r += 4) dot4_i16(acc + r, w + r * n_in, xs, n_in);
        for (; r < rows; r++) acc[r] = wide ? dot_i16(w + r * n_in, xs, n_in) : dot_i8(w + r * n_in, x, n_in);
        if (fast && rows == HOST_BLOCK) {
            for (int32_t b = 0; b < HOST_BLOCK; b++) {
                const int32_t h = (int32_t)(((int64_t)acc[b] * mult[o + b]) >> 32), q = (h + c) >> t;
                store(y, bits, b, q < lo ? lo : q > hi ? hi : q);
            }
        } else {
            for (int32_t b = 0; b < rows; b++) store(y, bits, b, requant_half_up(acc[b], mult[o + b], s, lo, hi));
        }
    }
}

void gemv_rows_i8(int8_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const uint8_t *shift,
                  int32_t n_in, int32_t n_out) {
    gemv_rows(y, 8, INT8_MIN, INT8_MAX, x, w, mult, shift, n_in, n_out);
}

void gemv_rows_i16(int16_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const uint8_t *shift,
                   int32_t n_in, int32_t n_out) {
    gemv_rows(y, 16, INT16_MIN, INT16_MAX, x, w, mult, shift, n_in, n_out);
}

void gemv_rows_i32(int32_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const uint8_t *shift,
                   int32_t n_in, int32_t n_out) {
    gemv_rows(y, 32, INT32_MIN, INT32_MAX, x, w, mult, shift, n_in, n_out);
}

/* ---- attention ---------------------------------------------------------------------------------------------------
 * One query head at a time over positions 0..n-1 (kernels.attention is the definition), in three loops that each
 * vectorize on their own: the scores of every position (a dot product of hs elements per position, a row of the
 * cache), their max, the exps in place of the scores with their sum (the table lookups), then sum_t e_t v_t into hs
 * int32 accumulators (each position's hs values of v in one vector). K and V are read where they are. A head size of
 * 8 (every TinyStories model) is a constant in its own copy of the loops, so that gcc unrolls and vectorizes them. */

#define HOST_HS_MAX 256 /* the largest head size deeploy accepts */

/* s[t] = round(q . k_t) (ROUND: as is for int8 keys, (v + 128) >> 8 for int16 keys); returns max_t s[t]. q is
 * copied: as int8 it could alias s, and gcc would load it again after every store */
#define DEFINE_HOST_SCORES(NAME, KT, ROUND)                                                                         \
    static inline __attribute__((always_inline)) int32_t NAME(int32_t *s, const int8_t *q, const KT *k,           \
                                                              int32_t k_stride, int32_t n, int32_t hs) {          \
        int32_t max = INT32_MIN, qv[HOST_HS_MAX];                                                                   \
        for (int32_t d = 0; d < hs; d++) qv[d] = q[d];                                                              \
        int32_t t = 0;                                                                                              \
        for (; t + 4 <= n; t += 4) { /* four positions: four independent sums in flight */                         \
            const KT *k0 = k + (size_t)t * (size_t)k_stride, *k1 = k0 + k_stride, *k2 = k1 + k_stride,             \
                     *k3 = k2 + k_stride;                                                                           \
            int32_t y0 = 0, y1 = 0, y2 = 0, y3 = 0;                                                                 \
            for (int32_t d = 0; d < hs; d++)                                                                        \
                y0 += qv[d] * k0[d], y1 += qv[d] * k1[d], y2 += qv[d] * k2[d], y3 += qv[d] * k3[d];                 \
            s[t] = ROUND(y0), s[t + 1] = ROUND(y1), s[t + 2] = ROUND(y2), s[t + 3] = ROUND(y3);                     \
        }                                                                                                           \
        for (; t < n; t++) {                                                                                        \
            const KT *kt = k + (size_t)t * (size_t)k_stride;                                                        \
            int32_t y = 0;                                                                                          \
            for (int32_t d = 0; d < hs; d++) y += qv[d] * kt[d];                                                    \
            s[t] = ROUND(y);                                                                                        \
        }                                                                                                           \
        for (t = 0; t < n; t++) max = s[t] > max ? s[t] : max;                                                      \
        return max;                                                                                                 \
    }
#define HOST_AS_IS(v) (v)
DEFINE_HOST_SCORES(host_scores_i8, int8_t, HOST_AS_IS)

/* s[t] = e_t = 2^(-z_t / 2^9) from the table, z_t = floor(((max - s[t]) * mult + 2^(shift-1)) / 2^shift), 0 beyond
 * cut (z = 16 * 2^9 stands for any z past the table: its entries are below 2^16); returns sum_t e_t (attention.c's
 * exp_row, without its branch). Two loops: the z, then the table lookups (table widened to 32 bits: gathers where the
 * machine has them, AVX2's vpgatherdd) */
static inline int32_t host_exps(int32_t *s, int32_t n, int32_t max, uint32_t mult, int32_t shift, uint32_t cut,
                                const uint32_t *table) {
    const uint32_t half = 1u << (shift - 1);
    uint32_t *z = (uint32_t *)s;
    int32_t sum = 0;
    for (int32_t t = 0; t < n; t++) {
        const uint32_t d = (uint32_t)(max - s[t]);
        z[t] = d <= cut ? (d * mult + half) >> shift : 16u << 9;
    }
    for (int32_t t = 0; t < n; t++) {
        const int32_t e = (int32_t)(table[z[t] & 511u] >> (z[t] >> 9));
        s[t] = e;
        sum += e;
    }
    return sum;
}

/* acc[d] = sum_t e[t] * v[t*v_stride + d], d < hs */
static inline __attribute__((always_inline)) void host_av(int32_t *acc, const int32_t *e, const int8_t *v,
                                                          int32_t v_stride, int32_t n, int32_t hs) {
    int32_t a[HOST_HS_MAX]; /* its own: acc could be any int8 v's alias, and gcc would store it at every position */
    for (int32_t d = 0; d < hs; d++) a[d] = 0;
    for (int32_t t = 0; t < n; t++) {
        const int8_t *vt = v + (size_t)t * (size_t)v_stride;
        const int32_t et = e[t];
        for (int32_t d = 0; d < hs; d++) a[d] += et * vt[d];
    }
    for (int32_t d = 0; d < hs; d++) acc[d] = a[d];
}

/* one head whose scores are in s [n]: their exps (in place), the exp-weighted sum of its V into out [hs] (hs a
 * constant where it is inlined) */
static inline __attribute__((always_inline)) void host_finish(int8_t *out, int32_t *s, int32_t n, int32_t max,
                                                              const int8_t *v, int32_t v_stride, int32_t hs,
                                                              const int32_t *prm, const uint32_t *table) {
    int32_t acc[HOST_HS_MAX];
    int32_t sum = host_exps(s, n, max, (uint32_t)prm[0], prm[1], (uint32_t)prm[2], table);
    host_av(acc, s, v, v_stride, n, hs);
    attn_out_i8(out, acc, &sum, 1, hs, prm[3], prm[4], prm[5]);
}

/* prm = {score_mult, score_shift, score_cut, out_mult, out_shift, exp bits}; table = the exp table widened */
static inline void host_setup(int32_t *prm, uint32_t *table, int32_t score_mult, int32_t score_shift,
                              int32_t score_cut, int32_t out_mult, int32_t out_shift, const uint16_t *exp_table) {
    int32_t bits = 0;
    while ((1 << (bits + 1)) <= exp_table[0]) bits++;
    prm[0] = score_mult, prm[1] = score_shift, prm[2] = score_cut, prm[3] = out_mult, prm[4] = out_shift;
    prm[5] = bits;
    for (int32_t i = 0; i < 512; i++) table[i] = exp_table[i];
}

/* one head with K in rows (k: its first row's slice) */
#define HOST_HEAD(SCORES, hs)                                                                                        \
    do {                                                                                                             \
        const int32_t max = SCORES(scratch, q + h * (hs), k + ko, kv_dim, n, (hs));                                  \
        host_finish(out + h * (hs), scratch, n, max, v_cache + ko, kv_dim, (hs), prm, table);                       \
    } while (0)

#define DEFINE_HOST_ATTENTION(NAME, KT, SCORES)                                                                     \
    void NAME(int8_t *out, const int8_t *q, const KT *k, const int8_t *v_cache, int32_t *scratch, int32_t pos,      \
              int32_t n_heads, int32_t n_kv_heads, int32_t head_size, int32_t score_mult, int32_t score_shift,     \
              int32_t score_cut, int32_t out_mult, int32_t out_shift, const uint16_t *exp_table) {                \
        const int32_t kv_dim = n_kv_heads * head_size, group = n_heads / n_kv_heads, n = pos + 1;                 \
        int32_t prm[6];                                                                                             \
        uint32_t table[512];                                                                                        \
        host_setup(prm, table, score_mult, score_shift, score_cut, out_mult, out_shift, exp_table);                \
        for (int32_t h = 0; h < n_heads; h++) {                                                                     \
            const int32_t ko = (h / group) * head_size;                                                            \
            if (head_size == 8)                                                                                     \
                HOST_HEAD(SCORES, 8);                                                                               \
            else                                                                                                    \
                HOST_HEAD(SCORES, head_size);                                                                       \
        }                                                                                                           \
    }

DEFINE_HOST_ATTENTION(attention_host_i8, int8_t, host_scores_i8)

/* ---- int16 keys, transposed: the K cache as [kv_dim, context], a row per head dimension ---------------------------
 * rope_k16_cols writes the token's keys into column pos; attention_host_k16t then scores every position of a head in
 * hs passes over contiguous rows, s[t] += q[d] * K[d][t]: a loop over positions that gcc vectorizes (8 positions per
 * AVX2 vector), where the row layout leaves one dot product of hs elements per position. */

/* kt[i * context + pos] = sat16(round((x0*c - x1*s, x0*s + x1*c) / 2^14)) for pair (i, i+1) of every head: rope_i16's
 * integers (rope.c, kernels.rope), written down a column */
void rope_k16_cols(int16_t *kt, const int16_t *x, const int16_t *cos_row, const int16_t *sin_row, int32_t n,
                   int32_t head_size, int32_t pos, int32_t context) {
    for (int32_t i = 0; i + 1 < n; i += 2) {
        const int64_t c = cos_row[(i % head_size) / 2], sn = sin_row[(i % head_size) / 2], x0 = x[i], x1 = x[i + 1];
        kt[(size_t)i * (size_t)context + (size_t)pos] = dpl_sat16(dpl_rshift_round(x0 * c - x1 * sn, 14));
        kt[(size_t)(i + 1) * (size_t)context + (size_t)pos] = dpl_sat16(dpl_rshift_round(x0 * sn + x1 * c, 14));
    }
}

/* s[t] = (q . k_t + 128) >> 8 over the hs rows of one head (kt: its first, rows context apart); returns the max */
static inline __attribute__((always_inline)) int32_t host_scores_k16t(int32_t *s, const int8_t *q, const int16_t *kt,
                                                                      int32_t context, int32_t n, int32_t hs) {
    int32_t max = INT32_MIN, qv[HOST_HS_MAX];
    for (int32_t d = 0; d < hs; d++) qv[d] = q[d]; /* as int8, q could alias s */
    for (int32_t t = 0; t < n; t++) s[t] = 128;
    for (int32_t d = 0; d < hs; d++) {
        const int16_t *row = kt + (size_t)d * (size_t)context;
        const int32_t qd = qv[d];
        for (int32_t t = 0; t < n; t++) s[t] += qd * row[t];
    }
    for (int32_t t = 0; t < n; t++) {
        s[t] >>= 8;
        max = s[t] > max ? s[t] : max;
    }
    return max;
}

void attention_host_k16t(int8_t *out, const int8_t *q, const int16_t *k_cache, const int8_t *v_cache, int32_t *scratch,
                         int32_t pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_size, int32_t score_mult,
                         int32_t score_shift, int32_t score_cut, int32_t out_mult, int32_t out_shift,
                         const uint16_t *exp_table, int32_t context) {
    const int32_t kv_dim = n_kv_heads * head_size, group = n_heads / n_kv_heads, n = pos + 1;
    int32_t prm[6];
    uint32_t table[512];
    host_setup(prm, table, score_mult, score_shift, score_cut, out_mult, out_shift, exp_table);
    for (int32_t h = 0; h < n_heads; h++) {
        const int32_t ko = (h / group) * head_size;
        const int16_t *kt = k_cache + (size_t)ko * (size_t)context;
        if (head_size == 8) {
            const int32_t max = host_scores_k16t(scratch, q + h * 8, kt, context, n, 8);
            host_finish(out + h * 8, scratch, n, max, v_cache + ko, kv_dim, 8, prm, table);
        } else {
            const int32_t max = host_scores_k16t(scratch, q + h * head_size, kt, context, n, head_size);
            host_finish(out + h * head_size, scratch, n, max, v_cache + ko, kv_dim, head_size, prm, table);
        }
    }
}

/* ---- int4 weights --------------------------------------------------------------------------------------------------
 * Row-major too (layout.host_q4_rows): per row, group after group, the group's scale e (a byte), then for its L
 * columns (L = G, or what the last group has left; even) L/2 bytes, byte j holding column j in its low nibble plus 8
 * and column j + L/2 in its high nibble, signed: (b & 15) - 8 and b >> 4 are the two weights, and the two halves of the
 * group's x are contiguous, so the group's sum is one loop that gcc vectorizes like the int8 rows. acc = sum_g e_g *
 * sum_{i in g} q_i x_i, the integers of kernels.linear_q4 (|acc| < 2^31 for n_in <= 8192). */

/* sum_j ((b_j & 15) - 8) * xa_j + (b_j >> 4) * xb_j over the m bytes of one group */
static inline int32_t q4_group_dot(const int8_t *b, const int16_t *xa, const int16_t *xb, int32_t m) {
    int32_t acc = 0;
    for (int32_t j = 0; j < m; j++) {
        const int16_t lo = (int16_t)((b[j] & 15) - 8), hi = (int16_t)(b[j] >> 4);
        acc += lo * xa[j] + hi * xb[j];
    }
    return acc;
}

/* acc = W[o] . x for one row at w; xs holds x widened, or (n_in > HOST_X_MAX) is the scratch of one group */
static inline int32_t q4_row_dot(const int8_t *w, const int8_t *x, int16_t *xs, int32_t wide, int32_t n_in,
                                 int32_t group) {
    int32_t acc = 0;
    for (int32_t c0 = 0; c0 < n_in; c0 += group) {
        const int32_t len = n_in - c0 < group ? n_in - c0 : group, m = len / 2;
        const int32_t e = (uint8_t)w[0];
        const int16_t *xg = xs + c0;
        if (!wide) {
            for (int32_t i = 0; i < len; i++) xs[i] = x[c0 + i];
            xg = xs;
        }
        acc += e * q4_group_dot(w + 1, xg, xg + m, m);
        w += 1 + m;
    }
    return acc;
}

static inline __attribute__((always_inline)) void gemv_q4_rows(void *y, int bits, int32_t lo, int32_t hi,
                                                               const int8_t *x, const int8_t *w, const int32_t *mult,
                                                               const uint8_t *shift, int32_t n_in, int32_t n_out,
                                                               int32_t group) {
    int16_t xs[HOST_X_MAX];
    const int32_t s = n_out > 0 ? shift[0] : 0, wide = n_in <= HOST_X_MAX;
    const int32_t row = (n_in + group - 1) / group + n_in / 2; /* bytes of a row: its group scales and nibbles */
    if (wide)
        for (int32_t i = 0; i < n_in; i++) xs[i] = x[i];
    for (int32_t o = 0; o < n_out; o++, w += row)
        store(y, bits, o, requant_half_up(q4_row_dot(w, x, xs, wide, n_in, group), mult[o], s, lo, hi));
}

void gemv_q4_rows_i8(int8_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const uint8_t *shift,
                     int32_t n_in, int32_t n_out, int32_t group) {
    gemv_q4_rows(y, 8, INT8_MIN, INT8_MAX, x, w, mult, shift, n_in, n_out, group);
}

void gemv_q4_rows_i16(int16_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const uint8_t *shift,
                      int32_t n_in, int32_t n_out, int32_t group) {
    gemv_q4_rows(y, 16, INT16_MIN, INT16_MAX, x, w, mult, shift, n_in, n_out, group);
}

void gemv_q4_rows_i32(int32_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const uint8_t *shift,
                      int32_t n_in, int32_t n_out, int32_t group) {
    gemv_q4_rows(y, 32, INT32_MIN, INT32_MAX, x, w, mult, shift, n_in, n_out, group);
}
