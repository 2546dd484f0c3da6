/* swiglu16.c: SwiGLU on int16 gate and up (`gate_up int16`), silu by a 513-entry table with linear interpolation */
#include "deeploy_kernels.h"
#include "swiglu16.h"

#if defined(__GNUC__)
#define SWIGLU_INLINE static inline __attribute__((always_inline))
#else
#define SWIGLU_INLINE static inline
#endif

/* int16 gate and up (`gate_up int16`, kernels.silu16): silu of g from the 513-entry table T (an entry every 2^7 gate
 * steps, both ends included), interpolated: j = (g + 32768) >> 7, f = its low 7 bits, T[j] + ((T[j+1] - T[j]) * f + 64)
 * >> 7 (|T[j+1] - T[j]| * 127 < 2^23); between two int16 entries, so int16 */
SWIGLU_INLINE int32_t silu16(const int16_t *t, int32_t g) {
    const uint32_t u = (uint32_t)(g + 32768);
    const int32_t j = (int32_t)(u >> 7), f = (int32_t)(u & 127u);
    return t[j] + ((((int32_t)t[j + 1] - t[j]) * f + 64) >> 7);
}

/* the products silu16(gate[i]) * up[i] of [i, end) into the running largest *mx and smallest *mn, kept in p when
 * `keep` (a constant where it is inlined) */
SWIGLU_INLINE void swiglu16_span(int32_t *p, const int16_t *gate, const int16_t *up, const int16_t *t, int32_t i,
                                 int32_t end, int32_t *mx, int32_t *mn, int keep) {
    int32_t hi = *mx, lo = *mn;
#define SWIGLU16_SPAN(j)                                                                                           \
    do {                                                                                                           \
        const int32_t p_ = silu16(t, gate[(j)]) * up[(j)];                                                         \
        if (keep) p[(j)] = p_;                                                                                     \
        if (p_ > hi) hi = p_;                                                                                      \
        if (p_ < lo) lo = p_;                                                                                      \
    } while (0)
    for (; i + 4 <= end; i += 4) { /* by four: loop control per four elements */
        SWIGLU16_SPAN(i);
        SWIGLU16_SPAN(i + 1);
        SWIGLU16_SPAN(i + 2);
        SWIGLU16_SPAN(i + 3);
    }
    for (; i < end; i++) SWIGLU16_SPAN(i);
#undef SWIGLU16_SPAN
    *mx = hi, *mn = lo;
}

/* swiglu_tok_i8 on int16 gate and up (kernels.swiglu_tok_g16) in two passes, each shared out over the cores as
 * swiglu_tok_i8_span/_out are (swiglu.c): p[i] = silu16(gate[i]) * up[i], |p| <= 2^30 (both -32768). _span keeps a
 * core's products p[lo..hi) and writes their largest and smallest (0 included) to spans[2 * core]; after the barrier,
 * _out combines the n_cores spans (the same largest |p| as one pass over the vector: the integers do not depend on the
 * cores) and writes h[lo..hi) = dpl_absmax of them; a core whose share starts at 0 writes tok = tok_factor(a, t,
 * base_shift) (the down projection's shift needs room 31) */
void swiglu16_tok_i8_span(int8_t *h, int32_t *tok, int32_t *p, const int16_t *gate, const int16_t *up,
                          const int16_t *silu_table, int32_t base_shift, int32_t n, int32_t *spans, int32_t core,
                          int32_t n_cores, int32_t lo, int32_t hi) {
    int32_t mx = 0, mn = 0;
    (void)h, (void)tok, (void)base_shift, (void)n, (void)n_cores;
    swiglu16_span(p, gate, up, silu_table, lo, hi, &mx, &mn, 1);
    spans[2 * core] = mx, spans[2 * core + 1] = mn;
}

/* the second pass's body: the scale from the n_cores spans, then h[lo..hi) */
SWIGLU_INLINE void swiglu16_tok_out(int8_t *h, int32_t *tok, const int32_t *p, int32_t base_shift,
                                    const int32_t *spans, int32_t n_cores, int32_t lo, int32_t hi) {
    int32_t mx = spans[0], mn = spans[1], c, i = lo;
    dpl_absmax q;
    for (c = 1; c < n_cores; c++) {
        if (spans[2 * c] > mx) mx = spans[2 * c];
        if (spans[2 * c + 1] < mn) mn = spans[2 * c + 1];
    }
    dpl_absmax_init(&q, (uint32_t)(mx > -mn ? mx : -mn));
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

void swiglu16_tok_i8_out(int8_t *h, int32_t *tok, int32_t *p, const int16_t *gate, const int16_t *up,
                         const int16_t *silu_table, int32_t base_shift, int32_t n, int32_t *spans, int32_t core,
                         int32_t n_cores, int32_t lo, int32_t hi) {
    (void)gate, (void)up, (void)silu_table, (void)n, (void)core;
    swiglu16_tok_out(h, tok, p, base_shift, spans, n_cores, lo, hi);
}

/* both passes on one core: one call per token vector */
void swiglu16_tok_i8(int8_t *h /* [n] */, int32_t *tok /* [2] */, int32_t *p /* [n] scratch */,
                     const int16_t *gate /* [n] */, const int16_t *up /* [n] */, const int16_t *silu_table /* [513] */,
                     int32_t base_shift, int32_t n) {
    int32_t spans[2] = { 0, 0 };
    swiglu16_span(p, gate, up, silu_table, 0, n, &spans[0], &spans[1], 1);
    swiglu16_tok_out(h, tok, p, base_shift, spans, 1, 0, n);
}
