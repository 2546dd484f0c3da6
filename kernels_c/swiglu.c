/* swiglu.c: SwiGLU gate with a 256-entry SiLU lookup table over int8 */
#include "deeploy_kernels.h"

#if defined(__GNUC__)
#define SWIGLU_INLINE static inline __attribute__((always_inline))
#else
#define SWIGLU_INLINE static inline
#endif

/* h[i] = sat8(round(silu[gate[i]] * up[i] * mult / 2^shift)) through dpl_rq32 (|silu * up| <= 2^15 * 2^7 = 2^22);
 * inlined twice so that the usual k == 0 (shift >= 33) loses the shift by k */
SWIGLU_INLINE void swiglu_rq(int8_t *h /* [n] */, const int8_t *gate /* [n] */, const int8_t *up /* [n] */,
                             const int16_t *silu /* [256], centred: silu[-128..127] */, const dpl_rq32 *rq, int32_t k,
                             int32_t n) {
    dpl_rq32 q = *rq;
    int32_t i = 0;
    q.k = k;
    for (; i + 4 <= n; i += 4) { /* unrolled: loop control per 4 elements */
        h[i] = (int8_t)dpl_clamp8(dpl_rq32_apply(&q, silu[gate[i]] * up[i]));
        h[i + 1] = (int8_t)dpl_clamp8(dpl_rq32_apply(&q, silu[gate[i + 1]] * up[i + 1]));
        h[i + 2] = (int8_t)dpl_clamp8(dpl_rq32_apply(&q, silu[gate[i + 2]] * up[i + 2]));
        h[i + 3] = (int8_t)dpl_clamp8(dpl_rq32_apply(&q, silu[gate[i + 3]] * up[i + 3]));
    }
    for (; i < n; i++) h[i] = (int8_t)dpl_clamp8(dpl_rq32_apply(&q, silu[gate[i]] * up[i]));
}

/* h[i] = sat8(round(silu_table[gate[i]+128] * up[i] * mult / 2^shift)) */
void swiglu_i8(int8_t *h /* [n] */, const int8_t *gate /* [n] */, const int8_t *up /* [n] */,
               const int16_t *silu_table /* [256] */, int32_t mult, int32_t shift, int32_t n) {
    const int16_t *silu = silu_table + 128; /* indexed by the signed gate directly: no +128 per element */
    dpl_rq32 q;
    if (dpl_rq32_init(&q, mult, shift, 22)) {
        if (q.k == 0)
            swiglu_rq(h, gate, up, silu, &q, 0, n);
        else
            swiglu_rq(h, gate, up, silu, &q, q.k, n);
        return;
    }
    for (int32_t i = 0; i < n; i++) { /* shifts or multipliers dpl_rq32 cannot take: the 64-bit definition */
        int32_t acc = (int32_t)silu[gate[i]] * up[i];
        h[i] = dpl_sat8(dpl_requant(acc, mult, (int)shift));
    }
}

/* The per-token scales below span the whole vector, so a call is two passes, each shared out over the cores (the
 * caller gives each its [lo, hi) of the n elements; one fork each, so each pass is ~1/N of the vector on every core, not the whole of it on one):
 * _span keeps a core's products p[lo..hi) and writes their largest hi and smallest lo (0 included) to
 * spans[2 * core], and, after the barrier, _out combines the n_cores spans (the same hi and lo as one pass over the
 * vector: the integers do not depend on the cores) and writes h[lo..hi); the core whose share starts at 0 writes the
 * token's scale. */
