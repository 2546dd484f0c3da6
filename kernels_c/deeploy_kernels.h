/* deeploy_kernels.h: integer-only kernels for small Llama models (C99, no malloc, no float).
 *
 * Every kernel computes exactly the integers of its numpy twin in deeploy_dsl/kernels/twins.py.
 * Assumptions (hold for gcc/clang on x86-64 and RV32):
 *   - `>>` on a negative signed value is an arithmetic shift (gcc documents this as its
 *     implementation-defined behaviour), and signed <-> unsigned conversions are two's complement;
 *   - nothing assumes `int` or `long` is 64-bit: products that can exceed 32 bits use int64_t.
 * Rounding is half away from zero (dpl_rshift_round), never banker's rounding, except in the linear layers
 * (gemv.c, linear.c): one shift per layer and rounding half up, floor(acc * mult / 2^shift + 1/2), so that the
 * high word of one product decides it (kernels.requant_half_up).
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

#if defined(__GNUC__)
#define DPL_UNLIKELY(c) __builtin_expect(!!(c), 0)
#else
#define DPL_UNLIKELY(c) (c)
#endif

/* sat8 / sat16 of an int32 that is rarely out of range: one unsigned compare and a not-taken branch on the
 * common path (dpl_sat8 costs two compares and a sign extension), (v >> 31) ^ 127 = -128 or 127 */
static inline int32_t dpl_clamp8(int32_t v) {
    if (DPL_UNLIKELY((uint32_t)v + 128u > 255u)) v = (v >> 31) ^ INT8_MAX;
    return v;
}
static inline int32_t dpl_clamp16(int32_t v) {
    if (DPL_UNLIKELY((uint32_t)v + 32768u > 65535u)) v = (v >> 31) ^ INT16_MAX;
    return v;
}

/* floor(sqrt(m)) for 32-bit m by Newton's method from above, with 32-bit divisions only: x0 = (m/2^k + 2^k)/2
 * >= sqrt(m) for any k (AM-GM), k ~ half the bit length of m keeps it within 25%, and from above
 * x -> (x + m/x)/2 decreases to floor(sqrt(m)) and then stops decreasing (~4 steps instead of 16 bit steps) */
static inline uint32_t dpl_isqrt32(uint32_t m) {
    uint32_t t = m, x, y;
    int k = 0;
    if (m == 0) return 0;
    if (t >= (1u << 16)) t >>= 16, k += 8; /* binary search for k = floor(bitlength(m)/2), no clz on rv32imac */
    if (t >= (1u << 8)) t >>= 8, k += 4;
    if (t >= (1u << 4)) t >>= 4, k += 2;
    if (t >= (1u << 2)) k += 1;
    x = ((m >> k) + (1u << k)) >> 1;
    for (;;) {
        y = (x + m / x) >> 1;
        if (y >= x) return x;
        x = y;
    }
}

/* floor(sqrt(n)), the same integers as dpl_isqrt64, in 32-bit steps for n < 2^48. There s = isqrt(n >> 16) gives
 * x0 = s*2^8 <= sqrt(n) < x0 + 2^8 with x0 >= 2^16 (when n >= 2^32), so one Newton step from below,
 * x0 + (n - x0^2)/(2*x0) (the residual < 2^33, halved to 32 bits first: nested floors), lands on floor(sqrt(n))
 * or one above (it overshoots by (sqrt(n) - x0)^2 / (2*x0) < 1/2); one squaring decides */
static inline uint32_t dpl_isqrt64_fast(uint64_t n) {
    uint32_t x0, x;
    if (n < ((uint64_t)1 << 32)) return dpl_isqrt32((uint32_t)n);
    if (n >= ((uint64_t)1 << 48)) return dpl_isqrt64(n);
    x0 = dpl_isqrt32((uint32_t)(n >> 16)) << 8;
    x = x0 + (uint32_t)((n - (uint64_t)x0 * x0) >> 1) / x0;
    return (uint64_t)x * x > n ? x - 1 : x;
}

/* round(acc * mult / 2^shift) as one 32x32 high multiply, for the per-element loops:
 *   dpl_rq32_apply(q, acc) = (mulh(acc << k, m) + bias) >> t,  bias = 2^(t-1),
 * the same rational (m = mult / 2^j, shift + k - j = 32 + t) rounded the same way. With shift' = 32 + t >= 33,
 * 2^(shift'-1) is a multiple of 2^32, so round(p / 2^shift') = floor((floor((p - (p<0)) / 2^32) + bias) / 2^t)
 * (gemv.c's requant_sat); and when p = (acc << k) * m is never a nonzero multiple of 2^32 (2-adic valuation
 * of acc<<k plus that of m below 32), floor((p - (p<0)) / 2^32) is just the high word floor(p / 2^32). */
