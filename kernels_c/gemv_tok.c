/* gemv_tok.c: the GEMV of an input with a per-token factor (`dynamic norm`, `dynamic swiglu_absmax`).
 *
 * The producer hands the token's factor as tok = {m, s} (kernels.tok_factor): the row multipliers made for factor 1
 * become floor(mult[o] * m / 2^32), one high multiply per row (mulhu on RV32), and s is the call's shift. They are
 * made GEMV_TOK_ROWS rows at a time on the stack, and gemv.c's kernels run on them as they are: the inner loops and the
 * requantization are the calibrated layers', the cost is ~4 instructions per row and a call per GEMV_TOK_ROWS rows. */
#include "gemv.h"

#include "deeploy_kernels.h"

#define GEMV_TOK_ROWS 64 /* a multiple of 2R: gemv's pairs of blocks stay whole */

/* inlined with constant q4 and bits: each entry point calls only its own kernel, so a link that drops unused
 * sections keeps only the GEMVs a model uses */
#if defined(__GNUC__)
#define TOK_INLINE static inline __attribute__((always_inline))
#else
#define TOK_INLINE static inline
#endif

/* which of gemv.c's kernels: int8 (q4 0), int4 (1) or packed int8 (2) weights, output bits */
TOK_INLINE void gemv_call(int q4, int bits, void *y, const int8_t *x, const int8_t *w, const int32_t *mult,
                      const uint8_t *shift, int32_t n_in, int32_t n_out, int32_t group) {
    if (q4 == 2) { /* packed pairs of rows */
        if (bits == 8)
            gemv_pk_i8((int8_t *)y, x, w, mult, shift, n_in, n_out);
        else if (bits == 16)
            gemv_pk_i16((int16_t *)y, x, w, mult, shift, n_in, n_out);
        else
            gemv_pk_i32((int32_t *)y, x, w, mult, shift, n_in, n_out);
    } else if (q4) {
        if (bits == 8)
            gemv_q4_i8((int8_t *)y, x, w, mult, shift, n_in, n_out, group);
        else if (bits == 16)
            gemv_q4_i16((int16_t *)y, x, w, mult, shift, n_in, n_out, group);
        else
            gemv_q4_i32((int32_t *)y, x, w, mult, shift, n_in, n_out, group);
    } else if (bits == 8) {
        gemv_i8((int8_t *)y, x, w, mult, shift, n_in, n_out);
    } else if (bits == 16) {
        gemv_i16((int16_t *)y, x, w, mult, shift, n_in, n_out);
    } else {
        gemv_i32((int32_t *)y, x, w, mult, shift, n_in, n_out);
    }
}

/* kernels.linear_tok; w_row: bytes of one weight row in the blocked layout (a block of R rows is R times it) */
TOK_INLINE void gemv_tok(int q4, int bits, void *y, const int8_t *x, const int8_t *w, const int32_t *mult,
                     const int32_t *tok, int32_t n_in, int32_t n_out, int32_t group, int32_t w_row) {
    const uint32_t m = (uint32_t)tok[0];
    int32_t s = tok[1], drop = 0, r0;
    int32_t m2[GEMV_TOK_ROWS];
    uint8_t sh;
    if (s > 62) drop = s - 62, s = 62; /* a token of tiny values: give up the multipliers' low bits */
    sh = (uint8_t)s;
    for (r0 = 0; r0 < n_out; r0 += GEMV_TOK_ROWS) {
        const int32_t rows = n_out - r0 < GEMV_TOK_ROWS ? n_out - r0 : GEMV_TOK_ROWS;
        if (drop == 0) /* inlined twice: the usual drop == 0 loses the shift */
            gemv_tok_mults(m2, mult + r0, m, 0, rows);
        else
            gemv_tok_mults(m2, mult + r0, m, drop, rows);
        gemv_call(q4, bits, (char *)y + r0 * (bits / 8), x, w + r0 * w_row, m2, &sh, n_in, rows, group);
    }
}

void gemv_tok_i8(int8_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const int32_t *shift, int32_t n_in,
                 int32_t n_out) {
    gemv_tok(0, 8, y, x, w, mult, shift, n_in, n_out, 0, n_in);
}

void gemv_tok_i16(int16_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const int32_t *shift,
                  int32_t n_in, int32_t n_out) {
    gemv_tok(0, 16, y, x, w, mult, shift, n_in, n_out, 0, n_in);
}

void gemv_tok_i32(int32_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const int32_t *shift,
                  int32_t n_in, int32_t n_out) {
    gemv_tok(0, 32, y, x, w, mult, shift, n_in, n_out, 0, n_in);
}

/* the q4 layout's bytes per row: the group scales and the nibbles (layout.q4_row_bytes) */
static int32_t q4_row(int32_t n_in, int32_t group) {
    return (n_in + group - 1) / group + n_in / 2;
}

void gemv_q4_tok_i8(int8_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const int32_t *shift,
                    int32_t n_in, int32_t n_out, int32_t group) {
    gemv_tok(1, 8, y, x, w, mult, shift, n_in, n_out, group, q4_row(n_in, group));
}

void gemv_q4_tok_i16(int16_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const int32_t *shift,
                     int32_t n_in, int32_t n_out, int32_t group) {
    gemv_tok(1, 16, y, x, w, mult, shift, n_in, n_out, group, q4_row(n_in, group));
}

void gemv_q4_tok_i32(int32_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const int32_t *shift,
                     int32_t n_in, int32_t n_out, int32_t group) {
    gemv_tok(1, 32, y, x, w, mult, shift, n_in, n_out, group, q4_row(n_in, group));
}

/* the packed layout's bytes per row: 2 n_in and its share of the block's schedule (packed.pk_row_bytes) */
static int32_t pk_row(int32_t n_in) {
    return (n_in + 7) / 8 + 2 * n_in;
}

void gemv_pk_tok_i8(int8_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const int32_t *shift,
                    int32_t n_in, int32_t n_out) {
    gemv_tok(2, 8, y, x, w, mult, shift, n_in, n_out, 0, pk_row(n_in));
}

void gemv_pk_tok_i16(int16_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const int32_t *shift,
                     int32_t n_in, int32_t n_out) {
    gemv_tok(2, 16, y, x, w, mult, shift, n_in, n_out, 0, pk_row(n_in));
}

void gemv_pk_tok_i32(int32_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const int32_t *shift,
                     int32_t n_in, int32_t n_out) {
    gemv_tok(2, 32, y, x, w, mult, shift, n_in, n_out, 0, pk_row(n_in));
}
