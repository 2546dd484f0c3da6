/* gemv_q4_rvv.c: the int4 per-group GEMV on the vector unit (gemv_q4_rvv.h), gemv_q4's integers. Output rows lie
 * across the lanes (as gemv_rvv.c): per octet of a group's columns one vle32.v loads every row's 8 nibbles, vsll and
 * two vand.vx put each quad's nibbles in the bytes' high halves (16 times the int8 weights), and two vqdot.vx add
 * their dot products with 4 activations each into the group's accumulators; per group an exact shift by 4 and the
 * scales (vle8.v, vzext.vf4) multiply them into the row's (vmacc.vv). The requantization as gemv_rvv.c's (vectors for
 * shifts 1..62, per row for 0). Without the vector unit (a host build) the file is plain C over the same layout. */
#include "gemv_q4_rvv.h"

#include "deeploy_kernels.h"
#include "gemv_rvv.h"

#define Q4_ROWS GEMV_RVV_ROWS

/* floor((acc * m + 2^(s-1)) / 2^s), 0 <= s <= 62, saturated to [lo, hi] (gemv.c's rounding) */
static int32_t q4_requant_row(int32_t acc, int32_t m, int s, int32_t lo, int32_t hi)
{
    int64_t v = (int64_t)acc * m;
    if (s > 0)
        v = (v + ((int64_t)1 << (s - 1))) >> s;
    return v < lo ? lo : v > hi ? hi : (int32_t)v;
}

/* the 4 activations x[c..c+3] packed little-endian into one word, zeros from `end` on */
static uint32_t q4_x_quad(const int8_t *x, int32_t c, int32_t end)
{
    uint32_t q = 0;
    for (int32_t k = 0; k < 4 && c + k < end; k++)
        q |= (uint32_t)(uint8_t)x[c + k] << (8 * k);
    return q;
}

/* the bytes of one group of a block: its scales, then its octets' words */
static int32_t q4_group_bytes(int32_t group)
{
    return Q4_ROWS + (group + 7) / 8 * 4 * Q4_ROWS;
}

#if defined(__riscv_vector) || defined(__riscv_zve32x)
#define VQDOT_VX(vd, vs2, rs1) ".insn r 0x57, 0x6, 0x59, x" #vd ", " rs1 ", x" #vs2 "\n"

/* v0[0..rows) = the dot products of `rows` rows of a block from lane `lane` on (w: the block's first group). Per octet
 * the nibbles stay in place: w << 4 and w, each masked to the bytes' high nibbles (0xF0F0F0F0), are 16 q of the quads'
 * weights as int8, so vqdot.vx gives 16 times their dot products, which the group's end shifts back (exactly) */
static void q4_block_dot(const int8_t *w, const int8_t *x, int32_t n_in, int32_t group, int32_t rows, int32_t lane)
{
    const int32_t gbytes = q4_group_bytes(group);
    const int words = ((uintptr_t)x & 3) == 0 && group % 4 == 0; /* x's quads read as words where whole */
    const uint32_t mask = 0xF0F0F0F0u;
    __asm__ volatile("vsetvli zero, %0, e32, m8, ta, ma\n\tvmv.v.i v0, 0" : : "r"(rows));
    for (int32_t c0 = 0; c0 < n_in; c0 += group, w += gbytes) {
        const int32_t end = c0 + group < n_in ? c0 + group : n_in;
        const int8_t *wo = w + Q4_ROWS + 4 * lane;
        int32_t c = c0;
        __asm__ volatile("vmv.v.i v24, 0");
        if (words)
            for (; c + 8 <= end; c += 8, wo += 4 * Q4_ROWS)
                __asm__ volatile("lw t0, 0(%1)\n\tlw t1, 4(%1)\n\tvle32.v v8, (%0)\n\tvsll.vi v16, v8, 4\n\t"
                                 "vand.vx v16, v16, %2\n\tvand.vx v8, v8, %2\n\t" VQDOT_VX(24, 16, "t0")
                                 VQDOT_VX(24, 8, "t1")
                                 : : "r"(wo), "r"(x + c), "r"(mask) : "t0", "t1", "memory");
        for (; c < end; c += 8, wo += 4 * Q4_ROWS)
            __asm__ volatile("vle32.v v8, (%0)\n\tvsll.vi v16, v8, 4\n\tvand.vx v16, v16, %1\n\tvand.vx v8, v8, %1\n\t"
                             VQDOT_VX(24, 16, "%2") VQDOT_VX(24, 8, "%3")
                             : : "r"(wo), "r"(mask), "r"(q4_x_quad(x, c, end)), "r"(q4_x_quad(x, c + 4, end))
                             : "memory");
        __asm__ volatile("vsra.vi v24, v24, 4\n\tvsetvli zero, %1, e8, m2, ta, ma\n\tvle8.v v16, (%0)\n\t"
                         "vsetvli zero, %1, e32, m8, ta, ma\n\tvzext.vf4 v8, v16\n\tvmacc.vv v0, v24, v8"
                         : : "r"(w + lane), "r"(rows) : "memory");
    }
}

