/* rmsnorm_tok_rvv.c: rmsnorm_tok_i8 (rmsnorm_tok.c) on the vector unit (Zve32x), the same integers, on one core: per
 * vl elements x * gain (vsext, vmul) with its largest and smallest by reductions and the squares as norm_rvv.c sums
 * them (vwmul, the low and high 16 bits by two reductions); then the scale and the rms in scalar code, and y by vsll,
 * vmulh, the rounding and two narrowings (dpl_absmax_apply). Without the vector unit (a host build), or for rows of
 * 2^16 elements or more, the scalar kernel runs. */
#include "rmsnorm_tok_rvv.h"

#include "deeploy_kernels.h"
#include "rmsnorm_tok.h"

#if defined(__riscv_vector) || defined(__riscv_zve32x)
#define RMS_MIN 256      /* rmsnorm_tok.c's */
#define RMS_INV_SHIFT 39 /* rmsnorm_tok.c's */

/* rmsnorm_tok.c's mean_square_q16 and inv_rms */
static int64_t mean_square_q16_tok(uint64_t ss, int32_t dim) {
    if ((dim & (dim - 1)) == 0 && dim <= 65536) return (int64_t)(ss * (uint32_t)(65536 / dim));
    return (int64_t)(ss << 16) / dim;
}

static uint32_t inv_rms_tok(uint32_t r) {
    uint32_t q = 0x80000000u / r, rem = 0x80000000u % r;
    return (q << 8) + (rem << 8) / r;
}

void rmsnorm_tok_i8_rvv(int8_t *y, int32_t *tok, const int16_t *x, const int32_t *gain, int32_t gain_shift,
                        int64_t eps_q, int32_t base_shift, int32_t dim) {
    int32_t big, small;
    uint32_t lo, hi, r, inv;
    dpl_absmax q;
    if (dim >= 65536) { /* the squares' reductions could pass 32 bits */
        rmsnorm_tok_i8(y, tok, x, gain, gain_shift, eps_q, base_shift, dim);
        return;
    }
    __asm__ volatile("vsetivli zero, 1, e32, m1, ta, ma\n\tvmv.s.x v0, zero\n\tvmv.s.x v1, zero\n\t"
                     "vmv.s.x v2, zero\n\tvmv.s.x v3, zero");
    for (int32_t i = 0; i < dim;) { /* x * gain's span (0 included) and the sum of squares */
        int32_t vl;
        __asm__ volatile("vsetvli %0, %1, e16, m4, ta, ma\n\tvle16.v v4, (%2)\n\tvwmul.vv v16, v4, v4\n\t"
                         "vsetvli zero, %0, e32, m8, ta, ma\n\tvsrl.vi v24, v16, 16\n\tvand.vx v16, v16, %4\n\t"
                         "vredsum.vs v2, v16, v2\n\tvredsum.vs v3, v24, v3\n\t"
                         "vsext.vf2 v16, v4\n\tvle32.v v8, (%3)\n\tvmul.vv v16, v16, v8\n\t"
                         "vredmax.vs v0, v16, v0\n\tvredmin.vs v1, v16, v1"
                         : "=&r"(vl) : "r"(dim - i), "r"(x + i), "r"(gain + i), "r"(0xffff) : "memory");
        i += vl;
    }
    __asm__ volatile("vsetivli zero, 1, e32, m1, ta, ma\n\tvmv.x.s %0, v0\n\tvmv.x.s %1, v1\n\tvmv.x.s %2, v2\n\t"
                     "vmv.x.s %3, v3" : "=r"(big), "=r"(small), "=r"(lo), "=r"(hi));
    dpl_absmax_init(&q, (uint32_t)big > 0u - (uint32_t)small ? (uint32_t)big : 0u - (uint32_t)small);
    for (int32_t i = 0; i < dim;) { /* y = dpl_absmax_apply(x * gain) */
        int32_t vl;
        __asm__ volatile("vsetvli %0, %1, e32, m8, ta, ma\n\tvle32.v v8, (%3)\n\t"
                         "vsetvli zero, %0, e16, m4, ta, ma\n\tvle16.v v4, (%2)\n\t"
                         "vsetvli zero, %0, e32, m8, ta, ma\n\tvsext.vf2 v16, v4\n\tvmul.vv v16, v16, v8\n\t"
                         "vsll.vx v16, v16, %5\n\tvmulh.vx v16, v16, %6\n\tvadd.vx v16, v16, %7\n\tvsra.vx v16, v16, %8\n\t"
                         "vsetvli zero, %0, e16, m4, ta, ma\n\tvnsra.wi v8, v16, 0\n\t"
                         "vsetvli zero, %0, e8, m2, ta, ma\n\tvnsra.wi v24, v8, 0\n\tvse8.v v24, (%4)"
                         : "=&r"(vl) : "r"(dim - i), "r"(x + i), "r"(gain + i), "r"(y + i), "r"(q.l), "r"(q.f),
                           "r"(q.half), "r"(q.r) : "memory");
        i += vl;
    }
    r = dpl_isqrt64_fast((uint64_t)(mean_square_q16_tok(((uint64_t)hi << 16) + lo, dim) + eps_q));
    if (r < RMS_MIN) r = RMS_MIN;
    inv = r < (1u << 24) ? inv_rms_tok(r) : (uint32_t)(((int64_t)1 << RMS_INV_SHIFT) / r);
    dpl_tok_factor(tok, (uint64_t)(uint32_t)q.a * inv, q.t - 31 - gain_shift, base_shift);
}
#else
void rmsnorm_tok_i8_rvv(int8_t *y, int32_t *tok, const int16_t *x, const int32_t *gain, int32_t gain_shift,
                        int64_t eps_q, int32_t base_shift, int32_t dim) {
    rmsnorm_tok_i8(y, tok, x, gain, gain_shift, eps_q, base_shift, dim);
}
#endif
