/* wide.h: the kernels of the wide SwiGLU output (`swiglu int12 | int16`) and the int16 classifier (`classifier
 * int16`), wide.c, which only the builds that use them include */
#ifndef DEEPLOY_WIDE_H
#define DEEPLOY_WIDE_H

#include <stdint.h>

/* y = sat16(requant_token(W x)): x int16 (int12 or int16 values), W int8 in GEMV blocks, shift = {m, s} the token's
 * factor (kernels.linear_tok, named as in gemv_tok.c); exact while n_in * max|x| * 127 < 2^31 (the checker's bound) */
void gemv_x16_tok_i16(int16_t *y /* [n_out] */, const int16_t *x /* [n_in] */, const int8_t *w /* blocks */,
                      const int32_t *mult /* [n_out] */, const int32_t *shift /* [2] the token's {m, s} */,
                      int32_t n_in, int32_t n_out);
/* y = requant_token(W x), int32: x int8 within +-127, W int16 in GEMV blocks stored as little-endian bytes
 * (layout.w16_bytes, 2-byte aligned); exact while n_in * 127 * 32767 < 2^31 */
void gemv_w16_tok_i32(int32_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* int16 blocks */,
                      const int32_t *mult /* [n_out] */, const int32_t *shift /* [2] the token's {m, s} */,
                      int32_t n_in, int32_t n_out);

/* h = silu(gate) * up * qmax / max|silu(gate) * up| (kernels.swiglu_tok with qmax 2047 or 32767), stored in int16;
 * tok = the token's factor for the down projection; both passes on one core */
void swiglu_tok_i16(int16_t *h /* [n] */, int32_t *tok /* [2] */, int32_t *p /* [n] scratch */,
                    const int8_t *gate /* [n] */, const int8_t *up /* [n] */, const int16_t *silu_table /* [256] */,
                    int32_t qmax, int32_t base_shift, int32_t n);
/* the same on int16 gate and up (kernels.swiglu_tok_g16: silu by the 513-entry table, interpolated) */
void swiglu16_tok_i16(int16_t *h /* [n] */, int32_t *tok /* [2] */, int32_t *p /* [n] scratch */,
                      const int16_t *gate /* [n] */, const int16_t *up /* [n] */, const int16_t *silu_table /* [513] */,
                      int32_t qmax, int32_t base_shift, int32_t n);
/* their two passes for N cores, one fork each (as swiglu16_tok_i8_span/_out): the arguments, then spans
 * [2 * n_cores], the core, the cores and the core's share [lo, hi) (a share with lo == 0 writes tok) */
void swiglu_tok_i16_span(int16_t *h, int32_t *tok, int32_t *p, const int8_t *gate, const int8_t *up,
                         const int16_t *silu_table, int32_t qmax, int32_t base_shift, int32_t n, int32_t *spans,
                         int32_t core, int32_t n_cores, int32_t lo, int32_t hi);
void swiglu_tok_i16_out(int16_t *h, int32_t *tok, int32_t *p, const int8_t *gate, const int8_t *up,
                        const int16_t *silu_table, int32_t qmax, int32_t base_shift, int32_t n, int32_t *spans,
                        int32_t core, int32_t n_cores, int32_t lo, int32_t hi);
void swiglu16_tok_i16_span(int16_t *h, int32_t *tok, int32_t *p, const int16_t *gate, const int16_t *up,
                           const int16_t *silu_table, int32_t qmax, int32_t base_shift, int32_t n, int32_t *spans,
                           int32_t core, int32_t n_cores, int32_t lo, int32_t hi);
void swiglu16_tok_i16_out(int16_t *h, int32_t *tok, int32_t *p, const int16_t *gate, const int16_t *up,
                          const int16_t *silu_table, int32_t qmax, int32_t base_shift, int32_t n, int32_t *spans,
                          int32_t core, int32_t n_cores, int32_t lo, int32_t hi);

#endif
