/* attention_rvv.h: attention's scores for cores with the vector extension (attention_rvv.c), int16 keys: the same
 * integers as attn_scores_k16 and attention_k16 (deeploy_kernels.h), positions across the lanes, widening MACs
 * (vwmacc.vx: vqdot is int8 only). */
#ifndef DEEPLOY_ATTENTION_RVV_H
#define DEEPLOY_ATTENTION_RVV_H

#include <stdint.h>

/* attn_scores_k16's contract: scores[h*stride + t0 + t] = (q_h . k_t + 128) >> 8, max[h] updated (from INT32_MIN if
 * t0 == 0); the K tile read a column (one head dimension) at a time by strided vector loads */
void attn_scores_k16_rvv(int32_t *scores /* [g, stride] */, int32_t stride, int32_t *max /* [g] */,
                         const int8_t *q /* [g, hs] */, const int16_t *k /* [n_t, k_stride] */, int32_t k_stride,
                         int32_t t0, int32_t n_t, int32_t g, int32_t hs);
/* attention_k16 (untiled), its scores by attn_scores_k16_rvv, per kv head then attn_exp_av_i8 over all positions */
void attention_k16_rvv(int8_t *out /* [n_heads*head_size] */, const int8_t *q /* [n_heads*head_size] */,
                       const int16_t *k_cache /* [ctx, n_kv_heads*head_size] */,
                       const int8_t *v_cache /* [ctx, n_kv_heads*head_size] */, int32_t *scratch /* [g, ctx] */,
                       int32_t pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_size, int32_t score_mult,
                       int32_t score_shift, int32_t score_cut, int32_t out_mult, int32_t out_shift,
                       const uint16_t *exp_table /* [512] */);

#endif /* DEEPLOY_ATTENTION_RVV_H */
