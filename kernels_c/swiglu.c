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
