/* wide.c: the down projection on a wide SwiGLU output (`swiglu int12 | int16`), the classifier on int16 weights
 * (`classifier int16`), and the SwiGLU kernels that write the wide output.
 *
 * The GEMVs walk gemv.c's blocked layout one block of 8 rows per pass (8 int32 accumulators in registers), and
 * requantize each row by the definition in 64 bits (kernels.requant_half_up on the token's multipliers,
 * kernels.tok_multipliers): a few more instructions per row than gemv.c's high-word forms, on layers whose rows are
 * few (down: dim rows; lm_head: vocab rows of dim columns). */
#include "deeploy_kernels.h"
#include "wide.h"

#define WR 8 /* GEMV_ROWS_PER_BLOCK: rows per block of the weights' layout */

#if defined(__GNUC__)
#define WIDE_INLINE static inline __attribute__((always_inline))
#else
#define WIDE_INLINE static inline
#endif

/* the token's multiplier for a row and the saturated result: floor(acc * m2 / 2^s + 1/2), m2 = floor(mult * m / 2^32)
 * >> drop (kernels.tok_multipliers; |acc * m2| < 2^62, so the rounding's 2^61 fits) */
WIDE_INLINE int32_t wide_requant(int32_t acc, int32_t mult, uint32_t m, int32_t drop, int32_t s, int64_t lo,
                                 int64_t hi) {
    const int64_t m2 = ((int64_t)mult * (int64_t)m) >> 32 >> drop;
    int64_t v = (int64_t)acc * m2;
    if (s > 0) v = (v + ((int64_t)1 << (s - 1))) >> s;
    return (int32_t)(v < lo ? lo : v > hi ? hi : v);
}

/* the token's shift, and how many low bits the multipliers give up for a shift above 62 */
WIDE_INLINE int32_t wide_shift(const int32_t *tok, int32_t *drop) {
    const int32_t s = tok[1];
    *drop = s > 62 ? s - 62 : 0;
    return s > 62 ? 62 : s;
}

#define WIDE_MAC(v, c)                                                                                      \
    do {                                                                                                    \
        const int32_t v_ = (v);                                                                             \
        a0 += v_ * (c)[0], a1 += v_ * (c)[1], a2 += v_ * (c)[2], a3 += v_ * (c)[3];                         \
        a4 += v_ * (c)[4], a5 += v_ * (c)[5], a6 += v_ * (c)[6], a7 += v_ * (c)[7];                         \
    } while (0)

/* acc[r] = sum_i x[i] * w[i][r] for one block: wide x (int16) by int8 weights, or int8 x by int16 weights */
#define WIDE_BLOCK(acc, x, w, n_in)                                                                         \
    do {                                                                                                    \
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0, i_ = 0;                      \
        for (; i_ + 2 <= (n_in); i_ += 2) { /* two columns per iteration: loop control per 16 MACs */         \
            WIDE_MAC((x)[i_], (w) + i_ * WR);                                                               \
            WIDE_MAC((x)[i_ + 1], (w) + (i_ + 1) * WR);                                                     \
        }                                                                                                   \
        if (i_ < (n_in)) WIDE_MAC((x)[i_], (w) + i_ * WR);                                                  \
        (acc)[0] = a0, (acc)[1] = a1, (acc)[2] = a2, (acc)[3] = a3;                                         \
        (acc)[4] = a4, (acc)[5] = a5, (acc)[6] = a6, (acc)[7] = a7;                                         \
    } while (0)

void gemv_x16_tok_i16(int16_t *y, const int16_t *x, const int8_t *w, const int32_t *mult, const int32_t *shift,
                      int32_t n_in, int32_t n_out) {
    int32_t drop, o, r;
    const int32_t s = wide_shift(shift, &drop);
    for (o = 0; o < n_out; o += WR, w += n_in * WR) {
        int32_t acc[WR];
        const int32_t rows = n_out - o < WR ? n_out - o : WR;
        WIDE_BLOCK(acc, x, w, n_in);
        for (r = 0; r < rows; r++)
            y[o + r] = (int16_t)wide_requant(acc[r], mult[o + r], (uint32_t)shift[0], drop, s, INT16_MIN, INT16_MAX);
    }
}

void gemv_w16_tok_i32(int32_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const int32_t *shift,
                      int32_t n_in, int32_t n_out) {
    const int16_t *w16 = (const int16_t *)(const void *)w; /* the bytes of int16 blocks, 2-byte aligned */
    int32_t drop, o, r;
    const int32_t s = wide_shift(shift, &drop);
    for (o = 0; o < n_out; o += WR, w16 += n_in * WR) {
        int32_t acc[WR];
        const int32_t rows = n_out - o < WR ? n_out - o : WR;
        WIDE_BLOCK(acc, x, w16, n_in);
        for (r = 0; r < rows; r++)
            y[o + r] = wide_requant(acc[r], mult[o + r], (uint32_t)shift[0], drop, s, INT32_MIN, INT32_MAX);
    }
}

/* ---- the SwiGLU with a wide output: the products' span, then h = absmax to qmax ---------------------------------- */

/* silu of an int16 gate from the 513-entry table, interpolated (swiglu16.c's silu16, kernels.silu16) */
WIDE_INLINE int32_t wide_silu16(const int16_t *t, int32_t g) {
    const uint32_t u = (uint32_t)(g + 32768);
    const int32_t j = (int32_t)(u >> 7), f = (int32_t)(u & 127u);
    return t[j] + ((((int32_t)t[j + 1] - t[j]) * f + 64) >> 7);
}