SWIGLU_INLINE void swiglu_span(int32_t *spans /* [2 * n_cores] */, int32_t *p /* [n] scratch */, const int8_t *gate,
                        const int8_t *up, const int16_t *silu_table, int32_t core, int32_t i, int32_t end) {
    const int16_t *silu = silu_table + 128;
    int32_t hi = 0, lo = 0;
#define SWIGLU_SPAN(j)                                                                                             \
    do {                                                                                                           \
        const int32_t p_ = p[(j)] = (int32_t)silu[gate[(j)]] * up[(j)];                                            \
        if (p_ > hi) hi = p_;                                                                                      \
        if (p_ < lo) lo = p_;                                                                                      \
    } while (0)
    for (; i + 4 <= end; i += 4) { /* by four: loop control per four elements */
        SWIGLU_SPAN(i);
        SWIGLU_SPAN(i + 1);
        SWIGLU_SPAN(i + 2);
        SWIGLU_SPAN(i + 3);
    }
    for (; i < end; i++) SWIGLU_SPAN(i);
#undef SWIGLU_SPAN
    spans[2 * core] = hi, spans[2 * core + 1] = lo;
}

/* the largest hi and smallest lo of the n_cores spans */
SWIGLU_INLINE void swiglu_spans(const int32_t *spans, int32_t n_cores, int32_t *hi, int32_t *lo) {
    int32_t c;
    *hi = spans[0], *lo = spans[1];
    for (c = 1; c < n_cores; c++) {
        if (spans[2 * c] > *hi) *hi = spans[2 * c];
        if (spans[2 * c + 1] < *lo) *lo = spans[2 * c + 1];
    }
}

/* swiglu_dyn_i8's first pass, a core's share */
void swiglu_dyn_i8_span(int8_t *h, uint8_t *shift_out, int32_t *p, const int8_t *gate, const int8_t *up,
                        const int16_t *silu_table, int32_t base_shift, int32_t n, int32_t *spans, int32_t core,
                        int32_t n_cores, int32_t lo, int32_t hi) {
    (void)h, (void)shift_out, (void)base_shift, (void)n, (void)n_cores;
    swiglu_span(spans, p, gate, up, silu_table, core, lo, hi);
}

/* its second: k the smallest shift that brings the products into int8 rounding half up, that is
 * (hi + 2^(k-1)) >> k <= 127 and (lo + 2^(k-1)) >> k >= -128 for their largest hi and smallest lo (k <= 16, as
 * |p| <= 2^22); h[i] = (p[i] + 2^(k-1)) >> k; *shift_out = base_shift - k */
SWIGLU_INLINE void swiglu_dyn_out(int8_t *h, uint8_t *shift_out, const int32_t *p, int32_t base_shift,
                                  const int32_t *spans, int32_t n_cores, int32_t lo, int32_t hi) {
    int32_t big, small, k = 0, half = 0, i = lo;
    swiglu_spans(spans, n_cores, &big, &small);
    while (((big + half) >> k) > INT8_MAX || ((small + half) >> k) < INT8_MIN) half = (int32_t)1 << k++;
    if (lo == 0) *shift_out = (uint8_t)(base_shift - k);
#define SWIGLU_DYN_OUT(j) (h[(j)] = (int8_t)((p[(j)] + half) >> k))
    for (; i + 4 <= hi; i += 4) {
        SWIGLU_DYN_OUT(i);
        SWIGLU_DYN_OUT(i + 1);
        SWIGLU_DYN_OUT(i + 2);
        SWIGLU_DYN_OUT(i + 3);
    }
    for (; i < hi; i++) SWIGLU_DYN_OUT(i);
#undef SWIGLU_DYN_OUT
}
void swiglu_dyn_i8_out(int8_t *h, uint8_t *shift_out, int32_t *p, const int8_t *gate, const int8_t *up,
                       const int16_t *silu_table, int32_t base_shift, int32_t n, int32_t *spans, int32_t core,
                       int32_t n_cores, int32_t lo, int32_t hi) {
    (void)gate, (void)up, (void)silu_table, (void)n, (void)core;
    swiglu_dyn_out(h, shift_out, p, base_shift, spans, n_cores, lo, hi);
}

/* The same products with a per-token scale (kernels.swiglu_dyn), both passes on one core: one call per token
 * vector, the scale spans it. */
