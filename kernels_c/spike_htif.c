/* spike_htif.c: output and exit through Spike's HTIF (the host-target interface), for programs without semihosting.
 *
 * Spike watches the `tohost` word: a value with bit 0 set ends the simulation with exit code value >> 1; a pointer
 * to a block {64, fd, buf, len} is a write(2) syscall that Spike performs and acknowledges through `fromhost`.
 * Spike finds both words by their symbols (in .bss: zero until the program writes them).
 */
#include "spike_htif.h"

volatile uint64_t tohost __attribute__((aligned(64)));
volatile uint64_t fromhost __attribute__((aligned(64)));

static volatile uint64_t htif_block[8] __attribute__((aligned(64)));

void htif_write(int fd, const void *buf, uint32_t len)
{
    htif_block[0] = 64; /* SYS_write */
    htif_block[1] = (uint64_t)fd;
    htif_block[2] = (uint64_t)(uintptr_t)buf;
    htif_block[3] = len;
    __sync_synchronize();
    tohost = (uint64_t)(uintptr_t)htif_block;
    while (fromhost == 0)
        ;
    fromhost = 0;
}

void htif_exit(int code)
{
    __sync_synchronize();
    tohost = ((uint64_t)(uint32_t)code << 1) | 1;
    for (;;)
        ;
}

/* harts other than 0 park here unless the program has work for them (a cluster runtime defines its own) */
__attribute__((weak)) void spike_worker(int hart)
{
    (void)hart;
    for (;;)
        __asm__ volatile("wfi");
}
