/* linear.c: int8 x int8 matrix-vector product with requantization, row by row: the reference for gemv.c.
 * One shift for the whole call (shift[0]; the array is per row for the tiles' DMA, all entries equal), per-row mult,
 * rounding half up: y[o] = sat(floor(acc[o] * mult[o] / 2^shift[0] + 1/2)) (twins.linear). */
#include "deeploy_kernels.h"

/* acc = sum_i w[i]*x[i]; |acc| <= n_in * 2^14 fits int32 for n_in < 2^17 */
static int32_t dot_i8(const int8_t *w /* [n] */, const int8_t *x /* [n] */, int32_t n) {
    int32_t acc = 0;
    for (int32_t i = 0; i < n; i++) acc += (int32_t)w[i] * x[i];
    return acc;
}

/* floor(acc * mult / 2^shift + 1/2) in 64 bits, 0 <= shift <= 62 (kernels.requant_half_up before saturation) */
static int64_t requant_half_up(int32_t acc, int32_t mult, int32_t shift) {
    int64_t v = (int64_t)acc * mult;
    return shift > 0 ? (v + ((int64_t)1 << (shift - 1))) >> shift : v;
}

/* y[o] = sat8(floor(sum_i w[o,i]*x[i] * mult[o] / 2^shift[0] + 1/2)) */
void linear_i8(int8_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* [n_out, n_in] */,
               const int32_t *mult /* [n_out] */, const uint8_t *shift /* [n_out], shift[0] used */, int32_t n_in,
               int32_t n_out) {
    for (int32_t o = 0; o < n_out; o++, w += n_in)
        y[o] = dpl_sat8(requant_half_up(dot_i8(w, x, n_in), mult[o], shift[0]));
}

/* y[o] = sat16(floor(sum_i w[o,i]*x[i] * mult[o] / 2^shift[0] + 1/2)) */
void linear_i16(int16_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* [n_out, n_in] */,
                const int32_t *mult /* [n_out] */, const uint8_t *shift /* [n_out], shift[0] used */, int32_t n_in,
                int32_t n_out) {
    for (int32_t o = 0; o < n_out; o++, w += n_in)
        y[o] = dpl_sat16(requant_half_up(dot_i8(w, x, n_in), mult[o], shift[0]));
}

/* y[o] = sat32(floor(sum_i w[o,i]*x[i] * mult[o] / 2^shift[0] + 1/2)) */
void linear_i32(int32_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* [n_out, n_in] */,
                const int32_t *mult /* [n_out] */, const uint8_t *shift /* [n_out], shift[0] used */, int32_t n_in,
                int32_t n_out) {
    for (int32_t o = 0; o < n_out; o++, w += n_in)
        y[o] = dpl_sat32(requant_half_up(dot_i8(w, x, n_in), mult[o], shift[0]));
}
