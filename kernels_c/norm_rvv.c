/* norm_rvv.c: rmsnorm_i8_part (rmsnorm.c) and residual_add_i16 (residual_add.c) on the vector unit (Zve32x), the same
 * integers. RMSNorm: the squares by a widening multiply (int16 x int16 -> int32, each <= 2^30), their low and high 16
 * bits summed by two reductions (no 64-bit lanes in Zve32x; the sums stay below 2^32 for dim < 2^16), then the rms in
 * scalar code as rmsnorm.c, and the share's outputs as rmsnorm.c's norm1: one high multiply (vmulh), the rounding
 * bias, a shift, a clamp and two narrowings. The residual add is one saturating add (vsadd) per vl elements. Without
 * the vector unit (a host build), or outside those bounds, the scalar kernels run. */
#include "norm_rvv.h"

#include "deeploy_kernels.h"

#if defined(__riscv_vector) || defined(__riscv_zve32x)
#define RMS_MIN 256      /* rmsnorm.c's */
#define RMS_INV_SHIFT 39 /* rmsnorm.c's */

/* sum of x[i]^2 over [0, dim) for dim < 2^16: lo16 sums < 2^16 * dim and hi16 sums < 2^14 * dim fit 32 bits */
static uint64_t sum_squares_rvv(const int16_t *x, int32_t dim) {
    uint32_t lo, hi;
    __asm__ volatile("vsetivli zero, 1, e32, m1, ta, ma\n\tvmv.s.x v0, zero\n\tvmv.s.x v1, zero");
    for (int32_t i = 0; i < dim;) {
        int32_t vl;
        __asm__ volatile("vsetvli %0, %1, e16, m4, ta, ma\n\tvle16.v v8, (%2)\n\tvwmul.vv v16, v8, v8\n\t"
                         "vsetvli zero, %0, e32, m8, ta, ma\n\tvsrl.vi v24, v16, 16\n\tvand.vx v16, v16, %3\n\t"
                         "vredsum.vs v0, v16, v0\n\tvredsum.vs v1, v24, v1"
                         : "=&r"(vl) : "r"(dim - i), "r"(x + i), "r"(0xffff) : "memory");
        i += vl;
    }
    __asm__ volatile("vsetivli zero, 1, e32, m1, ta, ma\n\tvmv.x.s %0, v0\n\tvmv.x.s %1, v1" : "=r"(lo), "=r"(hi));
    return ((uint64_t)hi << 16) + lo;
}

/* rmsnorm.c's mean_square_q16: (ss << 16) / dim, a multiply for a power of two dim */
static int64_t mean_square_q16_rvv(uint64_t ss, int32_t dim) {
    if ((dim & (dim - 1)) == 0 && dim <= 65536) return (int64_t)(ss * (uint32_t)(65536 / dim));
    return (int64_t)(ss << 16) / dim;
}

/* rmsnorm.c's inv_rms: floor(2^39 / r) for 256 <= r < 2^24 with 32-bit divisions */
static uint32_t inv_rms_rvv(uint32_t r) {
    uint32_t q = 0x80000000u / r, rem = 0x80000000u % r;
    return (q << 8) + (rem << 8) / r;
}

void rmsnorm_i8_part_rvv(int8_t *y, const int16_t *x, const int32_t *gain, int32_t gain_shift, int64_t eps_q,
                         int32_t dim, int32_t lo, int32_t hi) {
    uint32_t r, inv;
    dpl_rq32 q;
    if (dim >= 65536) { /* the reductions' sums could pass 32 bits */
        rmsnorm_i8_part(y, x, gain, gain_shift, eps_q, dim, lo, hi);
        return;
    }
    r = dpl_isqrt64_fast((uint64_t)(mean_square_q16_rvv(sum_squares_rvv(x, dim), dim) + eps_q));
    if (r < RMS_MIN) r = RMS_MIN;
    inv = r < (1u << 24) ? inv_rms_rvv(r) : (uint32_t)(((int64_t)1 << RMS_INV_SHIFT) / r);
    if (!dpl_rq32_init(&q, inv, RMS_INV_SHIFT - 8 + (int)gain_shift, 30)) { /* no one-multiply form: the 64-bit path */
        rmsnorm_i8_part(y, x, gain, gain_shift, eps_q, dim, lo, hi);
        return;
    }
    for (int32_t i = lo; i < hi;) { /* norm1: sat8((mulh(x * g, m) + bias) >> t) */
        int32_t vl;
        __asm__ volatile("vsetvli %0, %1, e16, m4, ta, ma\n\tvle16.v v8, (%2)\n\t"
                         "vsetvli zero, %0, e32, m8, ta, ma\n\tvsext.vf2 v16, v8\n\tvle32.v v24, (%3)\n\t"
                         "vmul.vv v16, v16, v24\n\tvmulh.vx v16, v16, %5\n\tvadd.vx v16, v16, %6\n\t"
                         "vsra.vx v16, v16, %7\n\tvmax.vx v16, v16, %8\n\tvmin.vx v16, v16, %9\n\t"
                         "vsetvli zero, %0, e16, m4, ta, ma\n\tvnsra.wi v8, v16, 0\n\t"
                         "vsetvli zero, %0, e8, m2, ta, ma\n\tvnsra.wi v12, v8, 0\n\tvse8.v v12, (%4)"
                         : "=&r"(vl)
                         : "r"(hi - i), "r"(x + i), "r"(gain + i), "r"(y + i), "r"(q.m), "r"(q.bias), "r"(q.t),
                           "r"(INT8_MIN), "r"(INT8_MAX)
                         : "memory");
        i += vl;
    }
}

void residual_add_i16_rvv(int16_t *y, const int16_t *a, const int16_t *b, int32_t n) {
    for (int32_t i = 0; i < n;) {
        int32_t vl;
        __asm__ volatile("vsetvli %0, %1, e16, m8, ta, ma\n\tvle16.v v8, (%2)\n\tvle16.v v16, (%3)\n\t"
                         "vsadd.vv v8, v8, v16\n\tvse16.v v8, (%4)"
                         : "=&r"(vl) : "r"(n - i), "r"(a + i), "r"(b + i), "r"(y + i) : "memory");
        i += vl;
    }
}
#else
void rmsnorm_i8_part_rvv(int8_t *y, const int16_t *x, const int32_t *gain, int32_t gain_shift, int64_t eps_q,
                         int32_t dim, int32_t lo, int32_t hi) {
    rmsnorm_i8_part(y, x, gain, gain_shift, eps_q, dim, lo, hi);
}

void residual_add_i16_rvv(int16_t *y, const int16_t *a, const int16_t *b, int32_t n) {
    residual_add_i16(y, a, b, n);
}
#endif
