/* npu.c: see npu.h. Functional model of the int8 pointwise-layer accelerator and its driver.
 *
 * npu_submit() is the driver: it validates the job and copies it into the one-deep queue. npu_wait() is the
 * engine: it runs the queued job, walking the packed weights the way the array would, token by token, NPU_COLS
 * output channels at a time, one NPU_K-channel block of each after the other: a block's NPU_K products are summed in
 * int32 and added to the channel's int32 accumulator; then the NPU_COLS accumulators are requantized (64-bit
 * product, rounding half up, one shift) and clamped to out_bits. Only the n_in real input channels of the last
 * block are multiplied: the padding weights are zeros and x has no elements there (the hardware masks them), so
 * nothing past x's row is read. The integers are those of the cluster's linear layers (twins.linear, gemv.c).
 *
 * On RV32 the instructions of the engine's work (the job, its counter updates included, as those stand for the
 * hardware's own counters) are measured with minstret into npu_engine_instret[hart], so a caller can subtract them
 * and count what the core executes. The accelerator's time is modelled in npu_cycles instead (npu.h). */
#include <stddef.h>

#include "gemv.h"
#include "npu.h"
#include "perf.h"

uint64_t npu_engine_instret[DPL_MAX_HARTS];
uint64_t npu_jobs = 0;
uint64_t npu_macs = 0;
uint64_t npu_cycles = 0;

static npu_job queued;       /* the job waiting for npu_wait() */
static int queued_valid = 0; /* 1 while a job is queued */

void npu_reset_counters(void) {
    npu_jobs = 0;
    npu_macs = 0;
    npu_cycles = 0;
}

static int32_t ceil_div(int32_t a, int32_t b) {
    return (int32_t)((a + (b - 1)) / b);
}

static int validate(const npu_job *job) {
    if (job == NULL || job->x == NULL || job->w == NULL || job->mult == NULL || job->y == NULL) return NPU_ERR_NULL;
    if (job->n_in < 1 || job->n_out < 1 || job->n_tok < 1 || job->n_in > NPU_MAX_IN) return NPU_ERR_SIZE;
    if (job->x_stride < job->n_in || job->y_stride < job->n_out) return NPU_ERR_STRIDE;
    if (job->out_bits != 8 && job->out_bits != 16 && job->out_bits != 32) return NPU_ERR_BITS;
    if (job->shift < 0 || job->shift > 62) return NPU_ERR_SHIFT;
    if (((uintptr_t)job->mult & 3u) != 0 || ((uintptr_t)job->y & (uintptr_t)(job->out_bits / 8 - 1)) != 0)
        return NPU_ERR_ALIGN;
    return NPU_OK;
}

int npu_submit(const npu_job *job) {
    int status = validate(job);
    if (status != NPU_OK) return status;
    if (queued_valid) return NPU_ERR_BUSY;
    queued = *job;
    queued_valid = 1;
    return NPU_OK;
}

/* floor(acc * mult / 2^shift + 1/2) clamped to [lo, hi]; |acc * mult| <= 2^62, + 2^61 cannot overflow */
static int32_t requant(int32_t acc, int32_t mult, int32_t shift, int32_t lo, int32_t hi) {
    int64_t p = (int64_t)acc * (int64_t)mult;
    if (shift > 0) p = (p + ((int64_t)1 << (shift - 1))) >> shift;
    if (p < lo) return lo;
    if (p > hi) return hi;
    return (int32_t)p;
}

/* the sum of the n products of one weight block with the matching inputs: |sum| <= NPU_K * 2^14 */
static int32_t block_dot(const int8_t *w, const int8_t *x, int32_t n) {
    int32_t s = 0;
    for (int32_t i = 0; i < n; i++) s += (int32_t)w[i] * (int32_t)x[i];
    return s;
}

