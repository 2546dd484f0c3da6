/* gemv_rvv.c: the int8 GEMV with per-row requantization for cores with the RISC-V vector extension for embedded
 * cores (Zve32x, RVV 1.0) and Zvqdotq's 4-way int8 dot product; the same integers as gemv_i8/i16/i32 (gemv.c,
 * twins.linear): y[o] = sat(floor(sum_i W[o,i]*x[i] * mult[o] / 2^shift[0] + 1/2)).
 *
 * Layout (deeploy_dsl/kernels/layout.py: rvv_pack, chosen at compile time and recorded in the plan): blocks of
 * GEMV_RVV_ROWS = 32 output rows (one e32 register group at LMUL 8 and VLEN 128), and within a block, for each
 * quad of 4 input columns, the 32 rows' 4 weights, wv[b][j][r][k] = W[32b + r][4j + k] (zero padded to whole
 * quads and blocks). Output rows lie across the lanes: one vle32.v loads a quad's 128 bytes and one vqdot.vx
 * adds to every row the dot product of its 4 weights with the 4 activations x[4j..4j+3] broadcast from one
 * scalar register, so no row ever needs a reduction. Per quad: lw, vle32.v, vqdot.vx and the pointer steps,
 * ~4.5 instructions per 128 MACs. The requantization is vector too: for shifts >= 33 vmulh's high word decides it
 * (as in gemv.c), for 1..32 the whole 64-bit product (vmulh and vmul with the rounding's carry); shift 0 takes the
 * scalar 64-bit form per row.
 *
 * Without the vector unit (a host build of the same project) the file compiles to plain C over the same layout.
 * gcc 12 has no RVV intrinsics and no Zvqdotq mnemonics: vector code is inline asm, vqdot.vx is emitted by .insn
 * (funct6 101100, OPMVX; Spike's encoding.h MATCH_VQDOT_VX).
 */
#include "gemv_rvv.h"

#include "deeploy_kernels.h"

#define RVV_ROWS GEMV_RVV_ROWS
#define RVV_QUAD_BYTES (4 * RVV_ROWS) /* one quad of a block: 4 weights of each of its rows */

/* floor((acc * m + 2^(s-1)) / 2^s), 0 <= s <= 62, saturated to [lo, hi]: gemv.c's rounding, one row */
static int32_t requant_row(int32_t acc, int32_t m, int s, int32_t lo, int32_t hi)
{
    int64_t v = (int64_t)acc * m;
    if (s > 0)
        v = (v + ((int64_t)1 << (s - 1))) >> s;
    return v < lo ? lo : v > hi ? hi : (int32_t)v;
}

/* the 4 activations x[4j..4j+3] packed little-endian into one word (zeros past n_in) */
static uint32_t x_quad(const int8_t *x, int32_t j, int32_t n_in)
{
    uint32_t q = 0;
    for (int32_t k = 0; k < 4 && 4 * j + k < n_in; k++)
        q |= (uint32_t)(uint8_t)x[4 * j + k] << (8 * k);
    return q;
}

#if defined(__riscv_vector) || defined(__riscv_zve32x)
/* vd += dot4(vs2 lanes, rs1 bytes): vqdot.vx vd, vs2, rs1 (vm = 1; the register numbers stand for v registers) */
#define VQDOT_VX(vd, vs2, rs1) ".insn r 0x57, 0x6, 0x59, x" #vd ", " rs1 ", x" #vs2 "\n"

/* v0[0..rows) = the dot products of `rows` rows of a block (w: their first row's weights in the block's first quad;
 * quads RVV_QUAD_BYTES apart) with x: x read as words when aligned (4 quads per iteration), else byte by byte */
