/* swiglu.c: SwiGLU gate with a 256-entry SiLU lookup table over int8 */
#include "deeploy_kernels.h"

/* h[i] = sat8(round(silu_table[gate[i]+128] * up[i] * mult / 2^shift)) */
void swiglu_i8(int8_t *h /* [n] */, const int8_t *gate /* [n] */, const int8_t *up /* [n] */,
               const int16_t *silu_table /* [256] */, int32_t mult, int32_t shift, int32_t n) {
    for (int32_t i = 0; i < n; i++) {
        int32_t acc = (int32_t)silu_table[gate[i] + 128] * up[i];
        h[i] = dpl_sat8(dpl_requant(acc, mult, (int)shift));
    }
}
