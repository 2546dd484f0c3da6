/* rv32_harness.c: runs the kernels of kernels_c/ on RV32 under QEMU for tests/test_kernels_rv32.py.
 *
 * Usage (semihosting argv): rv32_harness JOB.bin OUT.bin
 *
 * The job file is a little-endian stream of cases, each a tiny program over its own arrays:
 *   job   = u32 magic "DPLJ", u32 n_cases, case * n_cases
 *   case  = u32 n_arrays, u32 n_calls, array * n_arrays, call * n_calls
 *   array = u32 nbytes, u32 flags (bit 0: write back after the calls), data padded to a multiple of 8 bytes
 *   call  = u32 fn (index into FNS below), u32 n_args, arg * n_args
 *   arg   = i32 kind (-1: scalar; else the index of an array), u32 0, i64 value (the scalar, or a byte offset)
 * Arrays land 16-byte aligned in a static arena, each followed by CANARY guard bytes. The output file is
 *   out   = u32 magic "DPLO", u32 n_cases, result * n_cases
 *   result= u32 n_calls, u32 first_bad_canary (array index + 1; 0 = all guards intact),
 *           (i64 return value, u64 instructions retired) * n_calls, write-back arrays' data padded to 8 bytes
 * The pointer/scalar signature of every function is the string in FNS (p: pointer, i: scalar); the Python
 * side reads FNS from this file, so the two cannot drift apart. Exit codes: 0 ok, 2 usage, 3 I/O, 4 bad job.
 */
#define _POSIX_C_SOURCE 200809L /* open/read/write: picolibc's fread/fwrite cross semihosting byte by byte
                                   (~3 s for 9 MB), read/write once per buffer (~0.06 s) */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "deeploy_kernels.h"
#include "swiglu16.h"
#include "wide.h"
#include "rmsnorm_tok.h"
#include "dma.h"
#include "perf.h"
#include "tiles.h"
#ifdef DPL_HAVE_GEMV
#include "gemv.h"
#endif

/* X(name, signature): the functions a call can name, in id order */
#define FNS_BASE(X)                                                                                                   \
    X(linear_i8, "pppppii")                                                                                           \
    X(linear_i16, "pppppii")                                                                                          \
    X(linear_i32, "pppppii")                                                                                          \
    X(rmsnorm_i8, "pppiii")                                                                                           \
    X(rope_i8, "ppppii")                                                                                              \
    X(attention_i8, "pppppiiiiiiiiip")                                                                                \
    X(attn_scores_i8, "pipppiiiii")                                                                                   \
    X(rope_i16, "ppppii")                                                                                             \
    X(attention_k16, "pppppiiiiiiiiip")                                                                               \
    X(attn_scores_k16, "pipppiiiii")                                                                                  \
    X(rope_q12, "ppppii")                                                                                             \
    X(attention_q12, "pppppiiiiiiiiip")                                                                               \
    X(attention_q12k16, "pppppiiiiiiiiip")                                                                            \
    X(attention_q16, "pppppiiiiiiiiip")                                                                               \
    X(attn_scores_q12, "pipppiiiii")                                                                                  \
    X(attn_scores_q12k16, "pipppiiiii")                                                                               \
    X(attn_scores_q16, "pipppiiiii")                                                                                  \
    X(attn_exp_av_i8, "pppippiiiiippo")                                                                              \
    X(attn_out_i8, "pppiiiii")                                                                                        \
    X(zero_i32, "pi")                                                                                                 \
    X(swiglu_i8, "ppppiii")                                                                                           \
    X(swiglu_dyn_i8, "ppppppii")                                                                                       \
    X(residual_add_i16, "pppi")                                                                                            \
    X(embed_i16, "ppppi")                                                                                             \
    X(argmax_i32, "pi")                                                                                               \
    X(dma_reset_counters, "")                                                                                         \
    X(dma_start, "pppi")                                                                                              \
    X(dma_start_2d, "pppiiii")                                                                                        \
    X(dma_wait, "p")                                                                                                  \
    X(dma_counters, "")                                                                                               \
    X(linear_tile_load, "pppppppiii")                                                                                 \
    X(kv_tile_load, "pppiiii")                                                                                        \
    X(attention_tiled, "pppppipppppiiiiiiiiipiiii")                                                                   \
    X(rmsnorm_tok_i8_part, "ppppiiiiii")                                                                              \
    X(swiglu_tok_i8, "ppppppii")                                                                             \
    X(swiglu16_tok_i8, "ppppppii")                                                                           \
    X(rmsnorm_tok_i8, "ppppiiii")                                                                            \
    X(rmsnorm_tok_i8_span, "ppppiiiipiiii") X(rmsnorm_tok_i8_out, "ppppiiiipiiii")                                  \
    X(swiglu16_tok_i8_span, "ppppppiipiiii") X(swiglu16_tok_i8_out, "ppppppiipiiii")                                  \
    X(sample_top_p_i32, "ppiiipp")                                                                                   \
    X(swiglu_dyn_i8_span, "ppppppiipiiii") X(swiglu_dyn_i8_out, "ppppppiipiiii")                                          \
    X(swiglu_tok_i8_span, "ppppppiipiiii") X(swiglu_tok_i8_out, "ppppppiipiiii")                                      \
    X(gemv_x16_tok_i16, "pppppii") X(gemv_w16_tok_i32, "pppppii")                                                     \
    X(swiglu_tok_i16, "ppppppiii") X(swiglu16_tok_i16, "ppppppiii")                                                  \
    X(swiglu_tok_i16_span, "ppppppiiipiiii") X(swiglu_tok_i16_out, "ppppppiiipiiii")                                  \
    X(swiglu16_tok_i16_span, "ppppppiiipiiii") X(swiglu16_tok_i16_out, "ppppppiiipiiii")
