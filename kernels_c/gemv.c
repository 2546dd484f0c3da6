/* gemv.c: int8 matrix-vector product with per-row requantization over row-blocked weights.
 *
 * Layout, and why it is fast: W [n_out, n_in] is stored in blocks of R = 8 output rows, column by column,
 * wb[b][i][r] = W[b*R + r][i] (deeploy_dsl/layout.py; the last block is padded with zero rows). One pass
 * over x per block then computes R dot products at once: x[i] is loaded once per block and multiplied into
 * R int32 accumulators that stay in registers, and the R weights of column i are R adjacent bytes, so the
 * column loop unrolled by U = 8 is 8 x-loads + 64 weight loads at immediate offsets from two pointers,
 * 64 mul, 64 add and 3 instructions of loop control: 203 RV32 instructions per 64 MACs (~3.2, against ~7.6
 * for the row-by-row dot products of linear.c, which reload x for every row and pay loop control per MAC).
 */
#include "gemv.h"

#include "deeploy_kernels.h"

#define R GEMV_ROWS_PER_BLOCK
#define U 8 /* columns per iteration of the main loop */

#if R != 8
#error "block_dot is written out for 8 accumulators"
#endif

#if defined(__GNUC__) && !defined(__clang__)
/* gcc's pre-register-allocation scheduler otherwise hoists all 72 loads of the unrolled body to its top,
 * runs out of registers and spills (RV32 -O2: 5.3 instead of 3.5 instructions per MAC). Scheduling that
 * watches register pressure keeps the body as written; the same as compiling with -fsched-pressure. */
#pragma GCC optimize("sched-pressure")
#define GEMV_UNROLL _Pragma("GCC unroll 8")
#else
#define GEMV_UNROLL
#endif
#if defined(__GNUC__)
#define GEMV_INLINE static inline __attribute__((always_inline))
#define GEMV_NOINLINE static __attribute__((noinline))
#else
#define GEMV_INLINE static inline
#define GEMV_NOINLINE static
#endif

/* a_r += v * c[r] for the R rows of one column c [R] of a block */
#define MAC_COLUMN(v, c)                                                                        \
    do {                                                                                        \
        const int32_t v_ = (v);                                                                 \
        const int8_t *c_ = (c);                                                                 \
        a0 += v_ * c_[0], a1 += v_ * c_[1], a2 += v_ * c_[2], a3 += v_ * c_[3];                 \
        a4 += v_ * c_[4], a5 += v_ * c_[5], a6 += v_ * c_[6], a7 += v_ * c_[7];                 \
    } while (0)

/* acc[r] = sum_i w[i][r] * x[i], the R dot products of one block; |acc| <= n_in * 2^14 fits for n_in < 2^17 */
GEMV_INLINE void block_dot(int32_t acc[R], const int8_t *x /* [n_in] */, const int8_t *w /* [n_in, R] */,
                           int32_t n_in) {
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    const int8_t *x_main = x + (n_in - n_in % U), *x_end = x + n_in;
    for (; x != x_main; x += U, w += U * R) {
        MAC_COLUMN(x[0], w);
        MAC_COLUMN(x[1], w + R);
        MAC_COLUMN(x[2], w + 2 * R);
        MAC_COLUMN(x[3], w + 3 * R);
        MAC_COLUMN(x[4], w + 4 * R);
        MAC_COLUMN(x[5], w + 5 * R);
        MAC_COLUMN(x[6], w + 6 * R);
        MAC_COLUMN(x[7], w + 7 * R);
    }
    for (; x != x_end; x++, w += R) MAC_COLUMN(x[0], w);
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3, acc[4] = a4, acc[5] = a5, acc[6] = a6, acc[7] = a7;
}

/* clamp(round(acc * mult / 2^shift), lo, hi) by the definition (dpl_requant, 64-bit) */
GEMV_NOINLINE int32_t requant_slow(int32_t acc, int32_t mult, int32_t shift, int32_t lo, int32_t hi) {
    int64_t v = dpl_requant(acc, mult, shift);
    return v < lo ? lo : v > hi ? hi : (int32_t)v;
}