static void block_dot(const int8_t *w, const int8_t *x, int32_t n_in, int32_t rows)
{
    const int32_t quads = (n_in + 3) / 4;
    int32_t j = 0;
    __asm__ volatile("vsetvli zero, %0, e32, m8, ta, ma\n\tvmv.v.i v0, 0" : : "r"(rows));
    if (((uintptr_t)x & 3) == 0 && n_in >= 16) {
        const int8_t *xe = x + (n_in / 16) * 16;
        const int8_t *xp = x;
        __asm__ volatile("1:\n\t"
                         "lw t0, 0(%1)\n\tlw t1, 4(%1)\n\tlw t2, 8(%1)\n\tlw t3, 12(%1)\n\t"
                         "vle32.v v8, (%0)\n\taddi %0, %0, 128\n\t" VQDOT_VX(0, 8, "t0")
                         "vle32.v v16, (%0)\n\taddi %0, %0, 128\n\t" VQDOT_VX(0, 16, "t1")
                         "vle32.v v24, (%0)\n\taddi %0, %0, 128\n\t" VQDOT_VX(0, 24, "t2")
                         "vle32.v v8, (%0)\n\taddi %0, %0, 128\n\t" VQDOT_VX(0, 8, "t3")
                         "addi %1, %1, 16\n\tbne %1, %2, 1b"
                         : "+r"(w), "+r"(xp) : "r"(xe) : "t0", "t1", "t2", "t3", "memory");
        j = n_in / 16 * 4;
    }
    for (; j < quads; j++, w += RVV_QUAD_BYTES) {
        const uint32_t q = ((uintptr_t)x & 3) == 0 && 4 * j + 4 <= n_in ? *(const uint32_t *)(const void *)(x + 4 * j)
                                                                          : x_quad(x, j, n_in);
        __asm__ volatile("vle32.v v8, (%0)\n\t" VQDOT_VX(0, 8, "%1") : : "r"(w), "r"(q) : "memory");
    }
}

/* v0 = floor((v0 * mult + 2^(s-1)) / 2^s) for s >= 33: the high word of the product plus 2^(s-33), shifted by
 * s - 32 (the low word cannot carry into the floor); then clamped to [lo, hi] */
static void block_requant_high(const int32_t *mult, int s, int32_t lo, int32_t hi)
{
    __asm__ volatile("vle32.v v8, (%0)\n\tvmulh.vv v0, v0, v8\n\tvadd.vx v0, v0, %1\n\tvsra.vx v0, v0, %2\n\t"
                     "vmax.vx v0, v0, %3\n\tvmin.vx v0, v0, %4"
                     : : "r"(mult), "r"((int32_t)1 << (s - 33)), "r"(s - 32), "r"(lo), "r"(hi) : "memory");
}

/* the same for 1 <= s <= 32, from the whole 64-bit product: lo + 2^(s-1) with its carry into hi, then (hi:lo) >> s;
 * a result beyond int32 (hi >> (s-1) neither 0 nor -1) saturates by its sign; then clamped to [lo, hi]. The
 * accumulators move out of v0, which holds the masks */
static void block_requant_low(const int32_t *mult, int s, int32_t lo, int32_t hi, int32_t rows)
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

/* the int32 lanes of v0, already in range, narrowed and stored: 4 bytes per lane to int32 (v0), int16, int8 */
static void store_i32(int32_t *y, int32_t rows)
{
    __asm__ volatile("vsetvli zero, %1, e32, m8, ta, ma\n\tvse32.v v0, (%0)" : : "r"(y), "r"(rows) : "memory");
}

static void store_i16(int16_t *y, int32_t rows)
{
    __asm__ volatile("vsetvli zero, %1, e16, m4, ta, ma\n\tvnsra.wi v8, v0, 0\n\tvse16.v v8, (%0)"
                     : : "r"(y), "r"(rows) : "memory");
}

static void store_i8(int8_t *y, int32_t rows)
{
    __asm__ volatile("vsetvli zero, %1, e16, m4, ta, ma\n\tvnsra.wi v8, v0, 0\n\t"
                     "vsetvli zero, %1, e8, m2, ta, ma\n\tvnsra.wi v16, v8, 0\n\tvse8.v v16, (%0)"
                     : : "r"(y), "r"(rows) : "memory");
}

