/* linear.c: int8 x int8 matrix-vector product with per-row requantization */
#include "deeploy_kernels.h"

/* acc = sum_i w[i]*x[i]; |acc| <= n_in * 2^14 fits int32 for n_in < 2^17 */
static int32_t dot_i8(const int8_t *w /* [n] */, const int8_t *x /* [n] */, int32_t n) {
    int32_t acc = 0;
    for (int32_t i = 0; i < n; i++) acc += (int32_t)w[i] * x[i];
    return acc;
}

/* y[o] = sat8(round(sum_i w[o,i]*x[i] * mult[o] / 2^shift[o])) */
void linear_i8(int8_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* [n_out, n_in] */,
               const int32_t *mult /* [n_out] */, const uint8_t *shift /* [n_out] */, int32_t n_in, int32_t n_out) {
    for (int32_t o = 0; o < n_out; o++, w += n_in)
        y[o] = dpl_sat8(dpl_requant(dot_i8(w, x, n_in), mult[o], shift[o]));
}

/* y[o] = sat16(round(sum_i w[o,i]*x[i] * mult[o] / 2^shift[o])) */
void linear_i16(int16_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* [n_out, n_in] */,
                const int32_t *mult /* [n_out] */, const uint8_t *shift /* [n_out] */, int32_t n_in, int32_t n_out) {
    for (int32_t o = 0; o < n_out; o++, w += n_in)
        y[o] = dpl_sat16(dpl_requant(dot_i8(w, x, n_in), mult[o], shift[o]));
}

/* y[o] = sat32(round(sum_i w[o,i]*x[i] * mult[o] / 2^shift[o])) */
void linear_i32(int32_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* [n_out, n_in] */,
                const int32_t *mult /* [n_out] */, const uint8_t *shift /* [n_out] */, int32_t n_in, int32_t n_out) {
    for (int32_t o = 0; o < n_out; o++, w += n_in)
        y[o] = dpl_sat32(dpl_requant(dot_i8(w, x, n_in), mult[o], shift[o]));
}
