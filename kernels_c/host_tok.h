/* host_tok.h: the host's GEMV on an input with a per-token factor (`dynamic norm`, `final_norm`, `swiglu_absmax`), for
 * `target host` (host_tok.c; rules linear_tok_iN_host, linear_q12_tok_host). Same integers as gemv_tok.c and its twin
 * (kernels.linear_tok) on the host's row-major weights (layout.host_rows).
 */
#ifndef DEEPLOY_HOST_TOK_H
#define DEEPLOY_HOST_TOK_H

#include <stdint.h>

/* y[o] = sat8(floor(sum_i W[o,i]*x[i] * m2[o] / 2^s + 1/2)), W row-major [n_out, n_in]; m2[o] = floor(mult[o] * m /
 * 2^32) and s from the token's factor tok = {m, s} (kernels.tok_multipliers: s > 62 becomes 62, m2 >> (s - 62)) */
void gemv_rows_tok_i8(int8_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* [n_out, n_in] */,
                      const int32_t *mult /* [n_out] */, const int32_t *shift /* [2] the token's factor */,
                      int32_t n_in, int32_t n_out);
/* the same with sat16 */
void gemv_rows_tok_i16(int16_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* [n_out, n_in] */,
                       const int32_t *mult /* [n_out] */, const int32_t *shift /* [2] the token's factor */,
                       int32_t n_in, int32_t n_out);
/* the same with sat32 */
void gemv_rows_tok_i32(int32_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* [n_out, n_in] */,
                       const int32_t *mult /* [n_out] */, const int32_t *shift /* [2] the token's factor */,
                       int32_t n_in, int32_t n_out);

#endif /* DEEPLOY_HOST_TOK_H */
