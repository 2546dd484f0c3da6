/* gemv.c: int8 matrix-vector product with per-row requantization over row-blocked weights.
 *
 * Layout, and why it is fast: W [n_out, n_in] is stored in blocks of R = 8 output rows, column by column,
 * wb[b][i][r] = W[b*R + r][i] (deeploy_dsl/layout.py; the last block is padded with zero rows). One pass
 * over x then computes the dot products of TWO blocks (2R = 16 rows) at once: x[i] is loaded once per pass
 * and multiplied into 16 int32 accumulators that stay in registers, and the R weights of column i of a block
 * are R adjacent bytes, so the column loop unrolled by U = 8 is 8 x-loads + 128 weight loads at immediate
 * offsets from two pointers (the second block starts n_in*R bytes after the first), 128 mul, 128 add and
 * 4 instructions of loop control: 396 RV32 instructions per 128 MACs (3.09; one block per pass, as an odd
 * last block is done, takes 203 per 64, 3.17; linear.c's row-by-row dot products ~7.6).
 * Each row then pays 14 instructions of requantization (requant_sat: 12 for int32 results, ~20 for shifts
 * below 33), i.e. 0.22 per MAC for n_in = 64. Measured on RV32IMAC -O2 (bench/gemv_rv32.py): 3.41 instructions
 * per MAC for 64x64 -> int8 with the call's overheads, 3.25 for 64x172 -> int16 (before: 3.52 and 3.34). The price
 * is code: the 16 + 8 requantizations are unrolled per kernel, ~23 KB of RV32 text for the three (was 7.7 KB).
 */
#include "gemv.h"

#include "deeploy_kernels.h"

#define R GEMV_ROWS_PER_BLOCK
#define U 8 /* columns per iteration of the main loop */

#if R != 8
#error "block_dot and block_dot2 are written out for 8 accumulators per block"
#endif

#if defined(__GNUC__) && !defined(__clang__)
/* gcc's pre-register-allocation scheduler otherwise hoists the loads of the unrolled body to its top, runs out
 * of registers and spills (RV32 -O2: 5.3 instead of 3.5 instructions per MAC): scheduling that watches register
 * pressure keeps the body as written (the same as -fsched-pressure). The two-block body needs 22 of the 27
 * allocatable registers, which gcc's default allocator still misses by a few (spills in the loop, 3.16 instead of
 * 3.09 per MAC); its priority-based allocator (-fira-algorithm=priority) keeps all of them in registers. */
#pragma GCC optimize("sched-pressure", "ira-algorithm=priority")
#define GEMV_UNROLL _Pragma("GCC unroll 16")
#else
#define GEMV_UNROLL
#endif
#if defined(__GNUC__)
#define GEMV_INLINE static inline __attribute__((always_inline))
#define GEMV_LIKELY(c) __builtin_expect(!!(c), 1)
#define GEMV_NOINLINE static __attribute__((noinline))
#else
#define GEMV_INLINE static inline
#define GEMV_LIKELY(c) (c)
#define GEMV_NOINLINE static
#endif

/* a_r += v * c[r] for the R rows of one column c [R] of a block, accumulators a0 .. a7 */
#define MAC_COLUMN(a, v, c)                                                                     \
    do {                                                                                        \
        const int32_t v_ = (v);                                                                 \
        const int8_t *c_ = (c);                                                                 \
        a##0 += v_ * c_[0], a##1 += v_ * c_[1], a##2 += v_ * c_[2], a##3 += v_ * c_[3];         \
        a##4 += v_ * c_[4], a##5 += v_ * c_[5], a##6 += v_ * c_[6], a##7 += v_ * c_[7];         \
    } while (0)
/* the same for the 2R rows of two blocks: column c [R] of the first (a0 .. a7), d [R] of the second (b0 .. b7) */
#define MAC_COLUMN2(v, c, d)                                                                    \
    do {                                                                                        \
        const int32_t u_ = (v);                                                                 \
        MAC_COLUMN(a, u_, c);                                                                   \
        MAC_COLUMN(b, u_, d);                                                                   \
    } while (0)
