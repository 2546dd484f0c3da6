/* tiles.c: see tiles.h. Only address arithmetic; the DMA does the copying. */
#include "tiles.h"

#include "gemv.h"

void linear_tile_load(dma_job *job, int8_t *w_tile, int32_t *mult_tile, uint8_t *shift_tile, const int8_t *w,
                      const int32_t *mult, const uint8_t *shift, int32_t r0, int32_t rows, int32_t row_bytes) {
    /* rows come in blocks of GEMV_ROWS_PER_BLOCK (r0 is a multiple); the last block is zero-padded */
    const int32_t padded = (rows + GEMV_ROWS_PER_BLOCK - 1) / GEMV_ROWS_PER_BLOCK * GEMV_ROWS_PER_BLOCK;
    dma_start(job, w_tile, w + (int64_t)r0 * row_bytes, (uint32_t)(padded * row_bytes));
    dma_start(job, mult_tile, mult + r0, (uint32_t)rows * sizeof *mult);
    if (shift_tile) /* none when the layer's shift comes with its input (a per-token scale) */
        dma_start(job, shift_tile, shift + r0, (uint32_t)rows);
}

void kv_tile_load(dma_job *job, int8_t *tile, const int8_t *head, int32_t t0, int32_t n_t, int32_t hs,
                  int32_t kv_dim) {
    dma_start_2d(job, tile, head + (int64_t)t0 * kv_dim, (uint32_t)n_t, (uint32_t)hs, (uint32_t)kv_dim, (uint32_t)hs);
}

/* two jobs: the layer being waited for and the next one's fetch, started before it runs */
static dma_job weight_stream_jobs[2];

void weight_stream_fetch(int32_t k, const TileFetch *fetch, int32_t n) {
    for (int32_t i = 0; i < n; i++)
        linear_tile_load(&weight_stream_jobs[k & 1], fetch[i].w_tile, fetch[i].mult_tile, fetch[i].shift_tile,
                         fetch[i].w, fetch[i].mult, fetch[i].shift, 0, fetch[i].rows, fetch[i].row_bytes);
}

void weight_stream_wait(int32_t k) {
    dma_wait(&weight_stream_jobs[k & 1]);
}
