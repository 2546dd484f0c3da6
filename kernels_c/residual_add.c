/* residual_add.c: saturating residual add on the int16 stream */
#include "deeploy_kernels.h"

/* y[i] = sat16(a[i] + b[i]); y may equal a (in-place residual add) */
void residual_add_i16(int16_t *y /* [n] */, const int16_t *a /* [n] */, const int16_t *b /* [n] */, int32_t n) {
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) { /* unrolled: loop control per 4 elements; each y[j] depends on a[j], b[j] only */
        y[i] = (int16_t)dpl_clamp16((int32_t)a[i] + b[i]);
        y[i + 1] = (int16_t)dpl_clamp16((int32_t)a[i + 1] + b[i + 1]);
        y[i + 2] = (int16_t)dpl_clamp16((int32_t)a[i + 2] + b[i + 2]);
        y[i + 3] = (int16_t)dpl_clamp16((int32_t)a[i + 3] + b[i + 3]);
    }
    for (; i < n; i++) y[i] = (int16_t)dpl_clamp16((int32_t)a[i] + b[i]);
}