/* rows [lo, hi) of one GEMV of any output type (OUT the C type, STORE its narrowing store), a block's rows at a time;
 * a share that starts inside a block loads its rows from their lane's offset */
#define GEMV_RVV_BODY(OUT, STORE, LO, HI)                                                                         \
    const int s = shift[0];                                                                                       \
    const int32_t block_bytes = (n_in + 3) / 4 * RVV_QUAD_BYTES;                                                  \
    for (int32_t o = lo; o < hi;) {                                                                              \
        const int32_t lane = o % RVV_ROWS, left = hi - o;                                                         \
        const int32_t rows = left < RVV_ROWS - lane ? left : RVV_ROWS - lane;                                     \
        block_dot(w + o / RVV_ROWS * block_bytes + 4 * lane, x, n_in, rows);                                      \
        if (s >= 33) {                                                                                            \
            block_requant_high(mult + o, s, LO, HI);                                                              \
            STORE(y + o, rows);                                                                                   \
        } else if (s >= 1) {                                                                                      \
            block_requant_low(mult + o, s, LO, HI, rows);                                                         \
            STORE(y + o, rows);                                                                                   \
        } else {                                                                                                  \
            int32_t acc[RVV_ROWS];                                                                                \
            store_i32(acc, rows);                                                                                 \
            for (int32_t r = 0; r < rows; r++)                                                                    \
                y[o + r] = (OUT)requant_row(acc[r], mult[o + r], s, LO, HI);                                      \
        }                                                                                                         \
        o += rows;                                                                                                \
    }
#else
/* plain C over the same layout: the block's dot products row by row */
static void block_dot_c(int32_t *acc, const int8_t *w, const int8_t *x, int32_t n_in, int32_t rows)
{
    for (int32_t r = 0; r < rows; r++)
        acc[r] = 0;
    for (int32_t j = 0; j < (n_in + 3) / 4; j++, w += RVV_QUAD_BYTES) {
        const uint32_t q = x_quad(x, j, n_in);
        for (int32_t r = 0; r < rows; r++)
            for (int k = 0; k < 4; k++)
                acc[r] += (int32_t)w[4 * r + k] * (int8_t)(q >> (8 * k));
    }
}

#define GEMV_RVV_BODY(OUT, STORE, LO, HI)                                                                         \
    const int s = shift[0];                                                                                       \
    const int32_t block_bytes = (n_in + 3) / 4 * RVV_QUAD_BYTES;                                                  \
    for (int32_t o = lo; o < hi;) {                                                                              \
        const int32_t lane = o % RVV_ROWS, left = hi - o;                                                         \
        const int32_t rows = left < RVV_ROWS - lane ? left : RVV_ROWS - lane;                                     \
        int32_t acc[RVV_ROWS];                                                                                    \
        block_dot_c(acc, w + o / RVV_ROWS * block_bytes + 4 * lane, x, n_in, rows);                               \
        for (int32_t r = 0; r < rows; r++)                                                                        \
            y[o + r] = (OUT)requant_row(acc[r], mult[o + r], s, LO, HI);                                          \
        o += rows;                                                                                                \
    }
#endif

void gemv_rvv_i8(int8_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const uint8_t *shift,
                 int32_t n_in, int32_t n_out, int32_t lo, int32_t hi)
{
    (void)n_out;
    GEMV_RVV_BODY(int8_t, store_i8, -128, 127)
}

void gemv_rvv_i16(int16_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const uint8_t *shift,
                  int32_t n_in, int32_t n_out, int32_t lo, int32_t hi)
{
    (void)n_out;
    GEMV_RVV_BODY(int16_t, store_i16, -32768, 32767)
}

void gemv_rvv_i32(int32_t *y, const int8_t *x, const int8_t *w, const int32_t *mult, const uint8_t *shift,
                  int32_t n_in, int32_t n_out, int32_t lo, int32_t hi)
{
    (void)n_out;
    GEMV_RVV_BODY(int32_t, store_i32, INT32_MIN, INT32_MAX)
}
