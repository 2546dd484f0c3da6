/* attention.c: causal grouped-query attention for one query position, integer softmax.
 *
 * Per query head h over positions t = 0..n-1 (kernels.attention is the definition):
 *   s_t = q_h . k_t;  e_t = 2^(-z_t / 2^9) from a 512-entry table, z_t = round((max s - s_t) * mult / 2^shift);
 *   out = sat8(round(sum_t e_t v_t * floor(out_mult * 2^bits / sum_t e_t) / 2^out_shift)).
 * The exps stay unnormalised until the end: one division per head instead of a multiply per position.
 * Tiled pieces: attn_scores_i8 over tiles of K (the scores and each head's running max), then attn_exp_av_i8
 * over tiles of V (each exp made from its stored score and the max where it is used: e*v and e summed, the exps
 * never stored), which on the last tile also divides by the exp sums and requantizes (attn_out_i8's integers; for
 * head size 8 straight from the accumulators in registers). Integer sums: the order of the V tiles never matters. */
#include "deeploy_kernels.h"

#if defined(__GNUC__) && !defined(__clang__)
/* the two-head loops keep 16 values in registers; scheduling that watches register pressure stops gcc from
 * hoisting all the row's loads first and spilling (as in gemv.c); attention_i8's loops */
#pragma GCC optimize("sched-pressure")
/* and keeps zero_i32 a loop: picolibc's memset costs ~250 instructions for 16 words */
#pragma GCC optimize("no-tree-loop-distribute-patterns")
/* the loops that keep 8 or 16 accumulators plus constants in registers: without the first scheduling pass gcc
 * loads each v / k byte where it is used instead of all 8 first, and nothing spills in the loops */
#define NO_SCHED __attribute__((optimize("no-schedule-insns")))
#else
#define NO_SCHED
#endif

#define EXP_FRAC 9 /* softmax works on log2 distances in Q9 */
#define EXP_MASK ((1u << EXP_FRAC) - 1)

/* s[t] = e_t in place, returns sum_t e_t (<= n * 2^bits <= 2^24). cut bounds d so that d * mult fits 32 bits;
 * farther scores have z >= 16 * 2^9, whose exp is 0 */
static int32_t exp_row(int32_t *s /* [n] */, int32_t n, uint32_t mult, int32_t shift, uint32_t cut,
                       const uint16_t *table /* [512] */) {
    int32_t max = s[0], sum = 0;
    const uint32_t half = 1u << (shift - 1);
    for (int32_t t = 1; t < n; t++)
        if (s[t] > max) max = s[t];
    for (int32_t t = 0; t < n; t++) {
        const uint32_t d = (uint32_t)(max - s[t]); /* scores are bounded by hs * 2^14: no overflow */
        int32_t e = 0;
        if (d <= cut) {
            const uint32_t z = (d * mult + half) >> shift; /* < 16 * 2^9 */
            e = table[z & EXP_MASK] >> (z >> EXP_FRAC);
        }
        s[t] = e;
        sum += e;
    }
    return sum;
}

/* floor(a * 2^bits / d) for d < 2^25 (an exp sum: <= n * 2^bits <= 2^24): long division 8 bits at a time for
 * d <= 2^24 (7 above), so r << 8 (r < d) stays within 32 bits, with the core's 32-bit divide instead of a 64-bit
 * library division */
static inline __attribute__((always_inline)) uint32_t div_shifted(uint32_t a, int32_t bits, uint32_t d) {
    uint32_t q, r;
    int32_t step;
    if (d >= (1u << 25)) return (uint32_t)(((uint64_t)a << bits) / d);
    step = d <= (1u << 24) ? 8 : 7;
    q = a / d, r = a % d;
    while (bits > 0) {
        const int32_t k = bits < step ? bits : step;
        r <<= k;
        q = (q << k) | (r / d);
        r %= d;
        bits -= k;
    }
    return q;
}

/* out[h*hs + d] = sat8(round(acc[h*hs + d] * m_h / 2^shift)), m_h = floor(mult * 2^bits / sums[h]) <= mult.
 * Rounding is half away from zero. For shift >= 33, 2^(shift-1) is a multiple of 2^32, so only the high word hi
 * of p - (p < 0) matters: (hi + 2^(shift-33)) >> (shift-32), from one mul/mulh pair (hi <= 2^30: no overflow) */
