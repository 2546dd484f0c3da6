/* attention_qk_rvv.h: the vector attention's scores for the other widths of q and K (attention_qk_rvv.c): int8 keys
 * with int8 queries (attn_scores_i8), with int12 or int16 queries in int16 (attn_scores_q12, attn_scores_q16), and
 * int16 keys with int12 queries (attn_scores_q12k16), the same integers as attention.c's; the exps and V are
 * attention_rvv.c's (attn_exp_av_i8_rvv), the heads shared by attn_rvv_share (attention_rvv.h). */
#ifndef DEEPLOY_ATTENTION_QK_RVV_H
#define DEEPLOY_ATTENTION_QK_RVV_H

#include <stdint.h>

/* attn_scores_*'s contract (deeploy_kernels.h): scores[h*stride + t0 + t] = round(q_h . k_t), max[h] updated (from
 * INT32_MIN if t0 == 0); positions across the lanes */
void attn_scores_i8_rvv(int32_t *scores /* [g, stride] */, int32_t stride, int32_t *max /* [g] */,
                        const int8_t *q /* [g, hs] */, const int8_t *k /* [n_t, k_stride] */, int32_t k_stride,
                        int32_t t0, int32_t n_t, int32_t g, int32_t hs);
void attn_scores_q12_rvv(int32_t *scores /* [g, stride] */, int32_t stride, int32_t *max /* [g] */,
                         const int16_t *q /* [g, hs] */, const int8_t *k /* [n_t, k_stride] */, int32_t k_stride,
                         int32_t t0, int32_t n_t, int32_t g, int32_t hs);
void attn_scores_q16_rvv(int32_t *scores /* [g, stride] */, int32_t stride, int32_t *max /* [g] */,
                         const int16_t *q /* [g, hs] */, const int8_t *k /* [n_t, k_stride] */, int32_t k_stride,
                         int32_t t0, int32_t n_t, int32_t g, int32_t hs);
void attn_scores_q12k16_rvv(int32_t *scores /* [g, stride] */, int32_t stride, int32_t *max /* [g] */,
                            const int16_t *q /* [g, hs] */, const int16_t *k /* [n_t, k_stride] */, int32_t k_stride,
                            int32_t t0, int32_t n_t, int32_t g, int32_t hs);

/* the untiled kernels (attention_i8, attention_q12, attention_q16, attention_q12k16's contract): per kv head the
 * scores above, then attn_exp_av_i8_rvv over all positions */
void attention_i8_rvv(int8_t *out /* [n_heads*head_size] */, const int8_t *q /* [n_heads*head_size] */,
                      const int8_t *k_cache /* [ctx, n_kv_heads*head_size] */,
                      const int8_t *v_cache /* [ctx, n_kv_heads*head_size] */, int32_t *scratch /* [g, ctx] */,
                      int32_t pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_size, int32_t score_mult,
                      int32_t score_shift, int32_t score_cut, int32_t out_mult, int32_t out_shift,
                      const uint16_t *exp_table /* [512] */);
void attention_q12_rvv(int8_t *out /* [n_heads*head_size] */, const int16_t *q /* [n_heads*head_size] */,
                       const int8_t *k_cache /* [ctx, n_kv_heads*head_size] */,
                       const int8_t *v_cache /* [ctx, n_kv_heads*head_size] */, int32_t *scratch /* [g, ctx] */,
                       int32_t pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_size, int32_t score_mult,
                       int32_t score_shift, int32_t score_cut, int32_t out_mult, int32_t out_shift,
                       const uint16_t *exp_table /* [512] */);
void attention_q16_rvv(int8_t *out /* [n_heads*head_size] */, const int16_t *q /* [n_heads*head_size] */,
                       const int8_t *k_cache /* [ctx, n_kv_heads*head_size] */,
                       const int8_t *v_cache /* [ctx, n_kv_heads*head_size] */, int32_t *scratch /* [g, ctx] */,
                       int32_t pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_size, int32_t score_mult,
                       int32_t score_shift, int32_t score_cut, int32_t out_mult, int32_t out_shift,
                       const uint16_t *exp_table /* [512] */);
void attention_q12k16_rvv(int8_t *out /* [n_heads*head_size] */, const int16_t *q /* [n_heads*head_size] */,
                          const int16_t *k_cache /* [ctx, n_kv_heads*head_size] */,
                          const int8_t *v_cache /* [ctx, n_kv_heads*head_size] */, int32_t *scratch /* [g, ctx] */,
                          int32_t pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_size, int32_t score_mult,
                          int32_t score_shift, int32_t score_cut, int32_t out_mult, int32_t out_shift,
                          const uint16_t *exp_table /* [512] */);

#endif /* DEEPLOY_ATTENTION_QK_RVV_H */
