/* libFuzzer target for the shared-memory ring's record format (transport/shm_ring.c), as
 * a consumer reads a ring a hostile producer wrote: the input is the counters (tail,
 * then where the consumer stands) and the ring's bytes. Every record the consumer takes
 * must lie inside the ring and within max_frame, and nothing may be read outside it
 * (ASan: the ring is allocated to its exact size). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport/shm_ring.h"

#define CAP	  1024u
#define MAX_FRAME 300u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *base = calloc(1, RDM_SHM_HDR + CAP);
	struct rdm_shm_ring r;
	uint64_t tail, start;
	const uint8_t *d;
	uint32_t len;

	if (!base || size < 16) {
		free(base);
		return 0;
	}
	memcpy(&tail, data, 8);
	memcpy(&start, data + 8, 8);
	start &= ~(uint64_t)7; /* a consumer only ever stands on a record boundary */
	memcpy(base + RDM_SHM_HDR, data + 16, size - 16 < CAP ? size - 16 : CAP);
	atomic_store(&((struct rdm_shm_ctl *)base)->head, start);
	atomic_store(&((struct rdm_shm_ctl *)base)->tail, tail);
	rdm_shm_ring_init(&r, base, CAP, 0);
	for (int i = 0; i < 4 * (int)CAP; i++) {
		int rc = rdm_shm_next(&r, MAX_FRAME, &d, &len);

		if (rc <= 0)
			break;
		if (len == 0 || len > MAX_FRAME || d < base + RDM_SHM_HDR + 4 ||
		    d + len > base + RDM_SHM_HDR + CAP)
			abort();
		if (i % 3 == 0)
			rdm_shm_release(&r);
	}
	free(base);
	return 0;
}
