/* attention.c: causal grouped-query attention for one query position, integer softmax.
 *
 * Per query head h over positions t = 0..n-1 (kernels.attention is the definition):
 *   s_t = q_h . k_t;  e_t = 2^(-z_t / 2^9) from a 512-entry table, z_t = round((max s - s_t) * mult / 2^shift);
 *   out = sat8(round(sum_t e_t v_t * floor(out_mult * 2^bits / sum_t e_t) / 2^out_shift)).
 * The exps stay unnormalised until the end: one division per head instead of a multiply per position.
 * Tiled pieces: attn_scores_i8 over tiles of K, softmax_exp_rows over all n scores of each head, then
 * zero_i32 + attn_av_i8 over tiles of V and attn_out_i8. Integer sums: tile order never matters. */
#include "deeploy_kernels.h"

#if defined(__GNUC__) && !defined(__clang__)
/* the two-head loops keep 16 values in registers; scheduling that watches register pressure stops gcc from
 * hoisting all the row's loads first and spilling (as in gemv.c) */
#pragma GCC optimize("sched-pressure")
/* and keeps zero_i32 a loop: picolibc's memset costs ~250 instructions for 16 words */
#pragma GCC optimize("no-tree-loop-distribute-patterns")
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

/* floor(a * 2^bits / d) for d < 2^25 (an exp sum: <= n * 2^bits <= 2^24): long division 7 bits at a time,
 * so r << 7 stays within 32 bits, with the core's 32-bit divide instead of a 64-bit library division */
static uint32_t div_shifted(uint32_t a, int32_t bits, uint32_t d) {
    uint32_t q, r;
    if (d >= (1u << 25)) return (uint32_t)(((uint64_t)a << bits) / d);
    q = a / d, r = a % d;
    while (bits > 0) {
        const int32_t k = bits < 7 ? bits : 7;
        r <<= k;
        q = (q << k) | (r / d);
        r %= d;
        bits -= k;
    }
    return q;
}

/* out[h*hs + d] = sat8(round(acc[h*hs + d] * m_h / 2^shift)), m_h = floor(mult * 2^bits / sums[h]) <= mult.
 * Rounding is half away from zero. For shift >= 33, 2^(shift-1) is a multiple of 2^32, so only the high word h
 * of p - (p < 0) matters: ((h >> (shift-33)) + 1) >> 1, from one mul/mulh pair */
void attn_out_i8(int8_t *out /* [g, hs] */, const int32_t *acc /* [g, hs] */, const int32_t *sums /* [g] */,
                 int32_t g, int32_t hs, int32_t mult, int32_t shift, int32_t bits) {
    for (int32_t h = 0; h < g; h++) {
        const int32_t m = (int32_t)div_shifted((uint32_t)mult, bits, (uint32_t)sums[h]);
        const int32_t *a = acc + h * hs;
        int8_t *o = out + h * hs;
        if (shift >= 33 && shift <= 63) {
            const int32_t s = shift - 33;
            for (int32_t d = 0; d < hs; d++) {
                const int64_t p = (int64_t)a[d] * m;
                const int32_t hi = (int32_t)(p >> 32), lo = (int32_t)p;
                const int32_t v = (((hi - (hi < 0 && lo == 0)) >> s) + 1) >> 1; /* |v| <= 2^30 */
                o[d] = (int8_t)(v < INT8_MIN ? INT8_MIN : v > INT8_MAX ? INT8_MAX : v);
            }
        } else {
            for (int32_t d = 0; d < hs; d++) o[d] = dpl_sat8(dpl_rshift_round((int64_t)a[d] * m, shift));
        }
    }
}

