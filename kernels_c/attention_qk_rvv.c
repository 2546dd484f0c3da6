/* attention_qk_rvv.c: the vector attention's scores for int8 keys (int8, int12 or int16 queries) and for int16 keys with
 * int12 queries, the same integers as attention.c's attn_scores_i8, _q12, _q16 and _q12k16. Positions lie across the
 * lanes (as attention_rvv.c's int16 keys), two query heads of one kv head per pass:
 *   int8 q, int8 K: per quad of head dimensions one strided vlse32.v brings 4 keys of each of vl positions and two
 *     vqdot.vx (Zvqdotq) add both heads' 4-way dot products (q's 4 bytes from a scalar register); no widening;
 *   int16 q, int8 K: per pair of dimensions one vlse16.v, the two keys of each position split by vsll/vsra, and four
 *     widening MACs (vwmacc.vx, int16 x int16 -> int32);
 *   int16 q, int16 K: per dimension vlse16.v and two vwmacc.vx (attention_rvv.c's loop, q read as int16);
 * rows or dimensions the loads' alignment does not allow take one dimension at a time (vlse8.v, vsext.vf2, vwmacc.vx).
 * Then round(y) = (y + 2^(r-1)) >> r (r = 0, 4, 8, 12: kernels.score_shift), a store, the running max by vredmax.vs.
 * Without the vector unit (a host build) the scalar kernels run. */
#include "attention_qk_rvv.h"

#include "attention_rvv.h"
#include "deeploy_kernels.h"

#if defined(__riscv_vector) || defined(__riscv_zve32x)
/* vd += dot4(vs2 lanes, rs1 bytes): vqdot.vx vd, vs2, rs1 (as gemv_rvv.c) */
#define VQDOT_VX(vd, vs2, rs1) ".insn r 0x57, 0x6, 0x59, x" #vd ", " rs1 ", x" #vs2 "\n"

/* the two heads' accumulators v16, v24 (e32, LMUL 8) from 0 for vl positions; v0, v1 hold their running maxima */
static void acc_zero(int32_t vl)
{
    __asm__ volatile("vsetvli zero, %0, e32, m8, ta, ma\n\tvmv.v.i v16, 0\n\tvmv.v.i v24, 0" : : "r"(vl));
}

/* v16 += qa * k[.][d], v24 += qb * k[.][d] over vl positions of int8 keys (kd: the first position's k[d]) */
static void k8_dim(const int8_t *kd, int32_t stride, int32_t vl, int32_t qa, int32_t qb)
{
    __asm__ volatile("vsetvli zero, %0, e8, m2, ta, ma\n\tvlse8.v v4, (%1), %2\n\t"
                     "vsetvli zero, %0, e16, m4, ta, ma\n\tvsext.vf2 v8, v4\n\t"
                     "vwmacc.vx v16, %3, v8\n\tvwmacc.vx v24, %4, v8"
                     : : "r"(vl), "r"(kd), "r"(stride), "r"(qa), "r"(qb) : "memory");
}

/* round the accumulators by r bits (half up), store them to sa (and sb if two), fold them into the maxima v0, v1 */
static void scores_out(int32_t *sa, int32_t *sb, int32_t vl, int two, int32_t r)
{
    __asm__ volatile("vsetvli zero, %0, e32, m8, ta, ma" : : "r"(vl));
    if (r)
        __asm__ volatile("vadd.vx v16, v16, %0\n\tvsra.vx v16, v16, %1\n\tvadd.vx v24, v24, %0\n\tvsra.vx v24, v24, %1"
                         : : "r"((int32_t)1 << (r - 1)), "r"(r));
    __asm__ volatile("vse32.v v16, (%0)\n\tvredmax.vs v0, v16, v0" : : "r"(sa) : "memory");
    if (two)
        __asm__ volatile("vse32.v v24, (%0)\n\tvredmax.vs v1, v24, v1" : : "r"(sb) : "memory");
}

/* the maxima into v0, v1 before a pass, and out of them after it */
static void max_in(int32_t ma, int32_t mb)
{
    __asm__ volatile("vsetivli zero, 1, e32, m1, ta, ma\n\tvmv.s.x v0, %0\n\tvmv.s.x v1, %1" : : "r"(ma), "r"(mb));
}

