/* embed.c: token embedding, the token's int8 table row requantized into the int16 residual */
#include "deeploy_kernels.h"

/* x = sat16(round(row * mult[0] / 2^shift[0])); row, mult and shift are the token's entries of the tables */
void embed_i16(int16_t *x /* [dim] */, const int8_t *row /* [dim] */, const int32_t *mult /* [1] */,
               const uint8_t *shift /* [1] */, int32_t dim) {
    int32_t m = mult[0];
    int s = shift[0];
    dpl_rq32 q;
    int32_t i = 0;
    if (dpl_rq32_init(&q, m, s, 7)) { /* |row| <= 2^7: one high multiply per element */
        for (; i + 4 <= dim; i += 4) { /* unrolled: loop control per 4 elements */
            x[i] = (int16_t)dpl_clamp16(dpl_rq32_apply(&q, row[i]));
            x[i + 1] = (int16_t)dpl_clamp16(dpl_rq32_apply(&q, row[i + 1]));
            x[i + 2] = (int16_t)dpl_clamp16(dpl_rq32_apply(&q, row[i + 2]));
            x[i + 3] = (int16_t)dpl_clamp16(dpl_rq32_apply(&q, row[i + 3]));
        }
        for (; i < dim; i++) x[i] = (int16_t)dpl_clamp16(dpl_rq32_apply(&q, row[i]));
        return;
    }
    for (; i < dim; i++) x[i] = dpl_sat16(dpl_requant(row[i], m, s));
}
