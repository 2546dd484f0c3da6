/* rope_rvv.h: RoPE on the vector unit (rope_rvv.c), rope_i8's, rope_i16's and rope_q12's integers */
#ifndef DEEPLOY_ROPE_RVV_H
#define DEEPLOY_ROPE_RVV_H

#include <stdint.h>

/* the scalar kernels' contracts (deeploy_kernels.h): (y0, y1) = sat(round((x0*c - x1*s, x0*s + x1*c) / 2^14)) for pair
 * i of every head, c, s = cos_row[i], sin_row[i] in Q14; y may equal x */
void rope_i8_rvv(int8_t *y /* [n] */, const int8_t *x /* [n] */, const int16_t *cos_row /* [head_size/2] */,
                 const int16_t *sin_row /* [head_size/2] */, int32_t n, int32_t head_size);
void rope_i16_rvv(int16_t *y /* [n] */, const int16_t *x /* [n] */, const int16_t *cos_row /* [head_size/2] */,
                  const int16_t *sin_row /* [head_size/2] */, int32_t n, int32_t head_size);
void rope_q12_rvv(int16_t *y /* [n] */, const int16_t *x /* [n] */, const int16_t *cos_row /* [head_size/2] */,
                  const int16_t *sin_row /* [head_size/2] */, int32_t n, int32_t head_size);

#endif /* DEEPLOY_ROPE_RVV_H */
