/* Clocks: monotonic and wall time in nanoseconds, and the stamp log lines start with. */
#ifndef RDM_CLOCK_H
#define RDM_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* Monotonic and wall clocks in nanoseconds. */
uint64_t rdm_now_ns(void);
uint64_t rdm_wall_ns(void);

/* The wall clock as log lines start with it, "HH:MM:SS.mmm" (UTC), into buf (>= 13). */
void rdm_log_clock(char *buf, size_t len);

#endif