void attn_out_i8(int8_t *out /* [g, hs] */, const int32_t *acc /* [g, hs] */, const int32_t *sums /* [g] */,
                 int32_t g, int32_t hs, int32_t mult, int32_t shift, int32_t bits) {
    const int32_t *const end = acc + g * hs;
    if (shift >= 33 && shift <= 63) {
        const int32_t s = shift - 32, r = (int32_t)1 << (shift - 33);
        for (; acc != end; sums++) {
            const int32_t m = (int32_t)div_shifted((uint32_t)mult, bits, (uint32_t)*sums);
            for (const int32_t *const a_end = acc + hs; acc != a_end; acc++, out++) {
                const int64_t p = (int64_t)*acc * m;
                const int32_t hi = (int32_t)(p >> 32), lo = (int32_t)p;
                const int32_t v = (hi - (int32_t)(((uint32_t)hi >> 31) & (uint32_t)(lo == 0)) + r) >> s;
                *out = (int8_t)dpl_clamp8(v);
            }
        }
        return;
    }
    for (; acc != end; sums++) {
        const int32_t m = (int32_t)div_shifted((uint32_t)mult, bits, (uint32_t)*sums);
        for (const int32_t *const a_end = acc + hs; acc != a_end; acc++, out++)
            *out = dpl_sat8(dpl_rshift_round((int64_t)*acc * m, shift));
    }
}

/* the scores kernel the untiled reference calls, by the widths of q and K: int8 q with K int8 (attn_scores_i8) or
 * int16 (attn_scores_k16); int16 q (int12 or int16 queries) with K int8 (attn_scores_q12, attn_scores_q16) or int16
 * (attn_scores_q12k16) */
typedef enum { QK_I8, QK_K16, QK_Q12, QK_Q12K16, QK_Q16 } qk_form;

/* one head's scores over positions 0..n-1 and their max, by the kernel of form f (kv_dim: K's row stride) */
static void ref_scores(qk_form f, int32_t *s, int32_t n, int32_t *max, const void *q, const void *k, int32_t kv_dim,
                       int32_t hs) {
    switch (f) {
    case QK_I8: attn_scores_i8(s, n, max, q, k, kv_dim, 0, n, 1, hs); break;
    case QK_K16: attn_scores_k16(s, n, max, q, k, kv_dim, 0, n, 1, hs); break;
    case QK_Q12: attn_scores_q12(s, n, max, q, k, kv_dim, 0, n, 1, hs); break;
    case QK_Q12K16: attn_scores_q12k16(s, n, max, q, k, kv_dim, 0, n, 1, hs); break;
    case QK_Q16: attn_scores_q16(s, n, max, q, k, kv_dim, 0, n, 1, hs); break;
    }
}

/* the whole computation for n_heads heads, untiled: the reference the tiled pieces are tested against. q and K of
 * form f: int8 or int16 elements (qb, kb bytes) */
static void attention_ref(qk_form f, int8_t *out, const void *q, const void *k_cache, const int8_t *v_cache,
                          int32_t *scratch, int32_t pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_size,
                          int32_t score_mult, int32_t score_shift, int32_t score_cut, int32_t out_mult,
                          int32_t out_shift, const uint16_t *exp_table) {
    const int32_t kv_dim = n_kv_heads * head_size, group = n_heads / n_kv_heads, n = pos + 1;
    const size_t qb = f == QK_I8 || f == QK_K16 ? 1 : 2, kb = f == QK_K16 || f == QK_Q12K16 ? 2 : 1;
    int32_t bits = 0, acc[64], max;
    while ((1 << (bits + 1)) <= exp_table[0]) bits++;
    for (int32_t h = 0; h < n_heads; h++) {
        const int32_t ko = (h / group) * head_size;
        const int8_t *vh = v_cache + ko;
        for (int32_t d0 = 0; d0 < head_size; d0 += 64) { /* acc[] holds 64 of the head's dims at a time */
            const int32_t nd = head_size - d0 < 64 ? head_size - d0 : 64;
            int32_t sum;
            ref_scores(f, scratch, n, &max, (const char *)q + (size_t)(h * head_size) * qb,
                       (const char *)k_cache + (size_t)ko * kb, kv_dim, head_size);
            sum = exp_row(scratch, n, (uint32_t)score_mult, score_shift, (uint32_t)score_cut, exp_table);
            for (int32_t d = 0; d < nd; d++) {
                int32_t a = 0;
                for (int32_t t = 0; t < n; t++) a += scratch[t] * vh[(size_t)t * (size_t)kv_dim + (size_t)(d0 + d)];
                acc[d] = a;
            }
            attn_out_i8(out + h * head_size + d0, acc, &sum, 1, nd, out_mult, out_shift, bits);
        }
    }
}

