/* rope.c: rotary position embedding on int8 activations with Q14 cos/sin tables */
#include "deeploy_kernels.h"

#define ROPE_FRAC 14 /* cos/sin rows are Q14 */

/* (y0, y1) = sat8(round((x0*c - x1*s, x0*s + x1*c) / 2^14)) for pair i of every head; y may equal x */
void rope_i8(int8_t *y /* [n] */, const int8_t *x /* [n] */, const int16_t *cos_row /* [head_size/2] */,
             const int16_t *sin_row /* [head_size/2] */, int32_t n, int32_t head_size) {
    for (int32_t h = 0; h < n; h += head_size) {
        for (int32_t i = 0; i < head_size / 2; i++) {
            int32_t x0 = x[h + 2 * i], x1 = x[h + 2 * i + 1], c = cos_row[i], s = sin_row[i];
            y[h + 2 * i] = dpl_sat8(dpl_rshift_round(x0 * c - x1 * s, ROPE_FRAC));
            y[h + 2 * i + 1] = dpl_sat8(dpl_rshift_round(x0 * s + x1 * c, ROPE_FRAC));
        }
    }
}
