/* cluster.c: see cluster.h. The RV32 path uses amoadd (the A extension) and sleeps in wfi between jobs:
 * a core is woken by a software interrupt (the CLINT's msip, QEMU virt's layout) that is enabled in mie
 * but not taken (mstatus.MIE stays 0), so wfi simply returns. Idle cores retire no instructions. */
#include "cluster.h"

#include "dma.h"
#include "perf.h"

static int32_t n_active = 1;
uint64_t cluster_work_instret[DPL_MAX_CORES];
uint64_t cluster_wait_instret;

#if defined(__riscv)
#define CLINT_MSIP ((volatile uint32_t *)0x02000000) /* one word per hart: write 1 to interrupt it */

static void enable_wakeups(void) {
    __asm__ volatile(".option push\n.option arch, +zicsr\ncsrs mie, %0\n.option pop" ::"r"(8u)); /* MSIE */
}

static void sleep_until_woken(int32_t hart) {
    __asm__ volatile("wfi");
    CLINT_MSIP[hart] = 0;
}

/* the job board: hart 0 writes task/arg, then bumps `generation`; each worker runs it and counts in */
static volatile dpl_task job_task;
static const void *volatile job_arg;
static volatile uint32_t generation;
static volatile uint32_t finished;
volatile uint32_t dpl_cluster_go; /* read by rv32_start.S: the workers leave their first spin on it */
/* the workers' stacks (hart h >= 1 uses the h-th 4 KiB, growing down); hart 0 has picolibc's */
uint8_t dpl_hart_stacks[DPL_MAX_CORES - 1][4096] __attribute__((aligned(16)));

/* the workers' whole life: wait for a job, run the share, count in, forever */
void cluster_worker(int32_t hart) {
    uint32_t seen = 0;
    enable_wakeups();
    while (hart >= n_active) /* more harts than the deployment uses: stay out of the way */
        sleep_until_woken(hart);
    for (;;) {
        uint64_t t0, e0;
        while (generation == seen) /* a job posted between the test and wfi left msip set: no lost wake-up */
            sleep_until_woken(hart);
        seen = generation;
        e0 = dma_engine_instret[hart];
        t0 = dpl_instret();
        job_task(job_arg, hart, n_active);
        cluster_work_instret[hart] += (dpl_instret() - t0) - (dma_engine_instret[hart] - e0);
        if (__atomic_fetch_add(&finished, 1u, __ATOMIC_ACQ_REL) + 1 == (uint32_t)(n_active - 1))
            CLINT_MSIP[0] = 1; /* the last one in wakes core 0 */
    }
}

void cluster_init(int32_t n_cores) {
    n_active = n_cores < 1 ? 1 : n_cores > DPL_MAX_CORES ? DPL_MAX_CORES : n_cores;
    enable_wakeups();
    dpl_cluster_go = 1;
}

void cluster_run(dpl_task task, const void *arg) {
    uint64_t t0;
    int32_t h;
    if (n_active == 1) {
        task(arg, 0, 1);
        return;
    }
    job_task = task;
    job_arg = arg;
    finished = 0;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    generation = generation + 1;
    for (h = 1; h < n_active; h++) CLINT_MSIP[h] = 1;
    task(arg, 0, n_active);
    t0 = dpl_instret();
    while (finished < (uint32_t)(n_active - 1))
        sleep_until_woken(0);
    cluster_wait_instret += dpl_instret() - t0;
}
#else
void cluster_init(int32_t n_cores) {
    n_active = n_cores < 1 ? 1 : n_cores > DPL_MAX_CORES ? DPL_MAX_CORES : n_cores;
}

void cluster_run(dpl_task task, const void *arg) {
    int32_t core;
    for (core = 0; core < n_active; core++) task(arg, core, n_active);
}
#endif

int32_t cluster_cores(void) {
    return n_active;
}
