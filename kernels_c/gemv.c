/* gemv.c: int8 matrix-vector product with per-row requantization over row-blocked weights.
 *
 * Layout, and why it is fast: W [n_out, n_in] is stored in blocks of R = 8 output rows, column by column,
 * wb[b][i][r] = W[b*R + r][i] (deeploy_dsl/kernels/layout.py; the last block is padded with zero rows). One pass
 * over x then computes the dot products of TWO blocks (2R = 16 rows) at once: x[i] is loaded once per pass
 * and multiplied into 16 int32 accumulators that stay in registers, and the R weights of column i of a block
 * are R adjacent bytes, so the column loop unrolled by U = 8 is 8 x-loads + 128 weight loads at immediate
 * offsets from two pointers (the second block starts n_in*R bytes after the first), 128 mul, 128 add and
 * 4 instructions of loop control: 396 RV32 instructions per 128 MACs (3.09; one block per pass, as an odd
 * last block is done, takes 203 per 64, 3.17; linear.c's row-by-row dot products ~7.6).
 * Each row then pays the requantization, one shift per call (shift[0], kernels.layer_multipliers) and rounding half
 * up, so that the high word of acc * mult decides it: 8 instructions per row for int8/int16 results, 5 for int32, for
 * shifts >= 33 (most layers); 11 for shifts below (acc scaled up, with a test that it fits). Per-row shifts rounding
 * half away from zero took 14 (~20 below 33). Measured on RV32IMAC -O2 (bench/gemv_rv32.py): 3.27 instructions per
 * MAC for 64x64 -> int8 with the call's overheads, 3.20 for 64x172 -> int16 (per-row shifts: 3.41 and 3.25; row-by-row
 * linear.c 7.6). The price is code: the requantizations are unrolled per kernel and the passes exist once per form,
 * ~22 KB of RV32 text for the three kernels.
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
 * 3.09 per MAC); its priority-based allocator (-fira-algorithm=priority) keeps all of them in registers. Around the
 * loop, the pass's other values (x's bounds, y, mult, the requantization's t and c) do not fit as well: without
 * induction-variable rewriting and final-value replacement gcc carries the loop's own pointers out of it (v is the next
 * pass's w) instead of keeping their start values and rebuilding the ends, ~20 fewer instructions per pass. */
#pragma GCC optimize("sched-pressure", "ira-algorithm=priority", "no-tree-scev-cprop", "no-ivopts")
#define GEMV_UNROLL _Pragma("GCC unroll 16")
/* ... except in the passes of the scaled form (shifts below 33), which keep one more value (k) and where the priority
 * allocator spills an accumulator inside the loop while the default one does not (mlp.down: 3.25 -> 3.22 per MAC),
 * and which are better with gcc's loop rewriting */
#define GEMV_DEFAULT_IRA_BEGIN                                                                                      \
    _Pragma("GCC push_options") _Pragma("GCC optimize(\"ira-algorithm=CB\", \"ivopts\", \"tree-scev-cprop\")")
#define GEMV_DEFAULT_IRA_END _Pragma("GCC pop_options")
#else
#define GEMV_UNROLL
#define GEMV_DEFAULT_IRA_BEGIN
#define GEMV_DEFAULT_IRA_END
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

/* acc[r] = sum_i w[i][r] * x[i], the R dot products of one block: x [n_in] runs from x to x_end, the main loop
 * (n_in >= U) to x_main = x + n_in - n_in % U; |acc| <= n_in * 2^14 fits for n_in < 2^17 */
GEMV_INLINE void block_dot(int32_t acc[R], const int8_t *x, const int8_t *x_main, const int8_t *x_end,
                           const int8_t *w /* [n_in, R] */) {
    ZERO_ACC(a);
    do {
        MAC_COLUMN(a, x[0], w);
        MAC_COLUMN(a, x[1], w + R);
        MAC_COLUMN(a, x[2], w + 2 * R);
        MAC_COLUMN(a, x[3], w + 3 * R);
        MAC_COLUMN(a, x[4], w + 4 * R);
        MAC_COLUMN(a, x[5], w + 5 * R);
        MAC_COLUMN(a, x[6], w + 6 * R);
        MAC_COLUMN(a, x[7], w + 7 * R);
        x += U, w += U * R;
    } while (x != x_main);
    for (; x != x_end; x++, w += R) MAC_COLUMN(a, x[0], w);
    SAVE_ACC(acc, a);
}