/* the whole computation for n_heads heads, untiled: the reference the tiled pieces are tested against */
void attention_i8(int8_t *out /* [n_heads*head_size] */, const int8_t *q /* [n_heads*head_size] */,
                  const int8_t *k_cache /* [ctx, n_kv_heads*head_size] */,
                  const int8_t *v_cache /* [ctx, n_kv_heads*head_size] */, int32_t *scratch /* [pos+1] */,
                  int32_t pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_size, int32_t score_mult,
                  int32_t score_shift, int32_t score_cut, int32_t out_mult, int32_t out_shift,
                  const uint16_t *exp_table /* [512] */) {
    const int32_t kv_dim = n_kv_heads * head_size, group = n_heads / n_kv_heads, n = pos + 1;
    int32_t bits = 0, acc[64];
    while ((1 << (bits + 1)) <= exp_table[0]) bits++;
    for (int32_t h = 0; h < n_heads; h++) {
        const int8_t *kh = k_cache + (h / group) * head_size, *vh = v_cache + (h / group) * head_size;
        for (int32_t d0 = 0; d0 < head_size; d0 += 64) { /* acc[] holds 64 of the head's dims at a time */
            const int32_t nd = head_size - d0 < 64 ? head_size - d0 : 64;
            int32_t sum;
            attn_scores_i8(scratch, n, q + h * head_size, kh, kv_dim, 0, n, 1, head_size);
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

/* scores[h*stride + t0 + t] = sum_d q[h*hs + d] * k[t*k_stride + d], for g query heads sharing one kv head */
void attn_scores_i8(int32_t *scores /* [g, stride] */, int32_t stride, const int8_t *q /* [g, hs] */,
                    const int8_t *k /* [n_t, k_stride] */, int32_t k_stride, int32_t t0, int32_t n_t, int32_t g,
                    int32_t hs) {
    int32_t h = 0;
    if (hs == 8) /* the common head size: two heads at a time, each k row loaded once for both */
        for (; h + 2 <= g; h += 2) {
            const int8_t *qa = q + h * 8, *qb = qa + 8;
            const int32_t a0 = qa[0], a1 = qa[1], a2 = qa[2], a3 = qa[3], a4 = qa[4], a5 = qa[5], a6 = qa[6], a7 = qa[7];
            const int32_t b0 = qb[0], b1 = qb[1], b2 = qb[2], b3 = qb[3], b4 = qb[4], b5 = qb[5], b6 = qb[6], b7 = qb[7];
            int32_t *sa = scores + (size_t)h * (size_t)stride + t0, *sb = sa + stride;
            const int8_t *kt = k;
            for (int32_t t = 0; t < n_t; t++, kt += k_stride) {
                const int32_t k0 = kt[0], k1 = kt[1], k2 = kt[2], k3 = kt[3], k4 = kt[4], k5 = kt[5], k6 = kt[6], k7 = kt[7];
                sa[t] = a0 * k0 + a1 * k1 + a2 * k2 + a3 * k3 + a4 * k4 + a5 * k5 + a6 * k6 + a7 * k7;
                sb[t] = b0 * k0 + b1 * k1 + b2 * k2 + b3 * k3 + b4 * k4 + b5 * k5 + b6 * k6 + b7 * k7;
            }
        }
    for (; h < g; h++) {
        const int8_t *qh = q + (size_t)h * (size_t)hs;
        int32_t *sh = scores + (size_t)h * (size_t)stride + (size_t)t0;
        if (hs == 8) { /* one head of size 8: q stays in registers, the dot product is unrolled */
            const int32_t q0 = qh[0], q1 = qh[1], q2 = qh[2], q3 = qh[3], q4 = qh[4], q5 = qh[5], q6 = qh[6], q7 = qh[7];
            const int8_t *kt = k;
            for (int32_t t = 0; t < n_t; t++, kt += k_stride)
                sh[t] = q0 * kt[0] + q1 * kt[1] + q2 * kt[2] + q3 * kt[3] + q4 * kt[4] + q5 * kt[5] + q6 * kt[6] +
                        q7 * kt[7];
            continue;
        }
        for (int32_t t = 0; t < n_t; t++) {
            const int8_t *kt = k + (size_t)t * (size_t)k_stride;
            int32_t acc = 0; /* |acc| <= hs * 2^14 */
            for (int32_t d = 0; d < hs; d++) acc += (int32_t)qh[d] * kt[d];
            sh[t] = acc;
        }
    }
}

/* each of the g rows: scores[h*stride + 0..n) -> their exps in place (n >= 1), sums[h] = the row's sum */
void softmax_exp_rows(int32_t *scores /* [g, stride] */, int32_t stride, int32_t n, int32_t g, int32_t mult,
                      int32_t shift, int32_t cut, const uint16_t *exp_table /* [512] */, int32_t *sums /* [g] */) {
    for (int32_t h = 0; h < g; h++)
        sums[h] = exp_row(scores + (size_t)h * (size_t)stride, n, (uint32_t)mult, shift, (uint32_t)cut, exp_table);
}

/* acc[h*hs + d] += sum_t e[h*stride + t0 + t] * v[t*v_stride + d], t in [0, n_t) */
void attn_av_i8(int32_t *acc /* [g, hs] */, const int32_t *e /* [g, stride] */, int32_t stride,
                const int8_t *v /* [n_t, v_stride] */, int32_t v_stride, int32_t t0, int32_t n_t, int32_t g,
                int32_t hs) {
    int32_t h = 0;
    if (hs == 8) /* the common head size: two heads' 16 accumulators in registers, each v row loaded once */
        for (; h + 2 <= g; h += 2) {
            const int32_t *ea = e + (size_t)h * (size_t)stride + (size_t)t0, *eb = ea + stride;
            int32_t *aa = acc + h * 8, *ab = aa + 8;
            int32_t a0 = aa[0], a1 = aa[1], a2 = aa[2], a3 = aa[3], a4 = aa[4], a5 = aa[5], a6 = aa[6], a7 = aa[7];
            int32_t b0 = ab[0], b1 = ab[1], b2 = ab[2], b3 = ab[3], b4 = ab[4], b5 = ab[5], b6 = ab[6], b7 = ab[7];
            const int8_t *vt = v;
            for (int32_t t = 0; t < n_t; t++, vt += v_stride) {
                const int32_t pa = ea[t], pb = eb[t];
                int32_t x = vt[0];
                a0 += pa * x, b0 += pb * x, x = vt[1];
                a1 += pa * x, b1 += pb * x, x = vt[2];
                a2 += pa * x, b2 += pb * x, x = vt[3];
                a3 += pa * x, b3 += pb * x, x = vt[4];
                a4 += pa * x, b4 += pb * x, x = vt[5];
                a5 += pa * x, b5 += pb * x, x = vt[6];
                a6 += pa * x, b6 += pb * x, x = vt[7];
                a7 += pa * x, b7 += pb * x;
            }
            aa[0] = a0, aa[1] = a1, aa[2] = a2, aa[3] = a3, aa[4] = a4, aa[5] = a5, aa[6] = a6, aa[7] = a7;
            ab[0] = b0, ab[1] = b1, ab[2] = b2, ab[3] = b3, ab[4] = b4, ab[5] = b5, ab[6] = b6, ab[7] = b7;
        }
    for (; h < g; h++) {
        const int32_t *eh = e + (size_t)h * (size_t)stride + (size_t)t0;
        int32_t *ah = acc + (size_t)h * (size_t)hs;
        if (hs == 8) { /* eight accumulators in registers, one pass over the rows */
            int32_t a0 = ah[0], a1 = ah[1], a2 = ah[2], a3 = ah[3], a4 = ah[4], a5 = ah[5], a6 = ah[6], a7 = ah[7];
            const int8_t *vt = v;
            for (int32_t t = 0; t < n_t; t++, vt += v_stride) {
                const int32_t pt = eh[t];
                a0 += pt * vt[0], a1 += pt * vt[1], a2 += pt * vt[2], a3 += pt * vt[3];
                a4 += pt * vt[4], a5 += pt * vt[5], a6 += pt * vt[6], a7 += pt * vt[7];
            }
            ah[0] = a0, ah[1] = a1, ah[2] = a2, ah[3] = a3, ah[4] = a4, ah[5] = a5, ah[6] = a6, ah[7] = a7;
            continue;
        }
        for (int32_t d = 0; d < hs; d++) {
            int32_t a = ah[d]; /* over all tiles: sum_t e_t <= n * 2^bits, so |a| <= 2^31 (kernels.exp_bits) */
            for (int32_t t = 0; t < n_t; t++) a += eh[t] * v[(size_t)t * (size_t)v_stride + (size_t)d];
            ah[d] = a;
        }
    }
}

/* x[i] = 0 */
void zero_i32(int32_t *x /* [n] */, int32_t n) {
    for (int32_t i = 0; i < n; i++) x[i] = 0;
}
