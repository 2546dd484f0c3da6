/* host_tok.c: see host_tok.h. The row multipliers times the token's factor (gemv.h's gemv_tok_mults, one high multiply
 * per row, as gemv_tok.c makes them for the cluster), HOST_TOK_ROWS rows at a time on the stack, and host.c's GEMV on
 * them as it is: the vectorized dot products and requantization of the calibrated layers, ~1 instruction per row more.
 */
#include "host_tok.h"

#include <stddef.h>

#include "gemv.h"
#include "host.h"

#define HOST_TOK_ROWS 256 /* rows whose multipliers are made at once: 1 KiB of stack; x is widened once per HOST_TOK_ROWS */

/* kernels.linear_tok on row-major weights, output bits a constant after inlining */
static inline __attribute__((always_inline)) void gemv_rows_tok(int bits, void *y, const int8_t *x, const int8_t *w,
                                                                const int32_t *mult, const int32_t *tok,
                                                                int32_t n_in, int32_t n_out) {
    const uint32_t m = (uint32_t)tok[0];
    int32_t s = tok[1], drop = 0;
    int32_t m2[HOST_TOK_ROWS];
    uint8_t sh;
    if (s > 62) drop = s - 62, s = 62; /* a token of tiny values: give up the multipliers' low bits */
    sh = (uint8_t)s;
    for (int32_t r0 = 0; r0 < n_out; r0 += HOST_TOK_ROWS) {
        const int32_t rows = n_out - r0 < HOST_TOK_ROWS ? n_out - r0 : HOST_TOK_ROWS;
        const int8_t *wr = w + (size_t)r0 * (size_t)n_in;
        gemv_tok_mults(m2, mult + r0, m, drop, rows);
        if (bits == 8)
            gemv_rows_i8((int8_t *)y + r0, x, wr, m2, &sh, n_in, rows);
        else if (bits == 16)
            gemv_rows_i16((int16_t *)y + r0, x, wr, m2, &sh, n_in, rows);
        else
            gemv_rows_i32((int32_t *)y + r0, x, wr, m2, &sh, n_in, rows);
    }
}

void gemv_rows_tok_i8(int8_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const int32_t *shift,
                      int32_t n_in, int32_t n_out) {
    gemv_rows_tok(8, y, x, w, mult, shift, n_in, n_out);
}

void gemv_rows_tok_i16(int16_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const int32_t *shift,
                       int32_t n_in, int32_t n_out) {
    gemv_rows_tok(16, y, x, w, mult, shift, n_in, n_out);
}

void gemv_rows_tok_i32(int32_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const int32_t *shift,
                       int32_t n_in, int32_t n_out) {
    gemv_rows_tok(32, y, x, w, mult, shift, n_in, n_out);
}
