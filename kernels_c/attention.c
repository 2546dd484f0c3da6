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

/* p = softmax(s * scale) in Q15, in place: z = requant(max - s) >= 0, e = exp2_neg(z), p = e * (2^46/sum e) / 2^31 */
static void softmax_q15(int32_t *s /* [n] */, int32_t n, int32_t mult, int32_t shift, const int32_t *table /* [257] */) {
    int32_t max = s[0];
    for (int32_t t = 1; t < n; t++)
        if (s[t] > max) max = s[t];
    int64_t sum = 0; /* >= 2^15: the max contributes table[0] */
    for (int32_t t = 0; t < n; t++) {
        int64_t z = dpl_requant((int64_t)max - s[t], mult, (int)shift);
        s[t] = exp2_neg(z < 0 ? 0 : z, table);
        sum += s[t];
    }
    int64_t inv = ((int64_t)1 << 46) / sum;
    for (int32_t t = 0; t < n; t++) s[t] = (int32_t)((s[t] * inv + ((int64_t)1 << 30)) >> 31);
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
