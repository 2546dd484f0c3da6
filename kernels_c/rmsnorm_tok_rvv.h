/* rmsnorm_tok_rvv.h: RMSNorm with a per-token absmax scale (`dynamic norm`, `final_norm`) on the vector unit
 * (rmsnorm_tok_rvv.c), rmsnorm_tok_i8's integers, on one core */
#ifndef DEEPLOY_RMSNORM_TOK_RVV_H
#define DEEPLOY_RMSNORM_TOK_RVV_H

#include <stdint.h>

/* rmsnorm_tok_i8's contract (rmsnorm_tok.h): y = dpl_absmax of x * gain, tok = tok_factor(a * inv, t - 31 -
 * gain_shift, base_shift) */
void rmsnorm_tok_i8_rvv(int8_t *y /* [dim] */, int32_t *tok /* [2] */, const int16_t *x /* [dim] */,
                        const int32_t *gain /* [dim] */, int32_t gain_shift, int64_t eps_q, int32_t base_shift,
                        int32_t dim);

#endif /* DEEPLOY_RMSNORM_TOK_RVV_H */