#ifdef DPL_HAVE_GEMV
#define FNS(X)                                                                                                        \
    FNS_BASE(X) X(gemv_i8, "pppppii") X(gemv_i16, "pppppii") X(gemv_i32, "pppppii") X(gemv_q4_i8, "pppppiii")          \
    X(gemv_q4_i16, "pppppiii") X(gemv_q4_i32, "pppppiii") X(gemv_tok_i8, "pppppii") X(gemv_tok_i16, "pppppii")      \
    X(gemv_tok_i32, "pppppii") X(gemv_q4_tok_i8, "pppppiii") X(gemv_q4_tok_i16, "pppppiii")                          \
    X(gemv_q4_tok_i32, "pppppiii")
#else
#define FNS(X) FNS_BASE(X)
#endif

enum {
#define X(name, sig) FN_##name,
    FNS(X)
#undef X
    FN_COUNT
};

static const char *const SIGS[FN_COUNT] = {
#define X(name, sig) sig,
    FNS(X)
#undef X
};

#define MAX_ARRAYS 64
#define MAX_CALLS 4096
#define MAX_ARGS 25
#define ARENA_BYTES (10u << 20)
#define CANARY 16
#define CANARY_BYTE 0xA5

static uint8_t arena[ARENA_BYTES] __attribute__((aligned(16)));
static uint8_t *arr_ptr[MAX_ARRAYS];
static uint32_t arr_bytes[MAX_ARRAYS], arr_flags[MAX_ARRAYS];
static int64_t rets[MAX_CALLS];
static uint64_t instrets[MAX_CALLS];
static int job = -1, out = -1;

static int fail(int code, const char *what) {
    fprintf(stderr, "rv32_harness: %s\n", what);
    return code;
}

/* buffered reads and writes, refilled / flushed with one semihosting call per IO_BUF bytes (or per large array) */
#define IO_BUF (64u << 10)
static uint8_t in_buf[IO_BUF], out_buf[IO_BUF];
static uint32_t in_pos, in_len, out_len;

static int read_exact(void *dst, uint32_t n) {
    uint8_t *d = dst;
    while (n > 0) {
        if (in_pos == in_len) {
            ssize_t got;
            if (n >= IO_BUF) { /* a large array: straight into place */
                got = read(job, d, n);
                if (got <= 0) return 0;
                d += got;
                n -= (uint32_t)got;
                continue;
            }
            got = read(job, in_buf, IO_BUF);
            if (got <= 0) return 0;
            in_pos = 0;
            in_len = (uint32_t)got;
        }
        uint32_t k = in_len - in_pos < n ? in_len - in_pos : n;
        memcpy(d, in_buf + in_pos, k);
        in_pos += k;
        d += k;
        n -= k;
    }
    return 1;
}

