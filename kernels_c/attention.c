/* attention.c: causal grouped-query attention for one query position, integer softmax */
#include "deeploy_kernels.h"

#define EXP_FRAC 16 /* softmax works on log2 distances in Q16 */

/* 2^(-z / 2^16) in Q15 for z >= 0: table[k] = 2^(-k/256) in Q15, linear interpolation, then >> ip */
static int32_t exp2_neg(int64_t z, const int32_t *table /* [257] */) {
    int64_t ip = z >> EXP_FRAC;
    if (ip >= 16) return 0;
    int32_t fp = (int32_t)(z & ((1 << EXP_FRAC) - 1)), k = fp >> 8, r = fp & 0xFF;
    int32_t e = table[k] - (((table[k] - table[k + 1]) * r + 128) >> 8);
    if (ip > 0) e = (e + (1 << (ip - 1))) >> ip;
    return e;
}

/* round(d * mult / 2^shift) for d >= 0 in 32x32->64 bits (mul + mulhu on RV32, no library call);
 * equals dpl_requant for non-negative d (half rounds up = away from zero) */
static inline int64_t mul_shift_round_u(uint32_t d, uint32_t mult, int shift) {
    uint64_t v = (uint64_t)d * mult;
    return shift > 0 ? (int64_t)((v + ((uint64_t)1 << (shift - 1))) >> shift) : (int64_t)v;
}

/* exp2_neg for z < 2^32 in 32-bit arithmetic: the same integers, without 64-bit shifts */
static inline int32_t exp2_neg_u32(uint32_t z, const int32_t *table /* [257] */) {
    uint32_t ip = z >> EXP_FRAC;
    if (ip >= 16) return 0;
    int32_t fp = (int32_t)(z & ((1u << EXP_FRAC) - 1)), k = fp >> 8, r = fp & 0xFF;
    int32_t e = table[k] - (((table[k] - table[k + 1]) * r + 128) >> 8);
    if (ip > 0) e = (e + (1 << (ip - 1))) >> ip;
    return e;
}

/* p = softmax(s * scale) in Q15, in place: z = requant(max - s) >= 0, e = exp2_neg(z), p = e * (2^46/sum e) / 2^31 */
static void softmax_q15(int32_t *s /* [n] */, int32_t n, int32_t mult, int32_t shift, const int32_t *table /* [257] */) {
    int32_t max = s[0];
    for (int32_t t = 1; t < n; t++)
        if (s[t] > max) max = s[t];
    uint32_t sum = 0; /* >= 2^15 (the max contributes table[0]) and <= n * 2^15 */
    for (int32_t t = 0; t < n; t++) {
        /* scores are bounded by hs * 2^14, so max - s fits 32 bits; a negative mult (never produced by the
         * compiler) keeps the exact 64-bit path */
        int64_t z = mult >= 0 ? mul_shift_round_u((uint32_t)(max - s[t]), (uint32_t)mult, (int)shift)
                              : dpl_requant((int64_t)max - s[t], mult, (int)shift);
        s[t] = z < 0 ? exp2_neg(0, table) : z < ((int64_t)16 << EXP_FRAC) ? exp2_neg_u32((uint32_t)z, table) : 0;
        sum += (uint32_t)s[t];
    }
    uint32_t inv = (uint32_t)(((uint64_t)1 << 46) / sum); /* <= 2^31 */
    for (int32_t t = 0; t < n; t++) s[t] = (int32_t)(((uint64_t)(uint32_t)s[t] * inv + ((uint64_t)1 << 30)) >> 31);
}

/* out[h] = sat8(round(sum_t softmax_t(q[h].k[t]) * v[t] * out_mult / 2^out_shift)), t = 0..pos, kv head h/(n_heads/n_kv_heads) */
void attention_i8(int8_t *out /* [n_heads*head_size] */, const int8_t *q /* [n_heads*head_size] */,
                  const int8_t *k_cache /* [ctx, n_kv_heads*head_size] */,
                  const int8_t *v_cache /* [ctx, n_kv_heads*head_size] */, int32_t *scratch /* [pos+1] */,
                  int32_t pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_size, int32_t score_mult,
                  int32_t score_shift, int32_t out_mult, int32_t out_shift, const int32_t *exp_table /* [257] */) {
    int32_t kv_dim = n_kv_heads * head_size, group = n_heads / n_kv_heads;
    for (int32_t h = 0; h < n_heads; h++) {
        const int8_t *qh = q + h * head_size;
        const int8_t *kh = k_cache + (h / group) * head_size; /* row t at kh + t*kv_dim */
        const int8_t *vh = v_cache + (h / group) * head_size;
        for (int32_t t = 0; t <= pos; t++) {
            const int8_t *kt = kh + (size_t)t * (size_t)kv_dim;
            int32_t acc = 0; /* |acc| <= head_size * 2^14 */
            for (int32_t d = 0; d < head_size; d++) acc += (int32_t)qh[d] * kt[d];
            scratch[t] = acc;
        }
        softmax_q15(scratch, pos + 1, score_mult, score_shift, exp_table);
        for (int32_t d = 0; d < head_size; d++) {
            int32_t acc = 0; /* sum_t p[t] <= 2^15 + (pos+1)/2, so |acc| <= 2^22 + 64*(pos+1) */
            for (int32_t t = 0; t <= pos; t++) acc += scratch[t] * vh[(size_t)t * (size_t)kv_dim + (size_t)d];
            out[h * head_size + d] = dpl_sat8(dpl_requant(acc, out_mult, (int)out_shift));
        }
    }
}