/* clamp(round(acc * mult / 2^shift), lo, hi), the same integers as requant_slow in ~17 RV32 instructions (not ~45).
 * For shift >= 33, 2^(shift-1) is a multiple of 2^32, so round(p / 2^shift) = floor((p - (p<0) + 2^(shift-1)) /
 * 2^shift) only needs the high word h = floor((p - (p<0)) / 2^32): with t = shift - 32 it is
 * floor((h + 2^(t-1)) / 2^t) = ((h >> (t-1)) + 1) >> 1. A smaller shift becomes 33 by scaling acc by 2^(33-shift) when that fits 32 bits
 * (same rational, same rounding); otherwise, and for shift < 3, the 64-bit definition is used. */
GEMV_INLINE int32_t requant_sat(int32_t acc, int32_t mult, int32_t shift, int32_t lo, int32_t hi) {
    int32_t k = 33 - shift;
    if (k > 0) {
        int32_t scaled;
        if (k > 30) return requant_slow(acc, mult, shift, lo, hi);
        scaled = (int32_t)((uint32_t)acc << k);
        if (scaled >> k != acc) return requant_slow(acc, mult, shift, lo, hi);
        acc = scaled;
        k = 0;
    }
    {
        const int64_t p = (int64_t)acc * mult;
        const int32_t h = (int32_t)((p - (p < 0)) >> 32);
        const int32_t q = ((h >> -k) + 1) >> 1;
        return q < lo ? lo : q > hi ? hi : q;
    }
}

/* y[o] = v as int8/int16/int32 (bits is a constant after inlining) */
GEMV_INLINE void store(void *y, int32_t o, int32_t v, int bits) {
    if (bits == 8)
        ((int8_t *)y)[o] = (int8_t)v;
    else if (bits == 16)
        ((int16_t *)y)[o] = (int16_t)v;
    else
        ((int32_t *)y)[o] = v;
}

/* y[o] = clamp(round(sum_i W[o,i]*x[i] * mult[o] / 2^shift[o]), lo, hi), one block of R rows at a time */
GEMV_INLINE void gemv(void *y /* [n_out] of bits */, int bits, int32_t lo, int32_t hi, const int8_t *x /* [n_in] */,
                      const int8_t *wb /* [ceil(n_out/R), n_in, R] */, const int32_t *mult /* [n_out] */,
                      const uint8_t *shift /* [n_out] */, int32_t n_in, int32_t n_out) {
    for (int32_t o = 0; o < n_out; o += R, wb += n_in * R) {
        int32_t acc[R];
        block_dot(acc, x, wb, n_in);
        if (n_out - o >= R) { /* a full block, unrolled so that acc stays in registers */
            GEMV_UNROLL
            for (int32_t r = 0; r < R; r++)
                store(y, o + r, requant_sat(acc[r], mult[o + r], shift[o + r], lo, hi), bits);
        } else { /* the last block: only its real rows (copying to tail[] leaves acc[] indexed by constants only,
                  * so that it stays in registers above) */
            int32_t tail[R];
            GEMV_UNROLL
            for (int32_t r = 0; r < R; r++) tail[r] = acc[r];
            for (int32_t r = 0; r < n_out - o; r++)
                store(y, o + r, requant_sat(tail[r], mult[o + r], shift[o + r], lo, hi), bits);
        }
    }
}

void gemv_i8(int8_t *y, const int8_t *x, const int8_t *wb, const int32_t *mult, const uint8_t *shift, int32_t n_in,
             int32_t n_out) {
    gemv(y, 8, INT8_MIN, INT8_MAX, x, wb, mult, shift, n_in, n_out);
}

void gemv_i16(int16_t *y, const int8_t *x, const int8_t *wb, const int32_t *mult, const uint8_t *shift, int32_t n_in,
              int32_t n_out) {
    gemv(y, 16, INT16_MIN, INT16_MAX, x, wb, mult, shift, n_in, n_out);
}

void gemv_i32(int32_t *y, const int8_t *x, const int8_t *wb, const int32_t *mult, const uint8_t *shift, int32_t n_in,
              int32_t n_out) {
    gemv(y, 32, INT32_MIN, INT32_MAX, x, wb, mult, shift, n_in, n_out);
}