static int read_u32(uint32_t *v) {
    uint8_t b[4];
    if (!read_exact(b, 4)) return 0;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return 1;
}

static int read_i64(int64_t *v) {
    uint32_t lo, hi;
    if (!read_u32(&lo) || !read_u32(&hi)) return 0;
    *v = (int64_t)(((uint64_t)hi << 32) | lo);
    return 1;
}

static int flush_out(void) {
    const uint8_t *p = out_buf;
    while (out_len > 0) {
        ssize_t put = write(out, p, out_len);
        if (put <= 0) return 0;
        p += put;
        out_len -= (uint32_t)put;
    }
    return 1;
}

static int write_exact(const void *src, uint32_t n) {
    const uint8_t *s = src;
    while (n > 0) {
        if (out_len == IO_BUF && !flush_out()) return 0;
        uint32_t k = IO_BUF - out_len < n ? IO_BUF - out_len : n;
        memcpy(out_buf + out_len, s, k);
        out_len += k;
        s += k;
        n -= k;
    }
    return 1;
}

static int write_u32(uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return write_exact(b, 4);
}

static int write_u64(uint64_t v) {
    return write_u32((uint32_t)v) && write_u32((uint32_t)(v >> 32));
}

static uint32_t pad8(uint32_t n) {
    return (8u - (n & 7u)) & 7u;
}

/* attention_i8 rebuilt from the tiled kernels as the generated code composes them: kv heads `lanes` at a time (the
 * last group maybe fewer), lane l with scores + l*g*stride, acc + l*g*hs, sums + l*g, max + l*g; per group scores
 * and their max over tiles of T positions of K, exp-weighted sums and exp sums over tiles of V (from 0 at the
 * first), finished on the last; K and V read in place from the caches (use_dma = 0) or, each tile of the group's
 * kv heads side by side, copied dense into `tile` by one kv_tile_load */
static void attention_tiled(int8_t *out, const int8_t *q, const int8_t *k_cache, const int8_t *v_cache,
                            int32_t *scores /* [lanes, g, stride] */, int32_t stride, int32_t *acc /* [lanes, g*hs] */,
                            int32_t *sums /* [lanes, g] */, int32_t *max /* [lanes, g] */,
                            int8_t *tile /* [T, lanes*hs] */, dma_job *job, int32_t pos, int32_t n_heads,
                            int32_t n_kv_heads, int32_t hs, int32_t score_mult, int32_t score_shift, int32_t score_cut,
                            int32_t out_mult, int32_t out_shift, const uint16_t *table, int32_t bits, int32_t T,
                            int32_t use_dma, int32_t lanes) {
    int32_t n = pos + 1, g = n_heads / n_kv_heads, kv_dim = n_kv_heads * hs;
    const int32_t prm[6] = {score_mult, score_shift, score_cut, out_mult, out_shift, bits};
    for (int32_t h0 = 0; h0 < n_kv_heads; h0 += lanes) {
        const int32_t nl = n_kv_heads - h0 < lanes ? n_kv_heads - h0 : lanes;
        for (int32_t t0 = 0; t0 < n; t0 += T) {
            int32_t n_t = n - t0 < T ? n - t0 : T;
            const int8_t *k = k_cache + (size_t)t0 * (size_t)kv_dim + (size_t)(h0 * hs);
            if (use_dma) {
                kv_tile_load(job, tile, k_cache + h0 * hs, t0, n_t, nl * hs, kv_dim);
                dma_wait(job);
            }
            for (int32_t l = 0; l < nl; l++)
                attn_scores_i8(scores + l * g * stride, stride, max + l * g, q + (h0 + l) * g * hs,
                               (use_dma ? tile : k) + l * hs, use_dma ? nl * hs : kv_dim, t0, n_t, g, hs);
        }
        for (int32_t t0 = 0; t0 < n; t0 += T) {
            int32_t n_t = n - t0 < T ? n - t0 : T;
            const int8_t *v = v_cache + (size_t)t0 * (size_t)kv_dim + (size_t)(h0 * hs);
            if (use_dma) {
                kv_tile_load(job, tile, v_cache + h0 * hs, t0, n_t, nl * hs, kv_dim);
                dma_wait(job);
            }
            for (int32_t l = 0; l < nl; l++)
                attn_exp_av_i8(acc + l * g * hs, sums + l * g, scores + l * g * stride, stride, max + l * g,
                               (use_dma ? tile : v) + l * hs, use_dma ? nl * hs : kv_dim, t0, n_t, g, hs, prm, table,
                               t0 + n_t == n ? out + (h0 + l) * g * hs : (int8_t *)0);
        }
    }
}

