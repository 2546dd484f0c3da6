/* swiglu16_rvv.c: swiglu16_tok_i8 (swiglu16.c) on the vector unit (Zve32x), the same integers, on one core: vl
 * elements at a time (e16 at LMUL 4, e32 at LMUL 8), the table's entries j and j + 1 gathered by two indexed loads
 * (vluxei16.v on the gate's byte offsets), the interpolation T[j] + ((T[j+1] - T[j]) * f + 64) >> 7 by widening
 * products (T[j+1] * f + T[j] * -f), the products with up by a widening multiply, their largest and smallest by
 * reductions; then the absmax scale in scalar code (dpl_absmax_init, dpl_tok_factor) and h by vsll, vmulh, the
 * rounding and two narrowings. Without the vector unit (a host build) the scalar kernel runs. */
#include "swiglu16_rvv.h"

#include "deeploy_kernels.h"
#include "swiglu16.h"

#if defined(__riscv_vector) || defined(__riscv_zve32x)
void swiglu16_tok_i8_rvv(int8_t *h, int32_t *tok, int32_t *p, const int16_t *gate, const int16_t *up,
                         const int16_t *silu_table, int32_t base_shift, int32_t n)
{
    int32_t hi, lo;
    dpl_absmax q;
    __asm__ volatile("vsetivli zero, 1, e32, m1, ta, ma\n\tvmv.s.x v0, zero\n\tvmv.s.x v1, zero");
    for (int32_t i = 0; i < n;) {
        int32_t vl;
        __asm__ volatile("vsetvli %0, %1, e16, m4, ta, ma\n\tvle16.v v4, (%2)\n\tvle16.v v8, (%3)\n\t"
                         "vxor.vx v4, v4, %6\n\tvand.vx v12, v4, %7\n\tvsrl.vi v4, v4, 7\n\tvadd.vv v4, v4, v4\n\t"
                         "vluxei16.v v16, (%4), v4\n\tvluxei16.v v20, (%8), v4\n\t"
                         "vwmul.vv v24, v20, v12\n\tvrsub.vi v12, v12, 0\n\tvwmacc.vv v24, v12, v16\n\t"
                         "vsetvli zero, %0, e32, m8, ta, ma\n\tvadd.vx v24, v24, %9\n\tvsra.vi v24, v24, 7\n\t"
                         "vsetvli zero, %0, e16, m4, ta, ma\n\tvwadd.wv v24, v24, v16\n\tvnsra.wi v4, v24, 0\n\t"
                         "vwmul.vv v24, v4, v8\n\t"
                         "vsetvli zero, %0, e32, m8, ta, ma\n\tvse32.v v24, (%5)\n\t"
                         "vredmax.vs v0, v24, v0\n\tvredmin.vs v1, v24, v1"
                         : "=&r"(vl)
                         : "r"(n - i), "r"(gate + i), "r"(up + i), "r"(silu_table), "r"(p + i), "r"(0x8000), "r"(127),
                           "r"(silu_table + 1), "r"(64)
                         : "memory");
        i += vl;
    }
    __asm__ volatile("vsetivli zero, 1, e32, m1, ta, ma\n\tvmv.x.s %0, v0\n\tvmv.x.s %1, v1" : "=r"(hi), "=r"(lo));
    dpl_absmax_init(&q, (uint32_t)(hi > -lo ? hi : -lo));
    dpl_tok_factor(tok, (uint64_t)(uint32_t)q.a, q.t, base_shift);
    for (int32_t i = 0; i < n;) {
        int32_t vl;
        __asm__ volatile("vsetvli %0, %1, e32, m8, ta, ma\n\tvle32.v v24, (%2)\n\tvsll.vx v24, v24, %4\n\t"
                         "vmulh.vx v24, v24, %5\n\tvadd.vx v24, v24, %6\n\tvsra.vx v24, v24, %7\n\t"
                         "vsetvli zero, %0, e16, m4, ta, ma\n\tvnsra.wi v8, v24, 0\n\t"
                         "vsetvli zero, %0, e8, m2, ta, ma\n\tvnsra.wi v16, v8, 0\n\tvse8.v v16, (%3)"
                         : "=&r"(vl) : "r"(n - i), "r"(p + i), "r"(h + i), "r"(q.l), "r"(q.f), "r"(q.half), "r"(q.r)
                         : "memory");
        i += vl;
    }
}
#else
void swiglu16_tok_i8_rvv(int8_t *h, int32_t *tok, int32_t *p, const int16_t *gate, const int16_t *up,
                         const int16_t *silu_table, int32_t base_shift, int32_t n)
{
    swiglu16_tok_i8(h, tok, p, gate, up, silu_table, base_shift, n);
}
#endif
