/* swiglu16.h: the SwiGLU on int16 gate and up (`gate_up int16`, swiglu16.c), which only the builds that use it include
 */
#ifndef DEEPLOY_SWIGLU16_H
#define DEEPLOY_SWIGLU16_H

#include <stdint.h>

/* swiglu_tok_i8 on int16 gate and up (`gate_up int16`), shared out: h[lo..hi) (every core finds the vector's largest
 * product; lo == 0 writes tok); silu by a 513-entry table with linear interpolation (kernels.swiglu_tok_g16),
 * |p| <= 2^30 */
void swiglu16_tok_i8_part(int8_t *h /* [n] */, int32_t *tok /* [2] */, int32_t *p /* [n] scratch */,
                          const int16_t *gate /* [n] */, const int16_t *up /* [n] */,
                          const int16_t *silu_table /* [513] */, int32_t base_shift, int32_t n, int32_t lo,
                          int32_t hi);

#endif
