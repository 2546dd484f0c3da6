/* tiles.h: DMA helpers that move one tile of a streamed operand from a far level into L1. */
#ifndef DEEPLOY_TILES_H
#define DEEPLOY_TILES_H

#include <stdint.h>

#include "dma.h"

/* start moving rows [r0, r0 + rows) of a linear layer: its weights (in GEMV blocks, r0 a multiple of the block;
 * row_bytes per row: n_in for int8, layout.q4_row_bytes for int4), multipliers and shifts (shift_tile NULL: none) */
void linear_tile_load(dma_job *job, int8_t *w_tile /* [ceil(rows/R) * R, row_bytes] */, int32_t *mult_tile /* [rows] */,
                      uint8_t *shift_tile /* [rows] */, const int8_t *w /* [ceil(n_out/R) * R, row_bytes] */,
                      const int32_t *mult /* [n_out] */, const uint8_t *shift /* [n_out] */,
                      int32_t r0, int32_t rows, int32_t row_bytes);

/* start moving positions [t0, t0 + n_t) of one kv head (hs bytes at stride kv_dim) into a dense tile; one transfer.
 * Several consecutive kv heads at once: head = the first, hs = their count * head_size (each row side by side) */
void kv_tile_load(dma_job *job, int8_t *tile /* [n_t, hs] */, const int8_t *head /* [ctx, kv_dim] from this head */,
                  int32_t t0, int32_t n_t, int32_t hs, int32_t kv_dim);

/* the weight stream (passes/stream.py): a linear layer's first tile of rows [0, rows), which forward() fetches while
 * the units before the layer compute, so that the layer's cores start at once */
typedef struct {
    int8_t *w_tile;     /* its L1 buffers; shift_tile NULL: none (the shift comes with the input) */
    int32_t *mult_tile;
    uint8_t *shift_tile;
    const int8_t *w;    /* the layer's rows in the far level */
    const int32_t *mult;
    const uint8_t *shift;
    int32_t rows, row_bytes;
} TileFetch;

/* start fetching the tiles fetch[0..n) of the stream's k-th layer (of a fork group: every member's) */
void weight_stream_fetch(int32_t k, const TileFetch *fetch, int32_t n);
/* wait until the k-th layer's tiles have landed: the layer itself, before its cores read them */
void weight_stream_wait(int32_t k);

#endif
