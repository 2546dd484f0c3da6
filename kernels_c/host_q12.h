/* host_q12.h: the host's attention for int12 queries (`queries int12`, stored in int16 within +-2047), for `target host`
 * (host_q12.c; rules attention_q12_host, attention_q12k16t_host). Same integers as attention_q12 and attention_q12k16
 * (attention.c, kernels.attention with the scores' shift kernels.score_shift(12, key bits)), with K and V read where
 * they are in the caches, one head at a time.
 */
#ifndef DEEPLOY_HOST_Q12_H
#define DEEPLOY_HOST_Q12_H

#include <stdint.h>

/* int8 keys, K in rows [ctx, n_kv_heads*head_size]: scores round_half_up(q . k / 2^4); scratch holds one head's scores,
 * then its exps; head_size <= 256 */
void attention_host_q12(int8_t *out /* [n_heads*head_size] */, const int16_t *q /* [n_heads*head_size] */,
                        const int8_t *k_cache /* [ctx, n_kv_heads*head_size] */,
                        const int8_t *v_cache /* [ctx, n_kv_heads*head_size] */, int32_t *scratch /* [pos+1] */,
                        int32_t pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_size, int32_t score_mult,
                        int32_t score_shift, int32_t score_cut, int32_t out_mult, int32_t out_shift,
                        const uint16_t *exp_table /* [512] */);
/* int16 keys in the host's transposed cache, k_cache [n_kv_heads*head_size, context] (rope_k16_cols writes it):
 * scores round_half_up(q . k / 2^12); head_size <= 32 (kernels.qk_head_size_max(12, 16)) */
void attention_host_q12k16t(int8_t *out /* [n_heads*head_size] */, const int16_t *q /* [n_heads*head_size] */,
                            const int16_t *k_cache /* [n_kv_heads*head_size, context] */,
                            const int8_t *v_cache /* [context, n_kv_heads*head_size] */, int32_t *scratch /* [pos+1] */,
                            int32_t pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_size, int32_t score_mult,
                            int32_t score_shift, int32_t score_cut, int32_t out_mult, int32_t out_shift,
                            const uint16_t *exp_table /* [512] */, int32_t context);

#endif /* DEEPLOY_HOST_Q12_H */
