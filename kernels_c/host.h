/* host.h: kernel variants for `target host` (host.c), which the host's rules (passes/rules.py HOST_RULES) emit in
 * place of the RV32-shaped ones. Same integers as their numpy twins (deeploy_dsl/kernels/twins.py); shaped so that
 * gcc vectorizes them at -O3 (and uses AVX2 or whatever the machine has at -O3 -march=native): weights row-major,
 * one contiguous int8 row per output (layout.host_rows), read where they are (no copies into L1 on a machine whose
 * memory is all one), int32 accumulators, no loop-carried tricks.
 */
#ifndef DEEPLOY_HOST_H
#define DEEPLOY_HOST_H

#include <stdint.h>

/* y[o] = sat8(floor(sum_i W[o,i]*x[i] * mult[o] / 2^shift[0] + 1/2)), W row-major [n_out, n_in] */
void gemv_rows_i8(int8_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* [n_out, n_in] */,
                  const int32_t *mult /* [n_out] */, const uint8_t *shift /* shift[0] read */, int32_t n_in,
                  int32_t n_out);
/* the same with sat16 */
void gemv_rows_i16(int16_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* [n_out, n_in] */,
                   const int32_t *mult /* [n_out] */, const uint8_t *shift /* shift[0] read */, int32_t n_in,
                   int32_t n_out);
/* the same with sat32 */
void gemv_rows_i32(int32_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* [n_out, n_in] */,
                   const int32_t *mult /* [n_out] */, const uint8_t *shift /* shift[0] read */, int32_t n_in,
                   int32_t n_out);

/* int4 weights with a scale per group of `group` input channels, row-major (layout.host_q4_rows; kernels.linear_q4):
 * y[o] = sat8(floor(sum_i q[o,i] * e[o, i/group] * x[i] * mult[o] / 2^shift[0] + 1/2)); n_in even, <= 8192, group a
 * multiple of 8 */
void gemv_q4_rows_i8(int8_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* host q4 rows */,
                     const int32_t *mult /* [n_out] */, const uint8_t *shift /* shift[0] read */, int32_t n_in,
                     int32_t n_out, int32_t group);
/* the same with sat16 */
void gemv_q4_rows_i16(int16_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* host q4 rows */,
                      const int32_t *mult /* [n_out] */, const uint8_t *shift /* shift[0] read */, int32_t n_in,
                      int32_t n_out, int32_t group);
/* the same with sat32 */
void gemv_q4_rows_i32(int32_t *y /* [n_out] */, const int8_t *x /* [n_in] */, const int8_t *w /* host q4 rows */,
                      const int32_t *mult /* [n_out] */, const uint8_t *shift /* shift[0] read */, int32_t n_in,
                      int32_t n_out, int32_t group);

/* attention_i8's integers (attention.c, kernels.attention) with K and V read where they are in the caches, one head
 * at a time: scratch holds that head's scores, then its exps; head_size <= 256 */
void attention_host_i8(int8_t *out /* [n_heads*head_size] */, const int8_t *q /* [n_heads*head_size] */,
                       const int8_t *k_cache /* [ctx, n_kv_heads*head_size] */,
                       const int8_t *v_cache /* [ctx, n_kv_heads*head_size] */, int32_t *scratch /* [pos+1] */,
                       int32_t pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_size, int32_t score_mult,
                       int32_t score_shift, int32_t score_cut, int32_t out_mult, int32_t out_shift,
                       const uint16_t *exp_table /* [512] */);
/* int16 keys in a transposed cache, k_cache [n_kv_heads*head_size, context] (a row per head dimension):
 * rope_k16_cols writes this token's rotated keys into column pos (rope_i16's integers), attention_host_k16t reads them
 * (attention_k16's integers) */
void rope_k16_cols(int16_t *kt /* [n, context] */, const int16_t *x /* [n] */, const int16_t *cos_row /* [hs/2] */,
                   const int16_t *sin_row /* [hs/2] */, int32_t n, int32_t head_size, int32_t pos, int32_t context);
void attention_host_k16t(int8_t *out /* [n_heads*head_size] */, const int8_t *q /* [n_heads*head_size] */,
                         const int16_t *k_cache /* [n_kv_heads*head_size, context] */,
                         const int8_t *v_cache /* [context, n_kv_heads*head_size] */, int32_t *scratch /* [pos+1] */,
                         int32_t pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_size, int32_t score_mult,
                         int32_t score_shift, int32_t score_cut, int32_t out_mult, int32_t out_shift,
                         const uint16_t *exp_table /* [512] */, int32_t context);

#endif /* DEEPLOY_HOST_H */
