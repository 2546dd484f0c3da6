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

/* rope_i8's formula on int16 values (the int16 keys), saturating to int16: |x0*c - x1*s| <= 2^15 * 2^14 * 2 = 2^30
 * stays within 32 bits */
static inline void rope_pair16(int16_t *y /* [2] */, const int16_t *x /* [2] */, int32_t c, int32_t s) {
    const int32_t x0 = x[0], x1 = x[1];
    int32_t y0 = round_q14(x0 * c - x1 * s), y1 = round_q14(x0 * s + x1 * c);
    if (DPL_UNLIKELY((((uint32_t)y0 + 32768u) | ((uint32_t)y1 + 32768u)) > 65535u))
        y0 = dpl_clamp16(y0), y1 = dpl_clamp16(y1);
    y[0] = (int16_t)y0, y[1] = (int16_t)y1;
}

/* (y0, y1) = sat16(round((x0*c - x1*s, x0*s + x1*c) / 2^14)) for pair i of every head; y may equal x */
void rope_i16(int16_t *y /* [n] */, const int16_t *x /* [n] */, const int16_t *cos_row /* [head_size/2] */,
              const int16_t *sin_row /* [head_size/2] */, int32_t n, int32_t head_size) {
    const int16_t *x_end = x + n;
    if (n == head_size) {
        for (; x != x_end; x += 2, y += 2) rope_pair16(y, x, *cos_row++, *sin_row++);
        return;
    }
    for (int32_t i = 0; i < head_size / 2; i++) {
        const int32_t c = cos_row[i], s = sin_row[i];
        int16_t *yp = y + 2 * i;
        for (const int16_t *xp = x + 2 * i; xp < x_end; xp += head_size, yp += head_size) rope_pair16(yp, xp, c, s);
    }
}
