/* deeploy_kernels.h: integer-only kernels for small Llama models (C99, no malloc, no float).
 *
 * Every kernel computes exactly the integers of its numpy twin in deeploy_dsl/kernels.py.
 * Assumptions (hold for gcc/clang on x86-64 and RV32):
 *   - `>>` on a negative signed value is an arithmetic shift (gcc documents this as its
 *     implementation-defined behaviour), and signed <-> unsigned conversions are two's complement;
 *   - nothing assumes `int` or `long` is 64-bit: products that can exceed 32 bits use int64_t.
 * Rounding is half away from zero everywhere (dpl_rshift_round), never banker's rounding.
 * Requantization is round(acc * mult / 2^shift) in 64-bit with mult < 2^31 and 0 <= shift <= 62.
 */
#ifndef DEEPLOY_KERNELS_H
#define DEEPLOY_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* v / 2^s rounded half away from zero, 0 <= s <= 62 */
static inline int64_t dpl_rshift_round(int64_t v, int s) {
    if (s <= 0) return v;
    return (v + ((int64_t)1 << (s - 1)) - (v < 0)) >> s;
}

/* round(acc * mult / 2^shift), before saturation; |acc| < 2^32 keeps the product in int64 */
static inline int64_t dpl_requant(int64_t acc, int32_t mult, int shift) {
    return dpl_rshift_round(acc * mult, shift);
}

/* clamp to the int8 / int16 / int32 range */
static inline int8_t dpl_sat8(int64_t v) {
    return (int8_t)(v < INT8_MIN ? INT8_MIN : v > INT8_MAX ? INT8_MAX : v);
}
static inline int16_t dpl_sat16(int64_t v) {
    return (int16_t)(v < INT16_MIN ? INT16_MIN : v > INT16_MAX ? INT16_MAX : v);
}
static inline int32_t dpl_sat32(int64_t v) {
    return (int32_t)(v < INT32_MIN ? INT32_MIN : v > INT32_MAX ? INT32_MAX : v);
}