typedef struct {
    int32_t m, k, t, bias;
} dpl_rq32;

/* prepare q for |acc| <= 2^acc_bits, -2^31 <= mult < 2^32, 0 <= shift <= 62; 0 if this form does not exist
 * (then use dpl_requant) */
static inline int dpl_rq32_init(dpl_rq32 *q, int64_t mult, int32_t shift, int32_t acc_bits) {
    int32_t m, k, room;
    if (mult > INT32_MAX && (mult & 1) == 0 && shift > 33) mult /= 2, shift--; /* 2^31 <= mult < 2^32 */
    if (mult < INT32_MIN || mult > INT32_MAX || shift > 62) return 0;
    m = (int32_t)mult;
    /* drop m's factors of 2 into the shift while it stays >= 33: fewer low zero bits in the product */
    while (shift > 33 && m != 0 && (m & 1) == 0) m /= 2, shift--;
    k = shift < 33 ? 33 - shift : 0; /* scale acc up instead when the shift is too small */
    shift += k;
    room = 31 - acc_bits - k; /* how many low zero bits m may have */
    if (room < 1 || (m != 0 && (m & (int32_t)((2u << room) - 1)) == 0)) return 0;
    q->m = m, q->k = k, q->t = shift - 32, q->bias = (int32_t)1 << (shift - 33);
    return 1;
}

static inline int32_t dpl_rq32_apply(const dpl_rq32 *q, int32_t acc) {
    int32_t h = (int32_t)(((int64_t)(int32_t)((uint32_t)acc << q->k) * q->m) >> 32);
    return (h + q->bias) >> q->t;
}

/* ---- per-token absmax scales (kernels.absmax_i8, tok_factor, tok_multipliers) ---------------------------------------
 * y = floor(v * fm / 2^(23 + t) + 1/2), fm = floor(127 * 2^23 / a), a * 2^t >= max |v| with a in [2^14, 2^15): the int8
 * output at its full range, in one high multiply per element: with n = bitlen(max |v|), L = 31 - n, F = fm * 2^15,
 * floor(mulh(v << L, F) / 2^R + 1/2), R = 37 + t - n (nested floors: the same integers). */
typedef struct {
    int32_t a, t, f, l, r, half;
} dpl_absmax;

/* bit length of v (0 for 0): a binary search, no clz on rv32imac */
static inline int32_t dpl_bitlen32(uint32_t v) {
    int32_t n = 0;
    if (v >= (1u << 16)) v >>= 16, n += 16;
    if (v >= (1u << 8)) v >>= 8, n += 8;
    if (v >= (1u << 4)) v >>= 4, n += 4;
    if (v >= (1u << 2)) v >>= 2, n += 2;
    if (v >= (1u << 1)) v >>= 1, n += 1;
    return n + (int32_t)v;
}

/* q for the values whose largest |v| is amax (< 2^31) */
static inline void dpl_absmax_init(dpl_absmax *q, uint32_t amax) {
    int32_t n, t, a;
    if (amax == 0) amax = 1;
    n = dpl_bitlen32(amax);
    t = n - 15;
    a = t > 0 ? (int32_t)((amax + ((1u << t) - 1u)) >> t) : (int32_t)(amax << -t);
    if (a == 1 << 15) a >>= 1, t++;
    q->a = a, q->t = t;
    q->f = (int32_t)(((127u << 23) / (uint32_t)a) << 15);
    q->l = 31 - n, q->r = 37 + t - n, q->half = (int32_t)1 << (q->r - 1);
}

/* y for one value v, |v| <= amax */
static inline int32_t dpl_absmax_apply(const dpl_absmax *q, int32_t v) {
    int32_t h = (int32_t)(((int64_t)(int32_t)((uint32_t)v << q->l) * q->f) >> 32);
    return (h + q->half) >> q->r;
}

/* tok = {m, s}: the factor p * 2^e (p >= 1) for consumers made for shift base_shift: m = p's top 32 bits (as int32
 * bits), s = base_shift - e - bitlen(p) */
