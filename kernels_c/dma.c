/* dma.c: see dma.h. Synchronous stand-in for a DMA engine (a plain copy loop, which compilers turn into memcpy;
 * no <string.h>, so it also builds freestanding), with byte and transfer counters. */
#include <stddef.h>

#include "dma.h"

static void copy_bytes(unsigned char *dst, const unsigned char *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = src[i];
}

uint32_t dma_bytes = 0;
uint32_t dma_transfers = 0;

void dma_reset_counters(void) {
    dma_bytes = 0;
    dma_transfers = 0;
}

void dma_start(dma_job *job, void *dst, const void *src, uint32_t bytes) {
    copy_bytes((unsigned char *)dst, (const unsigned char *)src, (size_t)bytes);
    dma_bytes += bytes;
    dma_transfers++;
    job->pending++;
}

void dma_start_2d(dma_job *job, void *dst, const void *src, uint32_t rows, uint32_t row_bytes, uint32_t src_stride,
                  uint32_t dst_stride) {
    unsigned char *d = (unsigned char *)dst;
    const unsigned char *s = (const unsigned char *)src;
    for (uint32_t r = 0; r < rows; r++) copy_bytes(d + (size_t)r * dst_stride, s + (size_t)r * src_stride, (size_t)row_bytes);
    dma_bytes += rows * row_bytes;
    dma_transfers++;
    job->pending++;
}

void dma_wait(dma_job *job) {
    job->pending = 0;
}
