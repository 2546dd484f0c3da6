/* rope_rvv.c: rope_i8, rope_i16 and rope_q12 (rope.c) on the vector unit (Zve32x), the same integers: per head, vl
 * pairs at a time split into x0 and x1 by a segment load (vlseg2) (or, with at least as many heads as a head's pairs,
 * pair i of every head at once by strided segment loads, c and s scalars), widened to 32 bits with the Q14 cos/sin rows, the
 * two products by vmul + vnmsac / vmacc, rope.c's round_q14 ((v + (v >> 31) + 2^13) >> 14), the clamp, narrowed and
 * interleaved back by a segment store. Without the vector unit (a host build) the scalar kernels run. */
#include "rope_rvv.h"

#include "deeploy_kernels.h"

#if defined(__riscv_vector) || defined(__riscv_zve32x)
/* from x0 and x1 as int16 in v4..v5 and v6..v7 (e16 m2, the caller's loads) and the rows' c, s: y0 and y1 rounded,
 * clamped to [lo, hi] and narrowed back into v4..v5 and v6..v7 (e16 m2) */
#define ROPE_RVV_CORE                                                                                               \
    "vsetvli zero, %0, e16, m2, ta, ma\n\tvle16.v v8, (%2)\n\tvle16.v v10, (%3)\n\t"                                \
    "vsetvli zero, %0, e32, m4, ta, ma\n\tvsext.vf2 v12, v4\n\tvsext.vf2 v16, v6\n\t"                               \
    "vsext.vf2 v20, v8\n\tvsext.vf2 v24, v10\n\t"                                                                   \
    "vmul.vv v28, v12, v20\n\tvnmsac.vv v28, v16, v24\n\tvmul.vv v12, v12, v24\n\tvmacc.vv v12, v16, v20\n\t"       \
    "vsra.vi v16, v28, 31\n\tvadd.vv v28, v28, v16\n\tvadd.vx v28, v28, %5\n\tvsra.vi v28, v28, 14\n\t"             \
    "vsra.vi v16, v12, 31\n\tvadd.vv v12, v12, v16\n\tvadd.vx v12, v12, %5\n\tvsra.vi v12, v12, 14\n\t"             \
    "vmax.vx v28, v28, %6\n\tvmin.vx v28, v28, %7\n\tvmax.vx v12, v12, %6\n\tvmin.vx v12, v12, %7\n\t"             \
    "vsetvli zero, %0, e16, m2, ta, ma\n\tvnsra.wi v4, v28, 0\n\tvnsra.wi v6, v12, 0\n\t"

/* the same with pair i of vl heads in the lanes (x0, x1 by strided segment loads) and c, s scalars (%2, %3) */
#define ROPE_RVV_CORE_X                                                                                             \
    "vsetvli zero, %0, e32, m4, ta, ma\n\tvsext.vf2 v12, v4\n\tvsext.vf2 v16, v6\n\t"                               \
    "vmul.vx v28, v12, %2\n\tvnmsac.vx v28, %3, v16\n\tvmul.vx v12, v12, %3\n\tvmacc.vx v12, %2, v16\n\t"           \
    "vsra.vi v16, v28, 31\n\tvadd.vv v28, v28, v16\n\tvadd.vx v28, v28, %5\n\tvsra.vi v28, v28, 14\n\t"             \
    "vsra.vi v16, v12, 31\n\tvadd.vv v12, v12, v16\n\tvadd.vx v12, v12, %5\n\tvsra.vi v12, v12, 14\n\t"             \
    "vmax.vx v28, v28, %6\n\tvmin.vx v28, v28, %7\n\tvmax.vx v12, v12, %6\n\tvmin.vx v12, v12, %7\n\t"             \
    "vsetvli zero, %0, e16, m2, ta, ma\n\tvnsra.wi v4, v28, 0\n\tvnsra.wi v6, v12, 0\n\t"

/* several heads: pair i of every head at once, the heads across the lanes (strided by head_size elements) */
static void rope_heads16(int16_t *y, const int16_t *x, const int16_t *cos_row, const int16_t *sin_row, int32_t heads,
                         int32_t head_size, int32_t lo, int32_t hi) {
    const int32_t stride = head_size * (int32_t)sizeof(int16_t);
    for (int32_t i = 0; i < head_size / 2; i++) {
        for (int32_t h = 0; h < heads;) {
            int32_t vl;
            __asm__ volatile("vsetvli %0, %1, e16, m2, ta, ma\n\tvlsseg2e16.v v4, (%4), %9\n\t" ROPE_RVV_CORE_X
                             "vssseg2e16.v v4, (%8), %9"
                             : "=&r"(vl)
                             : "r"(heads - h), "r"((int32_t)cos_row[i]), "r"((int32_t)sin_row[i]),
                               "r"(x + h * head_size + 2 * i), "r"(1 << 13), "r"(lo), "r"(hi),
                               "r"(y + h * head_size + 2 * i), "r"(stride)
                             : "memory");
            h += vl;
        }
    }
}