/* the untiled kernels, one per form: attention_i8 (int8 q and K), attention_k16 (int16 K), attention_q12 (int12
 * queries in int16), attention_q12k16 (both), attention_q16 (int16 queries) */
#define DEFINE_ATTENTION(NAME, QT, KT, FORM)                                                                       \
    void NAME(int8_t *out /* [n_heads*head_size] */, const QT *q /* [n_heads*head_size] */,                        \
              const KT *k_cache /* [ctx, n_kv_heads*head_size] */,                                                 \
              const int8_t *v_cache /* [ctx, n_kv_heads*head_size] */, int32_t *scratch /* [pos+1] */, int32_t pos, \
              int32_t n_heads, int32_t n_kv_heads, int32_t head_size, int32_t score_mult, int32_t score_shift,     \
              int32_t score_cut, int32_t out_mult, int32_t out_shift, const uint16_t *exp_table /* [512] */) {     \
        attention_ref(FORM, out, q, k_cache, v_cache, scratch, pos, n_heads, n_kv_heads, head_size, score_mult,    \
                      score_shift, score_cut, out_mult, out_shift, exp_table);                                     \
    }
DEFINE_ATTENTION(attention_i8, int8_t, int8_t, QK_I8)
DEFINE_ATTENTION(attention_k16, int8_t, int16_t, QK_K16)
DEFINE_ATTENTION(attention_q12, int16_t, int8_t, QK_Q12)
DEFINE_ATTENTION(attention_q12k16, int16_t, int16_t, QK_Q12K16)
DEFINE_ATTENTION(attention_q16, int16_t, int8_t, QK_Q16)

/* running max of a row: t0 == 0 starts a new one */
#define MAX_INIT(m, h) ((t0 == 0) ? INT32_MIN : (m)[h])

/* round_half_up(v / 2^s) = floor(v / 2^s + 1/2) for the scores' shift s = (q bits - 8) + (k bits - 8)
 * (kernels.score_shift), which keeps every width's scores in int8 x int8 units: |s| <= hs * 2^14 */
#define SHIFT4(v) (((v) + 8) >> 4)
#define SHIFT8(v) (((v) + 128) >> 8)
#define SHIFT12(v) (((v) + 2048) >> 12)
#define AS_IS(v) (v)

/* One body, the scores kernels of every q and K width (int8 q: K int8, attn_scores_i8, ROUND as is; K int16,
 * attn_scores_k16, SHIFT8; int16 q (the int12 and int16 queries), the same with q read as int16, below):
 * scores[h*stride + t0 + t] = ROUND(sum_d q[h*hs + d] * k[t*k_stride + d]) for g query heads sharing one kv head,
 * and max[h] = the largest of scores[h*stride + 0 .. t0+n_t): this tile's if t0 == 0, else max[h] updated by it.
 * The sums, and the rounding's 2^(s-1) added to them, stay within int32: |q . k| <= hs * max|q| * max|k| with
 * max|q| = 128, 2047 (int12: rope_q12 saturates to +-2047) or 32768 and max|k| = 128 or 32768, and every partial sum
 * within the same bound, for the head sizes the compiler admits (kernels.qk_head_size_max: 511 for int8 q with
 * int16 K and for int16 q with int8 K, 8,196 for int12 q with int8 K, 32 for int12 q with int16 K; int16 q with
 * int16 K is refused). */
