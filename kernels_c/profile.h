/* profile.h: instructions per step and per core, for builds with -DDPL_PROFILE (make rv32 PROFILE=1).
 *
 * forward() brackets every step with profile_enter()/profile_leave(row); a row accumulates, per core, the
 * instructions that core retired doing the step's work: core 0's own count (minus the emulated DMA
 * engine's copies and the time it waited for the others, as --instret counts), the other cores' work.
 */
#ifndef DEEPLOY_PROFILE_H
#define DEEPLOY_PROFILE_H

#include <stdint.h>

#include "cluster.h"

void profile_enter(void);
void profile_leave(uint64_t row[DPL_MAX_CORES]);

#endif
