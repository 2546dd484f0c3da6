/* host_bench.c: times a generated program's decode on the host (bench/host_report.py links it with a build's sources
 * in place of main.c). Runs the prompt ids given on the command line through prefill(), then N greedy decode steps
 * (N forward() calls on generated tokens, no stop at BOS/EOS), timed by the wall clock (CLOCK_MONOTONIC) and by the
 * CPU time the process used (CLOCK_PROCESS_CPUTIME_ID: what a machine shared with other work disturbs less), and
 * prints one line:
 *   decode_tokens N seconds S cpu_seconds C tokens_per_s T cpu_tokens_per_s U ids_hash H
 * H (FNV-1a over the generated ids) lets the report check that two builds it compares generate the same text. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cluster.h"
#include "model.h"

static double now(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    static int32_t prompt[MODEL_CONTEXT];
    const int32_t *logits;
    int32_t n_prompt = 0, n, i, pos;
    uint32_t hash = 2166136261u;
    double t0, t1, c0, c1;
    if (argc < 3) {
        fprintf(stderr, "usage: %s N ID [ID ...]: N decode steps after the prompt ids\n", argv[0]);
        return 2;
    }
    n = (int32_t)atol(argv[1]);
    for (i = 2; i < argc && n_prompt < MODEL_CONTEXT; i++) prompt[n_prompt++] = (int32_t)atol(argv[i]);
    if (n < 1 || n_prompt + n > MODEL_CONTEXT) {
        fprintf(stderr, "error: %ld prompt ids and %ld steps do not fit the context of %d\n", (long)n_prompt, (long)n,
                MODEL_CONTEXT);
        return 2;
    }
    cluster_init(1);
    if (prefill(prompt, n_prompt, 0, &logits) != DPL_OK) return 1;
    t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
    for (pos = n_prompt; pos < n_prompt + n; pos++) {
        const int32_t next = sample_greedy(logits);
        hash = (hash ^ (uint32_t)next) * 16777619u;
        if (forward(next, pos, &logits) != DPL_OK) return 1;
    }
    t1 = now(CLOCK_MONOTONIC), c1 = now(CLOCK_PROCESS_CPUTIME_ID);
    printf("decode_tokens %ld seconds %.9f cpu_seconds %.9f tokens_per_s %.1f cpu_tokens_per_s %.1f ids_hash %08lx\n",
           (long)n, t1 - t0, c1 - c0, n / (t1 - t0), n / (c1 - c0), (unsigned long)hash);
    return 0;
}
