/* attention_rvv.h: attention for cores with the vector extension (attention_rvv.c), int16 keys: the same integers as
 * attn_scores_k16, attn_exp_av_i8 and attention_k16 (deeploy_kernels.h), positions across the lanes, widening MACs
 * (vwmacc.vx: vqdot is int8 only). */
#ifndef DEEPLOY_ATTENTION_RVV_H
#define DEEPLOY_ATTENTION_RVV_H

#include <stdint.h>

/* attn_scores_k16's contract: scores[h*stride + t0 + t] = (q_h . k_t + 128) >> 8, max[h] updated (from INT32_MIN if
 * t0 == 0); the K tile read a column (one head dimension) at a time by strided vector loads */
void attn_scores_k16_rvv(int32_t *scores /* [g, stride] */, int32_t stride, int32_t *max /* [g] */,
                         const int8_t *q /* [g, hs] */, const int16_t *k /* [n_t, k_stride] */, int32_t k_stride,
                         int32_t t0, int32_t n_t, int32_t g, int32_t hs);
/* attn_exp_av_i8's contract (deeploy_kernels.h): the exps of the scores against each head's max, acc += e * v and
 * sums += e over the tile (from 0 if t0 == 0), and on the last tile (out) out = attn_out_i8 of them; positions across
 * the lanes (hs <= 64, else the scalar kernel) */
void attn_exp_av_i8_rvv(int32_t *acc /* [g, hs] */, int32_t *sums /* [g] */, const int32_t *scores /* [g, stride] */,
                        int32_t stride, const int32_t *max /* [g] */, const int8_t *v /* [n_t, v_stride] */,
                        int32_t v_stride, int32_t t0, int32_t n_t, int32_t g, int32_t hs, const int32_t *prm /* [6] */,
                        const uint16_t *exp_table /* [512] */, int8_t *out /* [g, hs] or NULL */);
/* attention_k16 (untiled): per kv head attn_scores_k16_rvv then attn_exp_av_i8_rvv over all positions */
void attention_k16_rvv(int8_t *out /* [n_heads*head_size] */, const int8_t *q /* [n_heads*head_size] */,
                       const int16_t *k_cache /* [ctx, n_kv_heads*head_size] */,
                       const int8_t *v_cache /* [ctx, n_kv_heads*head_size] */, int32_t *scratch /* [g, ctx] */,
                       int32_t pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_size, int32_t score_mult,
                       int32_t score_shift, int32_t score_cut, int32_t out_mult, int32_t out_shift,
                       const uint16_t *exp_table /* [512] */);

/* [lo, hi) of n query heads for `core` of `n_cores`: core 0, which also runs forward() (DMA setup, forking), takes none
 * when n_cores >= DPL_RVV_SPARE_FROM and n >= n_cores - 1; the others share them contiguously, the larger shares to the first of them
 * (the last core runs the one-core steps, such as the per-token SwiGLU); two heads of one core share their kv head's
 * vector pass when they are neighbours (8 heads on 8 cores: none on core 0, 2 on core 1, 1 on the others) */
#ifndef DPL_RVV_SPARE_FROM
/* from this many cores on, core 0 takes no GEMV rows and no query heads: it runs the one-core steps (norm, RoPE,
 * SwiGLU, residual add: a few vector instructions each) and forks every step (stories260k, busiest hart: 3 cores
 * 32,551 instructions per token spared, 39,963 not; 5 cores 20,685 and 30,738); must equal kernels.rvv.SPARE_FROM */
#define DPL_RVV_SPARE_FROM 3
#endif
static inline void attn_rvv_share(int32_t n, int32_t core, int32_t n_cores, int32_t *lo, int32_t *hi) {
    int32_t base, big;
    if (n_cores >= DPL_RVV_SPARE_FROM && n >= n_cores - 1) {
        if (core == 0) {
            *lo = *hi = 0;
            return;
        }
        core -= 1, n_cores -= 1;
    }
    base = n / n_cores, big = n % n_cores;
    *lo = core * base + (core < big ? core : big);
    *hi = *lo + base + (core < big ? 1 : 0);
}

#endif /* DEEPLOY_ATTENTION_RVV_H */