/* one head's pairs [0, head_size/2) of int16 values x, clamped to [lo, hi] */
static void rope_head16(int16_t *y, const int16_t *x, const int16_t *cos_row, const int16_t *sin_row, int32_t pairs,
                        int32_t lo, int32_t hi) {
    for (int32_t i = 0; i < pairs;) {
        int32_t vl;
        __asm__ volatile("vsetvli %0, %1, e16, m2, ta, ma\n\tvlseg2e16.v v4, (%4)\n\t" ROPE_RVV_CORE
                         "vsseg2e16.v v4, (%8)"
                         : "=&r"(vl)
                         : "r"(pairs - i), "r"(cos_row + i), "r"(sin_row + i), "r"(x + 2 * i), "r"(1 << 13), "r"(lo),
                           "r"(hi), "r"(y + 2 * i)
                         : "memory");
        i += vl;
    }
}

/* heads across the lanes when there are at least as many as a head's pairs (fewer passes), else pairs across them */
static void rope16_rvv(int16_t *y, const int16_t *x, const int16_t *cos_row, const int16_t *sin_row, int32_t n,
                       int32_t head_size, int32_t lo, int32_t hi) {
    if (n / head_size >= head_size / 2 && n > head_size) {
        rope_heads16(y, x, cos_row, sin_row, n / head_size, head_size, lo, hi);
        return;
    }
    for (int32_t h = 0; h < n; h += head_size) rope_head16(y + h, x + h, cos_row, sin_row, head_size / 2, lo, hi);
}

void rope_i16_rvv(int16_t *y, const int16_t *x, const int16_t *cos_row, const int16_t *sin_row, int32_t n,
                  int32_t head_size) {
    rope16_rvv(y, x, cos_row, sin_row, n, head_size, INT16_MIN, INT16_MAX);
}

void rope_q12_rvv(int16_t *y, const int16_t *x, const int16_t *cos_row, const int16_t *sin_row, int32_t n,
                  int32_t head_size) {
    rope16_rvv(y, x, cos_row, sin_row, n, head_size, -2047, 2047);
}

void rope_i8_rvv(int8_t *y, const int8_t *x, const int16_t *cos_row, const int16_t *sin_row, int32_t n,
                 int32_t head_size) {
    const int32_t pairs = head_size / 2, heads = n / head_size;
    if (heads >= pairs && heads > 1) { /* as rope16_rvv: pair i of every head at once */
        for (int32_t i = 0; i < pairs; i++) {
            for (int32_t h = 0; h < heads;) {
                int32_t vl;
                __asm__ volatile("vsetvli %0, %1, e8, m1, ta, ma\n\tvlsseg2e8.v v2, (%4), %9\n\t"
                                 "vsetvli zero, %0, e16, m2, ta, ma\n\tvsext.vf2 v4, v2\n\tvsext.vf2 v6, v3\n\t"
                                 ROPE_RVV_CORE_X
                                 "vsetvli zero, %0, e8, m1, ta, ma\n\tvnsra.wi v2, v4, 0\n\tvnsra.wi v3, v6, 0\n\t"
                                 "vssseg2e8.v v2, (%8), %9"
                                 : "=&r"(vl)
                                 : "r"(heads - h), "r"((int32_t)cos_row[i]), "r"((int32_t)sin_row[i]),
                                   "r"(x + h * head_size + 2 * i), "r"(1 << 13), "r"(INT8_MIN), "r"(INT8_MAX),
                                   "r"(y + h * head_size + 2 * i), "r"(head_size)
                                 : "memory");
                h += vl;
            }
        }
        return;
    }
    for (int32_t h = 0; h < n; h += head_size) {
        for (int32_t i = 0; i < pairs;) {
            int32_t vl;
            __asm__ volatile("vsetvli %0, %1, e8, m1, ta, ma\n\tvlseg2e8.v v2, (%4)\n\t"
                             "vsetvli zero, %0, e16, m2, ta, ma\n\tvsext.vf2 v4, v2\n\tvsext.vf2 v6, v3\n\t" ROPE_RVV_CORE
                             "vsetvli zero, %0, e8, m1, ta, ma\n\tvnsra.wi v2, v4, 0\n\tvnsra.wi v3, v6, 0\n\t"
                             "vsseg2e8.v v2, (%8)"
                             : "=&r"(vl)
                             : "r"(pairs - i), "r"(cos_row + i), "r"(sin_row + i), "r"(x + h + 2 * i), "r"(1 << 13),
                               "r"(INT8_MIN), "r"(INT8_MAX), "r"(y + h + 2 * i)
                             : "memory");
            i += vl;
        }
    }
}
#else
void rope_i8_rvv(int8_t *y, const int8_t *x, const int16_t *cos_row, const int16_t *sin_row, int32_t n,
                 int32_t head_size) {
    rope_i8(y, x, cos_row, sin_row, n, head_size);
}

void rope_i16_rvv(int16_t *y, const int16_t *x, const int16_t *cos_row, const int16_t *sin_row, int32_t n,
                  int32_t head_size) {
    rope_i16(y, x, cos_row, sin_row, n, head_size);
}

void rope_q12_rvv(int16_t *y, const int16_t *x, const int16_t *cos_row, const int16_t *sin_row, int32_t n,
                  int32_t head_size) {
    rope_q12(y, x, cos_row, sin_row, n, head_size);
}
#endif
