/* rope.c: rotary position embedding on int8 activations with Q14 cos/sin tables */
#include "deeploy_kernels.h"

#define ROPE_FRAC 14 /* cos/sin rows are Q14 */

/* round(v / 2^14) half away from zero in 32 bits: v + (v >> 31) is v - (v < 0); |v| <= 2^24 here */
static inline int32_t round_q14(int32_t v) {
    return (v + (v >> 31) + (1 << (ROPE_FRAC - 1))) >> ROPE_FRAC;
}

/* one pair: (y0, y1) = sat8(round((x0*c - x1*s, x0*s + x1*c) / 2^14)); both are read before either is written */
static inline void rope_pair(int8_t *y /* [2] */, const int8_t *x /* [2] */, int32_t c, int32_t s) {
    const int32_t x0 = x[0], x1 = x[1];
    int32_t y0 = round_q14(x0 * c - x1 * s), y1 = round_q14(x0 * s + x1 * c);
    /* one test for both: either out of int8 sets a bit above the low 8 of the offset values */
    if (DPL_UNLIKELY((((uint32_t)y0 + 128u) | ((uint32_t)y1 + 128u)) > 255u)) y0 = dpl_clamp8(y0), y1 = dpl_clamp8(y1);
    y[0] = (int8_t)y0, y[1] = (int8_t)y1;
}

/* (y0, y1) = sat8(round((x0*c - x1*s, x0*s + x1*c) / 2^14)) for pair i of every head; y may equal x */
void rope_i8(int8_t *y /* [n] */, const int8_t *x /* [n] */, const int16_t *cos_row /* [head_size/2] */,
             const int16_t *sin_row /* [head_size/2] */, int32_t n, int32_t head_size) {
    const int8_t *x_end = x + n;
    if (n == head_size) { /* one head (a core's share): walk the pairs and the table rows together */
        for (; x != x_end; x += 2, y += 2) rope_pair(y, x, *cos_row++, *sin_row++);
        return;
    }
    /* several heads share the rows: pair i of every head with c, s loaded once */
    for (int32_t i = 0; i < head_size / 2; i++) {
        const int32_t c = cos_row[i], s = sin_row[i];
        int8_t *yp = y + 2 * i; /* [n - 2i], pair i of head 0 */
        for (const int8_t *xp = x + 2 * i; xp < x_end; xp += head_size, yp += head_size) rope_pair(yp, xp, c, s);
    }
}

/* rope_i8's formula on int16 values, saturating to [lo, hi] (constants where it is inlined: int16 for rope_i16, +-2047
 * for rope_q12): |x0*c - x1*s| <= 2^15 * 2^14 * 2 = 2^30 stays within 32 bits. One test for both: a value outside
 * [lo, hi] has an offset from lo above hi - lo, and so has the or of both offsets (for int16 only then; for +-2047 now
 * and then also with both inside, where the clamp changes nothing) */
static inline void rope_pair16(int16_t *y /* [2] */, const int16_t *x /* [2] */, int32_t c, int32_t s, int32_t lo,
                               int32_t hi) {
    const int32_t x0 = x[0], x1 = x[1];
    int32_t y0 = round_q14(x0 * c - x1 * s), y1 = round_q14(x0 * s + x1 * c);
    if (DPL_UNLIKELY((((uint32_t)y0 - (uint32_t)lo) | ((uint32_t)y1 - (uint32_t)lo)) > (uint32_t)(hi - lo))) {
        if (lo == INT16_MIN && hi == INT16_MAX) { /* int16: its own clamp */
            y0 = dpl_clamp16(y0), y1 = dpl_clamp16(y1);
        } else {
            y0 = y0 < lo ? lo : y0 > hi ? hi : y0;
            y1 = y1 < lo ? lo : y1 > hi ? hi : y1;
        }
    }
    y[0] = (int16_t)y0, y[1] = (int16_t)y1;
}

/* (y0, y1) = clamp(round((x0*c - x1*s, x0*s + x1*c) / 2^14), lo, hi) for pair i of every head; y may equal x */
static inline __attribute__((always_inline)) void rope16(int16_t *y, const int16_t *x, const int16_t *cos_row,
                                                         const int16_t *sin_row, int32_t n, int32_t head_size,
                                                         int32_t lo, int32_t hi) {
    const int16_t *x_end = x + n;
    if (n == head_size) {
        for (; x != x_end; x += 2, y += 2) rope_pair16(y, x, *cos_row++, *sin_row++, lo, hi);
        return;
    }
    for (int32_t i = 0; i < head_size / 2; i++) {
        const int32_t c = cos_row[i], s = sin_row[i];
        int16_t *yp = y + 2 * i;
        for (const int16_t *xp = x + 2 * i; xp < x_end; xp += head_size, yp += head_size) rope_pair16(yp, xp, c, s, lo, hi);
    }
}

/* (y0, y1) = sat16(round((x0*c - x1*s, x0*s + x1*c) / 2^14)) for pair i of every head; y may equal x */
void rope_i16(int16_t *y /* [n] */, const int16_t *x /* [n] */, const int16_t *cos_row /* [head_size/2] */,
              const int16_t *sin_row /* [head_size/2] */, int32_t n, int32_t head_size) {
    rope16(y, x, cos_row, sin_row, n, head_size, INT16_MIN, INT16_MAX);
}

/* rope_i16 into int12 queries: saturating to +-2047, symmetric, which keeps q . k within int32 for head sizes up to
 * 32 with int16 keys (kernels.qk_head_size_max); y may equal x */
void rope_q12(int16_t *y /* [n] */, const int16_t *x /* [n] */, const int16_t *cos_row /* [head_size/2] */,
              const int16_t *sin_row /* [head_size/2] */, int32_t n, int32_t head_size) {
    rope16(y, x, cos_row, sin_row, n, head_size, -2047, 2047);
}
