/* sampler.c: the next token at a temperature, with top-p, in integers (twin: deeploy_dsl/kernels/sampling.py) */
#include "deeploy_kernels.h"

#define SAMPLE_EXP_FRAC 9                          /* z in Q9 log2 units: 512 table entries per octave */
#define SAMPLE_Z_MAX (16 << SAMPLE_EXP_FRAC)       /* 2^-16 is 0 in Q15 */
#define SAMPLE_SHIFT 24                            /* z = (max - x) * mult / 2^24, the product in 64 bits */
#define SAMPLE_TOP_P_ONE 65536                     /* top-p in Q16 */
#define SAMPLE_E_ONE (1u << 15)                    /* e of the largest logit */

/* xorshift32: the next state (never 0 from a non-zero state), which is also the draw */
uint32_t dpl_xorshift32(uint32_t *state) {
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}

/* the mass of the packed (e << 16 | i) entries whose e is at least t */
static uint32_t kept_mass(const uint32_t *ei, int32_t k, uint32_t t) {
    uint32_t mass = 0; /* at most 2^16 tokens of at most 2^15: below 2^31 */
    for (int32_t j = 0; j < k; j++)
        if (ei[j] >> 16 >= t) mass += ei[j] >> 16;
    return mass;
}

/* token ~ e[i] = 2^(-z_i/512) (Q15), z_i = round((max - x[i]) * mult / 2^24), among the tokens whose e is at least the
 * largest threshold keeping ceil(p * total) of the mass; mult 0: argmax (greedy). ei [n] is scratch: the tokens
 * with e > 0 as (e << 16 | i), in index order (a few dozen of 512 at usual temperatures: the search is over those). */
int32_t sample_top_p_i32(uint32_t *ei /* [n] */, const int32_t *x /* [n] */, int32_t n, int32_t mult, int32_t p_q16,
                         const uint16_t *exp2 /* [512] Q15 */, uint32_t *state) {
    if (mult == 0) return argmax_i32(x, n);
    int32_t mx = x[0], k = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > mx) mx = x[i];
    /* from this distance on z >= 16 octaves and e is 0: most tokens stop at one comparison */
    const uint64_t cut = ((((uint64_t)SAMPLE_Z_MAX << SAMPLE_SHIFT) - ((uint64_t)1 << (SAMPLE_SHIFT - 1))) + (uint64_t)mult - 1) /
                         (uint64_t)mult;
    uint32_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        uint32_t d = (uint32_t)mx - (uint32_t)x[i]; /* max - x[i], exact: it is in [0, 2^32) */
        if ((uint64_t)d >= cut) continue;
        uint64_t z = ((uint64_t)d * (uint64_t)mult + ((uint64_t)1 << (SAMPLE_SHIFT - 1))) >> SAMPLE_SHIFT;
        uint32_t e = (uint32_t)exp2[z & ((1u << SAMPLE_EXP_FRAC) - 1)] >> (z >> SAMPLE_EXP_FRAC);
        if (e) {
            ei[k++] = e << 16 | (uint32_t)i;
            total += e;
        }
    }
    uint32_t t = 1;
    if (p_q16 < SAMPLE_TOP_P_ONE) { /* the largest t whose kept mass reaches the need: mass(t) falls as t grows */
        uint32_t need = (uint32_t)(((uint64_t)total * (uint32_t)p_q16 + SAMPLE_TOP_P_ONE - 1) >> 16);
        uint32_t lo = 1, hi = SAMPLE_E_ONE;
        while (lo < hi) {
            uint32_t mid = (lo + hi + 1) >> 1;
            if (kept_mass(ei, k, mid) >= need) lo = mid;
            else hi = mid - 1;
        }
        t = lo;
    }
    uint32_t mass = kept_mass(ei, k, t); /* > 0: the largest logit's e is 2^15 >= t */
    uint32_t target = (uint32_t)(((uint64_t)dpl_xorshift32(state) * mass) >> 32);
    uint32_t acc = 0;
    for (int32_t j = 0; j < k; j++) {
        if (ei[j] >> 16 < t) continue;
        acc += ei[j] >> 16;
        if (acc > target) return (int32_t)(ei[j] & 0xFFFFu);
    }
    return (int32_t)(ei[k - 1] & 0xFFFFu); /* not reached: acc ends at mass > target */
}