static inline void dpl_tok_factor(int32_t *tok /* [2] */, uint64_t p, int32_t e, int32_t base_shift) {
    const uint32_t hi = (uint32_t)(p >> 32);
    const int32_t n = hi ? 32 + dpl_bitlen32(hi) : dpl_bitlen32((uint32_t)p);
    const uint32_t m = n >= 32 ? (uint32_t)(p >> (n - 32)) : (uint32_t)p << (32 - n);
    tok[0] = (int32_t)m, tok[1] = base_shift - e - n;
}

/* linear.c: y[o] = sat(floor(sum_i w[o,i]*x[i] * mult[o] / 2^shift[0] + 1/2)), one shift per layer, n_in < 2^17 */
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
/* per-token absmax scale (kernels.rmsnorm_tok): y[lo..hi) = absmax_i8 of x * gain over the whole row, and (the core
 * with lo == 0) tok = tok_factor(a * inv, t - 31 - gain_shift, base_shift) */
void rmsnorm_tok_i8_part(int8_t *y /* [dim] */, int32_t *tok /* [2] */, const int16_t *x /* [dim] */,
                         const int32_t *gain /* [dim] */, int32_t gain_shift, int64_t eps_q, int32_t base_shift,
                         int32_t dim, int32_t lo, int32_t hi);

/* rope.c: rotate interleaved pairs of each head by the Q14 cos/sin row of this position; y may equal x */
void rope_i8(int8_t *y /* [n] */, const int8_t *x /* [n] */, const int16_t *cos_row /* [head_size/2] */,
             const int16_t *sin_row /* [head_size/2] */, int32_t n, int32_t head_size);

/* rope.c: rope_i8's formula on int16 values (the int16 keys), saturating to int16; y may equal x */
void rope_i16(int16_t *y /* [n] */, const int16_t *x /* [n] */, const int16_t *cos_row /* [head_size/2] */,
              const int16_t *sin_row /* [head_size/2] */, int32_t n, int32_t head_size);
/* rope.c: rope_i16 saturating to +-2047, the int12 queries (`queries int12`); y may equal x */
void rope_q12(int16_t *y /* [n] */, const int16_t *x /* [n] */, const int16_t *cos_row /* [head_size/2] */,
              const int16_t *sin_row /* [head_size/2] */, int32_t n, int32_t head_size);

/* attention.c: causal GQA attention of one query over cache rows 0..pos (kernels.attention); scratch holds one
 * head's scores, then exps. exp_table[0] = 2^bits fixes the exps' Q format */
void attention_i8(int8_t *out /* [n_heads*head_size] */, const int8_t *q /* [n_heads*head_size] */,
                  const int8_t *k_cache /* [ctx, n_kv_heads*head_size] */,
                  const int8_t *v_cache /* [ctx, n_kv_heads*head_size] */, int32_t *scratch /* [pos+1] */,
                  int32_t pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_size, int32_t score_mult,
                  int32_t score_shift, int32_t score_cut, int32_t out_mult, int32_t out_shift,
                  const uint16_t *exp_table /* [512] */);

/* attention_i8 with an int16 K cache (the `keys int16` knob): scores = round_half_up(q . k / 2^8), attn_scores_k16;
 * head_size < 2^9 */
void attention_k16(int8_t *out /* [n_heads*head_size] */, const int8_t *q /* [n_heads*head_size] */,
                   const int16_t *k_cache /* [ctx, n_kv_heads*head_size] */,
                   const int8_t *v_cache /* [ctx, n_kv_heads*head_size] */, int32_t *scratch /* [pos+1] */,
                   int32_t pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_size, int32_t score_mult,
                   int32_t score_shift, int32_t score_cut, int32_t out_mult, int32_t out_shift,
                   const uint16_t *exp_table /* [512] */);

/* attention_i8 with wider queries (the `queries` knob), stored in int16: int12 (+-2047, attention_q12: scores =
 * round_half_up(q . k / 2^4); with int16 keys attention_q12k16: / 2^12) or int16 (attention_q16: / 2^8); the head
 * sizes kernels.qk_head_size_max admits (32 for attention_q12k16) */
void attention_q12(int8_t *out /* [n_heads*head_size] */, const int16_t *q /* [n_heads*head_size] */,
                   const int8_t *k_cache /* [ctx, n_kv_heads*head_size] */,
                   const int8_t *v_cache /* [ctx, n_kv_heads*head_size] */, int32_t *scratch /* [pos+1] */,
                   int32_t pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_size, int32_t score_mult,
                   int32_t score_shift, int32_t score_cut, int32_t out_mult, int32_t out_shift,
                   const uint16_t *exp_table /* [512] */);