static void max_out(int32_t *ma, int32_t *mb)
{
    int32_t a, b;
    __asm__ volatile("vsetivli zero, 1, e32, m1, ta, ma\n\tvmv.x.s %0, v0\n\tvmv.x.s %1, v1" : "=r"(a), "=r"(b));
    *ma = a, *mb = b;
}

/* q's 4 int8 values from d packed little-endian into one word (vqdot.vx's rs1) */
static uint32_t q_quad(const int8_t *q)
{
    return (uint32_t)(uint8_t)q[0] | (uint32_t)(uint8_t)q[1] << 8 | (uint32_t)(uint8_t)q[2] << 16 |
           (uint32_t)(uint8_t)q[3] << 24;
}

/* int8 q and K: quads by vlse32.v + vqdot.vx where K's rows are word aligned, the rest a dimension at a time */
static void pair_i8(int32_t *sa, int32_t *sb, const int8_t *qa, const int8_t *qb, const int8_t *k, int32_t k_stride,
                    int32_t n_t, int32_t hs, int two)
{
    const int words = (((uintptr_t)k | (uint32_t)k_stride) & 3) == 0;
    const int32_t quads = words ? hs / 4 : 0;
    for (int32_t t = 0; t < n_t;) {
        int32_t vl, d = 0;
        __asm__ volatile("vsetvli %0, %1, e32, m8, ta, ma" : "=r"(vl) : "r"(n_t - t));
        acc_zero(vl);
        const int8_t *kt = k + (size_t)t * (size_t)k_stride;
        for (; d < 4 * quads; d += 4)
            __asm__ volatile("vlse32.v v8, (%0), %1\n\t" VQDOT_VX(16, 8, "%2") VQDOT_VX(24, 8, "%3")
                             : : "r"(kt + d), "r"(k_stride), "r"(q_quad(qa + d)), "r"(two ? q_quad(qb + d) : 0u)
                             : "memory");
        for (; d < hs; d++)
            k8_dim(kt + d, k_stride, vl, qa[d], two ? qb[d] : 0);
        scores_out(sa + t, sb + t, vl, two, 0);
        t += vl;
    }
}

/* int16 q, int8 K: pairs of dimensions by one vlse16.v where K's rows are 2-byte aligned, split into the two keys
 * (vsll + vsra, vsra: little-endian, k[d] the low byte), the rest a dimension at a time */
static void pair_q16k8(int32_t *sa, int32_t *sb, const int16_t *qa, const int16_t *qb, const int8_t *k,
                       int32_t k_stride, int32_t n_t, int32_t hs, int two, int32_t r)
{
    const int halves = (((uintptr_t)k | (uint32_t)k_stride) & 1) == 0;
    const int32_t pairs = halves ? hs / 2 : 0;
    for (int32_t t = 0; t < n_t;) {
        int32_t vl, d = 0;
        __asm__ volatile("vsetvli %0, %1, e32, m8, ta, ma" : "=r"(vl) : "r"(n_t - t));
        acc_zero(vl);
        __asm__ volatile("vsetvli zero, %0, e16, m4, ta, ma" : : "r"(vl));
        const int8_t *kt = k + (size_t)t * (size_t)k_stride;
        for (; d < 2 * pairs; d += 2)
            __asm__ volatile("vlse16.v v8, (%0), %1\n\tvsll.vi v12, v8, 8\n\tvsra.vi v12, v12, 8\n\tvsra.vi v8, v8, 8\n\t"
                             "vwmacc.vx v16, %2, v12\n\tvwmacc.vx v24, %3, v12\n\t"
                             "vwmacc.vx v16, %4, v8\n\tvwmacc.vx v24, %5, v8"
                             : : "r"(kt + d), "r"(k_stride), "r"((int32_t)qa[d]), "r"(two ? (int32_t)qb[d] : 0),
                               "r"((int32_t)qa[d + 1]), "r"(two ? (int32_t)qb[d + 1] : 0) : "memory");
        for (; d < hs; d++)
            k8_dim(kt + d, k_stride, vl, qa[d], two ? qb[d] : 0);
        scores_out(sa + t, sb + t, vl, two, r);
        t += vl;
    }
}