/* ---- tiled attention: the same integers as attention_i8, one kv head and one tile of positions at a time ----
 * For kv head kh (query heads kh*g .. kh*g+g-1, g = n_heads/n_kv_heads), n = pos+1 positions:
 *   attn_scores_i8 over tiles of K, softmax_q15_rows over the n scores of each head,
 *   zero_i32 + attn_av_i8 over tiles of V, requant_i32_i8. Integer sums: tile order never matters. */

/* scores[h*stride + t0 + t] = sum_d q[h*hs + d] * k[t*k_stride + d], for the g query heads sharing one kv head, t in [0, n_t) */
void attn_scores_i8(int32_t *scores /* [g, stride] */, int32_t stride, const int8_t *q /* [g, hs] */,
                    const int8_t *k /* [n_t, k_stride] */, int32_t k_stride, int32_t t0, int32_t n_t, int32_t g,
                    int32_t hs) {
    for (int32_t h = 0; h < g; h++) {
        const int8_t *qh = q + (size_t)h * (size_t)hs;
        int32_t *sh = scores + (size_t)h * (size_t)stride + (size_t)t0;
        if (hs == 8) { /* the common head size: q stays in registers, the dot product is unrolled */
            const int32_t q0 = qh[0], q1 = qh[1], q2 = qh[2], q3 = qh[3], q4 = qh[4], q5 = qh[5], q6 = qh[6], q7 = qh[7];
            for (int32_t t = 0; t < n_t; t++) {
                const int8_t *kt = k + (size_t)t * (size_t)k_stride;
                sh[t] = q0 * kt[0] + q1 * kt[1] + q2 * kt[2] + q3 * kt[3] + q4 * kt[4] + q5 * kt[5] + q6 * kt[6] +
                        q7 * kt[7];
            }
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

/* each of the g rows: scores[h*stride + 0..n) -> Q15 probabilities in place, exactly softmax_q15 */
void softmax_q15_rows(int32_t *scores /* [g, stride] */, int32_t stride, int32_t n, int32_t g, int32_t mult,
                      int32_t shift, const int32_t *exp_table /* [257] */) {
    for (int32_t h = 0; h < g; h++) softmax_q15(scores + (size_t)h * (size_t)stride, n, mult, shift, exp_table);
}

/* acc[h*hs + d] += sum_t p[h*stride + t0 + t] * v[t*v_stride + d], t in [0, n_t) */
void attn_av_i8(int32_t *acc /* [g, hs] */, const int32_t *p /* [g, stride] */, int32_t stride,
                const int8_t *v /* [n_t, v_stride] */, int32_t v_stride, int32_t t0, int32_t n_t, int32_t g,
                int32_t hs) {
    for (int32_t h = 0; h < g; h++) {
        const int32_t *ph = p + (size_t)h * (size_t)stride + (size_t)t0;
        int32_t *ah = acc + (size_t)h * (size_t)hs;
        if (hs == 8) { /* the common head size: eight accumulators in registers, one pass over the rows */
            int32_t a0 = ah[0], a1 = ah[1], a2 = ah[2], a3 = ah[3], a4 = ah[4], a5 = ah[5], a6 = ah[6], a7 = ah[7];
            for (int32_t t = 0; t < n_t; t++) {
                const int8_t *vt = v + (size_t)t * (size_t)v_stride;
                const int32_t pt = ph[t];
                a0 += pt * vt[0], a1 += pt * vt[1], a2 += pt * vt[2], a3 += pt * vt[3];
                a4 += pt * vt[4], a5 += pt * vt[5], a6 += pt * vt[6], a7 += pt * vt[7];
            }
            ah[0] = a0, ah[1] = a1, ah[2] = a2, ah[3] = a3, ah[4] = a4, ah[5] = a5, ah[6] = a6, ah[7] = a7;
            continue;
        }
        for (int32_t d = 0; d < hs; d++) {
            int32_t a = ah[d]; /* over all tiles: sum_t p[t] <= 2^15 + n/2, so |a| <= 2^22 + 64*n */
            for (int32_t t = 0; t < n_t; t++) a += ph[t] * v[(size_t)t * (size_t)v_stride + (size_t)d];
            ah[d] = a;
        }
    }
}

/* out[i] = sat8(round(acc[i] * mult / 2^shift)) */
void requant_i32_i8(int8_t *out /* [n] */, const int32_t *acc /* [n] */, int32_t n, int32_t mult, int32_t shift) {
    for (int32_t i = 0; i < n; i++) out[i] = dpl_sat8(dpl_requant(acc[i], mult, (int)shift));
}

/* x[i] = 0 */
void zero_i32(int32_t *x /* [n] */, int32_t n) {
    for (int32_t i = 0; i < n; i++) x[i] = 0;
}