#define DEFINE_ATTN_SCORES(NAME, QT, KT, ROUND)                                                                    \
NO_SCHED void NAME(int32_t *scores /* [g, stride] */, int32_t stride, int32_t *max /* [g] */,                      \
                   const QT *q /* [g, hs] */, const KT *k /* [n_t, k_stride] */, int32_t k_stride,                \
                   int32_t t0, int32_t n_t, int32_t g, int32_t hs) {                                              \
    int32_t h = 0;                                                                                                 \
    if (hs == 8) /* the common head size: two heads at a time, each k row loaded once for both */                  \
        for (; h + 2 <= g; h += 2) {                                                                               \
            const QT *qa = q + h * 8, *qb = qa + 8;                                                                \
            const int32_t a0 = qa[0], a1 = qa[1], a2 = qa[2], a3 = qa[3], a4 = qa[4], a5 = qa[5], a6 = qa[6],      \
                          a7 = qa[7];                                                                              \
            const int32_t b0 = qb[0], b1 = qb[1], b2 = qb[2], b3 = qb[3], b4 = qb[4], b5 = qb[5], b6 = qb[6],      \
                          b7 = qb[7];                                                                              \
            int32_t *sa = scores + (size_t)h * (size_t)stride + t0, *sb = sa + stride, *const end = sa + n_t;     \
            int32_t ma = MAX_INIT(max, h), mb = MAX_INIT(max, h + 1);                                             \
            const KT *kt = k;                                                                                      \
            for (; sa != end; sa++, sb++, kt += k_stride) {                                                        \
                int32_t x = kt[0], ya = a0 * x, yb = b0 * x;                                                       \
                x = kt[1], ya += a1 * x, yb += b1 * x;                                                             \
                x = kt[2], ya += a2 * x, yb += b2 * x;                                                             \
                x = kt[3], ya += a3 * x, yb += b3 * x;                                                             \
                x = kt[4], ya += a4 * x, yb += b4 * x;                                                             \
                x = kt[5], ya += a5 * x, yb += b5 * x;                                                             \
                x = kt[6], ya += a6 * x, yb += b6 * x;                                                             \
                x = kt[7], ya += a7 * x, yb += b7 * x;                                                             \
                ya = ROUND(ya), yb = ROUND(yb);                                                                    \
                *sa = ya, *sb = yb;                                                                                \
                if (ya > ma) ma = ya;                                                                              \
                if (yb > mb) mb = yb;                                                                              \
            }                                                                                                      \
            max[h] = ma, max[h + 1] = mb;                                                                          \
        }                                                                                                          \
    for (; h < g; h++) {                                                                                           \
        const QT *qh = q + (size_t)h * (size_t)hs;                                                                 \
        int32_t *sh = scores + (size_t)h * (size_t)stride + (size_t)t0, *const end = sh + n_t;                    \
        int32_t m = MAX_INIT(max, h);                                                                              \
        const KT *kt = k;                                                                                          \
        if (hs == 8) { /* one head of size 8: q stays in registers, the dot product is unrolled */                  \
            const int32_t q0 = qh[0], q1 = qh[1], q2 = qh[2], q3 = qh[3], q4 = qh[4], q5 = qh[5], q6 = qh[6],      \
                          q7 = qh[7];                                                                              \
            for (; sh != end; sh++, kt += k_stride) {                                                              \
                const int32_t y = ROUND(q0 * kt[0] + q1 * kt[1] + q2 * kt[2] + q3 * kt[3] + q4 * kt[4] +           \
                                        q5 * kt[5] + q6 * kt[6] + q7 * kt[7]);                                     \
                *sh = y;                                                                                           \
                if (y > m) m = y;                                                                                  \
            }                                                                                                      \
        } else {                                                                                                   \
            for (; sh != end; sh++, kt += k_stride) {                                                              \
                int32_t y = 0;                                                                                     \
                for (int32_t d = 0; d < hs; d++) y += (int32_t)qh[d] * kt[d];                                      \
                y = ROUND(y);                                                                                      \
                *sh = y;                                                                                           \
                if (y > m) m = y;                                                                                  \
            }                                                                                                      \
        }                                                                                                          \
        max[h] = m;                                                                                                \
    }                                                                                                              \
}

DEFINE_ATTN_SCORES(attn_scores_i8, int8_t, int8_t, AS_IS)
DEFINE_ATTN_SCORES(attn_scores_k16, int8_t, int16_t, SHIFT8)
DEFINE_ATTN_SCORES(attn_scores_q12, int16_t, int8_t, SHIFT4)
DEFINE_ATTN_SCORES(attn_scores_q12k16, int16_t, int16_t, SHIFT12)
DEFINE_ATTN_SCORES(attn_scores_q16, int16_t, int8_t, SHIFT8)