void attention_q12k16(int8_t *out /* [n_heads*head_size] */, const int16_t *q /* [n_heads*head_size] */,
                      const int16_t *k_cache /* [ctx, n_kv_heads*head_size] */,
                      const int8_t *v_cache /* [ctx, n_kv_heads*head_size] */, int32_t *scratch /* [pos+1] */,
                      int32_t pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_size, int32_t score_mult,
                      int32_t score_shift, int32_t score_cut, int32_t out_mult, int32_t out_shift,
                      const uint16_t *exp_table /* [512] */);
void attention_q16(int8_t *out /* [n_heads*head_size] */, const int16_t *q /* [n_heads*head_size] */,
                   const int8_t *k_cache /* [ctx, n_kv_heads*head_size] */,
                   const int8_t *v_cache /* [ctx, n_kv_heads*head_size] */, int32_t *scratch /* [pos+1] */,
                   int32_t pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_size, int32_t score_mult,
                   int32_t score_shift, int32_t score_cut, int32_t out_mult, int32_t out_shift,
                   const uint16_t *exp_table /* [512] */);

/* attention.c, tiled: the same integers as attention_i8, K and V visited in tiles of positions, in order. For g
 * query heads sharing kv head kh (q, out offset to the first of them) over n = pos+1 positions:
 *   attn_scores_i8 for each tile of K (t0, n_t) leaves the scores and each head's max over them,
 *   attn_exp_av_i8 for each tile of V makes the exps from them on the fly and sums e*v and e (from 0 at t0 = 0),
 *   and on the last tile (out given) finishes them: attn_out_i8(out, acc, sums, g, hs, out_mult, out_shift, bits).
 * k/v point at row t0 of the tile: k_stride = kv_dim straight from a cache (offset by kh*hs), = hs for a dense tile. */
/* scores[h*stride + t0 + t] = sum_d q[h*hs + d] * k[t*k_stride + d], t in [0, n_t), n_t >= 1; max[h] = the max of
 * scores[h*stride + 0 .. t0+n_t): of this tile if t0 == 0, else max[h] and this tile */
void attn_scores_i8(int32_t *scores /* [g, stride] */, int32_t stride, int32_t *max /* [g] */,
                    const int8_t *q /* [g, hs] */, const int8_t *k /* [n_t, k_stride] */, int32_t k_stride,
                    int32_t t0, int32_t n_t, int32_t g, int32_t hs);
/* attn_scores_i8 with int16 keys: scores = round_half_up(q . k / 2^8) = (q . k + 128) >> 8 (hs < 2^9) */
void attn_scores_k16(int32_t *scores /* [g, stride] */, int32_t stride, int32_t *max /* [g] */,
                     const int8_t *q /* [g, hs] */, const int16_t *k /* [n_t, k_stride] */, int32_t k_stride,
                     int32_t t0, int32_t n_t, int32_t g, int32_t hs);
/* attn_scores_i8 with int12 queries (int16 storage): scores = round_half_up(q . k / 2^4) = (q . k + 8) >> 4 */
void attn_scores_q12(int32_t *scores /* [g, stride] */, int32_t stride, int32_t *max /* [g] */,
                     const int16_t *q /* [g, hs] */, const int8_t *k /* [n_t, k_stride] */, int32_t k_stride,
                     int32_t t0, int32_t n_t, int32_t g, int32_t hs);
/* int12 queries, int16 keys: scores = (q . k + 2^11) >> 12 (hs <= 32) */
void attn_scores_q12k16(int32_t *scores /* [g, stride] */, int32_t stride, int32_t *max /* [g] */,
                        const int16_t *q /* [g, hs] */, const int16_t *k /* [n_t, k_stride] */, int32_t k_stride,
                        int32_t t0, int32_t n_t, int32_t g, int32_t hs);
/* int16 queries: scores = (q . k + 128) >> 8 (hs < 2^9) */
void attn_scores_q16(int32_t *scores /* [g, stride] */, int32_t stride, int32_t *max /* [g] */,
                     const int16_t *q /* [g, hs] */, const int8_t *k /* [n_t, k_stride] */, int32_t k_stride,
                     int32_t t0, int32_t n_t, int32_t g, int32_t hs);
