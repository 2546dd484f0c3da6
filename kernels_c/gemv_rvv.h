/* gemv_rvv.h: the int8 GEMV for Zve32x + Zvqdotq cores (gemv_rvv.c), the same integers as gemv_i8/i16/i32.
 *
 * Weights in the vector layout (deeploy_dsl/kernels/rvv.py: rvv_pack): blocks of GEMV_RVV_ROWS output rows, per quad
 * of 4 input columns the block's rows' 4 weights, wv[b][j][r][k] = W[GEMV_RVV_ROWS*b + r][4j + k], zero padded.
 * y[o] = sat(floor(sum_i W[o,i]*x[i] * mult[o] / 2^shift[0] + 1/2)) for the rows o in [lo, hi) (a core's share; any
 * bounds within [0, n_out)); n_in < 2^17, 0 <= shift[0] <= 62.
 * The vector form needs VLEN >= 128 (GEMV_RVV_ROWS e32 lanes at LMUL 8).
 */
#ifndef DEEPLOY_GEMV_RVV_H
#define DEEPLOY_GEMV_RVV_H

#include <stdint.h>

#include "gemv.h"

#define GEMV_RVV_ROWS 32 /* must equal deeploy_dsl.kernels.rvv.RVV_ROWS */

void gemv_rvv_i8(int8_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* wv */,
                 const int32_t *mult /* [n_out] */, const uint8_t *shift /* [n_out], shift[0] read */,
                 int32_t n_in, int32_t n_out, int32_t lo, int32_t hi);
void gemv_rvv_i16(int16_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* wv */,
                  const int32_t *mult /* [n_out] */, const uint8_t *shift /* [n_out], shift[0] read */,
                  int32_t n_in, int32_t n_out, int32_t lo, int32_t hi);
void gemv_rvv_i32(int32_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* wv */,
                  const int32_t *mult /* [n_out] */, const uint8_t *shift /* [n_out], shift[0] read */,
                  int32_t n_in, int32_t n_out, int32_t lo, int32_t hi);

/* [lo, hi) of n rows for `core` of `n_cores`, in units of GEMV_RVV_UNIT rows (a share's vector instructions do not
 * depend on its rows within a block): core 0, which also runs forward() (DMA setup, forking), takes none when
 * n_cores >= DPL_RVV_SPARE_FROM and there are at least n_cores - 1 units; the others share them contiguously, the larger shares to the
 * last of them (core 1 has the vector attention's pair of heads: attention_rvv.h) */
#define GEMV_RVV_UNIT 8
#ifndef DPL_RVV_SPARE_FROM
/* from this many cores on, core 0 takes no GEMV rows and no query heads: it runs the one-core steps (norm, RoPE,
 * SwiGLU, residual add: a few vector instructions each) and forks every step (stories260k, busiest hart: 3 cores
 * 32,551 instructions per token spared, 39,963 not; 5 cores 20,685 and 30,738); must equal kernels.rvv.SPARE_FROM */
#define DPL_RVV_SPARE_FROM 3
#endif
static inline void gemv_rvv_share(int32_t n, int32_t core, int32_t n_cores, int32_t *lo, int32_t *hi) {
    const int32_t units = (n + GEMV_RVV_UNIT - 1) / GEMV_RVV_UNIT;
    int32_t base, first_big, u0, u1;
    if (n_cores >= DPL_RVV_SPARE_FROM && units >= n_cores - 1) {
        if (core == 0) {
            *lo = *hi = 0;
            return;
        }
        core -= 1, n_cores -= 1;
    }
    base = units / n_cores, first_big = n_cores - units % n_cores;
    u0 = core * base + (core > first_big ? core - first_big : 0);
    u1 = u0 + base + (core >= first_big ? 1 : 0);
    *lo = u0 * GEMV_RVV_UNIT < n ? u0 * GEMV_RVV_UNIT : n;
    *hi = u1 * GEMV_RVV_UNIT < n ? u1 * GEMV_RVV_UNIT : n;
}

/* m2[r] = floor(mult[r] * m / 2^32) >> drop for rows r in [0, rows) (gemv.h's gemv_tok_mults, GEMV_RVV_ROWS rows
 * a vector instruction): the per-token GEMVs' row multipliers (gemv_tok_rvv.c, gemv_q4_tok_rvv.c) */
static inline void gemv_rvv_tok_mults(int32_t *m2, const int32_t *mult, uint32_t m, int32_t drop, int32_t rows)
{
#if defined(__riscv_vector) || defined(__riscv_zve32x)
    for (int32_t r = 0; r < rows;) {
        const int32_t n = rows - r < GEMV_RVV_ROWS ? rows - r : GEMV_RVV_ROWS;
        __asm__ volatile("vsetvli zero, %2, e32, m8, ta, ma\n\tvle32.v v8, (%1)\n\tvmulhu.vx v8, v8, %3\n\t"
                         "vsrl.vx v8, v8, %4\n\tvse32.v v8, (%0)"
                         : : "r"(m2 + r), "r"(mult + r), "r"(n), "r"(m), "r"(drop) : "memory");
        r += n;
    }
#else
    gemv_tok_mults(m2, mult, m, drop, rows);
#endif
}

#endif /* DEEPLOY_GEMV_RVV_H */