/* the same for the first R/2 rows of a block (acc [R/2]): a last block of at most R/2 rows, or (w + R/2) the second
 * half of one; only those R/2 bytes of each column are read */
GEMV_INLINE void block_dot_half(int32_t acc[R / 2], const int8_t *x, const int8_t *x_main, const int8_t *x_end,
                                const int8_t *w /* [n_in, R] */) {
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#define MAC_HALF(v, c)                                                                          \
    do {                                                                                        \
        const int32_t v_ = (v);                                                                 \
        const int8_t *c_ = (c);                                                                 \
        a0 += v_ * c_[0], a1 += v_ * c_[1], a2 += v_ * c_[2], a3 += v_ * c_[3];                 \
    } while (0)
    do {
        MAC_HALF(x[0], w);
        MAC_HALF(x[1], w + R);
        MAC_HALF(x[2], w + 2 * R);
        MAC_HALF(x[3], w + 3 * R);
        MAC_HALF(x[4], w + 4 * R);
        MAC_HALF(x[5], w + 5 * R);
        MAC_HALF(x[6], w + 6 * R);
        MAC_HALF(x[7], w + 7 * R);
        x += U, w += U * R;
    } while (x != x_main);
    for (; x != x_end; x++, w += R) MAC_HALF(x[0], w);
#undef MAC_HALF
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
}

/* the same for two blocks w and v in one pass over x: acc[0 .. R) from w, acc[R .. 2R) from v; 22 live registers.
 * Returns v + n_in * R, the block after v */
GEMV_INLINE const int8_t *block_dot2(int32_t acc[2 * R], const int8_t *x, const int8_t *x_main, const int8_t *x_end,
                                     const int8_t *w /* [n_in, R] */, const int8_t *v /* [n_in, R] */) {
    ZERO_ACC(a);
    ZERO_ACC(b);
    do {
        MAC_COLUMN2(x[0], w, v);
        MAC_COLUMN2(x[1], w + R, v + R);
        MAC_COLUMN2(x[2], w + 2 * R, v + 2 * R);
        MAC_COLUMN2(x[3], w + 3 * R, v + 3 * R);
        MAC_COLUMN2(x[4], w + 4 * R, v + 4 * R);
        MAC_COLUMN2(x[5], w + 5 * R, v + 5 * R);
        MAC_COLUMN2(x[6], w + 6 * R, v + 6 * R);
        MAC_COLUMN2(x[7], w + 7 * R, v + 7 * R);
        x += U, w += U * R, v += U * R;
    } while (x != x_main);
    for (; x != x_end; x++, w += R, v += R) MAC_COLUMN2(x[0], w, v);
    SAVE_ACC(acc, a);
    SAVE_ACC(acc + R, b);
    return v;
}

/* Requantization (kernels.requant_half_up): y[o] = clamp(floor(acc[o] * mult[o] / 2^s + 1/2), lo, hi), rounding half
 * up, with ONE shift s = shift[0] for the whole call (the compiler gives a layer one shift and per-row multipliers,
 * kernels.layer_multipliers; the other shift[] entries are not read).
 *
 * The fast form, for 33 <= s <= 62: with p = acc * m = h * 2^32 + l (h = floor(p / 2^32), the high word of the product,
 * mulh; 0 <= l < 2^32) and 2^(s-1) = c * 2^32, c = 2^(s-33): floor((p + 2^(s-1)) / 2^s) = floor((h + c) / 2^(s-32)).
 * The low word never matters (rounding half away from zero needs to know whether a negative p has a zero low word: a
 * branch), and |p| <= 2^62 gives |h| <= 2^30, so h + c fits and q fits int32 (no clamp for gemv_i32). For any int32
 * acc and m: with its loads and store, 8 RV32 instructions per row for int8/int16 results (one test finds a q outside
 * the range: is it its own sign extension?), 5 for int32. A shift 2 <= s <= 32 becomes 33 by scaling acc by 2^k,
 * k = 33 - s, when acc << k fits 32 bits (the same rational, so the same rounding; 3 more instructions per row with
 * the test); otherwise (and for s < 2) the definition in 64 bits (requant_exact, ~40). */