/* v0 = floor((v0 * mult + 2^(s-1)) / 2^s) for s >= 33 (gemv_rvv.c's block_requant_high), clamped to [lo, hi] */
static void q4_requant_high(const int32_t *mult, int s, int32_t lo, int32_t hi)
{
    __asm__ volatile("vle32.v v8, (%0)\n\tvmulh.vv v0, v0, v8\n\tvadd.vx v0, v0, %1\n\tvsra.vx v0, v0, %2\n\t"
                     "vmax.vx v0, v0, %3\n\tvmin.vx v0, v0, %4"
                     : : "r"(mult), "r"((int32_t)1 << (s - 33)), "r"(s - 32), "r"(lo), "r"(hi) : "memory");
}

/* the same for 1 <= s <= 32 from the whole 64-bit product (gemv_rvv.c's block_requant_low): lo + 2^(s-1) with its
 * carry into hi, then (hi:lo) >> s, beyond int32 saturated by its sign, clamped to [lo, hi]; v0 holds the masks */
static void q4_requant_low(const int32_t *mult, int s, int32_t lo, int32_t hi, int32_t rows)
{
    __asm__ volatile("vsetvli zero, %1, e32, m8, ta, mu\n\t"
                     "vmv.v.v v16, v0\n\tvle32.v v8, (%0)\n\tvmulh.vv v24, v16, v8\n\tvmul.vv v16, v16, v8\n\t"
                     "vadd.vx v8, v16, %2\n\tvmsltu.vv v0, v8, v16\n\tvadd.vi v24, v24, 1, v0.t"
                     : : "r"(mult), "r"(rows), "r"((uint32_t)1 << (s - 1)) : "memory");
    if (s < 32)
        __asm__ volatile("vsra.vx v16, v24, %0\n\tvsll.vx v24, v24, %1\n\tvsrl.vx v8, v8, %2\n\tvor.vv v24, v24, v8\n\t"
                         "vmsgt.vx v0, v16, zero\n\tvmerge.vxm v24, v24, %3, v0\n\t"
                         "vmslt.vx v0, v16, %5\n\tvmerge.vxm v24, v24, %4, v0"
                         : : "r"(s - 1), "r"(32 - s), "r"(s), "r"(INT32_MAX), "r"(INT32_MIN), "r"(-1));
    __asm__ volatile("vmax.vx v24, v24, %0\n\tvmin.vx v24, v24, %1\n\tvmv.v.v v0, v24" : : "r"(lo), "r"(hi));
}

static void q4_store_i32(int32_t *y, int32_t rows)
{
    __asm__ volatile("vsetvli zero, %1, e32, m8, ta, ma\n\tvse32.v v0, (%0)" : : "r"(y), "r"(rows) : "memory");
}

static void q4_store_i16(int16_t *y, int32_t rows)
{
    __asm__ volatile("vsetvli zero, %1, e16, m4, ta, ma\n\tvnsra.wi v8, v0, 0\n\tvse16.v v8, (%0)"
                     : : "r"(y), "r"(rows) : "memory");
}

static void q4_store_i8(int8_t *y, int32_t rows)
{
    __asm__ volatile("vsetvli zero, %1, e16, m4, ta, ma\n\tvnsra.wi v8, v0, 0\n\t"
                     "vsetvli zero, %1, e8, m2, ta, ma\n\tvnsra.wi v16, v8, 0\n\tvse8.v v16, (%0)"
                     : : "r"(y), "r"(rows) : "memory");
}

