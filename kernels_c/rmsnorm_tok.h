/* rmsnorm_tok.h: RMSNorm with a per-token absmax scale (`dynamic norm`, `final_norm`; rmsnorm_tok.c), which only the
 * builds that use it include */
#ifndef DEEPLOY_RMSNORM_TOK_H
#define DEEPLOY_RMSNORM_TOK_H

#include <stdint.h>

/* per-token absmax scale (kernels.rmsnorm_tok): y = dpl_absmax of x * gain, tok = tok_factor(a * inv, t - 31 -
 * gain_shift, base_shift); both passes on one core */
void rmsnorm_tok_i8(int8_t *y /* [dim] */, int32_t *tok /* [2] */, const int16_t *x /* [dim] */,
                    const int32_t *gain /* [dim] */, int32_t gain_shift, int64_t eps_q, int32_t base_shift,
                    int32_t dim);
/* its two passes for N cores, one fork each: its arguments, then spans [2 * n_cores] (each core's {largest, smallest}
 * x * gain, written by _span, read by _out), the core, the cores, and the core's share [lo, hi) of the dim elements
 * (a share with hi == dim computes the rms and writes tok) */
void rmsnorm_tok_i8_span(int8_t *y, int32_t *tok, const int16_t *x, const int32_t *gain, int32_t gain_shift,
                         int64_t eps_q, int32_t base_shift, int32_t dim, int32_t *spans, int32_t core,
                         int32_t n_cores, int32_t lo, int32_t hi);
void rmsnorm_tok_i8_out(int8_t *y, int32_t *tok, const int16_t *x, const int32_t *gain, int32_t gain_shift,
                        int64_t eps_q, int32_t base_shift, int32_t dim, int32_t *spans, int32_t core,
                        int32_t n_cores, int32_t lo, int32_t hi);

#endif
