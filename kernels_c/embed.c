/* embed.c: token embedding, the token's int8 table row requantized into the int16 residual */
#include "deeploy_kernels.h"

/* x = sat16(round(row * mult[0] / 2^shift[0])); row, mult and shift are the token's entries of the tables */
void embed_i16(int16_t *x /* [dim] */, const int8_t *row /* [dim] */, const int32_t *mult /* [1] */,
               const uint8_t *shift /* [1] */, int32_t dim) {
    int32_t m = mult[0];
    int s = shift[0];
    for (int32_t i = 0; i < dim; i++) x[i] = dpl_sat16(dpl_requant(row[i], m, s));
}
