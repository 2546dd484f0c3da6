/* swiglu16.h: the SwiGLU on int16 gate and up (`gate_up int16`, swiglu16.c), which only the builds that use it include
 */
#ifndef DEEPLOY_SWIGLU16_H
#define DEEPLOY_SWIGLU16_H

#include <stdint.h>

/* swiglu_tok_i8 on int16 gate and up (`gate_up int16`): silu by a 513-entry table with linear interpolation
 * (kernels.swiglu_tok_g16), |p| <= 2^30; both passes on one core */
void swiglu16_tok_i8(int8_t *h /* [n] */, int32_t *tok /* [2] */, int32_t *p /* [n] scratch */,
                     const int16_t *gate /* [n] */, const int16_t *up /* [n] */, const int16_t *silu_table /* [513] */,
                     int32_t base_shift, int32_t n);
/* its two passes for N cores, one fork each: its arguments, then spans [2 * n_cores] (each core's {largest, smallest}
 * product, written by _span, read by _out), the core, the cores, and the core's share [lo, hi) of the n elements
 * (a share with lo == 0 writes tok) */
void swiglu16_tok_i8_span(int8_t *h, int32_t *tok, int32_t *p, const int16_t *gate, const int16_t *up,
                          const int16_t *silu_table, int32_t base_shift, int32_t n, int32_t *spans, int32_t core,
                          int32_t n_cores, int32_t lo, int32_t hi);
void swiglu16_tok_i8_out(int8_t *h, int32_t *tok, int32_t *p, const int16_t *gate, const int16_t *up,
                         const int16_t *silu_table, int32_t base_shift, int32_t n, int32_t *spans, int32_t core,
                         int32_t n_cores, int32_t lo, int32_t hi);

#endif
