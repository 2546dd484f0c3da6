/* npu.h: driver API of the int8 pointwise-layer accelerator (the NPU, standing in for Siracusa's N-EUREKA), and
 * its functional model (npu.c).
 *
 * One job is a linear layer over n_tok tokens, the same integers as the cluster's linear layers (twins.linear /
 * gemv_i8/i16/i32; the numpy twin is kernels.npu_linear):
 *     y[t][o] = clamp(floor(sum_i W[o][i] * x[t][i] * mult[o] / 2^shift + 1/2))   t < n_tok, o < n_out
 * int8 x int8 products are accumulated in int32 per block of NPU_K input channels and the blocks summed in int32
 * (n_in < 2^17, as in gemv.h, so no sum can overflow), then requantized in 64 bits with rounding half up and
 * clamped to the out_bits range.
 *
 * Weights live in the NPU's own weight memory in its layout (deeploy_dsl/kernels/layout.py npu_pack): row o of W is
 * n_in bytes followed by zeros up to k_blocks * NPU_K bytes, k_blocks = ceil(n_in / NPU_K), rows back to back.
 * The engine reads nothing outside x's n_tok rows of n_in, the packed rows, mult[0 .. n_out) and writes only
 * y's n_tok rows of n_out: the bytes between rows (strides) are neither read nor written.
 *
 * Use: fill an npu_job, npu_submit(&job) (validates it and queues a copy, so the descriptor may be reused at once),
 * work on something else, npu_wait() (the result is in y). x, w, mult must stay valid and unchanged and y must not
 * be touched until npu_wait() returns: the functional model runs the job inside npu_wait(), as the hardware would
 * be reading and writing them meanwhile. The queue holds one job; one core drives the NPU at a time (the counters
 * below are plain, not atomic, updates).
 */
#ifndef DEEPLOY_NPU_H
#define DEEPLOY_NPU_H

#include <stdint.h>

/* one job: y[t][o] = clamp(floor(sum_i W[o][i] * x[t][i] * mult[o] / 2^shift + 1/2)) for t < n_tok, o < n_out */
typedef struct {
    const int8_t *x;      /* [n_tok, x_stride] int8 activations */
    const int8_t *w;      /* NPU layout (npu_pack): [n_out, k_blocks * NPU_K] row-major, input channels zero-padded */
    const int32_t *mult;  /* [n_out] per-channel multipliers */
    void *y;              /* [n_tok, y_stride] of out_bits (8, 16 or 32) */
    int32_t shift;        /* one shift per layer, 0..62 */
    int32_t n_in, n_out, n_tok;
    int32_t x_stride, y_stride; /* in elements */
    int32_t out_bits;
} npu_job;

#define NPU_K 32             /* input channels per weight block; must equal deeploy_dsl.kernels.layout.NPU_K */
/* The timing model (kernels.npu_cycles is its twin, the compiler's cost model): an array of NPU_COLS output
 * channels x NPU_K input channels does one block of NPU_COLS x NPU_K MACs per cycle, after NPU_SETUP_CYCLES per
 * job. Both figures are ASSUMPTIONS standing in for N-EUREKA's real ones, which are not modelled here. */
#define NPU_COLS 32          /* output channels per cycle */
#define NPU_SETUP_CYCLES 100 /* per job: descriptor fetch, pipeline fill and drain */
#define NPU_MAX_IN 131071    /* n_in < 2^17: |sum| <= n_in * 2^14 fits int32 */

/* statuses: npu_submit rejects a malformed job (nothing is queued or computed, no counter moves) */
#define NPU_OK 0
#define NPU_ERR_NULL (-1)   /* x, w, mult or y is NULL */
#define NPU_ERR_SIZE (-2)   /* n_in, n_out or n_tok < 1, or n_in > NPU_MAX_IN */
#define NPU_ERR_STRIDE (-3) /* x_stride < n_in or y_stride < n_out */
#define NPU_ERR_BITS (-4)   /* out_bits not 8, 16 or 32 */
#define NPU_ERR_SHIFT (-5)  /* shift outside 0..62 */
#define NPU_ERR_ALIGN (-6)  /* mult not 4-byte aligned, or y not aligned to its element */
#define NPU_ERR_BUSY (-7)   /* npu_submit while a job is queued (npu_wait first) */
#define NPU_ERR_IDLE (-8)   /* npu_wait with no job queued */

int npu_submit(const npu_job *job); /* queue a job (depth 1); returns NPU_OK or NPU_ERR_* for a malformed job */
int npu_wait(void);                 /* run the queued job to completion (functional model); returns its status */

/* A one-token job whose input has a per-token factor tok = {m (uint32 bits), s} (quantize dynamic norm, final_norm,
 * swiglu_absmax; kernels.linear_tok): job->mult are the multipliers made for factor 1, job->shift is not read. The core
 * makes the multipliers floor(mult[o] * m / 2^32) (s above 62: 62, and the multipliers shifted right by s - 62) for
 * NPU_TOK_ROWS rows at a time on its stack and runs a job per chunk of rows with shift s (submit, wait): the same integers
 * as the cluster's gemv_tok_*. Returns NPU_OK or the first failing job's status (its chunk and the rest not run). */
#define NPU_TOK_ROWS 128 /* rows per job: 512 B of multipliers on the stack */
int npu_run_tok(const npu_job *job, const int32_t *tok /* [2] */);

/* RV32: instructions the functional model retired, per hart (the one that called npu_wait), to subtract from core
 * counts (like dma_engine_instret in dma.c): the job's execution and counter updates; validation at submit counts
 * as the core's. 0 on hosts without a counter. */
extern uint64_t npu_engine_instret[8];
/* counters since the last npu_reset_counters(): jobs run, MACs done (n_in * n_out * n_tok per job, the padding
 * excluded), modelled accelerator cycles (NPU_SETUP_CYCLES + ceil(n_in/NPU_K) * ceil(n_out/NPU_COLS) * n_tok) */
extern uint64_t npu_jobs, npu_macs, npu_cycles;

void npu_reset_counters(void); /* zero npu_jobs, npu_macs, npu_cycles (not npu_engine_instret) */

#endif /* DEEPLOY_NPU_H */
