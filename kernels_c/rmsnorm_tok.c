/* rmsnorm_tok.c: RMSNorm into int8 with a per-token absmax scale (kernels.rmsnorm_tok), in two passes that the cores
 * share out. Its own source (the rms helpers are rmsnorm.c's, repeated) so that builds without a per-token norm stay
 * byte-identical. */
#include "deeploy_kernels.h"
#include "rmsnorm_tok.h"

#if defined(__GNUC__)
#define RMSNORM_TOK_INLINE static inline __attribute__((always_inline))
#else
#define RMSNORM_TOK_INLINE static inline
#endif

#define RMS_MIN 256      /* clamp on r = rms*256: bounds inv = 2^39/r by 2^31 */
#define RMS_INV_SHIFT 39 /* inv = 2^39 / r, so x*inv / 2^31 = x / rms */

/* x^2 as 32 unsigned bits (<= 2^30) */
static inline uint32_t sq(int32_t x) {
    return (uint32_t)(x * x);
}

/* sum of x[i]^2 over [0, dim), as rmsnorm.c: three squares fit 32 unsigned bits, their sums go into the 64-bit total */
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

/* (ss << 16) / dim; a power of two dim <= 2^16 is ss * (2^16 / dim) (the same floor: ss >= 0) */
static int64_t mean_square_q16(uint64_t ss, int32_t dim) {
    if ((dim & (dim - 1)) == 0 && dim <= 65536) return (int64_t)(ss * (uint32_t)(65536 / dim));
    return (int64_t)(ss << 16) / dim;
}

/* floor(2^39 / r) for 256 <= r < 2^24 with 32-bit divisions: 2^39 = 2^8 * (q*r + rem) and 2^8 * rem < 2^32 */
static uint32_t inv_rms(uint32_t r) {
    uint32_t q = 0x80000000u / r, rem = 0x80000000u % r;
    return (q << 8) + (rem << 8) / r;
}

/* the first pass: the largest and smallest x[i] * gain[i] (0 included) of [lo, hi) into spans[2 * core] */
RMSNORM_TOK_INLINE void rmsnorm_tok_span(int32_t *spans, const int16_t *x, const int32_t *gain, int32_t core,
                                         int32_t i, int32_t hi) {
    int32_t big = 0, small = 0;
#define RMSNORM_TOK_SPAN(j)                                                                                        \
    do {                                                                                                           \
        const int32_t v_ = (int32_t)x[(j)] * gain[(j)];                                                            \
        if (v_ > big) big = v_;                                                                                    \
        if (v_ < small) small = v_;                                                                                \
    } while (0)
    for (; i + 4 <= hi; i += 4) { /* by four: loop control per four elements */
        RMSNORM_TOK_SPAN(i);
        RMSNORM_TOK_SPAN(i + 1);
        RMSNORM_TOK_SPAN(i + 2);
        RMSNORM_TOK_SPAN(i + 3);
    }
    for (; i < hi; i++) RMSNORM_TOK_SPAN(i);
#undef RMSNORM_TOK_SPAN
    spans[2 * core] = big, spans[2 * core + 1] = small;
}

/* the second: the row's largest |x * gain| from the n_cores spans (the same as one pass over the row: the integers do
 * not depend on the cores), y[lo..hi) = dpl_absmax of x * gain; the share that ends the row computes the rms (core 0,
 * which also runs forward(), is the busiest) and writes tok = tok_factor(a * inv, t - 31 - gain_shift, base_shift) */
RMSNORM_TOK_INLINE void rmsnorm_tok_out(int8_t *y, int32_t *tok, const int16_t *x, const int32_t *gain,
                                        int32_t gain_shift, int64_t eps_q, int32_t base_shift, int32_t dim,
                                        const int32_t *spans, int32_t n_cores, int32_t lo, int32_t hi) {
    int32_t big = spans[0], small = spans[1], c, i;
    dpl_absmax q;
    for (c = 1; c < n_cores; c++) {
        if (spans[2 * c] > big) big = spans[2 * c];
        if (spans[2 * c + 1] < small) small = spans[2 * c + 1];
    }
    dpl_absmax_init(&q, (uint32_t)big > 0u - (uint32_t)small ? (uint32_t)big : 0u - (uint32_t)small);
    for (i = lo; i < hi; i++) y[i] = (int8_t)dpl_absmax_apply(&q, (int32_t)x[i] * gain[i]);
    if (hi == dim) {
        uint32_t r = dpl_isqrt64_fast((uint64_t)(mean_square_q16(sum_squares(x, dim), dim) + eps_q)), inv;
        if (r < RMS_MIN) r = RMS_MIN;
        inv = r < (1u << 24) ? inv_rms(r) : (uint32_t)(((int64_t)1 << RMS_INV_SHIFT) / r);
        dpl_tok_factor(tok, (uint64_t)(uint32_t)q.a * inv, q.t - 31 - gain_shift, base_shift);
    }
}

void rmsnorm_tok_i8_span(int8_t *y, int32_t *tok, const int16_t *x, const int32_t *gain, int32_t gain_shift,
                         int64_t eps_q, int32_t base_shift, int32_t dim, int32_t *spans, int32_t core,
                         int32_t n_cores, int32_t lo, int32_t hi) {
    (void)y, (void)tok, (void)gain_shift, (void)eps_q, (void)base_shift, (void)dim, (void)n_cores;
    rmsnorm_tok_span(spans, x, gain, core, lo, hi);
}

void rmsnorm_tok_i8_out(int8_t *y, int32_t *tok, const int16_t *x, const int32_t *gain, int32_t gain_shift,
                        int64_t eps_q, int32_t base_shift, int32_t dim, int32_t *spans, int32_t core,
                        int32_t n_cores, int32_t lo, int32_t hi) {
    (void)core;
    rmsnorm_tok_out(y, tok, x, gain, gain_shift, eps_q, base_shift, dim, spans, n_cores, lo, hi);
}

/* both passes on one core: one call per token row */
void rmsnorm_tok_i8(int8_t *y /* [dim] */, int32_t *tok /* [2] */, const int16_t *x /* [dim] */,
                    const int32_t *gain /* [dim] */, int32_t gain_shift, int64_t eps_q, int32_t base_shift,
                    int32_t dim) {
    int32_t spans[2];
    rmsnorm_tok_span(spans, x, gain, 0, 0, dim);
    rmsnorm_tok_out(y, tok, x, gain, gain_shift, eps_q, base_shift, dim, spans, 1, 0, dim);
}