#define ZERO_ACC(a) int32_t a##0 = 0, a##1 = 0, a##2 = 0, a##3 = 0, a##4 = 0, a##5 = 0, a##6 = 0, a##7 = 0
#define SAVE_ACC(acc, a)                                                                        \
    (acc)[0] = a##0, (acc)[1] = a##1, (acc)[2] = a##2, (acc)[3] = a##3, (acc)[4] = a##4,       \
    (acc)[5] = a##5, (acc)[6] = a##6, (acc)[7] = a##7

/* acc[r] = sum_i w[i][r] * x[i], the R dot products of one block; |acc| <= n_in * 2^14 fits for n_in < 2^17 */
GEMV_INLINE void block_dot(int32_t acc[R], const int8_t *x /* [n_in] */, const int8_t *w /* [n_in, R] */,
                           int32_t n_in) {
    ZERO_ACC(a);
    const int8_t *x_main = x + (n_in - n_in % U), *x_end = x + n_in;
    for (; x != x_main; x += U, w += U * R) {
        MAC_COLUMN(a, x[0], w);
        MAC_COLUMN(a, x[1], w + R);
        MAC_COLUMN(a, x[2], w + 2 * R);
        MAC_COLUMN(a, x[3], w + 3 * R);
        MAC_COLUMN(a, x[4], w + 4 * R);
        MAC_COLUMN(a, x[5], w + 5 * R);
        MAC_COLUMN(a, x[6], w + 6 * R);
        MAC_COLUMN(a, x[7], w + 7 * R);
    }
    for (; x != x_end; x++, w += R) MAC_COLUMN(a, x[0], w);
    SAVE_ACC(acc, a);
}

/* the same for two blocks w and v in one pass over x: acc[0 .. R) from w, acc[R .. 2R) from v; 22 live registers */
GEMV_INLINE void block_dot2(int32_t acc[2 * R], const int8_t *x /* [n_in] */, const int8_t *w /* [n_in, R] */,
                            const int8_t *v /* [n_in, R] */, int32_t n_in) {
    ZERO_ACC(a);
    ZERO_ACC(b);
    const int8_t *x_main = x + (n_in - n_in % U), *x_end = x + n_in;
    for (; x != x_main; x += U, w += U * R, v += U * R) {
        MAC_COLUMN2(x[0], w, v);
        MAC_COLUMN2(x[1], w + R, v + R);
        MAC_COLUMN2(x[2], w + 2 * R, v + 2 * R);
        MAC_COLUMN2(x[3], w + 3 * R, v + 3 * R);
        MAC_COLUMN2(x[4], w + 4 * R, v + 4 * R);
        MAC_COLUMN2(x[5], w + 5 * R, v + 5 * R);
        MAC_COLUMN2(x[6], w + 6 * R, v + 6 * R);
        MAC_COLUMN2(x[7], w + 7 * R, v + 7 * R);
    }
    for (; x != x_end; x++, w += R, v += R) MAC_COLUMN2(x[0], w, v);
    SAVE_ACC(acc, a);
    SAVE_ACC(acc + R, b);
}

/* clamp(round(acc * mult / 2^shift), lo, hi) by the definition (dpl_requant, 64-bit) */
GEMV_NOINLINE int32_t requant_slow(int32_t acc, int32_t mult, int32_t shift, int32_t lo, int32_t hi) {
    int64_t v = dpl_requant(acc, mult, shift);
    return v < lo ? lo : v > hi ? hi : (int32_t)v;
}

/* clamp(round(acc * mult / 2^(33 + t)), lo, hi) for t >= 0. The definition is q = floor((p - (p<0) + 2^(s-1)) / 2^s),
 * p = acc * mult, s = 33 + t: as 2^(s-1) is a multiple of 2^32, q only needs the high word h = floor((p - (p<0)) / 2^32):
 * q = floor((h + 2^t) / 2^(t+1)) = ((h >> t) + 1) >> 1. h is the high word of p (mulh) unless the low word of p is 0
 * (rare; a branch), where p - (p<0) borrows from the high word when p < 0. For an int8/int16 result, one test
 * (is q its own sign extension?) finds an out-of-range q. |p| <= 2^62, so |h| <= 2^30 and h + 1 cannot overflow. */
