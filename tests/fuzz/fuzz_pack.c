/* libFuzzer target for the RDMA backend's packed-record reader (transport/rdma_pack.c).
 * Any input is a received IMM_PACKED message: every record the reader returns must lie
 * inside it, 4-byte aligned and in order; it stops at the first bad record for good;
 * rdm_pack_scan must agree with it; and packing the records read again must give the same
 * bytes up to the end of the last good record (pad bytes aside: the reader ignores them,
 * the writer zeroes them), which reads back to the same records. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport/rdma.h"
#include "transport/rdma_pack.h"

#define MAX_IN 65536

static uint8_t out[MAX_IN];
static uint32_t starts[MAX_IN / 4 + 1]; /* each record's header offset */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rdm_pack_rd r = {data, (uint32_t)size, 0}, r2;
	struct rdm_pack_rec rec, rec2;
	uint32_t n = 0, end = 0, used = 0, send, at;
	uint64_t bytes = 0, sbytes;
	int rc, src;

	if (size > MAX_IN)
		return 0;
	while ((rc = rdm_pack_next(&r, &rec)) == 1) {
		uint32_t off = (uint32_t)(rec.frame - data) - RDM_RDMA_REC_HDR;

		if (rec.frame < data + RDM_RDMA_REC_HDR || rec.len > size ||
		    rec.frame + rec.len > data + size || off % 4 || off < end ||
		    (n && off != RDM_RDMA_REC_ALIGN(end)) || r.off > size)
			abort();
		starts[n++] = off;
		end = off + RDM_RDMA_REC_HDR + rec.len;
		bytes += rec.len;
		/* The record as the writer would append it, and where that leaves the message. */
		if (rdm_pack_room((uint32_t)size, used, rec.len) != end)
			abort();
		at = used;
		if (rdm_pack_add(out, (uint32_t)size, &used, rec.frame, rec.len / 2,
				 rec.frame + rec.len / 2, rec.len - rec.len / 2) != 0 ||
		    used != end)
			abort();
		for (uint32_t i = at; i < off; i++)
			if (out[i])
				abort(); /* pad: zero */
		if (memcmp(out + off, data + off, end - off))
			abort();
	}
	if (rc != 0 && rc != -EBADMSG)
		abort();
	if (rc == 0 && r.off != size)
		abort();
	if (rc == -EBADMSG) {
		uint32_t bad = r.off;

		if (rdm_pack_next(&r, &rec) != -EBADMSG || r.off != bad)
			abort(); /* stays on the bad record */
	}
	src = rdm_pack_scan(data, (uint32_t)size, &send, &sbytes);
	if (send != end || sbytes != bytes || src != (rc < 0 || n == 0 ? -EBADMSG : 0))
		abort();
	/* The re-packed message reads back to the same records, and nothing more. */
	r2 = (struct rdm_pack_rd){out, used, 0};
	for (uint32_t i = 0; i < n; i++) {
		if (rdm_pack_next(&r2, &rec2) != 1 ||
		    rec2.frame != out + starts[i] + RDM_RDMA_REC_HDR)
			abort();
	}
	if (rdm_pack_next(&r2, &rec2) != 0)
		abort();
	return 0;
}
