/* host_q12.c: see host_q12.h. host.c's attention (its comments say how each loop vectorizes) with int12 queries: the
 * scores are q . k summed in 32 bits (|q| <= 2047: hs * 2047 * 32768 + 2^11 < 2^31 for hs <= 32 with int16 keys, hs
 * <= 8196 with int8 keys), then rounded half up by the shift that brings them to int8 x int8 units, from which the
 * exps, the exp-weighted V and the output stage are the int8 queries'. The exp and V stages repeat host.c's (static
 * there, and host.c's text is part of every host build, which must not change for deployments without int12 queries).
 */
#include "host_q12.h"

#include <stddef.h>

#include "deeploy_kernels.h"

#define Q12_HS_MAX 256 /* the largest head size deeploy accepts */

/* s[t] = (q . k_t + 2^3) >> 4 over positions 0..n-1, K in rows k_stride apart; returns max_t s[t] */
static inline __attribute__((always_inline)) int32_t q12_scores_k8(int32_t *s, const int16_t *q, const int8_t *k,
                                                                   int32_t k_stride, int32_t n, int32_t hs) {
    int32_t max = INT32_MIN, qv[Q12_HS_MAX];
    for (int32_t d = 0; d < hs; d++) qv[d] = q[d];
    int32_t t = 0;
    for (; t + 4 <= n; t += 4) { /* four positions: four independent sums in flight */
        const int8_t *k0 = k + (size_t)t * (size_t)k_stride, *k1 = k0 + k_stride, *k2 = k1 + k_stride,
                     *k3 = k2 + k_stride;
        int32_t y0 = 8, y1 = 8, y2 = 8, y3 = 8;
        for (int32_t d = 0; d < hs; d++)
            y0 += qv[d] * k0[d], y1 += qv[d] * k1[d], y2 += qv[d] * k2[d], y3 += qv[d] * k3[d];
        s[t] = y0 >> 4, s[t + 1] = y1 >> 4, s[t + 2] = y2 >> 4, s[t + 3] = y3 >> 4;
    }
    for (; t < n; t++) {
        const int8_t *kt = k + (size_t)t * (size_t)k_stride;
        int32_t y = 8;
        for (int32_t d = 0; d < hs; d++) y += qv[d] * kt[d];
        s[t] = y >> 4;
    }
    for (t = 0; t < n; t++) max = s[t] > max ? s[t] : max;
    return max;
}

/* s[t] = (q . k_t + 2^11) >> 12 over the hs rows of one head in the transposed cache (kt: its first, rows context
 * apart): hs passes of s[t] += q[d] * K[d][t], 8 positions a vector; returns the max */
static inline __attribute__((always_inline)) int32_t q12_scores_k16t(int32_t *s, const int16_t *q, const int16_t *kt,
                                                                     int32_t context, int32_t n, int32_t hs) {
    int32_t max = INT32_MIN, qv[Q12_HS_MAX];
    for (int32_t d = 0; d < hs; d++) qv[d] = q[d];
    for (int32_t t = 0; t < n; t++) s[t] = 1 << 11;
    for (int32_t d = 0; d < hs; d++) {
        const int16_t *row = kt + (size_t)d * (size_t)context;
        const int32_t qd = qv[d];
        for (int32_t t = 0; t < n; t++) s[t] += qd * row[t];
    }
    for (int32_t t = 0; t < n; t++) {
        s[t] >>= 12;
        max = s[t] > max ? s[t] : max;
    }
    return max;
}

/* s[t] = e_t = 2^(-z_t / 2^9) from the table widened to 32 bits, z_t = floor(((max - s[t]) * mult + 2^(shift-1)) /
 * 2^shift), 16 * 2^9 (an exp of 0) beyond cut; returns sum_t e_t (host.c's host_exps) */