/* int16 q, int16 K: per dimension vlse16.v and two vwmacc.vx (attention_rvv.c's scores with q read as int16) */
static void pair_q16k16(int32_t *sa, int32_t *sb, const int16_t *qa, const int16_t *qb, const int16_t *k,
                        int32_t k_stride, int32_t n_t, int32_t hs, int two, int32_t r)
{
    const int32_t bstride = 2 * k_stride;
    for (int32_t t = 0; t < n_t;) {
        int32_t vl;
        __asm__ volatile("vsetvli %0, %1, e32, m8, ta, ma" : "=r"(vl) : "r"(n_t - t));
        acc_zero(vl);
        __asm__ volatile("vsetvli zero, %0, e16, m4, ta, ma" : : "r"(vl));
        const int16_t *kt = k + (size_t)t * (size_t)k_stride;
        for (int32_t d = 0; d < hs; d++)
            __asm__ volatile("vlse16.v v8, (%0), %1\n\tvwmacc.vx v16, %2, v8\n\tvwmacc.vx v24, %3, v8"
                             : : "r"(kt + d), "r"(bstride), "r"((int32_t)qa[d]), "r"(two ? (int32_t)qb[d] : 0)
                             : "memory");
        scores_out(sa + t, sb + t, vl, two, r);
        t += vl;
    }
}

/* the scores kernels' loop over pairs of heads (PAIR one of the above, its trailing arguments ...) */
#define SCORES_RVV(PAIR, ...)                                                                                     \
    for (int32_t h = 0; h < g; h += 2) {                                                                          \
        const int two = h + 1 < g;                                                                                \
        int32_t ma = t0 == 0 ? INT32_MIN : max[h], mb = two && t0 != 0 ? max[h + 1] : INT32_MIN;                  \
        int32_t *sa = scores + (size_t)h * (size_t)stride + t0;                                                   \
        max_in(ma, mb);                                                                                           \
        PAIR(sa, two ? sa + stride : sa, q + (size_t)h * (size_t)hs, q + (size_t)(h + two) * (size_t)hs, k,       \
             k_stride, n_t, hs, two __VA_ARGS__);                                                                 \
        max_out(&ma, &mb);                                                                                        \
        max[h] = ma;                                                                                              \
        if (two)                                                                                                  \
            max[h + 1] = mb;                                                                                      \
    }

void attn_scores_i8_rvv(int32_t *scores, int32_t stride, int32_t *max, const int8_t *q, const int8_t *k,
                        int32_t k_stride, int32_t t0, int32_t n_t, int32_t g, int32_t hs)
{
    SCORES_RVV(pair_i8, )
}

void attn_scores_q12_rvv(int32_t *scores, int32_t stride, int32_t *max, const int16_t *q, const int8_t *k,
                         int32_t k_stride, int32_t t0, int32_t n_t, int32_t g, int32_t hs)
{
    SCORES_RVV(pair_q16k8, , 4)
}

void attn_scores_q16_rvv(int32_t *scores, int32_t stride, int32_t *max, const int16_t *q, const int8_t *k,
                         int32_t k_stride, int32_t t0, int32_t n_t, int32_t g, int32_t hs)
{
    SCORES_RVV(pair_q16k8, , 8)
}

void attn_scores_q12k16_rvv(int32_t *scores, int32_t stride, int32_t *max, const int16_t *q, const int16_t *k,
                            int32_t k_stride, int32_t t0, int32_t n_t, int32_t g, int32_t hs)
{
    SCORES_RVV(pair_q16k16, , 12)
}
#else
void attn_scores_i8_rvv(int32_t *scores, int32_t stride, int32_t *max, const int8_t *q, const int8_t *k,
                        int32_t k_stride, int32_t t0, int32_t n_t, int32_t g, int32_t hs)
{
    attn_scores_i8(scores, stride, max, q, k, k_stride, t0, n_t, g, hs);
}

void attn_scores_q12_rvv(int32_t *scores, int32_t stride, int32_t *max, const int16_t *q, const int8_t *k,
                         int32_t k_stride, int32_t t0, int32_t n_t, int32_t g, int32_t hs)
{
    attn_scores_q12(scores, stride, max, q, k, k_stride, t0, n_t, g, hs);
}