#define GEMV_Q4_RVV_BODY(OUT, STORE, LO, HI)                                                                      \
    const int s = shift[0];                                                                                       \
    const int32_t block_bytes = (n_in + group - 1) / group * q4_group_bytes(group);                              \
    for (int32_t o = lo; o < hi;) {                                                                              \
        const int32_t lane = o % Q4_ROWS, left = hi - o;                                                          \
        const int32_t rows = left < Q4_ROWS - lane ? left : Q4_ROWS - lane;                                       \
        q4_block_dot(w + o / Q4_ROWS * block_bytes, x, n_in, group, rows, lane);                                 \
        if (s >= 33) {                                                                                            \
            q4_requant_high(mult + o, s, LO, HI);                                                                 \
            STORE(y + o, rows);                                                                                   \
        } else if (s >= 1) {                                                                                      \
            q4_requant_low(mult + o, s, LO, HI, rows);                                                            \
            STORE(y + o, rows);                                                                                   \
        } else {                                                                                                  \
            int32_t acc[Q4_ROWS];                                                                                 \
            q4_store_i32(acc, rows);                                                                              \
            for (int32_t r = 0; r < rows; r++)                                                                    \
                y[o + r] = (OUT)q4_requant_row(acc[r], mult[o + r], s, LO, HI);                                   \
        }                                                                                                         \
        o += rows;                                                                                                \
    }
#else
/* plain C over the same layout: the block's rows' dot products, group by group */
static void q4_block_dot_c(int32_t *acc, const int8_t *w, const int8_t *x, int32_t n_in, int32_t group, int32_t rows,
                           int32_t lane)
{
    const int32_t gbytes = q4_group_bytes(group);
    for (int32_t r = 0; r < rows; r++)
        acc[r] = 0;
    for (int32_t c0 = 0; c0 < n_in; c0 += group, w += gbytes) {
        const int32_t end = c0 + group < n_in ? c0 + group : n_in;
        for (int32_t r = 0; r < rows; r++) {
            const int8_t *wo = w + Q4_ROWS + 4 * (lane + r);
            int32_t a = 0;
            for (int32_t c = c0; c < end; c += 8, wo += 4 * Q4_ROWS) {
                const uint32_t xa = q4_x_quad(x, c, end), xb = q4_x_quad(x, c + 4, end);
                for (int k = 0; k < 4; k++) {
                    const int32_t lo4 = (int32_t)(int8_t)(uint8_t)((uint32_t)(uint8_t)wo[k] << 4) >> 4;
                    const int32_t hi4 = (int32_t)wo[k] >> 4;
                    a += lo4 * (int8_t)(xa >> (8 * k)) + hi4 * (int8_t)(xb >> (8 * k));
                }
            }
            acc[r] += a * (int32_t)(uint8_t)w[lane + r];
        }
    }
}

#define GEMV_Q4_RVV_BODY(OUT, STORE, LO, HI)                                                                      \
    const int s = shift[0];                                                                                       \
    const int32_t block_bytes = (n_in + group - 1) / group * q4_group_bytes(group);                              \
    for (int32_t o = lo; o < hi;) {                                                                              \
        const int32_t lane = o % Q4_ROWS, left = hi - o;                                                          \
        const int32_t rows = left < Q4_ROWS - lane ? left : Q4_ROWS - lane;                                       \
        int32_t acc[Q4_ROWS];                                                                                     \
        q4_block_dot_c(acc, w + o / Q4_ROWS * block_bytes, x, n_in, group, rows, lane);                          \
        for (int32_t r = 0; r < rows; r++)                                                                        \
            y[o + r] = (OUT)q4_requant_row(acc[r], mult[o + r], s, LO, HI);                                       \
        o += rows;                                                                                                \
    }
#endif

void gemv_q4_rvv_i8(int8_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const uint8_t *shift,
                    int32_t n_in, int32_t n_out, int32_t group, int32_t lo, int32_t hi)
{
    (void)n_out;
    GEMV_Q4_RVV_BODY(int8_t, q4_store_i8, -128, 127)
}

void gemv_q4_rvv_i16(int16_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const uint8_t *shift,
                     int32_t n_in, int32_t n_out, int32_t group, int32_t lo, int32_t hi)
{
    (void)n_out;
    GEMV_Q4_RVV_BODY(int16_t, q4_store_i16, -32768, 32767)
}

void gemv_q4_rvv_i32(int32_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const uint8_t *shift,
                     int32_t n_in, int32_t n_out, int32_t group, int32_t lo, int32_t hi)
{
    (void)n_out;
    GEMV_Q4_RVV_BODY(int32_t, q4_store_i32, INT32_MIN, INT32_MAX)
}