/* The exp of a score s of a head whose scores are at most `max`, as exp_row computes it from d = max - s:
 * 0 if d > cut, i.e. s < smin = max - cut (INT32_MIN if that is below); else with c = max*mult + 2^(shift-1),
 * y = c - s*mult (mod 2^32) = d*mult + 2^(shift-1) exactly (below 2^32 for d <= cut), and w = y >> (shift-1)
 * = 2z or 2z + 1: w & 1022 = 2 (z & 511) is the table entry's byte offset, w >> 10 = z >> 9 its shift */
typedef struct {
    int32_t smin;
    uint32_t c, mult;
    int32_t sh1;
    const uint16_t *table;
} exp_consts;

static inline __attribute__((always_inline)) exp_consts exp_setup(int32_t max, int32_t mult, int32_t shift, int32_t cut, const uint16_t *table) {
    exp_consts k;
    k.smin = (uint32_t)max + 0x80000000u >= (uint32_t)cut ? max - cut : INT32_MIN; /* max - cut >= INT32_MIN */
    k.mult = (uint32_t)mult;
    k.c = (uint32_t)max * k.mult + (1u << (shift - 1));
    k.sh1 = shift - 1;
    k.table = table;
    return k;
}

#define EXP_OF(k, s, w) \
    ((w) = ((k).c - (uint32_t)(s) * (k).mult) >> (k).sh1, \
     (int32_t)(*(const uint16_t *)((const uint8_t *)(k).table + ((w) & 1022u)) >> ((w) >> 10)))

/* one head's finish from its 8 sums of e*v in registers: the same integers as attn_out_i8's shift >= 33 path */
typedef struct {
    int32_t mult, bits, r, s; /* out_mult, exp bits, 2^(out_shift-33), out_shift - 32 */
} out_consts;

/* sat8(round(a * m / 2^(s+32))), rounding half away from zero, m in [0, 2^31): for a < 0, with b = -a, the high
 * word of a*m - 1 = ~(b*m) is ~mulhu(b, m); so hi = mulhu(|a|, m) ^ (a >> 31) is that of p - (p < 0), p = a*m */
static inline __attribute__((always_inline)) int32_t out_rq(int32_t a, uint32_t m, int32_t r, int32_t s) {
    const uint32_t sa = (uint32_t)(a >> 31), b = ((uint32_t)a ^ sa) - sa;
    const int32_t hi = (int32_t)((uint32_t)(((uint64_t)b * m) >> 32) ^ sa);
    return dpl_clamp8((hi + r) >> s);
}

/* one head, 8 dims of v from v[0]: a[0..8) = (fresh ? 0 : a[..]) + sum_t e(s[t]) v[t*v_stride + 0..8);
 * returns sum_t e(s[t]). Eight accumulators, the exp constants and the pointers fit RV32's registers.
 * With out (a constant NULL or not where it is inlined), this is the last tile: out[0..8) = attn_out_i8 of the
 * sums with sum0 + the tile's exp sum, a[] not written */
static inline __attribute__((always_inline)) int32_t exp_av8(int32_t *a, int32_t fresh, const int32_t *s,
                                                              const int8_t *v, int32_t v_stride, int32_t n_t,
                                                              const exp_consts k, int8_t *out, int32_t sum0,
                                                              const out_consts o) {
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0, sum = 0;
    const int32_t *const end = s + n_t;
    if (!fresh) a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3], a4 = a[4], a5 = a[5], a6 = a[6], a7 = a[7];
    for (; s != end; s++, v += v_stride) {
        const int32_t x = *s;
        if (x >= k.smin) { /* else its exp is 0 */
            uint32_t w;
            const int32_t e = EXP_OF(k, x, w);
            sum += e;
            a0 += e * v[0], a1 += e * v[1], a2 += e * v[2], a3 += e * v[3];
            a4 += e * v[4], a5 += e * v[5], a6 += e * v[6], a7 += e * v[7];
        }
    }
    if (out) {
        const uint32_t m = div_shifted((uint32_t)o.mult, o.bits, (uint32_t)(sum0 + sum));
        const int32_t r = o.r, sh = o.s;
        out[0] = (int8_t)out_rq(a0, m, r, sh), out[1] = (int8_t)out_rq(a1, m, r, sh);
        out[2] = (int8_t)out_rq(a2, m, r, sh), out[3] = (int8_t)out_rq(a3, m, r, sh);
        out[4] = (int8_t)out_rq(a4, m, r, sh), out[5] = (int8_t)out_rq(a5, m, r, sh);
        out[6] = (int8_t)out_rq(a6, m, r, sh), out[7] = (int8_t)out_rq(a7, m, r, sh);
        return 0;
    }
    a[0] = a0, a[1] = a1, a[2] = a2, a[3] = a3, a[4] = a4, a[5] = a5, a[6] = a6, a[7] = a7;
    return sum;
}

