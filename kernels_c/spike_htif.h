/* spike_htif.h: write(2) and exit through Spike's HTIF (spike_htif.c) */
#ifndef DEEPLOY_SPIKE_HTIF_H
#define DEEPLOY_SPIKE_HTIF_H

#include <stdint.h>

void htif_write(int fd, const void *buf, uint32_t len);
void htif_exit(int code) __attribute__((noreturn));
void spike_worker(int hart);

#endif /* DEEPLOY_SPIKE_HTIF_H */