void attn_scores_q16_rvv(int32_t *scores, int32_t stride, int32_t *max, const int16_t *q, const int8_t *k,
                         int32_t k_stride, int32_t t0, int32_t n_t, int32_t g, int32_t hs)
{
    attn_scores_q16(scores, stride, max, q, k, k_stride, t0, n_t, g, hs);
}

void attn_scores_q12k16_rvv(int32_t *scores, int32_t stride, int32_t *max, const int16_t *q, const int16_t *k,
                            int32_t k_stride, int32_t t0, int32_t n_t, int32_t g, int32_t hs)
{
    attn_scores_q12k16(scores, stride, max, q, k, k_stride, t0, n_t, g, hs);
}
#endif

/* the untiled kernels: per kv head its g heads' scores over all positions, then the exps and V (attention_rvv.c);
 * beyond the stack arrays (g * head_size > 256, g > 32) the scalar reference FALLBACK */
#define ATTENTION_RVV(SCORES, FALLBACK)                                                                          \
    const int32_t kv_dim = n_kv_heads * head_size, g = n_heads / n_kv_heads, n = pos + 1;                         \
    int32_t acc[256], sums[32], max[32], bits = 0, p[6];                                                          \
    if (g * head_size > 256 || g > 32) {                                                                          \
        FALLBACK(out, q, k_cache, v_cache, scratch, pos, n_heads, n_kv_heads, head_size, score_mult, score_shift, \
                 score_cut, out_mult, out_shift, exp_table);                                                      \
        return;                                                                                                   \
    }                                                                                                             \
    while ((1 << (bits + 1)) <= exp_table[0])                                                                     \
        bits++;                                                                                                   \
    p[0] = score_mult, p[1] = score_shift, p[2] = score_cut, p[3] = out_mult, p[4] = out_shift, p[5] = bits;      \
    for (int32_t kh = 0; kh < n_kv_heads; kh++) {                                                                 \
        SCORES(scratch, n, max, q + kh * g * head_size, k_cache + kh * head_size, kv_dim, 0, n, g, head_size);    \
        attn_exp_av_i8_rvv(acc, sums, scratch, n, max, v_cache + kh * head_size, kv_dim, 0, n, g, head_size, p,   \
                           exp_table, out + kh * g * head_size);                                                  \
    }

void attention_i8_rvv(int8_t *out, const int8_t *q, const int8_t *k_cache, const int8_t *v_cache, int32_t *scratch,
                      int32_t pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_size, int32_t score_mult,
                      int32_t score_shift, int32_t score_cut, int32_t out_mult, int32_t out_shift,
                      const uint16_t *exp_table)
{
    ATTENTION_RVV(attn_scores_i8_rvv, attention_i8)
}

void attention_q12_rvv(int8_t *out, const int16_t *q, const int8_t *k_cache, const int8_t *v_cache, int32_t *scratch,
                       int32_t pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_size, int32_t score_mult,
                       int32_t score_shift, int32_t score_cut, int32_t out_mult, int32_t out_shift,
                       const uint16_t *exp_table)
{
    ATTENTION_RVV(attn_scores_q12_rvv, attention_q12)
}

void attention_q16_rvv(int8_t *out, const int16_t *q, const int8_t *k_cache, const int8_t *v_cache, int32_t *scratch,
                       int32_t pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_size, int32_t score_mult,
                       int32_t score_shift, int32_t score_cut, int32_t out_mult, int32_t out_shift,
                       const uint16_t *exp_table)
{
    ATTENTION_RVV(attn_scores_q16_rvv, attention_q16)
}

void attention_q12k16_rvv(int8_t *out, const int16_t *q, const int16_t *k_cache, const int8_t *v_cache,
                          int32_t *scratch, int32_t pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_size,
                          int32_t score_mult, int32_t score_shift, int32_t score_cut, int32_t out_mult,
                          int32_t out_shift, const uint16_t *exp_table)
{
    ATTENTION_RVV(attn_scores_q12k16_rvv, attention_q12k16)
}
