/* rmsnorm.c: integer RMS normalization, int16 residual in, int8 out */
#include "deeploy_kernels.h"

#define RMS_MIN 256      /* clamp on r = rms*256: bounds inv = 2^39/r by 2^31 */
#define RMS_INV_SHIFT 39 /* inv = 2^39 / r, so x*inv / 2^31 = x / rms */

/* r = max(isqrt(sum(x^2) * 2^16 / dim + eps_q), 256); y[i] = sat8(round(x[i]*gain[i] * (2^39/r) / 2^(31+gain_shift)))
 * needs dim < 2^17 (ss << 16 stays below 2^63), |x[i] * gain[i]| <= 2^30 and gain_shift <= 31 */
void rmsnorm_i8(int8_t *y /* [dim] */, const int16_t *x /* [dim] */, const int32_t *gain /* [dim] */,
                int32_t gain_shift, int64_t eps_q, int32_t dim) {
    rmsnorm_i8_part(y, x, gain, gain_shift, eps_q, dim, 0, dim);
}

/* x^2 as 32 unsigned bits (<= 2^30) */
static inline uint32_t sq(int32_t x) {
    return (uint32_t)(x * x);
}

/* sum of x[i]^2 over [0, dim): a square is <= 2^30, so three fit 32 unsigned bits; only the sums of three go
 * into the 64-bit total (an add and a carry test per three elements instead of a 64-bit add per element) */
static uint64_t sum_squares(const int16_t *x /* [dim] */, int32_t dim) {
    uint32_t lo = 0, hi = 0;
    const int16_t *end6 = x + dim / 6 * 6, *end = x + dim;
    for (; x != end6; x += 6) { /* two groups of three: loop control per 6 elements */
        uint32_t a = sq(x[0]) + sq(x[1]) + sq(x[2]), b = sq(x[3]) + sq(x[4]) + sq(x[5]);
        lo += a;
        hi += lo < a;
        lo += b;
        hi += lo < b;
    }
    for (; x != end; x++) {
        uint32_t a = sq(x[0]);
        lo += a;
        hi += lo < a;
    }
    return (uint64_t)hi << 32 | lo;
}

/* (ss << 16) / dim; a power of two dim <= 2^16 divides 2^16, so it is ss * (2^16 / dim): no 64-bit division
 * (the same floor: ss >= 0) */
static int64_t mean_square_q16(uint64_t ss, int32_t dim) {
    if ((dim & (dim - 1)) == 0 && dim <= 65536) return (int64_t)(ss * (uint32_t)(65536 / dim));
    return (int64_t)(ss << 16) / dim;
}

/* floor(2^39 / r) for 256 <= r < 2^24 with 32-bit divisions: 2^39 = 2^8 * (q*r + rem) and 2^8 * rem < 2^32 */
static uint32_t inv_rms(uint32_t r) {
    uint32_t q = 0x80000000u / r, rem = 0x80000000u % r;
    return (q << 8) + (rem << 8) / r;
}

/* y = sat8(round(x * g * m / 2^(32 + t))) in one high multiply (dpl_rq32 with k = 0) */
static inline int8_t norm1(int32_t x, int32_t g, int32_t m, int32_t bias, int32_t t) {
    int32_t h = (int32_t)(((int64_t)(x * g) * m) >> 32);
    return (int8_t)dpl_clamp8((h + bias) >> t);
}

/* the same, writing only y[lo..hi): every core of a cluster computes the (cheap) rms of the whole row
 * and normalizes its own share of the outputs */
