/* swiglu_rvv.h: the SwiGLU with a per-token scale on the vector unit (swiglu_rvv.c), swiglu_dyn_i8's integers */
#ifndef DEEPLOY_SWIGLU_RVV_H
#define DEEPLOY_SWIGLU_RVV_H

#include <stdint.h>

/* swiglu_dyn_i8's contract (deeploy_kernels.h): p[i] = silu[gate[i]] * up[i], k the smallest shift that brings them
 * into int8 rounding half up, h[i] = (p[i] + 2^(k-1)) >> k, *shift_out = base_shift - k */
void swiglu_dyn_i8_rvv(int8_t *h /* [n] */, uint8_t *shift_out /* [1] */, int32_t *p /* [n] scratch */,
                       const int8_t *gate /* [n] */, const int8_t *up /* [n] */, const int16_t *silu_table /* [256] */,
                       int32_t base_shift, int32_t n);

#endif /* DEEPLOY_SWIGLU_RVV_H */
