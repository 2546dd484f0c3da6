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

/* two MACs per multiply (deeploy_dsl/kernels/packed.py: pk_pack): W in blocks of R rows, each its chunk schedule
 * (8 * ceil(n_in/8) bytes of chunk lengths 1 .. GEMV_PK_LMAX) and per column R/2 int32 words w[2j] + 2^16 w[2j+1];
 * the same integers as gemv_iN for every int8 x (the compiler proved each chunk's partial sums fit 16 bits). w must
 * be 4-byte aligned; a block is 8 * ceil(n_in/8) + 16 * n_in bytes */
#define GEMV_PK_LMAX 16 /* must equal deeploy_dsl.kernels.packed.PK_LMAX */
void gemv_pk_i8(int8_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* packed blocks */,
                const int32_t *mult /* [n_out] */, const uint8_t *shift /* [n_out], shift[0] read */, int32_t n_in,
                int32_t n_out);
void gemv_pk_i16(int16_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* packed blocks */,
                 const int32_t *mult /* [n_out] */, const uint8_t *shift /* [n_out], shift[0] read */, int32_t n_in,
                 int32_t n_out);
void gemv_pk_i32(int32_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* packed blocks */,
                 const int32_t *mult /* [n_out] */, const uint8_t *shift /* [n_out], shift[0] read */, int32_t n_in,
                 int32_t n_out);

/* gemv_tok.c: an input with a per-token factor tok = {m (uint32 bits), s} (kernels.linear_tok): the GEMV above with
 * the multipliers floor(mult[o] * m / 2^32) and the shift s (above 62: 62, the multipliers shifted right by s - 62),
 * made for GEMV_TOK_ROWS rows at a time; the same requantization, the inner loops unchanged */
void gemv_tok_i8(int8_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* wb */,
                 const int32_t *mult /* [n_out] */, const int32_t *shift /* [2] the token's {m, s} */, int32_t n_in,
                 int32_t n_out);
void gemv_tok_i16(int16_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* wb */,
                  const int32_t *mult /* [n_out] */, const int32_t *shift /* [2] the token's {m, s} */, int32_t n_in,
                  int32_t n_out);
void gemv_tok_i32(int32_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* wb */,
                  const int32_t *mult /* [n_out] */, const int32_t *shift /* [2] the token's {m, s} */, int32_t n_in,
                  int32_t n_out);
void gemv_q4_tok_i8(int8_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* wq */,
                    const int32_t *mult /* [n_out] */, const int32_t *shift /* [2] the token's {m, s} */,
                    int32_t n_in, int32_t n_out, int32_t group);
void gemv_q4_tok_i16(int16_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* wq */,
                     const int32_t *mult /* [n_out] */, const int32_t *shift /* [2] the token's {m, s} */,
                     int32_t n_in, int32_t n_out, int32_t group);
void gemv_q4_tok_i32(int32_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* wq */,
                     const int32_t *mult /* [n_out] */, const int32_t *shift /* [2] the token's {m, s} */,
                     int32_t n_in, int32_t n_out, int32_t group);
/* the same on packed weights (gemv_pk_iN) */
void gemv_pk_tok_i8(int8_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* packed blocks */,
                    const int32_t *mult /* [n_out] */, const int32_t *shift /* [2] the token's {m, s} */,
                    int32_t n_in, int32_t n_out);
void gemv_pk_tok_i16(int16_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* packed blocks */,
                     const int32_t *mult /* [n_out] */, const int32_t *shift /* [2] the token's {m, s} */,
                     int32_t n_in, int32_t n_out);
void gemv_pk_tok_i32(int32_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* packed blocks */,
                     const int32_t *mult /* [n_out] */, const int32_t *shift /* [2] the token's {m, s} */,
                     int32_t n_in, int32_t n_out);

/* the multipliers of an input with a per-token factor, rows at a time (gemv_tok.c, and the NPU driver's npu_run_tok):
 * m2[i] = floor(mult[i] * m / 2^32) >> drop, i < rows (kernels.tok_multipliers). Inlined where used, so that a call with
 * drop == 0 loses the shift. */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline void gemv_tok_mults(int32_t *m2 /* [rows] */, const int32_t *mult /* [rows] */, uint32_t m, int32_t drop,
                                  int32_t rows) {
    int32_t i = 0;
    for (; i + 4 <= rows; i += 4) { /* by four: loop control per four rows */
        m2[i] = (int32_t)((uint32_t)(((uint64_t)(uint32_t)mult[i] * m) >> 32) >> drop);
        m2[i + 1] = (int32_t)((uint32_t)(((uint64_t)(uint32_t)mult[i + 1] * m) >> 32) >> drop);
        m2[i + 2] = (int32_t)((uint32_t)(((uint64_t)(uint32_t)mult[i + 2] * m) >> 32) >> drop);
        m2[i + 3] = (int32_t)((uint32_t)(((uint64_t)(uint32_t)mult[i + 3] * m) >> 32) >> drop);
    }
    for (; i < rows; i++) m2[i] = (int32_t)((uint32_t)(((uint64_t)(uint32_t)mult[i] * m) >> 32) >> drop);
}

#endif /* DEEPLOY_GEMV_H */
