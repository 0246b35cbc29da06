/* libFuzzer target for the frame decoder. Any input must decode or fail with a frame
 * error, never touch memory outside it; what decodes must re-encode to a frame that
 * decodes to the same fields, and encoding must be canonical (stable on a second pass). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport/frame.h"

static uint8_t out1[8192], out2[8192];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rdm_frame f, g;
	int rc = rdm_frame_decode(&f, data, size), l1, l2;

	if (rc < 0) {
		if (rc > -RDM_FERR_FIRST || rc <= -RDM_FERR_LAST)
			abort();
		return 0;
	}
	l1 = rdm_frame_encode(&f, out1, sizeof(out1));
	if (l1 < 0)
		return 0; /* e.g. a packet over 8 KiB: nothing to compare */
	if (rdm_frame_decode(&g, out1, (size_t)l1) != 0)
		abort();
	if (g.present != f.present || g.spi != f.spi || g.si != f.si || g.ttl != f.ttl ||
	    g.n_hops != f.n_hops || g.n_groups != f.n_groups || g.pkt_len != f.pkt_len ||
	    memcmp(g.pkt, f.pkt, f.pkt_len))
		abort();
	if ((f.present & RDM_F_FLOW_ID) && g.flow_id != f.flow_id)
		abort();
	if ((f.present & RDM_F_HOST) &&
	    (g.host.len != f.host.len || memcmp(g.host.p, f.host.p, f.host.len)))
		abort();
	l2 = rdm_frame_encode(&g, out2, sizeof(out2));
	if (l2 != l1 || memcmp(out1, out2, (size_t)l1))
		abort();
	return 0;
}
