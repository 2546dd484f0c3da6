/* attention_rvv.c: attention with int16 keys on the vector unit (Zve32x), the same integers as attn_scores_k16 and
 * attn_exp_av_i8 (attention.c). Scores: Positions lie across the lanes (vl of them at e16, LMUL 4): per head dimension d one
 * strided load (vlse16.v) brings k[t][d] of vl positions, and two widening MACs (vwmacc.vx, int16 x int16 -> int32)
 * add q_a[d] * k and q_b[d] * k for two query heads at once; then (y + 128) >> 8, a store, and the heads' running
 * maxima by vredmax.vs. vqdot is int8 only, so int16 keys take these widening MACs. The exps and V: exp_av_head below.
 * Without the vector unit (a host build) the scalar kernels run. */
#include "attention_rvv.h"

#include "deeploy_kernels.h"

#if defined(__riscv_vector) || defined(__riscv_zve32x)
/* scores and maxima of heads a and b (b only if `two`) over n_t positions, positions across the lanes */
static void scores_pair(int32_t *sa, int32_t *sb, int32_t *ma, int32_t *mb, const int8_t *qa, const int8_t *qb,
                        const int16_t *k, int32_t k_stride, int32_t n_t, int32_t hs, int two)
{
    const int32_t bstride = 2 * k_stride;
    __asm__ volatile("vsetivli zero, 1, e32, m1, ta, ma\n\tvmv.s.x v0, %0\n\tvmv.s.x v1, %1" : : "r"(*ma), "r"(*mb));
    for (int32_t t = 0; t < n_t;) {
        int32_t vl;
        __asm__ volatile("vsetvli %0, %1, e32, m8, ta, ma\n\tvmv.v.i v16, 0\n\tvmv.v.i v24, 0" : "=r"(vl) : "r"(n_t - t));
        __asm__ volatile("vsetvli zero, %0, e16, m4, ta, ma" : : "r"(vl));
        const int16_t *kt = k + (size_t)t * (size_t)k_stride;
        for (int32_t d = 0; d < hs; d++)
            __asm__ volatile("vlse16.v v8, (%0), %1\n\tvwmacc.vx v16, %2, v8\n\tvwmacc.vx v24, %3, v8"
                             : : "r"(kt + d), "r"(bstride), "r"((int32_t)qa[d]), "r"(two ? (int32_t)qb[d] : 0)
                             : "memory");
        __asm__ volatile("vsetvli zero, %0, e32, m8, ta, ma\n\t"
                         "vadd.vx v16, v16, %3\n\tvsra.vi v16, v16, 8\n\tvse32.v v16, (%1)\n\tvredmax.vs v0, v16, v0"
                         : : "r"(vl), "r"(sa + t), "r"(sb + t), "r"(128) : "memory");
        if (two)
            __asm__ volatile("vadd.vx v24, v24, %1\n\tvsra.vi v24, v24, 8\n\tvse32.v v24, (%0)\n\tvredmax.vs v1, v24, v1"
                             : : "r"(sb + t), "r"(128) : "memory");
        t += vl;
    }
    int32_t a, b;
    __asm__ volatile("vsetivli zero, 1, e32, m1, ta, ma\n\tvmv.x.s %0, v0\n\tvmv.x.s %1, v1" : "=r"(a), "=r"(b));
    *ma = a, *mb = b;
}

void attn_scores_k16_rvv(int32_t *scores, int32_t stride, int32_t *max, const int8_t *q, const int16_t *k,
                         int32_t k_stride, int32_t t0, int32_t n_t, int32_t g, int32_t hs)
{
    for (int32_t h = 0; h < g; h += 2) {
        const int two = h + 1 < g;
        int32_t ma = t0 == 0 ? INT32_MIN : max[h], mb = two && t0 != 0 ? max[h + 1] : INT32_MIN;
        int32_t *sa = scores + (size_t)h * (size_t)stride + t0;
        scores_pair(sa, two ? sa + stride : sa, &ma, &mb, q + (size_t)h * (size_t)hs, q + (size_t)(h + two) * (size_t)hs,
                    k, k_stride, n_t, hs, two);
        max[h] = ma;
        if (two)
            max[h + 1] = mb;
    }
}
/* one head's exps e_t of the scores s[0..n_t) against its max (attention.c's exp_setup / EXP_OF, lanes at once) into
 * acc[0..hs) += sum_t e_t v[t][d] and the returned sum_t e_t: per vl positions the exps (vmul, vrsub, vsrl, the table
 * gathered by vluxei32.v at the byte offsets w & 1022, shifted right by w >> 10; 0 below smin), then per dimension a
 * strided load of V's column, sign-extended, multiplied and summed (vredsum) */
