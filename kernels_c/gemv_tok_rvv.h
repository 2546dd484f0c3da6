/* gemv_tok_rvv.h: the vector GEMV (gemv_rvv.h) on an input with a per-token factor (`dynamic norm`, `final_norm`,
 * `swiglu_absmax`), the same integers as gemv_tok_i8/i16/i32 (gemv_tok.c, twins.linear_tok): the row multipliers
 * times the token's, y[o] = sat(floor(sum_i W[o,i]*x[i] * floor(mult[o] * m / 2^32) / 2^s + 1/2)) with tok = {m, s}
 * (s > 62: 62, the multipliers shifted right by s - 62), for the rows o in [lo, hi). Weights in the vector layout. */
#ifndef DEEPLOY_GEMV_TOK_RVV_H
#define DEEPLOY_GEMV_TOK_RVV_H

#include <stdint.h>

void gemv_tok_rvv_i8(int8_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* wv */,
                     const int32_t *mult /* [n_out] */, const int32_t *shift /* [2] the token's {m, s} */,
                     int32_t n_in, int32_t n_out, int32_t lo, int32_t hi);
void gemv_tok_rvv_i16(int16_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* wv */,
                      const int32_t *mult /* [n_out] */, const int32_t *shift /* [2] the token's {m, s} */,
                      int32_t n_in, int32_t n_out, int32_t lo, int32_t hi);
void gemv_tok_rvv_i32(int32_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* wv */,
                      const int32_t *mult /* [n_out] */, const int32_t *shift /* [2] the token's {m, s} */,
                      int32_t n_in, int32_t n_out, int32_t lo, int32_t hi);

#endif /* DEEPLOY_GEMV_TOK_RVV_H */
