/* swiglu_rvv.c: swiglu_dyn_i8 (swiglu.c) on the vector unit (Zve32x), the same integers: vl elements at a time, the
 * silu table gathered by an indexed load (vluxei16.v on the gate's byte offsets), the products by a widening multiply
 * (int16 x int16 -> int32), their largest and smallest by reductions; then the token's shift k in scalar code and
 * h = (p + 2^(k-1)) >> k narrowed to int8. Without the vector unit (a host build) the scalar kernel runs. */
#include "swiglu_rvv.h"

#include "deeploy_kernels.h"

#if defined(__riscv_vector) || defined(__riscv_zve32x)
void swiglu_dyn_i8_rvv(int8_t *h, uint8_t *shift_out, int32_t *p, const int8_t *gate, const int8_t *up,
                       const int16_t *silu_table, int32_t base_shift, int32_t n)
{
    int32_t hi, lo, k = 0, half = 0;
    __asm__ volatile("vsetivli zero, 1, e32, m1, ta, ma\n\tvmv.s.x v0, zero\n\tvmv.s.x v1, zero");
    for (int32_t i = 0; i < n;) {
        int32_t vl;
        __asm__ volatile("vsetvli %0, %1, e8, m2, ta, ma\n\tvle8.v v8, (%2)\n\tvle8.v v10, (%3)\n\t"
                         "vsetvli zero, %0, e16, m4, ta, ma\n\tvsext.vf2 v12, v8\n\t"
                         "vadd.vx v12, v12, %6\n\tvsll.vi v12, v12, 1\n\tvluxei16.v v16, (%4), v12\n\t"
                         "vsext.vf2 v20, v10\n\tvwmul.vv v24, v16, v20\n\t"
                         "vsetvli zero, %0, e32, m8, ta, ma\n\tvse32.v v24, (%5)\n\t"
                         "vredmax.vs v0, v24, v0\n\tvredmin.vs v1, v24, v1"
                         : "=&r"(vl) : "r"(n - i), "r"(gate + i), "r"(up + i), "r"(silu_table), "r"(p + i), "r"(128)
                         : "memory");
        i += vl;
    }
    __asm__ volatile("vsetivli zero, 1, e32, m1, ta, ma\n\tvmv.x.s %0, v0\n\tvmv.x.s %1, v1" : "=r"(hi), "=r"(lo));
    while (((hi + half) >> k) > INT8_MAX || ((lo + half) >> k) < INT8_MIN)
        half = (int32_t)1 << k++;
    for (int32_t i = 0; i < n;) {
        int32_t vl;
        __asm__ volatile("vsetvli %0, %1, e32, m8, ta, ma\n\tvle32.v v24, (%2)\n\tvadd.vx v24, v24, %4\n\t"
                         "vsra.vx v24, v24, %5\n\tvsetvli zero, %0, e16, m4, ta, ma\n\tvnsra.wi v8, v24, 0\n\t"
                         "vsetvli zero, %0, e8, m2, ta, ma\n\tvnsra.wi v16, v8, 0\n\tvse8.v v16, (%3)"
                         : "=&r"(vl) : "r"(n - i), "r"(p + i), "r"(h + i), "r"(half), "r"(k) : "memory");
        i += vl;
    }
    *shift_out = (uint8_t)(base_shift - k);
}
#else
void swiglu_dyn_i8_rvv(int8_t *h, uint8_t *shift_out, int32_t *p, const int8_t *gate, const int8_t *up,
                       const int16_t *silu_table, int32_t base_shift, int32_t n)
{
    swiglu_dyn_i8(h, shift_out, p, gate, up, silu_table, base_shift, n);
}
#endif
