/* cluster.h: fork-join over the cores of a cluster, the way a PULP cluster runs a kernel.
 *
 * The core that runs forward() (hart 0) hands a task to every core with cluster_run(); each core
 * computes its share (cluster_share) and cluster_run() returns when all have finished, which is the
 * barrier between steps. On RV32 under QEMU -smp N the other harts wait in cluster_worker(); on the
 * host, or with one core, the shares simply run one after another, so results are the same for every N.
 */
#ifndef DEEPLOY_CLUSTER_H
#define DEEPLOY_CLUSTER_H

#include <stdint.h>

#define DPL_MAX_CORES 8

typedef void (*dpl_task)(const void *arg, int32_t core, int32_t n_cores);

/* how many cores take part; set once by the runner before the first forward() */
void cluster_init(int32_t n_cores);
int32_t cluster_cores(void);
/* run task(arg, core, n) on every core, return when all are done */
void cluster_run(dpl_task task, const void *arg);
/* [lo, hi) of n items for `core` of `n_cores`: contiguous, sizes differ by at most one. The larger shares
 * go to the last cores: core 0 also runs forward() (DMA setup, forking), so it gets the smaller one; and when the
 * items do not divide evenly it takes one item fewer still, the others sharing out the rest (8 cores, the 44 blocks
 * of gate and up: 4 on core 0, 5 or 6 on the others, instead of 5 on core 0 as on three others and 6 on four) */
static inline void cluster_share(int32_t n, int32_t core, int32_t n_cores, int32_t *lo, int32_t *hi) {
    int32_t base, first_big, off = 0;
    if (n_cores > 2 && n > n_cores && n % n_cores != 0) {
        const int32_t own = n / n_cores - 1;
        if (core == 0) {
            *lo = 0, *hi = own;
            return;
        }
        off = own, n -= own, core -= 1, n_cores -= 1;
    }
    base = n / n_cores, first_big = n_cores - n % n_cores;
    *lo = off + core * base + (core > first_big ? core - first_big : 0);
    *hi = *lo + base + (core >= first_big ? 1 : 0);
}
/* instructions each core retired doing work (waiting excluded, emulated DMA copies excluded; RV32 only) */
extern uint64_t cluster_work_instret[DPL_MAX_CORES];
/* hart 0 only: instructions it spent waiting for the others, to subtract from its own count */
extern uint64_t cluster_wait_instret;

#endif
