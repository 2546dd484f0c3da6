/* gemv_q4_tok_rvv.h: the vector int4 GEMV (gemv_q4_rvv.h) on an input with a per-token factor, the same integers as
 * gemv_q4_tok_i8/i16/i32 (gemv_tok.c): the row multipliers times the token's, tok = {m, s}, for the rows in [lo, hi) */
#ifndef DEEPLOY_GEMV_Q4_TOK_RVV_H
#define DEEPLOY_GEMV_Q4_TOK_RVV_H

#include <stdint.h>

void gemv_q4_tok_rvv_i8(int8_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* int4 layout */,
                        const int32_t *mult /* [n_out] */, const int32_t *shift /* [2] the token's {m, s} */,
                        int32_t n_in, int32_t n_out, int32_t group, int32_t lo, int32_t hi);
void gemv_q4_tok_rvv_i16(int16_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* int4 layout */,
                         const int32_t *mult /* [n_out] */, const int32_t *shift /* [2] the token's {m, s} */,
                         int32_t n_in, int32_t n_out, int32_t group, int32_t lo, int32_t hi);
void gemv_q4_tok_rvv_i32(int32_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* int4 layout */,
                         const int32_t *mult /* [n_out] */, const int32_t *shift /* [2] the token's {m, s} */,
                         int32_t n_in, int32_t n_out, int32_t group, int32_t lo, int32_t hi);

#endif /* DEEPLOY_GEMV_Q4_TOK_RVV_H */
