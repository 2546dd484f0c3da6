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

/* The same products with a per-token scale: k the smallest shift that brings them into int8 rounding half up, that is
 * (hi + 2^(k-1)) >> k <= 127 and (lo + 2^(k-1)) >> k >= -128 for their largest hi and smallest lo (k <= 16, as
 * |p| <= 2^22); h[i] = (p[i] + 2^(k-1)) >> k; *shift_out = base_shift - k. The products are kept in p between the
 * two passes (hi and lo kept apart, so no absolute value is needed). One call per token vector: the scale spans it. */
void swiglu_dyn_i8(int8_t *h /* [n] */, uint8_t *shift_out /* [1] */, int32_t *p /* [n] scratch */,
                   const int8_t *gate /* [n] */, const int8_t *up /* [n] */, const int16_t *silu_table /* [256] */,
                   int32_t base_shift, int32_t n) {
    const int16_t *silu = silu_table + 128;
    int32_t hi = 0, lo = 0, k = 0, half = 0, i = 0;
#define SWIGLU_DYN_SPAN(j)                                                                                         \
    do {                                                                                                           \
        const int32_t p_ = p[(j)] = (int32_t)silu[gate[(j)]] * up[(j)];                                            \
        if (p_ > hi) hi = p_;                                                                                      \
        if (p_ < lo) lo = p_;                                                                                      \
    } while (0)
#define SWIGLU_DYN_OUT(j) (h[(j)] = (int8_t)((p[(j)] + half) >> k))
    for (; i + 4 <= n; i += 4) { /* by four: loop control per four elements */
        SWIGLU_DYN_SPAN(i);
        SWIGLU_DYN_SPAN(i + 1);
        SWIGLU_DYN_SPAN(i + 2);
        SWIGLU_DYN_SPAN(i + 3);
    }
    for (; i < n; i++) SWIGLU_DYN_SPAN(i);
    while (((hi + half) >> k) > INT8_MAX || ((lo + half) >> k) < INT8_MIN) half = (int32_t)1 << k++;
    for (i = 0; i + 4 <= n; i += 4) {
        SWIGLU_DYN_OUT(i);
        SWIGLU_DYN_OUT(i + 1);
        SWIGLU_DYN_OUT(i + 2);
        SWIGLU_DYN_OUT(i + 3);
    }
    for (; i < n; i++) SWIGLU_DYN_OUT(i);
#undef SWIGLU_DYN_SPAN
#undef SWIGLU_DYN_OUT
    *shift_out = (uint8_t)(base_shift - k);
}

/* per-token absmax scale (kernels.swiglu_tok): the products p[i] (|p| <= 2^22) kept between the two passes, then
 * h = dpl_absmax of them and tok = tok_factor(a, t, base_shift). One call per token vector: the scale spans it. */
void swiglu_tok_i8(int8_t *h /* [n] */, int32_t *tok /* [2] */, int32_t *p /* [n] scratch */,
                   const int8_t *gate /* [n] */, const int8_t *up /* [n] */, const int16_t *silu_table /* [256] */,
                   int32_t base_shift, int32_t n) {
    const int16_t *silu = silu_table + 128;
    int32_t hi = 0, lo = 0, i = 0;
    dpl_absmax q;
#define SWIGLU_TOK_SPAN(j)                                                                                         \
    do {                                                                                                           \
        const int32_t p_ = p[(j)] = (int32_t)silu[gate[(j)]] * up[(j)];                                            \
        if (p_ > hi) hi = p_;                                                                                      \
        if (p_ < lo) lo = p_;                                                                                      \
    } while (0)
    for (; i + 8 <= n; i += 8) { /* by eight: loop control per eight elements */
        SWIGLU_TOK_SPAN(i);
        SWIGLU_TOK_SPAN(i + 1);
        SWIGLU_TOK_SPAN(i + 2);
        SWIGLU_TOK_SPAN(i + 3);
        SWIGLU_TOK_SPAN(i + 4);
        SWIGLU_TOK_SPAN(i + 5);
        SWIGLU_TOK_SPAN(i + 6);
        SWIGLU_TOK_SPAN(i + 7);
    }
    for (; i < n; i++) SWIGLU_TOK_SPAN(i);
#undef SWIGLU_TOK_SPAN
    dpl_absmax_init(&q, (uint32_t)(hi > -lo ? hi : -lo));
    for (i = 0; i + 8 <= n; i += 8) { /* by eight: the vector is one core's work */
        h[i] = (int8_t)dpl_absmax_apply(&q, p[i]);
        h[i + 1] = (int8_t)dpl_absmax_apply(&q, p[i + 1]);
        h[i + 2] = (int8_t)dpl_absmax_apply(&q, p[i + 2]);
        h[i + 3] = (int8_t)dpl_absmax_apply(&q, p[i + 3]);
        h[i + 4] = (int8_t)dpl_absmax_apply(&q, p[i + 4]);
        h[i + 5] = (int8_t)dpl_absmax_apply(&q, p[i + 5]);
        h[i + 6] = (int8_t)dpl_absmax_apply(&q, p[i + 6]);
        h[i + 7] = (int8_t)dpl_absmax_apply(&q, p[i + 7]);
    }
    for (; i < n; i++) h[i] = (int8_t)dpl_absmax_apply(&q, p[i]);
    dpl_tok_factor(tok, (uint64_t)(uint32_t)q.a, q.t, base_shift);
}
