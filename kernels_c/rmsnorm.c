/* rmsnorm.c: integer RMS normalization, int16 residual in, int8 out */
#include "deeploy_kernels.h"

#define RMS_MIN 256      /* clamp on r = rms*256: bounds inv = 2^39/r by 2^31 */
#define RMS_INV_SHIFT 39 /* inv = 2^39 / r, so x*inv / 2^31 = x / rms */

/* r = max(isqrt(sum(x^2) * 2^16 / dim + eps_q), 256); y[i] = sat8(round(x[i]*gain[i] * (2^39/r) / 2^(31+gain_shift)))
 * needs dim < 2^17 (ss << 16 stays below 2^63) and gain_shift <= 31 */
void rmsnorm_i8(int8_t *y /* [dim] */, const int16_t *x /* [dim] */, const int32_t *gain /* [dim] */,
                int32_t gain_shift, int64_t eps_q, int32_t dim) {
    rmsnorm_i8_part(y, x, gain, gain_shift, eps_q, dim, 0, dim);
}

/* the same, writing only y[lo..hi): every core of a cluster computes the (cheap) rms of the whole row
 * and normalizes its own share of the outputs */
void rmsnorm_i8_part(int8_t *y /* [dim] */, const int16_t *x /* [dim] */, const int32_t *gain /* [dim] */,
                     int32_t gain_shift, int64_t eps_q, int32_t dim, int32_t lo, int32_t hi) {
    int64_t ss = 0;
    for (int32_t i = 0; i < dim; i++) ss += (int32_t)x[i] * x[i];
    int64_t r = dpl_isqrt64((uint64_t)((ss << 16) / dim + eps_q));
    if (r < RMS_MIN) r = RMS_MIN;
    /* inv <= 2^31 fits 32 unsigned bits and |x * gain| <= 2^30 fits 32 signed ones, so each product is
     * one 32x32->64 multiply (mul + mulhsu on RV32) instead of a 64-bit library call */
    uint32_t inv = (uint32_t)(((int64_t)1 << RMS_INV_SHIFT) / r);
    int s = RMS_INV_SHIFT - 8 + (int)gain_shift;
    for (int32_t i = lo; i < hi; i++) {
        int32_t t = (int32_t)x[i] * gain[i];
        y[i] = dpl_sat8(dpl_rshift_round((int64_t)t * (int64_t)inv, s));
    }
}
