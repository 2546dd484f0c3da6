/* perf.h: retired-instruction counter. Exact under QEMU with -icount; 0 where there is no counter. */
#ifndef DEEPLOY_PERF_H
#define DEEPLOY_PERF_H

#include <stdint.h>

#if defined(__riscv) && __riscv_xlen == 32
/* minstret is 64 bits as two CSRs; re-read the high half so a carry between the reads is seen */
static inline uint64_t dpl_instret(void) {
    uint32_t lo, hi, hi2;
    do {
        __asm__ volatile(".option push\n.option arch, +zicsr\n"
                         "csrr %0, minstreth\ncsrr %1, minstret\ncsrr %2, minstreth\n.option pop"
                         : "=r"(hi), "=r"(lo), "=r"(hi2));
    } while (hi != hi2);
    return ((uint64_t)hi << 32) | lo;
}
static inline int32_t dpl_hart_id(void) {
    uint32_t id;
    __asm__ volatile(".option push\n.option arch, +zicsr\ncsrr %0, mhartid\n.option pop" : "=r"(id));
    return (int32_t)id;
}
#define DPL_HAVE_INSTRET 1
#else
static inline uint64_t dpl_instret(void) { return 0; }
static inline int32_t dpl_hart_id(void) { return 0; }
#define DPL_HAVE_INSTRET 0
#endif

#define DPL_MAX_HARTS 8

#endif