/* run one call; p[i] / s[i] hold argument i as a pointer / scalar (the other is unused) */
static int64_t dispatch(uint32_t fn, void **p, const int64_t *s) {
#define I(k) ((int32_t)s[k])
#define U(k) ((uint32_t)s[k])
    switch (fn) {
    case FN_linear_i8: linear_i8(p[0], p[1], p[2], p[3], p[4], I(5), I(6)); return 0;
    case FN_linear_i16: linear_i16(p[0], p[1], p[2], p[3], p[4], I(5), I(6)); return 0;
    case FN_linear_i32: linear_i32(p[0], p[1], p[2], p[3], p[4], I(5), I(6)); return 0;
    case FN_rmsnorm_i8: rmsnorm_i8(p[0], p[1], p[2], I(3), s[4], I(5)); return 0;
    case FN_rope_i8: rope_i8(p[0], p[1], p[2], p[3], I(4), I(5)); return 0;
    case FN_attention_i8:
        attention_i8(p[0], p[1], p[2], p[3], p[4], I(5), I(6), I(7), I(8), I(9), I(10), I(11), I(12), I(13), p[14]);
        return 0;
    case FN_attn_scores_i8: attn_scores_i8(p[0], I(1), p[2], p[3], p[4], I(5), I(6), I(7), I(8), I(9)); return 0;
    case FN_rope_i16: rope_i16(p[0], p[1], p[2], p[3], I(4), I(5)); return 0;
    case FN_attention_k16:
        attention_k16(p[0], p[1], p[2], p[3], p[4], I(5), I(6), I(7), I(8), I(9), I(10), I(11), I(12), I(13), p[14]);
        return 0;
    case FN_attn_scores_k16: attn_scores_k16(p[0], I(1), p[2], p[3], p[4], I(5), I(6), I(7), I(8), I(9)); return 0;
    case FN_rope_q12: rope_q12(p[0], p[1], p[2], p[3], I(4), I(5)); return 0;
    case FN_attention_q12:
        attention_q12(p[0], p[1], p[2], p[3], p[4], I(5), I(6), I(7), I(8), I(9), I(10), I(11), I(12), I(13), p[14]);
        return 0;
    case FN_attention_q12k16:
        attention_q12k16(p[0], p[1], p[2], p[3], p[4], I(5), I(6), I(7), I(8), I(9), I(10), I(11), I(12), I(13), p[14]);
        return 0;
    case FN_attention_q16:
        attention_q16(p[0], p[1], p[2], p[3], p[4], I(5), I(6), I(7), I(8), I(9), I(10), I(11), I(12), I(13), p[14]);
        return 0;
    case FN_attn_scores_q12: attn_scores_q12(p[0], I(1), p[2], p[3], p[4], I(5), I(6), I(7), I(8), I(9)); return 0;
    case FN_attn_scores_q12k16:
        attn_scores_q12k16(p[0], I(1), p[2], p[3], p[4], I(5), I(6), I(7), I(8), I(9));
        return 0;
    case FN_attn_scores_q16: attn_scores_q16(p[0], I(1), p[2], p[3], p[4], I(5), I(6), I(7), I(8), I(9)); return 0;
    case FN_attn_exp_av_i8:
        attn_exp_av_i8(p[0], p[1], p[2], I(3), p[4], p[5], I(6), I(7), I(8), I(9), I(10), p[11], p[12], p[13]);
        return 0;
    case FN_attn_out_i8: attn_out_i8(p[0], p[1], p[2], I(3), I(4), I(5), I(6), I(7)); return 0;
    case FN_zero_i32: zero_i32(p[0], I(1)); return 0;
    case FN_swiglu_i8: swiglu_i8(p[0], p[1], p[2], p[3], I(4), I(5), I(6)); return 0;
    case FN_swiglu_dyn_i8: swiglu_dyn_i8(p[0], p[1], p[2], p[3], p[4], p[5], I(6), I(7)); return 0;
    case FN_residual_add_i16: residual_add_i16(p[0], p[1], p[2], I(3)); return 0;
    case FN_embed_i16: embed_i16(p[0], p[1], p[2], p[3], I(4)); return 0;
    case FN_argmax_i32: return argmax_i32(p[0], I(1));
    case FN_sample_top_p_i32: return sample_top_p_i32(p[0], p[1], I(2), I(3), I(4), p[5], p[6]);
    case FN_swiglu_dyn_i8_span: swiglu_dyn_i8_span(p[0], p[1], p[2], p[3], p[4], p[5], I(6), I(7), p[8], I(9), I(10), I(11), I(12)); return 0;
    case FN_swiglu_dyn_i8_out: swiglu_dyn_i8_out(p[0], p[1], p[2], p[3], p[4], p[5], I(6), I(7), p[8], I(9), I(10), I(11), I(12)); return 0;
    case FN_swiglu_tok_i8_span: swiglu_tok_i8_span(p[0], p[1], p[2], p[3], p[4], p[5], I(6), I(7), p[8], I(9), I(10), I(11), I(12)); return 0;
    case FN_swiglu_tok_i8_out: swiglu_tok_i8_out(p[0], p[1], p[2], p[3], p[4], p[5], I(6), I(7), p[8], I(9), I(10), I(11), I(12)); return 0;
    case FN_dma_reset_counters: dma_reset_counters(); return 0;
    case FN_dma_start: dma_start(p[0], p[1], p[2], U(3)); return ((dma_job *)p[0])->pending;
    case FN_dma_start_2d:
        dma_start_2d(p[0], p[1], p[2], U(3), U(4), U(5), U(6));
        return ((dma_job *)p[0])->pending;
    case FN_dma_wait: dma_wait(p[0]); return ((dma_job *)p[0])->pending;
    case FN_dma_counters: return (int64_t)(((uint64_t)dma_transfers << 32) | dma_bytes);
    case FN_linear_tile_load:
        linear_tile_load(p[0], p[1], p[2], p[3], p[4], p[5], p[6], I(7), I(8), I(9));
        return ((dma_job *)p[0])->pending;
    case FN_kv_tile_load: kv_tile_load(p[0], p[1], p[2], I(3), I(4), I(5), I(6)); return ((dma_job *)p[0])->pending;
    case FN_attention_tiled:
        attention_tiled(p[0], p[1], p[2], p[3], p[4], I(5), p[6], p[7], p[8], p[9], p[10], I(11), I(12), I(13), I(14),
                        I(15), I(16), I(17), I(18), I(19), p[20], I(21), I(22), I(23), I(24));
        return 0;
    case FN_rmsnorm_tok_i8_part:
        rmsnorm_tok_i8_part(p[0], p[1], p[2], p[3], I(4), s[5], I(6), I(7), I(8), I(9));
        return 0;
    case FN_swiglu_tok_i8: swiglu_tok_i8(p[0], p[1], p[2], p[3], p[4], p[5], I(6), I(7)); return 0;
    case FN_rmsnorm_tok_i8: rmsnorm_tok_i8(p[0], p[1], p[2], p[3], I(4), s[5], I(6), I(7)); return 0;
    case FN_rmsnorm_tok_i8_span:
        rmsnorm_tok_i8_span(p[0], p[1], p[2], p[3], I(4), s[5], I(6), I(7), p[8], I(9), I(10), I(11), I(12));
        return 0;
    case FN_rmsnorm_tok_i8_out:
        rmsnorm_tok_i8_out(p[0], p[1], p[2], p[3], I(4), s[5], I(6), I(7), p[8], I(9), I(10), I(11), I(12));
        return 0;
    case FN_swiglu16_tok_i8: swiglu16_tok_i8(p[0], p[1], p[2], p[3], p[4], p[5], I(6), I(7)); return 0;
    case FN_gemv_x16_tok_i16: gemv_x16_tok_i16(p[0], p[1], p[2], p[3], p[4], I(5), I(6)); return 0;
    case FN_gemv_w16_tok_i32: gemv_w16_tok_i32(p[0], p[1], p[2], p[3], p[4], I(5), I(6)); return 0;
    case FN_swiglu_tok_i16: swiglu_tok_i16(p[0], p[1], p[2], p[3], p[4], p[5], I(6), I(7), I(8)); return 0;
    case FN_swiglu16_tok_i16: swiglu16_tok_i16(p[0], p[1], p[2], p[3], p[4], p[5], I(6), I(7), I(8)); return 0;
    case FN_swiglu_tok_i16_span:
        swiglu_tok_i16_span(p[0], p[1], p[2], p[3], p[4], p[5], I(6), I(7), I(8), p[9], I(10), I(11), I(12), I(13));
        return 0;
    case FN_swiglu_tok_i16_out:
        swiglu_tok_i16_out(p[0], p[1], p[2], p[3], p[4], p[5], I(6), I(7), I(8), p[9], I(10), I(11), I(12), I(13));
        return 0;
    case FN_swiglu16_tok_i16_span:
        swiglu16_tok_i16_span(p[0], p[1], p[2], p[3], p[4], p[5], I(6), I(7), I(8), p[9], I(10), I(11), I(12), I(13));
        return 0;
    case FN_swiglu16_tok_i16_out:
        swiglu16_tok_i16_out(p[0], p[1], p[2], p[3], p[4], p[5], I(6), I(7), I(8), p[9], I(10), I(11), I(12), I(13));
        return 0;
    case FN_swiglu16_tok_i8_span:
        swiglu16_tok_i8_span(p[0], p[1], p[2], p[3], p[4], p[5], I(6), I(7), p[8], I(9), I(10), I(11), I(12));
        return 0;
    case FN_swiglu16_tok_i8_out:
        swiglu16_tok_i8_out(p[0], p[1], p[2], p[3], p[4], p[5], I(6), I(7), p[8], I(9), I(10), I(11), I(12));
        return 0;
#ifdef DPL_HAVE_GEMV
    case FN_gemv_tok_i8: gemv_tok_i8(p[0], p[1], p[2], p[3], p[4], I(5), I(6)); return 0;
    case FN_gemv_tok_i16: gemv_tok_i16(p[0], p[1], p[2], p[3], p[4], I(5), I(6)); return 0;
    case FN_gemv_tok_i32: gemv_tok_i32(p[0], p[1], p[2], p[3], p[4], I(5), I(6)); return 0;
    case FN_gemv_q4_tok_i8: gemv_q4_tok_i8(p[0], p[1], p[2], p[3], p[4], I(5), I(6), I(7)); return 0;
    case FN_gemv_q4_tok_i16: gemv_q4_tok_i16(p[0], p[1], p[2], p[3], p[4], I(5), I(6), I(7)); return 0;
    case FN_gemv_q4_tok_i32: gemv_q4_tok_i32(p[0], p[1], p[2], p[3], p[4], I(5), I(6), I(7)); return 0;
    case FN_gemv_i8: gemv_i8(p[0], p[1], p[2], p[3], p[4], I(5), I(6)); return 0;
    case FN_gemv_i16: gemv_i16(p[0], p[1], p[2], p[3], p[4], I(5), I(6)); return 0;
    case FN_gemv_i32: gemv_i32(p[0], p[1], p[2], p[3], p[4], I(5), I(6)); return 0;
    case FN_gemv_q4_i8: gemv_q4_i8(p[0], p[1], p[2], p[3], p[4], I(5), I(6), I(7)); return 0;
    case FN_gemv_q4_i16: gemv_q4_i16(p[0], p[1], p[2], p[3], p[4], I(5), I(6), I(7)); return 0;
    case FN_gemv_q4_i32: gemv_q4_i32(p[0], p[1], p[2], p[3], p[4], I(5), I(6), I(7)); return 0;
#endif
    default: return 0;
    }
#undef I
#undef U
}

