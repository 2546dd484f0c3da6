/* dma.h: the tiny DMA API the generated code uses to stream tiles between memory levels (e.g. L2 -> L1).
 *
 * Usage: start transfers on a job, compute on something else, dma_wait(job) before touching the
 * destination (and before overwriting the source). A dma_job must be zero-initialised before first use.
 * This version (host and targets alike) copies synchronously with memcpy and counts the traffic;
 * a real DMA engine can replace dma.c without changing callers.
 */
#ifndef DEEPLOY_DMA_H
#define DEEPLOY_DMA_H

#include <stdint.h>

typedef struct { uint32_t pending; } dma_job;   /* transfers started and not yet waited for */

extern uint32_t dma_bytes;      /* bytes moved since the last dma_reset_counters() */
extern uint32_t dma_transfers;  /* transfers (a 2-D transfer counts once; so does a zero-byte one) */
/* per hart: instructions the emulated engine's copies retired (RV32; else 0) */
extern uint64_t dma_engine_instret[8];

void dma_reset_counters(void);

/* start copying `bytes` from src to dst; the data is valid at dst after dma_wait(job) */
void dma_start(dma_job *job, void *dst, const void *src, uint32_t bytes);

/* 2-D: `rows` rows of `row_bytes`, reading every `src_stride` bytes, writing every `dst_stride` bytes */
void dma_start_2d(dma_job *job, void *dst, const void *src, uint32_t rows, uint32_t row_bytes, uint32_t src_stride,
                  uint32_t dst_stride);

/* wait until every transfer started on `job` has landed */
void dma_wait(dma_job *job);

#endif /* DEEPLOY_DMA_H */
