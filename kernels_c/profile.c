/* profile.c: see profile.h. Only forward() calls these, and only in -DDPL_PROFILE builds. */
#include "profile.h"

#include "dma.h"
#include "npu.h"
#include "perf.h"

static uint64_t t0, engine0, wait0, work0[DPL_MAX_CORES];

void profile_enter(void) {
    int32_t k;
    for (k = 0; k < DPL_MAX_CORES; k++) work0[k] = cluster_work_instret[k];
    engine0 = dma_engine_instret[0] + npu_engine_instret[0];
    wait0 = cluster_wait_instret;
    t0 = dpl_instret();
}

void profile_leave(uint64_t row[DPL_MAX_CORES]) {
    const uint64_t t1 = dpl_instret();
    int32_t k;
    row[0] += (t1 - t0) - (dma_engine_instret[0] + npu_engine_instret[0] - engine0) - (cluster_wait_instret - wait0);
    for (k = 1; k < DPL_MAX_CORES; k++) row[k] += cluster_work_instret[k] - work0[k];
}