/* e_t = the exp of scores[h*stride + t] against max[h] >= the row's scores (softmax_exp's, 0 for max - s > cut):
 * acc[h*hs + d] += sum_t e_t * v[(t-t0)*v_stride + d], sums[h] += sum_t e_t, t in [t0, t0+n_t); from 0 if t0 == 0.
 * prm = {score_mult, score_shift, score_cut, out_mult, out_shift, bits}. out != NULL on the last tile: then also
 * out = attn_out_i8(acc, sums, g, hs, out_mult, out_shift, bits), and acc, sums are left unspecified */
void attn_exp_av_i8(int32_t *acc /* [g, hs] */, int32_t *sums /* [g] */, const int32_t *scores /* [g, stride] */,
                    int32_t stride, const int32_t *max /* [g] */, const int8_t *v /* [n_t, v_stride] */,
                    int32_t v_stride, int32_t t0, int32_t n_t, int32_t g, int32_t hs, const int32_t *prm /* [6] */,
                    const uint16_t *exp_table /* [512] */, int8_t *out /* [g, hs] or NULL */);
/* out[h*hs + d] = sat8(round(acc[h*hs + d] * floor(mult * 2^bits / sums[h]) / 2^shift)); needs sums[h] >= 2^bits
 * (a head's largest score has exp 2^bits), which keeps the per-head multiplier <= mult */
void attn_out_i8(int8_t *out /* [g, hs] */, const int32_t *acc /* [g, hs] */, const int32_t *sums /* [g] */,
                 int32_t g, int32_t hs, int32_t mult, int32_t shift, int32_t bits);
/* x[i] = 0 */
void zero_i32(int32_t *x /* [n] */, int32_t n);

/* swiglu.c: h[i] = sat8(round(silu_table[gate[i]+128] * up[i] * mult / 2^shift)) */
void swiglu_i8(int8_t *h /* [n] */, const int8_t *gate /* [n] */, const int8_t *up /* [n] */,
               const int16_t *silu_table /* [256] */, int32_t mult, int32_t shift, int32_t n);
/* per-token scale: p[i] = silu_table[gate[i]+128] * up[i], k = min{k: every floor(p[i] / 2^k + 1/2) fits int8},
 * h[i] = floor(p[i] / 2^k + 1/2), *shift_out = base_shift - k (the next layer's shift) */
void swiglu_dyn_i8(int8_t *h /* [n] */, uint8_t *shift_out /* [1] */, int32_t *p /* [n] scratch */,
                   const int8_t *gate /* [n] */, const int8_t *up /* [n] */, const int16_t *silu_table /* [256] */,
                   int32_t base_shift, int32_t n);
/* per-token absmax scale (kernels.swiglu_tok): p[i] = silu_table[gate[i]+128] * up[i], h = absmax_i8(p),
 * tok = tok_factor(a, t, base_shift) */
void swiglu_tok_i8(int8_t *h /* [n] */, int32_t *tok /* [2] */, int32_t *p /* [n] scratch */,
                   const int8_t *gate /* [n] */, const int8_t *up /* [n] */, const int16_t *silu_table /* [256] */,
                   int32_t base_shift, int32_t n);

/* residual_add.c: y[i] = sat16(a[i] + b[i]); y may equal a (in-place residual add) */
void residual_add_i16(int16_t *y /* [n] */, const int16_t *a /* [n] */, const int16_t *b /* [n] */, int32_t n);

/* embed.c: x = sat16(round(row * mult[0] / 2^shift[0])); row = table[token], mult = &mult[token], shift = &shift[token],
 * so only the token's row needs to be in reach (e.g. DMA'd into L1) */
void embed_i16(int16_t *x /* [dim] */, const int8_t *row /* [dim] */, const int32_t *mult /* [1] */,
               const uint8_t *shift /* [1] */, int32_t dim);

/* argmax.c: index of the largest value, lowest index on ties (n >= 1) */
int32_t argmax_i32(const int32_t *x /* [n] */, int32_t n);

/* sampler.c: the next token at a temperature with top-p, in integers (kernels/sampling.py); mult 0 is argmax;
 * n <= 65536 (a token index fits 16 bits of the scratch) */
uint32_t dpl_xorshift32(uint32_t *state);
int32_t sample_top_p_i32(uint32_t *ei /* [n] */, const int32_t *x /* [n] */, int32_t n, int32_t mult, int32_t p_q16,
                         const uint16_t *exp2 /* [512] Q15 */, uint32_t *state);

#endif /* DEEPLOY_KERNELS_H */