void swiglu_dyn_i8(int8_t *h /* [n] */, uint8_t *shift_out /* [1] */, int32_t *p /* [n] scratch */,
                   const int8_t *gate /* [n] */, const int8_t *up /* [n] */, const int16_t *silu_table /* [256] */,
                   int32_t base_shift, int32_t n) {
    int32_t spans[2];
    swiglu_span(spans, p, gate, up, silu_table, 0, 0, n);
    swiglu_dyn_out(h, shift_out, p, base_shift, spans, 1, 0, n);
}

/* swiglu_tok_i8's first pass, a core's share */
void swiglu_tok_i8_span(int8_t *h, int32_t *tok, int32_t *p, const int8_t *gate, const int8_t *up,
                        const int16_t *silu_table, int32_t base_shift, int32_t n, int32_t *spans, int32_t core,
                        int32_t n_cores, int32_t lo, int32_t hi) {
    (void)h, (void)tok, (void)base_shift, (void)n, (void)n_cores;
    swiglu_span(spans, p, gate, up, silu_table, core, lo, hi);
}

/* its second: h[lo..hi) = dpl_absmax of the products (every core derives the same q from the spans), and the token's
 * factor tok = tok_factor(a, t, base_shift) */
SWIGLU_INLINE void swiglu_tok_out(int8_t *h, int32_t *tok, const int32_t *p, int32_t base_shift,
                                  const int32_t *spans, int32_t n_cores, int32_t lo, int32_t hi) {
    int32_t big, small, i = lo;
    dpl_absmax q;
    swiglu_spans(spans, n_cores, &big, &small);
    dpl_absmax_init(&q, (uint32_t)(big > -small ? big : -small));
    if (lo == 0) dpl_tok_factor(tok, (uint64_t)(uint32_t)q.a, q.t, base_shift);
    for (; i + 8 <= hi; i += 8) { /* by eight */
        h[i] = (int8_t)dpl_absmax_apply(&q, p[i]);
        h[i + 1] = (int8_t)dpl_absmax_apply(&q, p[i + 1]);
        h[i + 2] = (int8_t)dpl_absmax_apply(&q, p[i + 2]);
        h[i + 3] = (int8_t)dpl_absmax_apply(&q, p[i + 3]);
        h[i + 4] = (int8_t)dpl_absmax_apply(&q, p[i + 4]);
        h[i + 5] = (int8_t)dpl_absmax_apply(&q, p[i + 5]);
        h[i + 6] = (int8_t)dpl_absmax_apply(&q, p[i + 6]);
        h[i + 7] = (int8_t)dpl_absmax_apply(&q, p[i + 7]);
    }
    for (; i < hi; i++) h[i] = (int8_t)dpl_absmax_apply(&q, p[i]);
}
void swiglu_tok_i8_out(int8_t *h, int32_t *tok, int32_t *p, const int8_t *gate, const int8_t *up,
                       const int16_t *silu_table, int32_t base_shift, int32_t n, int32_t *spans, int32_t core,
                       int32_t n_cores, int32_t lo, int32_t hi) {
    (void)gate, (void)up, (void)silu_table, (void)n, (void)core;
    swiglu_tok_out(h, tok, p, base_shift, spans, n_cores, lo, hi);
}

/* per-token absmax scale (kernels.swiglu_tok), both passes on one core: one call per token vector */
void swiglu_tok_i8(int8_t *h /* [n] */, int32_t *tok /* [2] */, int32_t *p /* [n] scratch */,
                   const int8_t *gate /* [n] */, const int8_t *up /* [n] */, const int16_t *silu_table /* [256] */,
                   int32_t base_shift, int32_t n) {
    int32_t spans[2];
    swiglu_span(spans, p, gate, up, silu_table, 0, 0, n);
    swiglu_tok_out(h, tok, p, base_shift, spans, 1, 0, n);
}