GEMV_INLINE int32_t requant_high(int32_t acc, int32_t mult, int32_t t, int bits, int32_t lo, int32_t hi) {
    const int64_t p = (int64_t)acc * mult;
    int32_t h = (int32_t)(p >> 32), q;
    if ((uint32_t)p == 0) h += h >> 31; /* p = h * 2^32: p - 1 borrows when p < 0 */
    q = ((h >> t) + 1) >> 1;
    if (bits < 32 && (int32_t)((uint32_t)q << (32 - bits)) >> (32 - bits) != q) /* q is outside [lo, hi] */
        q = q < 0 ? lo : hi;
    return q;
}

/* clamp(round(acc * mult / 2^shift), lo, hi), the same integers as requant_slow in 14 RV32 instructions for shift >= 33
 * (with the loads and the store; ~45 by the definition). A smaller shift becomes 33 by scaling acc by 2^(33-shift)
 * when that fits 32 bits (same rational, same rounding; ~7 more instructions); otherwise, and for shift < 3, the 64-bit
 * definition is used. Any int32 mult. */
GEMV_INLINE int32_t requant_sat(int32_t acc, int32_t mult, int32_t shift, int bits, int32_t lo, int32_t hi) {
    const int32_t t = shift - 33;
    if (GEMV_LIKELY(t >= 0)) return requant_high(acc, mult, t, bits, lo, hi);
    if (t >= -30) {
        const int32_t k = -t, scaled = (int32_t)((uint32_t)acc << k);
        if (scaled >> k == acc) return requant_high(scaled, mult, 0, bits, lo, hi);
    }
    return requant_slow(acc, mult, shift, lo, hi);
}

/* y[r] = v as int8/int16/int32 (bits is a constant after inlining) */
GEMV_INLINE void store(void *y, int32_t r, int32_t v, int bits) {
    if (bits == 8)
        ((int8_t *)y)[r] = (int8_t)v;
    else if (bits == 16)
        ((int16_t *)y)[r] = (int16_t)v;
    else
        ((int32_t *)y)[r] = v;
}

/* y[r] = requant(acc[r], mult[r], shift[r]) for the first `rows` of the n rows of acc (n = R or 2R, a constant):
 * all n unrolled when rows >= n, so that acc stays in registers and every access has a constant offset; otherwise
 * (the last block, partial) a loop over a copy of acc (copying leaves acc[] indexed by constants only) */
GEMV_INLINE void requant_rows(void *y, int bits, int32_t lo, int32_t hi, const int32_t *acc, int32_t n,
                              const int32_t *mult, const uint8_t *shift, int32_t rows) {
    if (rows >= n) {
        GEMV_UNROLL
        for (int32_t r = 0; r < n; r++) store(y, r, requant_sat(acc[r], mult[r], shift[r], bits, lo, hi), bits);
    } else {
        int32_t tail[2 * R];
        GEMV_UNROLL
        for (int32_t r = 0; r < n; r++) tail[r] = acc[r];
        for (int32_t r = 0; r < rows; r++) store(y, r, requant_sat(tail[r], mult[r], shift[r], bits, lo, hi), bits);
    }
}

/* y[o] = clamp(round(sum_i W[o,i]*x[i] * mult[o] / 2^shift[o]), lo, hi): two blocks (2R rows) per pass over x
 * while more than one block is left, then the last block alone */
GEMV_INLINE void gemv(void *y /* [n_out] of bits */, int bits, int32_t lo, int32_t hi, const int8_t *x /* [n_in] */,
                      const int8_t *wb /* [ceil(n_out/R), n_in, R] */, const int32_t *mult /* [n_out] */,
                      const uint8_t *shift /* [n_out] */, int32_t n_in, int32_t n_out) {
    const int32_t block = n_in * R; /* bytes of one block */
    const int32_t size = bits / 8;    /* bytes of one y */
    int32_t o = 0;
    for (; n_out - o > R; o += 2 * R, wb += 2 * block) {
        int32_t acc[2 * R];
        block_dot2(acc, x, wb, wb + block, n_in);
        requant_rows((char *)y + o * size, bits, lo, hi, acc, 2 * R, mult + o, shift + o, n_out - o);
    }
    if (o < n_out) {
        int32_t acc[R];
        block_dot(acc, x, wb, n_in);
        requant_rows((char *)y + o * size, bits, lo, hi, acc, R, mult + o, shift + o, n_out - o);
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
