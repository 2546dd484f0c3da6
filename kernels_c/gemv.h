/* gemv.h: int8 matrix-vector product over row-blocked weights, the fast twin of linear_i8/i16/i32.
 *
 * Same integers as linear_iN (twins.linear in deeploy_dsl/kernels/twins.py), with the weights laid out
 * offline by deeploy_dsl/kernels/layout.py:block_rows: blocks of GEMV_ROWS_PER_BLOCK output rows, column by
 * column, wb[o / R][i][o % R]. The last block is padded with zero rows (n_out is not rounded: the
 * kernel writes y[0 .. n_out) only and reads mult only for real rows).
 * Requantization: one shift for the call, shift[0] (a layer has one shift, kernels.layer_multipliers; the
 * array is per row so that a tile's DMA slices it with the rows, all entries equal, and the others are not
 * read), a multiplier per row, rounding half up: y[o] = sat(floor(acc[o] * mult[o] / 2^shift[0] + 1/2)).
 * Fastest for shift[0] >= 33. Needs n_in < 2^17 (int32 accumulators, |w*x| <= 2^14) and 0 <= shift[0] <= 62.
 */
#ifndef DEEPLOY_GEMV_H
#define DEEPLOY_GEMV_H

#include <stdint.h>

#define GEMV_ROWS_PER_BLOCK 8 /* R; must equal deeploy_dsl.kernels.layout.ROWS_PER_BLOCK */

/* y[o] = sat8(floor(sum_i W[o,i]*x[i] * mult[o] / 2^shift[0] + 1/2)), W blocked: wb[o/R][i][o%R] */
void gemv_i8(int8_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* wb: [ceil(n_out/R), n_in, R] */,
             const int32_t *mult /* [n_out] */, const uint8_t *shift /* [n_out], shift[0] read */,
             int32_t n_in, int32_t n_out);
/* the same with sat16 */
void gemv_i16(int16_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* wb: [ceil(n_out/R), n_in, R] */,
              const int32_t *mult /* [n_out] */, const uint8_t *shift /* [n_out], shift[0] read */,
              int32_t n_in, int32_t n_out);
/* the same with sat32 */
void gemv_i32(int32_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* wb: [ceil(n_out/R), n_in, R] */,
              const int32_t *mult /* [n_out] */, const uint8_t *shift /* [n_out], shift[0] read */,
              int32_t n_in, int32_t n_out);

/* int4 weights with a scale per group of `group` input channels (deeploy_dsl/kernels/layout.py: q4_pack; the same
 * integers as twins.linear_q4): y[o] = sat8(floor(sum_i q[o,i] * e[o, i/group] * x[i] * mult[o] / 2^shift[0] + 1/2)).
 * w (wq): ceil(n_out/R) blocks of R * (ceil(n_in/group) + n_in/2) bytes. Needs n_in even, <= 8192; group a multiple of 8. */
void gemv_q4_i8(int8_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* wq: q4 blocks */,
                const int32_t *mult /* [n_out] */, const uint8_t *shift /* [n_out], shift[0] read */,
                int32_t n_in, int32_t n_out, int32_t group);
/* the same with sat16 */
void gemv_q4_i16(int16_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* wq: q4 blocks */,
                 const int32_t *mult /* [n_out] */, const uint8_t *shift /* [n_out], shift[0] read */,
                 int32_t n_in, int32_t n_out, int32_t group);
/* the same with sat32 */
void gemv_q4_i32(int32_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* wq: q4 blocks */,
                 const int32_t *mult /* [n_out] */, const uint8_t *shift /* [n_out], shift[0] read */,
                 int32_t n_in, int32_t n_out, int32_t group);

#endif /* DEEPLOY_GEMV_H */
