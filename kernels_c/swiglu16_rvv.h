/* swiglu16_rvv.h: the SwiGLU on int16 gate and up with a per-token absmax scale (`gate_up int16`, `dynamic
 * swiglu_absmax`) on the vector unit (swiglu16_rvv.c), swiglu16_tok_i8's integers, on one core */
#ifndef DEEPLOY_SWIGLU16_RVV_H
#define DEEPLOY_SWIGLU16_RVV_H

#include <stdint.h>

/* swiglu16_tok_i8's contract (swiglu16.h): p[i] = silu16(gate[i]) * up[i] (the 513-entry table interpolated),
 * h = dpl_absmax of them, tok = the token's factor for the down projection */
void swiglu16_tok_i8_rvv(int8_t *h /* [n] */, int32_t *tok /* [2] */, int32_t *p /* [n] scratch */,
                         const int16_t *gate /* [n] */, const int16_t *up /* [n] */,
                         const int16_t *silu_table /* [513] */, int32_t base_shift, int32_t n);

#endif /* DEEPLOY_SWIGLU16_RVV_H */
