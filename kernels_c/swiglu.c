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

/* The same products with a per-token scale: k the smallest shift that brings max |p| into int8 (at most 16, as
 * |p| <= 2^22), h[i] = round(p[i] / 2^k) half away from zero, *shift_out = base_shift - k. Two passes over the
 * products (the first only for their largest magnitude), one core: the maximum spans the whole vector. */
void swiglu_dyn_i8(int8_t *h /* [n] */, uint8_t *shift_out /* [1] */, const int8_t *gate /* [n] */,
                   const int8_t *up /* [n] */, const int16_t *silu_table /* [256] */, int32_t base_shift, int32_t n) {
    const int16_t *silu = silu_table + 128;
    int32_t m = 0, k = 0, i;
    for (i = 0; i < n; i++) {
        const int32_t p = (int32_t)silu[gate[i]] * up[i];
        const int32_t a = p < 0 ? -p : p;
        m = a > m ? a : m;
    }
    while (k < 31 && (k == 0 ? m : (m + ((int32_t)1 << (k - 1))) >> k) > INT8_MAX) k++;
    if (k == 0) {
        for (i = 0; i < n; i++) h[i] = (int8_t)(silu[gate[i]] * up[i]);
    } else {
        const int32_t half = ((int32_t)1 << (k - 1)) - 1; /* p + 2^(k-1) - (p < 0): half away from zero */
        for (i = 0; i < n; i++) {
            const int32_t p = (int32_t)silu[gate[i]] * up[i];
            h[i] = (int8_t)((p + half + (p >= 0)) >> k);
        }
    }
    *shift_out = (uint8_t)(base_shift - k);
}
