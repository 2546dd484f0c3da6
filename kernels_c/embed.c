/* embed.c: token embedding lookup, int8 table row requantized into the int16 residual */
#include "deeploy_kernels.h"

/* x = sat16(round(table[token] * mult[token] / 2^shift[token])) */
void embed_i16(int16_t *x /* [dim] */, const int8_t *table /* [vocab, dim] */, const int32_t *mult /* [vocab] */,
               const uint8_t *shift /* [vocab] */, int32_t token, int32_t dim) {
    const int8_t *row = table + (size_t)token * (size_t)dim;
    for (int32_t i = 0; i < dim; i++) x[i] = dpl_sat16(dpl_requant(row[i], mult[token], shift[token]));
}
