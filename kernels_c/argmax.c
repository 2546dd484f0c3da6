/* argmax.c: greedy sampling */
#include "deeploy_kernels.h"

/* argmax_i x[i], lowest index on ties (n >= 1) */
int32_t argmax_i32(const int32_t *x /* [n] */, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}