enum {
    RQ_HIGH,    /* 33 <= s <= 62: q = (mulh(acc, m) + c) >> t, t = s - 32, c = 2^(s-33) */
    RQ_SCALED,  /* 2 <= s <= 32: the same on acc << k (t = 1, c = 1) for rows where it fits, else requant_exact */
    RQ_EXACT    /* s < 2: requant_exact */
};

/* the definition, any int32 acc and mult, 0 <= shift <= 62 (|p| <= 2^62: p + 2^61 fits int64) */
GEMV_NOINLINE int32_t requant_exact(int32_t acc, int32_t mult, int32_t shift, int32_t lo, int32_t hi) {
    int64_t v = (int64_t)acc * mult;
    if (shift > 0) v = (v + ((int64_t)1 << (shift - 1))) >> shift;
    return v < lo ? lo : v > hi ? hi : (int32_t)v;
}

/* *q = the fast form of one row in form `mode` (RQ_HIGH or RQ_SCALED, a constant after inlining); returns 0 if *q is
 * the row's result, 1 if the row needs more: an int8/int16 q outside [lo, hi], or RQ_SCALED's acc << k does not fit */
GEMV_INLINE int requant_fast(int32_t *q, int mode, int32_t acc, int32_t mult, int32_t k, int32_t t, int32_t c,
                             int bits) {
    int32_t a = acc;
    if (mode == RQ_SCALED) {
        a = (int32_t)((uint32_t)acc << k);
        if (a >> k != acc) return 1;
        t = 1, c = 1;
    }
    *q = ((int32_t)(((int64_t)a * mult) >> 32) + c) >> t;
    return bits < 32 && (int32_t)((uint32_t)*q << (32 - bits)) >> (32 - bits) != *q;
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

/* y[r] = requant(acc[r], mult[r]) for r < rows for s < 33, any row: the slow path of RQ_SCALED (partial blocks,
 * saturated rows, acc << k too large) and RQ_EXACT; one copy per output type */
GEMV_INLINE void requant_loop(void *y, int bits, int32_t lo, int32_t hi, const int32_t *acc, const int32_t *mult,
                              int32_t rows, int32_t s) {
    for (int32_t r = 0; r < rows; r++) {
        int32_t q;
        if (s < 2 || requant_fast(&q, RQ_SCALED, acc[r], mult[r], 33 - s, 1, 1, bits))
            q = requant_exact(acc[r], mult[r], s, lo, hi);
        store(y, r, q, bits);
    }
}
GEMV_NOINLINE void requant_loop8(void *y, const int32_t *acc, const int32_t *mult, int32_t rows, int32_t s) {
    requant_loop(y, 8, INT8_MIN, INT8_MAX, acc, mult, rows, s);
}
GEMV_NOINLINE void requant_loop16(void *y, const int32_t *acc, const int32_t *mult, int32_t rows, int32_t s) {
    requant_loop(y, 16, INT16_MIN, INT16_MAX, acc, mult, rows, s);
}
GEMV_NOINLINE void requant_loop32(void *y, const int32_t *acc, const int32_t *mult, int32_t rows, int32_t s) {
    requant_loop(y, 32, INT32_MIN, INT32_MAX, acc, mult, rows, s);
}
/* the same for a constant bits */
GEMV_INLINE void requant_loop_bits(void *y, int bits, const int32_t *acc, const int32_t *mult, int32_t rows,
                                   int32_t s) {
    if (bits == 8)
        requant_loop8(y, acc, mult, rows, s);
    else if (bits == 16)
        requant_loop16(y, acc, mult, rows, s);
    else
        requant_loop32(y, acc, mult, rows, s);
}

/* y[r] = requant(acc[r], mult[r]) for the first `rows` of the n rows of acc (n = R/2, R or 2R, a constant) in form `mode`
 * (RQ_HIGH or RQ_SCALED, a constant). A full block (or pair) is unrolled, every row's test branching out to the slow
 * loop, which then does the whole block again: the unrolled rows are one extended basic block with no value to carry
 * to the exit, so y, mult, t, c stay in registers from row to row (a join after each row's clamp makes gcc reload them
 * at every row), and acc stays in registers, indexed by constants. The slow loop works on a copy of acc. */
GEMV_INLINE void requant_rows(int mode, void *y, int bits, int32_t lo, int32_t hi, const int32_t *acc, int32_t n,
                              const int32_t *mult, int32_t rows, int32_t k, int32_t t, int32_t c) {
    int32_t copy[2 * R];
    if (rows >= n) {
        GEMV_UNROLL
        for (int32_t r = 0; r < n; r++) {
            int32_t q;
            if (requant_fast(&q, mode, acc[r], mult[r], k, t, c, bits)) goto slow;
            store(y, r, q, bits);
        }
        return;
    }
slow:
    GEMV_UNROLL
    for (int32_t i = 0; i < n; i++) copy[i] = acc[i];
    if (rows > n) rows = n;
    if (mode == RQ_HIGH) { /* no call here: values live across a call would leave registers for the whole loop */
        for (int32_t r = 0; r < rows; r++) {
            int32_t q;
            if (requant_fast(&q, RQ_HIGH, copy[r], mult[r], k, t, c, bits)) q = q < 0 ? lo : hi;
            store(y, r, q, bits);
        }
    } else {
        requant_loop_bits(y, bits, copy, mult, rows, 33 - k);
    }
}

/* the passes over x in form `mode`, n_in >= U: two blocks (2R rows) per pass over the whole pairs, each requantized
 * unrolled (no test of the rows left), then the rest of the rows, 1 .. 2R - 1, one block per pass, and a last one of
 * at most R/2 rows half a block (its padding rows are not computed; a call may so start at the second half of a
 * block, w + R/2, for n_out <= R/2, which a share of half blocks does) */
GEMV_INLINE void gemv_passes(int mode, void *y, int bits, int32_t lo, int32_t hi, const int8_t *x, const int8_t *wb,
                             const int32_t *mult, int32_t n_in, int32_t n_out, int32_t k, int32_t t, int32_t c) {
    const int32_t block = n_in * R; /* bytes of one block */
    const int32_t size = bits / 8;    /* bytes of one y */
    const int8_t *const x_main = x + (n_in - n_in % U), *const x_end = x + n_in;
    const int32_t *const mult_pairs = mult + (n_out - n_out % (2 * R));
    while (mult != mult_pairs) {
        int32_t acc[2 * R];
        wb = block_dot2(acc, x, x_main, x_end, wb, wb + block);
        requant_rows(mode, y, bits, lo, hi, acc, 2 * R, mult, 2 * R, k, t, c);
        y = (char *)y + 2 * R * size, mult += 2 * R;
    }
    for (n_out %= 2 * R; n_out > R / 2; n_out -= R, y = (char *)y + R * size, mult += R) {
        int32_t acc[R];
        block_dot(acc, x, x_main, x_end, wb);
        wb += block;
        requant_rows(mode, y, bits, lo, hi, acc, R, mult, n_out, k, t, c);
    }
    if (n_out > 0) {
        int32_t acc[R / 2];
        block_dot_half(acc, x, x_main, x_end, wb);
        requant_rows(mode, y, bits, lo, hi, acc, R / 2, mult, n_out, k, t, c);
    }
}

/* the exact generic path (n_in < U, or s < 2 outside both forms; no deployment has one): one row at a time with
 * requant_exact, small and slow */
GEMV_NOINLINE void gemv_exact(void *y, int bits, const int8_t *x, const int8_t *wb, const int32_t *mult, int32_t n_in,
                              int32_t n_out, int32_t s) {
    const int32_t lo = bits == 8 ? INT8_MIN : bits == 16 ? INT16_MIN : INT32_MIN;
    const int32_t hi = bits == 8 ? INT8_MAX : bits == 16 ? INT16_MAX : INT32_MAX;
    for (int32_t o = 0; o < n_out; o++) {
        const int8_t *w = wb + (o / R) * n_in * R + o % R;
        int32_t acc = 0;
        for (int32_t i = 0; i < n_in; i++) acc += (int32_t)x[i] * w[i * R];
        store(y, o, requant_exact(acc, mult[o], s, lo, hi), bits);
    }
}

/* the passes in the scaled form, one function per output type; int8/int16 compiled with gcc's default allocator */
GEMV_DEFAULT_IRA_BEGIN
GEMV_NOINLINE void gemv_scaled8(void *y, const int8_t *x, const int8_t *wb, const int32_t *mult, int32_t n_in,
                                int32_t n_out, int32_t k) {
    gemv_passes(RQ_SCALED, y, 8, INT8_MIN, INT8_MAX, x, wb, mult, n_in, n_out, k, 1, 1);
}
GEMV_NOINLINE void gemv_scaled16(void *y, const int8_t *x, const int8_t *wb, const int32_t *mult, int32_t n_in,
                                 int32_t n_out, int32_t k) {
    gemv_passes(RQ_SCALED, y, 16, INT16_MIN, INT16_MAX, x, wb, mult, n_in, n_out, k, 1, 1);
}
GEMV_DEFAULT_IRA_END
GEMV_NOINLINE void gemv_scaled32(void *y, const int8_t *x, const int8_t *wb, const int32_t *mult, int32_t n_in,
                                 int32_t n_out, int32_t k) { /* here the priority allocator does better */
    gemv_passes(RQ_SCALED, y, 32, INT32_MIN, INT32_MAX, x, wb, mult, n_in, n_out, k, 1, 1);
}

/* y[o] = clamp(floor(sum_i W[o,i]*x[i] * mult[o] / 2^shift[0] + 1/2)). Each form has its own passes (a copy of the
 * dot products): the usual one (RQ_HIGH) keeps only t and c besides the loop's pointers, as the 16 accumulators leave
 * no room for more (y or mult would be reloaded at every row). */
GEMV_INLINE void gemv(void *y /* [n_out] of bits */, int bits, int32_t lo, int32_t hi, const int8_t *x /* [n_in] */,
                      const int8_t *wb /* [ceil(n_out/R), n_in, R] */, const int32_t *mult /* [n_out] */,
                      const uint8_t *shift /* [n_out], shift[0] used */, int32_t n_in, int32_t n_out) {
    int32_t s;
    if (n_out <= 0) return;
    s = shift[0];
    if (n_in < U)
        gemv_exact(y, bits, x, wb, mult, n_in, n_out, s);
    else if (GEMV_LIKELY(s >= 33)) /* s <= 62 */
        gemv_passes(RQ_HIGH, y, bits, lo, hi, x, wb, mult, n_in, n_out, 0, s - 32, (int32_t)1 << (s - 33));
    else if (s >= 2 && bits == 8)
        gemv_scaled8(y, x, wb, mult, n_in, n_out, 33 - s);
    else if (s >= 2 && bits == 16)
        gemv_scaled16(y, x, wb, mult, n_in, n_out, 33 - s);
    else if (s >= 2)
        gemv_scaled32(y, x, wb, mult, n_in, n_out, 33 - s);
    else
        gemv_exact(y, bits, x, wb, mult, n_in, n_out, s);
}

void gemv_i8(int8_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const uint8_t *shift, int32_t n_in,
             int32_t n_out) {
    gemv(y, 8, INT8_MIN, INT8_MAX, x, w, mult, shift, n_in, n_out);
}

void gemv_i16(int16_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const uint8_t *shift, int32_t n_in,
              int32_t n_out) {
    gemv(y, 16, INT16_MIN, INT16_MAX, x, w, mult, shift, n_in, n_out);
}

void gemv_i32(int32_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const uint8_t *shift, int32_t n_in,
              int32_t n_out) {
    gemv(y, 32, INT32_MIN, INT32_MAX, x, w, mult, shift, n_in, n_out);
}

/* ---- int4 weights with a scale per group of G input channels (deeploy_dsl/kernels/layout.py: q4_pack) --------------------
 * A block of R rows is, group by group, the rows' R group scales e (uint8), then per column R/2 bytes, byte j holding
 * rows 2j and 2j+1 as b = 16 q_hi + (q_lo + 8) (q in [-8, 7]). With b sign-extended and v = x[i]:
 *     b * v = 16 q_hi v + (q_lo + 8) v        (b >> 4) * v = q_hi v
 * so two multiplies and a shift give both rows' products, and over a group, with s = sum x[i]:
 *     row 2j+1: h_j = sum (b >> 4) v          row 2j: a_j - 16 h_j - 8 s, where a_j = sum b v.
 * Per column 1 x load, 1 add to s and 4 x (load, 2 mul, shift, 2 add): 26 RV32 instructions per 8 MACs, about the
 * int8 kernel's rate on half the weight bytes; per group and row one multiply by e. Bounds: |a_j| <= G * 2^14, and
 * |acc| <= 255 * 8 * 128 * n_in < 2^31 for n_in <= 8192 (the compiler checks). */

#if defined(__GNUC__)
/* without it gcc hoists the next columns' loads to the top of the unrolled body and spills (RV32: 4.6 instead of 4.1
 * instructions per MAC): a compiler barrier between columns (a signal fence emits no instruction) */
#define Q4_BARRIER() __atomic_signal_fence(__ATOMIC_SEQ_CST)
#else
#define Q4_BARRIER() ((void)0)
#endif
/* a_j += b_j * v, h_j += (b_j >> 4) * v for the 4 bytes c [R/2] of one column */
#define Q4_COLUMN(v, c)                                                                                            \
    do {                                                                                                           \
        const int32_t v_ = (v);                                                                                    \
        const int8_t *c_ = (c);                                                                                    \
        int32_t b_;                                                                                                \
        s += v_;                                                                                                   \
        b_ = c_[0], a0 += b_ * v_, h0 += (b_ >> 4) * v_;                                                           \
        b_ = c_[1], a1 += b_ * v_, h1 += (b_ >> 4) * v_;                                                           \
        b_ = c_[2], a2 += b_ * v_, h2 += (b_ >> 4) * v_;                                                           \
        b_ = c_[3], a3 += b_ * v_, h3 += (b_ >> 4) * v_;                                                           \
        Q4_BARRIER();                                                                                              \
    } while (0)

/* acc[r] = sum_i q[r][i] * e[r][i / G] * x[i], the R dot products of the q4 block w; returns the block after it */
GEMV_INLINE const int8_t *q4_block_dot(int32_t acc[R], const int8_t *x, int32_t n_in, int32_t group,
                                       const int8_t *w /* one block, q4_pack's layout */) {
    const int8_t *const x_end = x + n_in;
    GEMV_UNROLL
    for (int32_t r = 0; r < R; r++) acc[r] = 0;
    while (x != x_end) {
        const uint8_t *const e = (const uint8_t *)w; /* the rows' scales of this group */
        const int8_t *const g_end = x_end - x < group ? x_end : x + group;
        const int8_t *const g_main = g_end - (g_end - x) % U;
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, h0 = 0, h1 = 0, h2 = 0, h3 = 0, s = 0;
        w += R;
        for (; x != g_main; x += U, w += U * R / 2) {
            Q4_COLUMN(x[0], w);
            Q4_COLUMN(x[1], w + R / 2);
            Q4_COLUMN(x[2], w + 2 * (R / 2));
            Q4_COLUMN(x[3], w + 3 * (R / 2));
            Q4_COLUMN(x[4], w + 4 * (R / 2));
            Q4_COLUMN(x[5], w + 5 * (R / 2));
            Q4_COLUMN(x[6], w + 6 * (R / 2));
            Q4_COLUMN(x[7], w + 7 * (R / 2));
        }
        for (; x != g_end; x++, w += R / 2) Q4_COLUMN(x[0], w);
        s *= 8;
        acc[0] += (int32_t)e[0] * (a0 - h0 * 16 - s), acc[1] += (int32_t)e[1] * h0;
        acc[2] += (int32_t)e[2] * (a1 - h1 * 16 - s), acc[3] += (int32_t)e[3] * h1;
        acc[4] += (int32_t)e[4] * (a2 - h2 * 16 - s), acc[5] += (int32_t)e[5] * h2;
        acc[6] += (int32_t)e[6] * (a3 - h3 * 16 - s), acc[7] += (int32_t)e[7] * h3;
    }
    return w;
}

/* y[o] = clamp(floor(sum_i q[o][i] * e[o][i / G] * x[i] * mult[o] / 2^shift[0] + 1/2)): a block per pass over x, then
 * gemv's requantization in the form the shift allows */
GEMV_INLINE void gemv_q4(void *y, int bits, int32_t lo, int32_t hi, const int8_t *x, const int8_t *wq,
                         const int32_t *mult, const uint8_t *shift, int32_t n_in, int32_t n_out, int32_t group) {
    const int32_t size = bits / 8, s = n_out > 0 ? shift[0] : 0;
    for (; n_out > 0; n_out -= R, y = (char *)y + R * size, mult += R) {
        int32_t acc[R];
        wq = q4_block_dot(acc, x, n_in, group, wq);
        if (GEMV_LIKELY(s >= 33))
            requant_rows(RQ_HIGH, y, bits, lo, hi, acc, R, mult, n_out, 0, s - 32, (int32_t)1 << (s - 33));
        else if (s >= 2)
            requant_rows(RQ_SCALED, y, bits, lo, hi, acc, R, mult, n_out, 33 - s, 1, 1);
        else
            requant_loop_bits(y, bits, acc, mult, n_out < R ? n_out : R, s);
    }
}

void gemv_q4_i8(int8_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const uint8_t *shift, int32_t n_in,
                int32_t n_out, int32_t group) {
    gemv_q4(y, 8, INT8_MIN, INT8_MAX, x, w, mult, shift, n_in, n_out, group);
}

void gemv_q4_i16(int16_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const uint8_t *shift,
                 int32_t n_in, int32_t n_out, int32_t group) {
    gemv_q4(y, 16, INT16_MIN, INT16_MAX, x, w, mult, shift, n_in, n_out, group);
}

void gemv_q4_i32(int32_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const uint8_t *shift,
                 int32_t n_in, int32_t n_out, int32_t group) {
    gemv_q4(y, 32, INT32_MIN, INT32_MAX, x, w, mult, shift, n_in, n_out, group);
}

/* ---- two MACs per multiply: packed pairs of rows (deeploy_dsl/kernels/packed.py) -----------------------------------
 * A block of R rows is its chunk schedule (8 * ceil(n_in / 8) bytes of chunk lengths, zero padded) and per column R/2
 * words P_j = w[2j] + 2^16 w[2j+1]. P_j * x adds both rows' products to one 32-bit accumulator, exact while both partial
 * sums stay in [-2^15, 2^15), which the compiler proved for every chunk of the schedule and any int8 input. A chunk
 * starts its accumulators at 2^15 and ends with h = acc >> 16 into H (row 2j+1's sum) and acc into T, so that row 2j is
 * T - 2^16 H - chunks * 2^15 (mod 2^32). Per column 1 x load, 4 word loads, 4 mul, 4 add for 8 MACs; per chunk the jump
 * into the unrolled columns and 3 instructions per pair. */
#define PK_LMAX GEMV_PK_LMAX
#define PK_HALF 0x8000u
#if defined(__GNUC__)
/* no range test before the switch's jump table (one instruction per chunk) */
#define PK_UNREACHABLE() __builtin_unreachable()
#else
#define PK_UNREACHABLE() ((void)0)
#endif

/* a_j += P_j * x[c] for the R/2 pairs of column c of the chunk (w: the chunk's words) */
#define PK_COL(c)                                                                                                      \
    do {                                                                                                               \
        const uint32_t v_ = (uint32_t)(int32_t)x[c];                                                                   \
        a0 += v_ * (uint32_t)w[4 * (c)], a1 += v_ * (uint32_t)w[4 * (c) + 1];                                          \
        a2 += v_ * (uint32_t)w[4 * (c) + 2], a3 += v_ * (uint32_t)w[4 * (c) + 3];                                      \
    } while (0)
/* the end of a chunk for pair j: h = the high half (row 2j+1's chunk sum), T takes the whole word */
#define PK_TAKE(j) (h##j += (uint32_t)((int32_t)a##j >> 16), t##j += a##j)

#if R / 2 != 4
#error "pk_block_dot is written out for 4 pairs per block"
#endif
#if PK_LMAX != 16
#error "pk_block_dot's switch is written out for chunks of up to 16 columns"
#endif

/* acc[r] = sum_i W[r][i] * x[i] for the R rows of one packed block (sched, then the words) */
GEMV_NOINLINE void pk_block_dot(int32_t acc[R], const int8_t *x, int32_t n_in, const uint8_t *sched) {
    const int32_t *w = (const int32_t *)(const void *)(sched + 8 * ((n_in + 7) / 8));
    const int8_t *const x_end = x + n_in;
    const uint8_t *const s0 = sched;
    uint32_t t0 = 0, t1 = 0, t2 = 0, t3 = 0, h0 = 0, h1 = 0, h2 = 0, h3 = 0;
    while (x != x_end) {
        const int32_t len = *sched++;
        uint32_t a0 = PK_HALF, a1 = PK_HALF, a2 = PK_HALF, a3 = PK_HALF;
        switch (len) { /* into the chunk's columns, last first, falling through to column 0 */
        case 16: PK_COL(15); /* fall through */
        case 15: PK_COL(14); /* fall through */
        case 14: PK_COL(13); /* fall through */
        case 13: PK_COL(12); /* fall through */
        case 12: PK_COL(11); /* fall through */
        case 11: PK_COL(10); /* fall through */
        case 10: PK_COL(9); /* fall through */
        case 9: PK_COL(8); /* fall through */
        case 8: PK_COL(7); /* fall through */
        case 7: PK_COL(6); /* fall through */
        case 6: PK_COL(5); /* fall through */
        case 5: PK_COL(4); /* fall through */
        case 4: PK_COL(3); /* fall through */
        case 3: PK_COL(2); /* fall through */
        case 2: PK_COL(1); /* fall through */
        case 1: PK_COL(0); break;
        default: PK_UNREACHABLE(); /* the compiler writes 1 .. PK_LMAX */
        }
        PK_TAKE(0), PK_TAKE(1), PK_TAKE(2), PK_TAKE(3);
        x += len, w += 4 * len;
    }
    {
        const uint32_t fix = (uint32_t)(sched - s0) * PK_HALF; /* the chunks' 2^15 each */
        acc[0] = (int32_t)(t0 - (h0 << 16) - fix), acc[1] = (int32_t)h0;
        acc[2] = (int32_t)(t1 - (h1 << 16) - fix), acc[3] = (int32_t)h1;
        acc[4] = (int32_t)(t2 - (h2 << 16) - fix), acc[5] = (int32_t)h2;
        acc[6] = (int32_t)(t3 - (h3 << 16) - fix), acc[7] = (int32_t)h3;
    }
}

/* y[o] = clamp(floor(sum_i W[o,i] * x[i] * mult[o] / 2^shift[0] + 1/2)) over packed blocks: a block per pass, then
 * gemv's requantization in the form the shift allows */
GEMV_INLINE void gemv_pk(void *y, int bits, int32_t lo, int32_t hi, const int8_t *x, const int8_t *wp,
                         const int32_t *mult, const uint8_t *shift, int32_t n_in, int32_t n_out) {
    const int32_t size = bits / 8, s = n_out > 0 ? shift[0] : 0;
    const int32_t block = 8 * ((n_in + 7) / 8) + 2 * R * n_in; /* bytes of one packed block */
    for (; n_out > 0; n_out -= R, y = (char *)y + R * size, mult += R, wp += block) {
        int32_t acc[R];
        pk_block_dot(acc, x, n_in, (const uint8_t *)wp);
        if (GEMV_LIKELY(s >= 33))
            requant_rows(RQ_HIGH, y, bits, lo, hi, acc, R, mult, n_out, 0, s - 32, (int32_t)1 << (s - 33));
        else if (s >= 2)
            requant_rows(RQ_SCALED, y, bits, lo, hi, acc, R, mult, n_out, 33 - s, 1, 1);
        else
            requant_loop_bits(y, bits, acc, mult, n_out < R ? n_out : R, s);
    }
}

void gemv_pk_i8(int8_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const uint8_t *shift, int32_t n_in,
                int32_t n_out) {
    gemv_pk(y, 8, INT8_MIN, INT8_MAX, x, w, mult, shift, n_in, n_out);
}

void gemv_pk_i16(int16_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const uint8_t *shift,
                 int32_t n_in, int32_t n_out) {
    gemv_pk(y, 16, INT16_MIN, INT16_MAX, x, w, mult, shift, n_in, n_out);
}

void gemv_pk_i32(int32_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const uint8_t *shift,
                 int32_t n_in, int32_t n_out) {
    gemv_pk(y, 32, INT32_MIN, INT32_MAX, x, w, mult, shift, n_in, n_out);
}
