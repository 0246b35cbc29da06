/* The packed-record codec of IMM_PACKED messages (transport/rdma_pack.h): writing records
 * into a send slot and walking them in a received one. Pure byte code, no verbs. */
#include "transport/rdma_pack.h"
#include "transport/rdma.h"
#include "lib/byteorder.h"

#include <errno.h>
#include <string.h>

#define REC_HDR RDM_RDMA_REC_HDR

/* The pad bytes from off to the next record's start: RDM_RDMA_REC_ALIGN(off) - off, with no
 * overflow near 2^32. */
static uint32_t rdmx_pad_after(uint32_t off)
{
	return RDM_RDMA_REC_ALIGN(off & 3u) - (off & 3u);
}

uint32_t rdm_pack_room(uint32_t cap, uint32_t used, uint32_t len)
{
	/* RDM_RDMA_REC_ALIGN(used) + REC_HDR + len <= cap, in an order that cannot wrap. */
	if (cap < REC_HDR || len > cap - REC_HDR || used > cap - REC_HDR - len ||
	    rdmx_pad_after(used) > cap - REC_HDR - len - used)
		return 0;
	return used + rdmx_pad_after(used) + REC_HDR + len;
}

int rdm_pack_add(uint8_t *buf, uint32_t cap, uint32_t *used, const uint8_t *hdr, uint32_t hdr_len,
		 const uint8_t *pkt, uint32_t pkt_len)
{
	uint32_t len = hdr_len + pkt_len, at;

	if (len < hdr_len || !rdm_pack_room(cap, *used, len))
		return -EMSGSIZE;
	at = *used + rdmx_pad_after(*used);
	memset(buf + *used, 0, at - *used);
	rdm_put_be32(buf + at, len);
	if (hdr_len)
		memcpy(buf + at + REC_HDR, hdr, hdr_len);
	if (pkt_len)
		memcpy(buf + at + REC_HDR + hdr_len, pkt, pkt_len);
	*used = at + REC_HDR + len;
	return 0;
}

int rdm_pack_next(struct rdm_pack_rd *r, struct rdm_pack_rec *rec)
{
	uint32_t len, end;

	if (r->off >= r->len)
		return 0;
	if (r->len - r->off < REC_HDR)
		return -EBADMSG;
	len = rdm_get_be32(r->buf + r->off);
	if (len > r->len - r->off - REC_HDR)
		return -EBADMSG;
	rec->frame = r->buf + r->off + REC_HDR;
	rec->len = len;
	end = r->off + REC_HDR + len;
	/* Nothing left once aligned: the bytes left are the last record's pad, not a record. */
	r->off = rdmx_pad_after(end) < r->len - end ? end + rdmx_pad_after(end) : r->len;
	return 1;
}

int rdm_pack_scan(const uint8_t *buf, uint32_t len, uint32_t *end, uint64_t *bytes)
{
	struct rdm_pack_rd r = {buf, len, 0};
	struct rdm_pack_rec rec;
	int rc;

	*end = 0;
	*bytes = 0;
	while ((rc = rdm_pack_next(&r, &rec)) > 0) {
		*bytes += rec.len;
		*end = (uint32_t)(rec.frame - buf) + rec.len;
	}
	return rc < 0 || !*end ? -EBADMSG : 0;
}
