/* RUN_UNTIL: runs the test's event loop (a `loop` variable in the test) until cond
 * holds or ms pass, for the transport tests. */
#ifndef RDM_TESTS_RUNLOOP_H
#define RDM_TESTS_RUNLOOP_H

#include <stdint.h>

#include "lib/clock.h"
#include "transport/loop.h"

/* Runs the test's loop until cond holds or ms pass. */
#define RUN_UNTIL(cond, ms)                                                                        \
	do {                                                                                       \
		uint64_t end_ = rdm_now_ns() + (uint64_t)(ms)*1000000ull;                          \
		while (!(cond) && rdm_now_ns() < end_)                                             \
			rdm_loop_run_once(loop, 5);                                                \
	} while (0)

#endif
