/* gemv_q4_rvv.h: the int4 GEMV with a scale per group of input columns for Zve32x + Zvqdotq cores (gemv_q4_rvv.c), the
 * same integers as gemv_q4_i8/i16/i32 (twins.linear_q4): y[o] = sat(floor(sum_i q[o,i] * e[o, i/G] * x[i] * mult[o] /
 * 2^shift[0] + 1/2)) for the rows o in [lo, hi).
 *
 * Weights in the vector int4 layout (deeploy_dsl/kernels/rvv.py: rvv_q4_pack): blocks of GEMV_RVV_ROWS rows; per
 * block, group after group, the block's 32 group scales (uint8), then per octet p of the group's columns one word per
 * row whose byte k holds q[c0 + 8p + k] in its low nibble and q[c0 + 8p + 4 + k] in its high nibble (zero padded to
 * whole octets, ceil(G / 8) per group). n_in < 2^17, 0 <= shift[0] <= 62. */
#ifndef DEEPLOY_GEMV_Q4_RVV_H
#define DEEPLOY_GEMV_Q4_RVV_H

#include <stdint.h>

void gemv_q4_rvv_i8(int8_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* the int4 layout */,
                    const int32_t *mult /* [n_out] */, const uint8_t *shift /* [n_out], shift[0] read */,
                    int32_t n_in, int32_t n_out, int32_t group, int32_t lo, int32_t hi);
void gemv_q4_rvv_i16(int16_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* the int4 layout */,
                     const int32_t *mult /* [n_out] */, const uint8_t *shift /* [n_out], shift[0] read */,
                     int32_t n_in, int32_t n_out, int32_t group, int32_t lo, int32_t hi);
void gemv_q4_rvv_i32(int32_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* the int4 layout */,
                     const int32_t *mult /* [n_out] */, const uint8_t *shift /* [n_out], shift[0] read */,
                     int32_t n_in, int32_t n_out, int32_t group, int32_t lo, int32_t hi);

#endif /* DEEPLOY_GEMV_Q4_RVV_H */
