/* dma.c: see dma.h. Synchronous stand-in for a DMA engine (a plain copy loop, which compilers turn into memcpy;
 * no <string.h>, so it also builds freestanding), with byte and transfer counters.
 *
 * The copy models a hardware DMA engine, which moves data without the cores. On RV32 the instructions the
 * emulated copy retires are measured (minstret around the loop) into dma_engine_instret, so a caller can
 * subtract them and count what a core executes, the transfer's setup included (the byte and transfer counters
 * stand for the engine's hardware counters, so their updates count as the engine's). The bytes and transfers
 * are costed by the compiler's DMA model instead (setup cycles + bytes / bandwidth). */
#include <stddef.h>

#include "dma.h"
#include "perf.h"

uint64_t dma_engine_instret[DPL_MAX_HARTS];

static void copy_bytes(unsigned char *dst, const unsigned char *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = src[i];
}

/* the engine's own work: everything between starting a transfer's copy and finishing it */
static uint64_t engine_begin(void) {
    return dpl_instret();
}

static void engine_end(uint64_t t0) {
    dma_engine_instret[dpl_hart_id() % DPL_MAX_HARTS] += dpl_instret() - t0;
}

#if defined(__riscv)
#define COUNT(var, n) __atomic_fetch_add(&(var), (uint32_t)(n), __ATOMIC_RELAXED) /* cores share the engine */
#else
#define COUNT(var, n) ((var) += (uint32_t)(n))
#endif

uint32_t dma_bytes = 0;
uint32_t dma_transfers = 0;

void dma_reset_counters(void) {
    dma_bytes = 0;
    dma_transfers = 0;
}

void dma_start(dma_job *job, void *dst, const void *src, uint32_t bytes) {
    uint64_t t0 = engine_begin();
    copy_bytes((unsigned char *)dst, (const unsigned char *)src, (size_t)bytes);
    COUNT(dma_bytes, bytes); /* the engine's own performance counters */
    COUNT(dma_transfers, 1);
    engine_end(t0);
    job->pending++;
}

void dma_start_2d(dma_job *job, void *dst, const void *src, uint32_t rows, uint32_t row_bytes, uint32_t src_stride,
                  uint32_t dst_stride) {
    unsigned char *d = (unsigned char *)dst;
    const unsigned char *s = (const unsigned char *)src;
    uint64_t t0 = engine_begin(); /* a 2-D transfer is one job for the engine: its row loop included */
    for (uint32_t r = 0; r < rows; r++) copy_bytes(d + (size_t)r * dst_stride, s + (size_t)r * src_stride, (size_t)row_bytes);
    COUNT(dma_bytes, rows * row_bytes);
    COUNT(dma_transfers, 1);
    engine_end(t0);
    job->pending++;
}

void dma_wait(dma_job *job) {
    job->pending = 0;
}