/* p[i] = silu(gate[i]) * up[i] for i in [lo, hi) (g16: int16 gate and up, else int8), and their largest and smallest
 * (0 included) into spans[0], spans[1] */
WIDE_INLINE void wide_span(int32_t *p, const void *gate, const void *up, const int16_t *t, int g16, int32_t lo,
                           int32_t hi, int32_t *spans) {
    int32_t mx = 0, mn = 0, i;
    for (i = lo; i < hi; i++) {
        const int32_t v = g16 ? wide_silu16(t, ((const int16_t *)gate)[i]) * ((const int16_t *)up)[i]
                              : t[((const int8_t *)gate)[i] + 128] * ((const int8_t *)up)[i];
        p[i] = v;
        if (v > mx) mx = v;
        if (v < mn) mn = v;
    }
    spans[0] = mx, spans[1] = mn;
}

/* h[lo..hi) = floor(p * fm / 2^(23 + t) + 1/2), fm = floor(qmax * 2^23 / a), (a, t) from the largest |p| of the
 * n_cores spans (kernels.absmax_i8 with qmax: |h| <= qmax, fm < 2^24, |p * fm| < 2^55); the share with lo == 0
 * writes tok = tok_factor(a, t, base_shift) */
WIDE_INLINE void wide_out(int16_t *h, int32_t *tok, const int32_t *p, int32_t qmax, int32_t base_shift,
                          const int32_t *spans, int32_t n_cores, int32_t lo, int32_t hi) {
    int32_t mx = spans[0], mn = spans[1], c, i, s;
    int64_t fm, half;
    dpl_absmax q;
    for (c = 1; c < n_cores; c++) {
        if (spans[2 * c] > mx) mx = spans[2 * c];
        if (spans[2 * c + 1] < mn) mn = spans[2 * c + 1];
    }
    dpl_absmax_init(&q, (uint32_t)(mx > -mn ? mx : -mn)); /* a in [2^14, 2^15) and t, as the int8 output's */
    if (lo == 0) dpl_tok_factor(tok, (uint64_t)(uint32_t)q.a, q.t, base_shift);
    fm = (int64_t)((((uint64_t)(uint32_t)qmax) << 23) / (uint32_t)q.a);
    s = 23 + q.t; /* >= 9: t >= -14 */
    half = (int64_t)1 << (s - 1);
    for (i = lo; i < hi; i++) h[i] = (int16_t)(((int64_t)p[i] * fm + half) >> s);
}

void swiglu_tok_i16_span(int16_t *h, int32_t *tok, int32_t *p, const int8_t *gate, const int8_t *up,
                         const int16_t *silu_table, int32_t qmax, int32_t base_shift, int32_t n, int32_t *spans,
                         int32_t core, int32_t n_cores, int32_t lo, int32_t hi) {
    (void)h, (void)tok, (void)qmax, (void)base_shift, (void)n, (void)n_cores;
    wide_span(p, gate, up, silu_table, 0, lo, hi, spans + 2 * core);
}

void swiglu_tok_i16_out(int16_t *h, int32_t *tok, int32_t *p, const int8_t *gate, const int8_t *up,
                        const int16_t *silu_table, int32_t qmax, int32_t base_shift, int32_t n, int32_t *spans,
                        int32_t core, int32_t n_cores, int32_t lo, int32_t hi) {
    (void)gate, (void)up, (void)silu_table, (void)n, (void)core;
    wide_out(h, tok, p, qmax, base_shift, spans, n_cores, lo, hi);
}

void swiglu_tok_i16(int16_t *h, int32_t *tok, int32_t *p, const int8_t *gate, const int8_t *up,
                    const int16_t *silu_table, int32_t qmax, int32_t base_shift, int32_t n) {
    int32_t spans[2];
    wide_span(p, gate, up, silu_table, 0, 0, n, spans);
    wide_out(h, tok, p, qmax, base_shift, spans, 1, 0, n);
}

void swiglu16_tok_i16_span(int16_t *h, int32_t *tok, int32_t *p, const int16_t *gate, const int16_t *up,
                           const int16_t *silu_table, int32_t qmax, int32_t base_shift, int32_t n, int32_t *spans,
                           int32_t core, int32_t n_cores, int32_t lo, int32_t hi) {
    (void)h, (void)tok, (void)qmax, (void)base_shift, (void)n, (void)n_cores;
    wide_span(p, gate, up, silu_table, 1, lo, hi, spans + 2 * core);
}

void swiglu16_tok_i16_out(int16_t *h, int32_t *tok, int32_t *p, const int16_t *gate, const int16_t *up,
                          const int16_t *silu_table, int32_t qmax, int32_t base_shift, int32_t n, int32_t *spans,
                          int32_t core, int32_t n_cores, int32_t lo, int32_t hi) {
    (void)gate, (void)up, (void)silu_table, (void)n, (void)core;
    wide_out(h, tok, p, qmax, base_shift, spans, n_cores, lo, hi);
}

void swiglu16_tok_i16(int16_t *h, int32_t *tok, int32_t *p, const int16_t *gate, const int16_t *up,
                      const int16_t *silu_table, int32_t qmax, int32_t base_shift, int32_t n) {
    int32_t spans[2];
    wide_span(p, gate, up, silu_table, 1, 0, n, spans);
    wide_out(h, tok, p, qmax, base_shift, spans, 1, 0, n);
}