/* floor(sqrt(n)), bit by bit: one candidate bit of the root per iteration */
static inline uint32_t dpl_isqrt64(uint64_t n) {
    uint64_t root = 0, bit = (uint64_t)1 << 62;
    while (bit > n) bit >>= 2;
    while (bit != 0) {
        if (n >= root + bit) {
            n -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    return (uint32_t)root;
}

/* linear.c: y[o] = sat(round(sum_i w[o,i]*x[i] * mult[o] / 2^shift[o])), needs n_in < 2^17 */
void linear_i8(int8_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* [n_out, n_in] */,
               const int32_t *mult /* [n_out] */, const uint8_t *shift /* [n_out] */, int32_t n_in, int32_t n_out);
void linear_i16(int16_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* [n_out, n_in] */,
                const int32_t *mult /* [n_out] */, const uint8_t *shift /* [n_out] */, int32_t n_in, int32_t n_out);
void linear_i32(int32_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* [n_out, n_in] */,
                const int32_t *mult /* [n_out] */, const uint8_t *shift /* [n_out] */, int32_t n_in, int32_t n_out);

/* rmsnorm.c: y[i] = sat8(x[i] / rms(x) * gain[i] / 2^gain_shift), see kernels.rmsnorm */
void rmsnorm_i8(int8_t *y /* [dim] */, const int16_t *x /* [dim] */, const int32_t *gain /* [dim] */,
                int32_t gain_shift, int64_t eps_q, int32_t dim);
/* rmsnorm_i8 writing only y[lo..hi), for a core's share (the rms is of the whole row) */
void rmsnorm_i8_part(int8_t *y /* [dim] */, const int16_t *x /* [dim] */, const int32_t *gain /* [dim] */,
                     int32_t gain_shift, int64_t eps_q, int32_t dim, int32_t lo, int32_t hi);

/* rope.c: rotate interleaved pairs of each head by the Q14 cos/sin row of this position; y may equal x */
void rope_i8(int8_t *y /* [n] */, const int8_t *x /* [n] */, const int16_t *cos_row /* [head_size/2] */,
             const int16_t *sin_row /* [head_size/2] */, int32_t n, int32_t head_size);

/* attention.c: causal GQA attention of one query over cache rows 0..pos; scratch holds one head's scores/probs */
void attention_i8(int8_t *out /* [n_heads*head_size] */, const int8_t *q /* [n_heads*head_size] */,
                  const int8_t *k_cache /* [ctx, n_kv_heads*head_size] */,
                  const int8_t *v_cache /* [ctx, n_kv_heads*head_size] */, int32_t *scratch /* [pos+1] */,
                  int32_t pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_size, int32_t score_mult,
                  int32_t score_shift, int32_t out_mult, int32_t out_shift, const int32_t *exp_table /* [257] */);

/* attention.c, tiled: the same integers as attention_i8, K and V visited in tiles of positions. Per kv head kh
 * (query heads kh*g .. kh*g+g-1, g = n_heads/n_kv_heads; q = q + kh*g*hs) over n = pos+1 positions:
 *   attn_scores_i8 for each tile of K (t0, n_t), softmax_q15_rows over all n, zero_i32(acc, g*hs),
 *   attn_av_i8 for each tile of V, requant_i32_i8(out + kh*g*hs, acc, g*hs, out_mult, out_shift).
 * k/v point at row t0 of the tile: k_stride = kv_dim straight from a cache (offset by kh*hs), = hs for a dense tile. */
/* scores[h*stride + t0 + t] = sum_d q[h*hs + d] * k[t*k_stride + d], for the g query heads sharing one kv head, t in [0, n_t) */
void attn_scores_i8(int32_t *scores /* [g, stride] */, int32_t stride, const int8_t *q /* [g, hs] */,
                    const int8_t *k /* [n_t, k_stride] */, int32_t k_stride, int32_t t0, int32_t n_t, int32_t g,
                    int32_t hs);
/* each of the g rows: scores[h*stride + 0..n) -> Q15 probabilities in place, exactly softmax_q15 (n >= 1) */
void softmax_q15_rows(int32_t *scores /* [g, stride] */, int32_t stride, int32_t n, int32_t g, int32_t mult,
                      int32_t shift, const int32_t *exp_table /* [257] */);
/* acc[h*hs + d] += sum_t p[h*stride + t0 + t] * v[t*v_stride + d], t in [0, n_t) */
void attn_av_i8(int32_t *acc /* [g, hs] */, const int32_t *p /* [g, stride] */, int32_t stride,
                const int8_t *v /* [n_t, v_stride] */, int32_t v_stride, int32_t t0, int32_t n_t, int32_t g,
                int32_t hs);
/* out[i] = sat8(round(acc[i] * mult / 2^shift)) */
void requant_i32_i8(int8_t *out /* [n] */, const int32_t *acc /* [n] */, int32_t n, int32_t mult, int32_t shift);
/* x[i] = 0 */
void zero_i32(int32_t *x /* [n] */, int32_t n);

/* swiglu.c: h[i] = sat8(round(silu_table[gate[i]+128] * up[i] * mult / 2^shift)) */
void swiglu_i8(int8_t *h /* [n] */, const int8_t *gate /* [n] */, const int8_t *up /* [n] */,
               const int16_t *silu_table /* [256] */, int32_t mult, int32_t shift, int32_t n);

/* residual.c: y[i] = sat16(a[i] + b[i]); y may equal a (in-place residual add) */
void add_sat_i16(int16_t *y /* [n] */, const int16_t *a /* [n] */, const int16_t *b /* [n] */, int32_t n);

/* embed.c: x = sat16(round(row * mult[0] / 2^shift[0])); row = table[token], mult = &mult[token], shift = &shift[token],
 * so only the token's row needs to be in reach (e.g. DMA'd into L1) */
void embed_i16(int16_t *x /* [dim] */, const int8_t *row /* [dim] */, const int32_t *mult /* [1] */,
               const uint8_t *shift /* [1] */, int32_t dim);

/* argmax.c: index of the largest value, lowest index on ties (n >= 1) */
int32_t argmax_i32(const int32_t *x /* [n] */, int32_t n);

#endif /* DEEPLOY_KERNELS_H */