/* For h < g, t in [t0, t0 + n_t), e = the exp of scores[h*stride + t] against max[h] (exp_row's, its max over
 * all the head's positions): acc[h*hs + d] += e * v[(t - t0)*v_stride + d] and sums[h] += e, starting both from
 * 0 if t0 == 0. The exps are made on the fly, one head at a time, and never stored. prm = {score_mult,
 * score_shift, score_cut, out_mult, out_shift, bits}. With out (the last tile), out = attn_out_i8 of the final
 * acc and sums, which are then left unspecified (for hs = 8 they stay in registers) */
NO_SCHED void attn_exp_av_i8(int32_t *acc /* [g, hs] */, int32_t *sums /* [g] */, const int32_t *scores /* [g, stride] */,
                    int32_t stride, const int32_t *max /* [g] */, const int8_t *v /* [n_t, v_stride] */,
                    int32_t v_stride, int32_t t0, int32_t n_t, int32_t g, int32_t hs, const int32_t *prm /* [6] */,
                    const uint16_t *exp_table /* [512] */, int8_t *out /* [g, hs] or NULL */) {
    const int32_t fresh = t0 == 0, mult = prm[0], shift = prm[1], cut = prm[2];
    const int32_t *s = scores + t0;
    const out_consts none = {0, 0, 0, 0};
    if (hs == 8) { /* the common head size */
        const int32_t osh = prm[4];
        if (out && osh >= 33 && osh <= 63) { /* finished in registers */
            const out_consts o = {prm[3], prm[5], (int32_t)1 << (osh - 33), osh - 32};
            for (int32_t h = 0; h < g; h++, s += stride, acc += 8, out += 8)
                exp_av8(acc, fresh, s, v, v_stride, n_t, exp_setup(max[h], mult, shift, cut, exp_table), out,
                        fresh ? 0 : sums[h], o);
            return;
        }
        for (int32_t h = 0; h < g; h++, s += stride, acc += 8) {
            const int32_t sum = exp_av8(acc, fresh, s, v, v_stride, n_t, exp_setup(max[h], mult, shift, cut, exp_table),
                                        (int8_t *)0, 0, none);
            sums[h] = fresh ? sum : sums[h] + sum;
        }
        if (out) attn_out_i8(out, acc - g * 8, sums, g, 8, prm[3], osh, prm[5]);
        return;
    }
    for (int32_t h = 0; h < g; h++, s += stride, acc += hs) {
        const exp_consts k = exp_setup(max[h], mult, shift, cut, exp_table);
        int32_t sum = 0, d = 0;
        for (; d + 8 <= hs; d += 8) { /* 8 dims at a time, the exps made again for each 8 */
            const int32_t part = exp_av8(acc + d, fresh, s, v + d, v_stride, n_t, k, (int8_t *)0, 0, none);
            if (d == 0) sum = part;
        }
        if (d == 0)
            for (int32_t t = 0; t < n_t; t++) {
                uint32_t w;
                if (s[t] >= k.smin) sum += EXP_OF(k, s[t], w);
            }
        for (; d < hs; d++) { /* the last hs % 8 dims */
            int32_t a = fresh ? 0 : acc[d];
            for (int32_t t = 0; t < n_t; t++) {
                uint32_t w;
                if (s[t] >= k.smin) a += EXP_OF(k, s[t], w) * v[(size_t)t * (size_t)v_stride + (size_t)d];
            }
            acc[d] = a; /* over all tiles: sum_t e_t <= n * 2^bits, so |a| <= 2^31 (kernels.exp_bits) */
        }
        sums[h] = fresh ? sum : sums[h] + sum;
    }
    if (out) attn_out_i8(out, acc - g * hs, sums, g, hs, prm[3], prm[4], prm[5]);
}

/* x[i] = 0 */
void zero_i32(int32_t *x /* [n] */, int32_t n) {
    for (int32_t i = 0; i < n; i++) x[i] = 0;
}
