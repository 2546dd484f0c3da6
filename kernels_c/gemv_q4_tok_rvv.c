/* gemv_q4_tok_rvv.c: the vector int4 GEMV on an input with a per-token factor (gemv_q4_tok_rvv.h), as gemv_tok_rvv.c
 * does it for int8 weights: the token's multipliers a chunk of whole blocks at a time on the stack (vmulhu.vx), then
 * gemv_q4_rvv from the chunk's first block with the token's shift. */
#include "gemv_q4_tok_rvv.h"

#include "deeploy_kernels.h"
#include "gemv.h"
#include "gemv_q4_rvv.h"
#include "gemv_rvv.h"

#define GEMV_Q4_TOK_RVV_ROWS (4 * GEMV_RVV_ROWS) /* rows per chunk: whole blocks, 512 bytes of stack */


/* rows [lo, hi) a chunk at a time: each chunk's multipliers, then gemv_q4_rvv_iBITS from the chunk's first block */
#define GEMV_Q4_TOK_RVV_BODY(BITS, OUT)                                                                            \
    const uint32_t m = (uint32_t)shift[0];                                                                        \
    int32_t s = shift[1], drop = 0;                                                                               \
    const int32_t block_bytes = (n_in + group - 1) / group * (GEMV_RVV_ROWS + (group + 7) / 8 * 4 * GEMV_RVV_ROWS); \
    int32_t m2[GEMV_Q4_TOK_RVV_ROWS];                                                                             \
    uint8_t sh;                                                                                                   \
    if (s > 62) drop = s - 62, s = 62; /* a token of tiny values: give up the multipliers' low bits */            \
    sh = (uint8_t)s;                                                                                              \
    (void)n_out;                                                                                                  \
    for (int32_t o = lo; o < hi;) {                                                                              \
        const int32_t b0 = o - o % GEMV_RVV_ROWS, lane = o - b0;                                                  \
        const int32_t end = hi < b0 + GEMV_Q4_TOK_RVV_ROWS ? hi : b0 + GEMV_Q4_TOK_RVV_ROWS;                      \
        gemv_rvv_tok_mults(m2 + lane, mult + o, m, drop, end - o);                                                \
        gemv_q4_rvv_i##BITS((OUT *)y + b0, x, w + b0 / GEMV_RVV_ROWS * block_bytes, m2, &sh, n_in, end - b0,     \
                            group, lane, end - b0);                                                               \
        o = end;                                                                                                  \
    }

void gemv_q4_tok_rvv_i8(int8_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const int32_t *shift,
                        int32_t n_in, int32_t n_out, int32_t group, int32_t lo, int32_t hi)
{
    GEMV_Q4_TOK_RVV_BODY(8, int8_t)
}

void gemv_q4_tok_rvv_i16(int16_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const int32_t *shift,
                         int32_t n_in, int32_t n_out, int32_t group, int32_t lo, int32_t hi)
{
    GEMV_Q4_TOK_RVV_BODY(16, int16_t)
}

void gemv_q4_tok_rvv_i32(int32_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const int32_t *shift,
                         int32_t n_in, int32_t n_out, int32_t group, int32_t lo, int32_t hi)
{
    GEMV_Q4_TOK_RVV_BODY(32, int32_t)
}