void rmsnorm_i8_part(int8_t *y /* [dim] */, const int16_t *x /* [dim] */, const int32_t *gain /* [dim] */,
                     int32_t gain_shift, int64_t eps_q, int32_t dim, int32_t lo, int32_t hi) {
    uint32_t r = dpl_isqrt64_fast((uint64_t)(mean_square_q16(sum_squares(x, dim), dim) + eps_q));
    uint32_t inv;
    int s = RMS_INV_SHIFT - 8 + (int)gain_shift;
    dpl_rq32 q;
    int32_t i = lo;
    if (r < RMS_MIN) r = RMS_MIN;
    inv = r < (1u << 24) ? inv_rms(r) : (uint32_t)(((int64_t)1 << RMS_INV_SHIFT) / r);
    /* |x * gain| <= 2^30: the product with inv is one high multiply when dpl_rq32 has the form (then q.k = 0) */
    if (dpl_rq32_init(&q, inv, s, 30)) {
        const int32_t m = q.m, bias = q.bias, t = q.t;
        for (; i + 8 <= hi; i += 8) { /* unrolled: loop control per 8 elements */
            y[i] = norm1(x[i], gain[i], m, bias, t);
            y[i + 1] = norm1(x[i + 1], gain[i + 1], m, bias, t);
            y[i + 2] = norm1(x[i + 2], gain[i + 2], m, bias, t);
            y[i + 3] = norm1(x[i + 3], gain[i + 3], m, bias, t);
            y[i + 4] = norm1(x[i + 4], gain[i + 4], m, bias, t);
            y[i + 5] = norm1(x[i + 5], gain[i + 5], m, bias, t);
            y[i + 6] = norm1(x[i + 6], gain[i + 6], m, bias, t);
            y[i + 7] = norm1(x[i + 7], gain[i + 7], m, bias, t);
        }
        for (; i < hi; i++) y[i] = norm1(x[i], gain[i], m, bias, t);
        return;
    }
    /* inv <= 2^31 fits 32 unsigned bits and |x * gain| <= 2^30 fits 32 signed ones, so each product is
     * one 32x32->64 multiply (mul + mulhsu on RV32) instead of a 64-bit library call */
    for (; i < hi; i++) {
        int32_t t = (int32_t)x[i] * gain[i];
        y[i] = dpl_sat8(dpl_rshift_round((int64_t)t * (int64_t)inv, s));
    }
}

/* per-token absmax scale (kernels.rmsnorm_tok): y[lo..hi) = dpl_absmax of x[i] * gain[i], the largest |x * gain| of the
 * whole row (every core finds it); the rms only enters the token's factor, which the core with lo == 0 computes and
 * writes: tok = tok_factor(a * inv, t - 31 - gain_shift, base_shift) */
void rmsnorm_tok_i8_part(int8_t *y /* [dim] */, int32_t *tok /* [2] */, const int16_t *x /* [dim] */,
                         const int32_t *gain /* [dim] */, int32_t gain_shift, int64_t eps_q, int32_t base_shift,
                         int32_t dim, int32_t lo, int32_t hi) {
    int32_t big = 0, small = 0, i = 0;
    dpl_absmax q;
#define RMSNORM_TOK_SPAN(j)                                                                                        \
    do {                                                                                                           \
        const int32_t v_ = (int32_t)x[(j)] * gain[(j)];                                                            \
        if (v_ > big) big = v_;                                                                                    \
        if (v_ < small) small = v_;                                                                                \
    } while (0)
    for (; i + 8 <= dim; i += 8) { /* by eight: loop control per eight elements */
        RMSNORM_TOK_SPAN(i);
        RMSNORM_TOK_SPAN(i + 1);
        RMSNORM_TOK_SPAN(i + 2);
        RMSNORM_TOK_SPAN(i + 3);
        RMSNORM_TOK_SPAN(i + 4);
        RMSNORM_TOK_SPAN(i + 5);
        RMSNORM_TOK_SPAN(i + 6);
        RMSNORM_TOK_SPAN(i + 7);
    }
#undef RMSNORM_TOK_SPAN
    for (; i < dim; i++) {
        const int32_t a = (int32_t)x[i] * gain[i];
        if (a > big) big = a;
        if (a < small) small = a;
    }
    dpl_absmax_init(&q, (uint32_t)big > 0u - (uint32_t)small ? (uint32_t)big : 0u - (uint32_t)small);
    for (i = lo; i < hi; i++) y[i] = (int8_t)dpl_absmax_apply(&q, (int32_t)x[i] * gain[i]);
    if (lo == 0) { /* only this core needs the rms */
        uint32_t r = dpl_isqrt64_fast((uint64_t)(mean_square_q16(sum_squares(x, dim), dim) + eps_q)), inv;
        if (r < RMS_MIN) r = RMS_MIN;
        inv = r < (1u << 24) ? inv_rms(r) : (uint32_t)(((int64_t)1 << RMS_INV_SHIFT) / r);
        dpl_tok_factor(tok, (uint64_t)(uint32_t)q.a * inv, q.t - 31 - gain_shift, base_shift);
    }
}
