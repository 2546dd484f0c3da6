/* residual.c: saturating residual add on the int16 stream */
#include "deeploy_kernels.h"

/* y[i] = sat16(a[i] + b[i]); y may equal a (in-place residual add) */
void add_sat_i16(int16_t *y /* [n] */, const int16_t *a /* [n] */, const int16_t *b /* [n] */, int32_t n) {
    for (int32_t i = 0; i < n; i++) y[i] = dpl_sat16((int32_t)a[i] + b[i]);
}