static inline int32_t q12_exps(int32_t *s, int32_t n, int32_t max, uint32_t mult, int32_t shift, uint32_t cut,
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

/* acc[d] = sum_t e[t] * v[t*v_stride + d], d < hs (host.c's host_av: the sums in an array of their own, which gcc keeps
 * in a vector, each position's hs values of v one vector) */
static inline __attribute__((always_inline)) void q12_av(int32_t *acc, const int32_t *e, const int8_t *v,
                                                         int32_t v_stride, int32_t n, int32_t hs) {
    int32_t a[Q12_HS_MAX];
    for (int32_t d = 0; d < hs; d++) a[d] = 0;
    for (int32_t t = 0; t < n; t++) {
        const int8_t *vt = v + (size_t)t * (size_t)v_stride;
        const int32_t et = e[t];
        for (int32_t d = 0; d < hs; d++) a[d] += et * vt[d];
    }
    for (int32_t d = 0; d < hs; d++) acc[d] = a[d];
}

/* one head whose scores are in s [n]: their exps (in place), the exp-weighted sum of its V, then out [hs] = attn_out_i8
 * of it and the exps' sum (hs a constant where it is inlined) */
static inline __attribute__((always_inline)) void q12_finish(int8_t *out, int32_t *s, int32_t n, int32_t max,
                                                             const int8_t *v, int32_t v_stride, int32_t hs,
                                                             const int32_t *prm, const uint32_t *table) {
    int32_t acc[Q12_HS_MAX];
    int32_t sum = q12_exps(s, n, max, (uint32_t)prm[0], prm[1], (uint32_t)prm[2], table);
    q12_av(acc, s, v, v_stride, n, hs);
    attn_out_i8(out, acc, &sum, 1, hs, prm[3], prm[4], prm[5]);
}

/* prm = {score_mult, score_shift, score_cut, out_mult, out_shift, exp bits}; table = the exp table widened */
static inline void q12_setup(int32_t *prm, uint32_t *table, int32_t score_mult, int32_t score_shift, int32_t score_cut,
                             int32_t out_mult, int32_t out_shift, const uint16_t *exp_table) {
    int32_t bits = 0;
    while ((1 << (bits + 1)) <= exp_table[0]) bits++;
    prm[0] = score_mult, prm[1] = score_shift, prm[2] = score_cut, prm[3] = out_mult, prm[4] = out_shift;
    prm[5] = bits;
    for (int32_t i = 0; i < 512; i++) table[i] = exp_table[i];
}

void attention_host_q12(int8_t *out, const int16_t *q, const int8_t *k_cache, const int8_t *v_cache, int32_t *scratch,
                        int32_t pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_size, int32_t score_mult,
                        int32_t score_shift, int32_t score_cut, int32_t out_mult, int32_t out_shift,
                        const uint16_t *exp_table) {
    const int32_t kv_dim = n_kv_heads * head_size, group = n_heads / n_kv_heads, n = pos + 1;
    int32_t prm[6];
    uint32_t table[512];
    q12_setup(prm, table, score_mult, score_shift, score_cut, out_mult, out_shift, exp_table);
    for (int32_t h = 0; h < n_heads; h++) {
        const int32_t ko = (h / group) * head_size;
        if (head_size == 8) { /* every TinyStories model: the loops unrolled and vectorized for 8 */
            const int32_t max = q12_scores_k8(scratch, q + h * 8, k_cache + ko, kv_dim, n, 8);
            q12_finish(out + h * 8, scratch, n, max, v_cache + ko, kv_dim, 8, prm, table);
        } else {
            const int32_t max = q12_scores_k8(scratch, q + h * head_size, k_cache + ko, kv_dim, n, head_size);
            q12_finish(out + h * head_size, scratch, n, max, v_cache + ko, kv_dim, head_size, prm, table);
        }
    }
}

void attention_host_q12k16t(int8_t *out, const int16_t *q, const int16_t *k_cache, const int8_t *v_cache,
                            int32_t *scratch, int32_t pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_size,
                            int32_t score_mult, int32_t score_shift, int32_t score_cut, int32_t out_mult,
                            int32_t out_shift, const uint16_t *exp_table, int32_t context) {
    const int32_t kv_dim = n_kv_heads * head_size, group = n_heads / n_kv_heads, n = pos + 1;
    int32_t prm[6];
    uint32_t table[512];
    q12_setup(prm, table, score_mult, score_shift, score_cut, out_mult, out_shift, exp_table);
    for (int32_t h = 0; h < n_heads; h++) {
        const int32_t ko = (h / group) * head_size;
        const int16_t *kt = k_cache + (size_t)ko * (size_t)context;
        if (head_size == 8) {
            const int32_t max = q12_scores_k16t(scratch, q + h * 8, kt, context, n, 8);
            q12_finish(out + h * 8, scratch, n, max, v_cache + ko, kv_dim, 8, prm, table);
        } else {
            const int32_t max = q12_scores_k16t(scratch, q + h * head_size, kt, context, n, head_size);
            q12_finish(out + h * head_size, scratch, n, max, v_cache + ko, kv_dim, head_size, prm, table);
        }
    }
}
