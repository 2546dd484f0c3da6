/* norm_rvv.h: RMSNorm and the residual add on the vector unit (norm_rvv.c), rmsnorm_i8_part's and residual_add_i16's
 * integers */
#ifndef DEEPLOY_NORM_RVV_H
#define DEEPLOY_NORM_RVV_H

#include <stdint.h>

/* rmsnorm_i8_part's contract (deeploy_kernels.h): y[lo..hi) of sat8(x / rms(x) * gain / 2^gain_shift) */
void rmsnorm_i8_part_rvv(int8_t *y /* [dim] */, const int16_t *x /* [dim] */, const int32_t *gain /* [dim] */,
                         int32_t gain_shift, int64_t eps_q, int32_t dim, int32_t lo, int32_t hi);
/* residual_add_i16's: y[i] = sat16(a[i] + b[i]); y may equal a */
void residual_add_i16_rvv(int16_t *y /* [n] */, const int16_t *a /* [n] */, const int16_t *b /* [n] */, int32_t n);

#endif /* DEEPLOY_NORM_RVV_H */