static int32_t exp_av_head(int32_t *acc, const int32_t *s, const int8_t *v, int32_t v_stride, int32_t n_t, int32_t hs,
                           int32_t max, int32_t mult, int32_t shift, int32_t cut, const uint16_t *table)
{
    const int32_t smin = (uint32_t)max + 0x80000000u >= (uint32_t)cut ? max - cut : INT32_MIN;
    const uint32_t c = (uint32_t)max * (uint32_t)mult + (1u << (shift - 1));
    int32_t sum;
    __asm__ volatile("vsetivli zero, 1, e32, m1, ta, ma\n\tvmv.s.x v1, zero");
    for (int32_t d = 0; d < hs; d++)
        acc[d] = 0;
    for (int32_t t = 0; t < n_t;) {
        int32_t vl;
        __asm__ volatile("vsetvli %0, %1, e32, m8, ta, ma\n\tvle32.v v8, (%2)\n\tvmslt.vx v0, v8, %3\n\t"
                         "vmul.vx v16, v8, %4\n\tvrsub.vx v16, v16, %5\n\tvsrl.vx v16, v16, %6\n\t"
                         "vand.vx v8, v16, %7\n\tvsrl.vi v16, v16, 10\n\t"
                         "vsetvli zero, %0, e16, m4, ta, ma\n\tvluxei32.v v24, (%8), v8\n\t"
                         "vsetvli zero, %0, e32, m8, ta, ma\n\tvzext.vf2 v8, v24\n\tvsrl.vv v24, v8, v16\n\t"
                         "vmerge.vim v24, v24, 0, v0\n\tvredsum.vs v1, v24, v1"
                         : "=&r"(vl) : "r"(n_t - t), "r"(s + t), "r"(smin), "r"(mult), "r"(c), "r"(shift - 1),
                           "r"(1022), "r"(table) : "memory");
        const int8_t *vt = v + (size_t)t * (size_t)v_stride;
        for (int32_t d = 0; d < hs; d++) {
            int32_t a;
            __asm__ volatile("vsetvli zero, %1, e8, m2, ta, ma\n\tvlse8.v v8, (%2), %3\n\t"
                             "vsetvli zero, %1, e32, m8, ta, ma\n\tvsext.vf4 v16, v8\n\tvmul.vv v16, v16, v24\n\t"
                             "vmv.s.x v2, %4\n\tvredsum.vs v2, v16, v2\n\tvmv.x.s %0, v2"
                             : "=r"(a) : "r"(vl), "r"(vt + d), "r"(v_stride), "r"(acc[d]) : "memory");
            acc[d] = a;
        }
        t += vl;
    }
    __asm__ volatile("vsetivli zero, 1, e32, m1, ta, ma\n\tvmv.x.s %0, v1" : "=r"(sum));
    return sum;
}

void attn_exp_av_i8_rvv(int32_t *acc, int32_t *sums, const int32_t *scores, int32_t stride, const int32_t *max,
                        const int8_t *v, int32_t v_stride, int32_t t0, int32_t n_t, int32_t g, int32_t hs,
                        const int32_t *prm, const uint16_t *exp_table, int8_t *out)
{
    int32_t part[64];
    if (hs > 64) { /* beyond this kernel's stack array: the scalar kernel */
        attn_exp_av_i8(acc, sums, scores, stride, max, v, v_stride, t0, n_t, g, hs, prm, exp_table, out);
        return;
    }
    for (int32_t h = 0; h < g; h++) {
        const int32_t sum = exp_av_head(part, scores + (size_t)h * (size_t)stride + t0, v, v_stride, n_t, hs, max[h],
                                        prm[0], prm[1], prm[2], exp_table);
        int32_t *a = acc + (size_t)h * (size_t)hs;
        for (int32_t d = 0; d < hs; d++)
            a[d] = t0 == 0 ? part[d] : a[d] + part[d];
        sums[h] = t0 == 0 ? sum : sums[h] + sum;
    }
    if (out)
        attn_out_i8(out, acc, sums, g, hs, prm[3], prm[4], prm[5]);
}
#else
void attn_exp_av_i8_rvv(int32_t *acc, int32_t *sums, const int32_t *scores, int32_t stride, const int32_t *max,
                        const int8_t *v, int32_t v_stride, int32_t t0, int32_t n_t, int32_t g, int32_t hs,
                        const int32_t *prm, const uint16_t *exp_table, int8_t *out)
{
    attn_exp_av_i8(acc, sums, scores, stride, max, v, v_stride, t0, n_t, g, hs, prm, exp_table, out);
}

void attn_scores_k16_rvv(int32_t *scores, int32_t stride, int32_t *max, const int8_t *q, const int16_t *k,
                         int32_t k_stride, int32_t t0, int32_t n_t, int32_t g, int32_t hs)
{
    attn_scores_k16(scores, stride, max, q, k, k_stride, t0, n_t, g, hs);
}
#endif

void attention_k16_rvv(int8_t *out, const int8_t *q, const int16_t *k_cache, const int8_t *v_cache, int32_t *scratch,
                       int32_t pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_size, int32_t score_mult,
                       int32_t score_shift, int32_t score_cut, int32_t out_mult, int32_t out_shift,
                       const uint16_t *exp_table)
{
    const int32_t kv_dim = n_kv_heads * head_size, g = n_heads / n_kv_heads, n = pos + 1;
    int32_t acc[256], sums[32], max[32], bits = 0;
    const int32_t prm[6] = {score_mult, score_shift, score_cut, out_mult, out_shift, 0};
    if (g * head_size > 256 || g > 32) { /* beyond this kernel's stack arrays: the scalar reference */
        attention_k16(out, q, k_cache, v_cache, scratch, pos, n_heads, n_kv_heads, head_size, score_mult, score_shift,
                      score_cut, out_mult, out_shift, exp_table);
        return;
    }
    while ((1 << (bits + 1)) <= exp_table[0])
        bits++;
    int32_t p[6];
    for (int i = 0; i < 6; i++)
        p[i] = prm[i];
    p[5] = bits;
    for (int32_t kh = 0; kh < n_kv_heads; kh++) {
        attn_scores_k16_rvv(scratch, n, max, q + kh * g * head_size, k_cache + kh * head_size, kv_dim, 0, n, g,
                            head_size);
        attn_exp_av_i8_rvv(acc, sums, scratch, n, max, v_cache + kh * head_size, kv_dim, 0, n, g, head_size, p,
                           exp_table, out + kh * g * head_size);
    }
}