static void run(const npu_job *job) {
    const int32_t k_blocks = ceil_div(job->n_in, NPU_K);
    const size_t row = (size_t)k_blocks * NPU_K; /* bytes per packed weight row */
    const int32_t bits = job->out_bits;
    const int32_t hi = bits == 8 ? INT8_MAX : bits == 16 ? INT16_MAX : INT32_MAX;
    const int32_t lo = -hi - 1;
    int32_t acc[NPU_COLS];
    for (int32_t t = 0; t < job->n_tok; t++) {
        const int8_t *x = job->x + (size_t)t * (size_t)job->x_stride;
        for (int32_t o0 = 0; o0 < job->n_out; o0 += NPU_COLS) {
            const int32_t cols = job->n_out - o0 < NPU_COLS ? job->n_out - o0 : NPU_COLS;
            for (int32_t c = 0; c < cols; c++) acc[c] = 0;
            for (int32_t kb = 0; kb < k_blocks; kb++) { /* one array cycle: NPU_COLS x NPU_K MACs */
                const int32_t i0 = kb * NPU_K;
                const int32_t n = job->n_in - i0 < NPU_K ? job->n_in - i0 : NPU_K;
                for (int32_t c = 0; c < cols; c++)
                    acc[c] += block_dot(job->w + (size_t)(o0 + c) * row + (size_t)i0, x + i0, n);
            }
            const size_t y0 = (size_t)t * (size_t)job->y_stride + (size_t)o0;
            for (int32_t c = 0; c < cols; c++) {
                int32_t v = requant(acc[c], job->mult[o0 + c], job->shift, lo, hi);
                if (bits == 8)
                    ((int8_t *)job->y)[y0 + (size_t)c] = (int8_t)v;
                else if (bits == 16)
                    ((int16_t *)job->y)[y0 + (size_t)c] = (int16_t)v;
                else
                    ((int32_t *)job->y)[y0 + (size_t)c] = v;
            }
        }
    }
    npu_jobs += 1; /* the accelerator's own counters */
    npu_macs += (uint64_t)job->n_in * (uint64_t)job->n_out * (uint64_t)job->n_tok;
    npu_cycles += (uint64_t)NPU_SETUP_CYCLES + (uint64_t)k_blocks * (uint64_t)ceil_div(job->n_out, NPU_COLS) *
                                                   (uint64_t)job->n_tok;
}

int npu_wait(void) {
    if (!queued_valid) return NPU_ERR_IDLE;
    uint64_t t0 = dpl_instret(); /* the engine's work: everything the job makes the model execute */
    run(&queued);
    queued_valid = 0;
    npu_engine_instret[dpl_hart_id() % DPL_MAX_HARTS] += dpl_instret() - t0;
    return NPU_OK;
}

int npu_run_tok(const npu_job *job, const int32_t *tok) {
    const uint32_t m = (uint32_t)tok[0];
    int32_t s = tok[1], drop = 0, r0;
    int32_t m2[NPU_TOK_ROWS];
    npu_job part;
    if (job == NULL || job->w == NULL || job->mult == NULL || job->y == NULL) return NPU_ERR_NULL;
    if (job->n_tok != 1) return NPU_ERR_SIZE;
    if (job->out_bits != 8 && job->out_bits != 16 && job->out_bits != 32) return NPU_ERR_BITS;
    if (s < 0) return NPU_ERR_SHIFT;
    if (s > 62) drop = s - 62, s = 62; /* a token of tiny values: give up the multipliers' low bits */
    part = *job;
    part.shift = s;
    part.mult = m2;
    for (r0 = 0; r0 < job->n_out; r0 += NPU_TOK_ROWS) {
        const int32_t rows = job->n_out - r0 < NPU_TOK_ROWS ? job->n_out - r0 : NPU_TOK_ROWS;
        int status;
        gemv_tok_mults(m2, job->mult + r0, m, drop, rows);
        part.w = job->w + (size_t)r0 * (size_t)ceil_div(job->n_in, NPU_K) * NPU_K;
        part.y = (char *)job->y + (size_t)r0 * (size_t)(job->out_bits / 8);
        part.n_out = rows;
        part.y_stride = job->y_stride - r0;
        status = npu_submit(&part);
        if (status == NPU_OK) status = npu_wait();
        if (status != NPU_OK) return status;
    }
    return NPU_OK;
}