static int run_case(void) {
    static void *p[MAX_ARGS];
    static int64_t s[MAX_ARGS];
    uint32_t n_arrays, n_calls, used = 0;
    if (!read_u32(&n_arrays) || !read_u32(&n_calls)) return fail(4, "truncated case header");
    if (n_arrays > MAX_ARRAYS || n_calls > MAX_CALLS) return fail(4, "too many arrays or calls");
    for (uint32_t a = 0; a < n_arrays; a++) {
        uint32_t nbytes, flags, skip;
        uint8_t pad[8];
        if (!read_u32(&nbytes) || !read_u32(&flags)) return fail(4, "truncated array header");
        if (nbytes > ARENA_BYTES - used || ARENA_BYTES - used - nbytes < CANARY + 16) return fail(4, "arena full");
        arr_ptr[a] = arena + used;
        arr_bytes[a] = nbytes;
        arr_flags[a] = flags;
        if (!read_exact(arr_ptr[a], nbytes)) return fail(4, "truncated array data");
        skip = pad8(nbytes);
        if (!read_exact(pad, skip)) return fail(4, "truncated array padding");
        memset(arr_ptr[a] + nbytes, CANARY_BYTE, CANARY);
        used += (nbytes + CANARY + 15u) & ~15u;
    }
    for (uint32_t c = 0; c < n_calls; c++) {
        uint32_t fn, n_args;
        if (!read_u32(&fn) || !read_u32(&n_args)) return fail(4, "truncated call header");
        if (fn >= FN_COUNT || n_args != strlen(SIGS[fn])) return fail(4, "unknown function or wrong argument count");
        for (uint32_t i = 0; i < n_args; i++) {
            uint32_t kind, zero;
            int64_t v;
            if (!read_u32(&kind) || !read_u32(&zero) || !read_i64(&v)) return fail(4, "truncated argument");
            int is_ptr = SIGS[fn][i] == 'p' || (SIGS[fn][i] == 'o' && kind != 0xFFFFFFFFu); /* o: a pointer or NULL */
            if (is_ptr != (kind != 0xFFFFFFFFu) || (is_ptr && kind >= n_arrays)) return fail(4, "argument kind mismatch");
            if (is_ptr && (v < 0 || v > (int64_t)arr_bytes[kind])) return fail(4, "pointer offset outside its array");
            p[i] = is_ptr ? arr_ptr[kind] + v : NULL;
            s[i] = v;
        }
        uint64_t t0 = dpl_instret();
        rets[c] = dispatch(fn, p, s);
        instrets[c] = dpl_instret() - t0;
    }
    uint32_t bad = 0;
    for (uint32_t a = 0; a < n_arrays && !bad; a++)
        for (uint32_t i = 0; i < CANARY; i++)
            if (arr_ptr[a][arr_bytes[a] + i] != CANARY_BYTE) bad = a + 1;
    int ok = write_u32(n_calls) && write_u32(bad);
    for (uint32_t c = 0; c < n_calls && ok; c++) ok = write_u64((uint64_t)rets[c]) && write_u64(instrets[c]);
    static const uint8_t zeros[8] = {0};
    for (uint32_t a = 0; a < n_arrays && ok; a++)
        if (arr_flags[a] & 1u) ok = write_exact(arr_ptr[a], arr_bytes[a]) && write_exact(zeros, pad8(arr_bytes[a]));
    return ok ? 0 : fail(3, "cannot write the output file");
}

int main(int argc, char **argv) {
    uint32_t magic, n_cases;
    if (argc != 3) return fail(2, "usage: rv32_harness JOB.bin OUT.bin");
    job = open(argv[1], O_RDONLY);
    if (job < 0) return fail(3, "cannot open the job file");
    out = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0) return fail(3, "cannot open the output file");
    if (!read_u32(&magic) || magic != 0x4A4C5044u /* "DPLJ" */ || !read_u32(&n_cases)) return fail(4, "not a job file");
    if (!write_u32(0x4F4C5044u /* "DPLO" */) || !write_u32(n_cases)) return fail(3, "cannot write the output file");
    for (uint32_t k = 0; k < n_cases; k++) {
        int rc = run_case();
        if (rc != 0) return rc;
    }
    if (!flush_out() || close(out) != 0) return fail(3, "cannot write the output file");
    close(job);
    return 0;
}
