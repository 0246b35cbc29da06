/* The frame codec's pieces that transport/framectx.c builds on: encoding a chosen part of
 * a frame's TLVs, the fixed header, and walking TLVs. Only transport/frame*.c include it. */
#ifndef RDM_FRAME_INT_H
#define RDM_FRAME_INT_H

#include "lib/byteorder.h"
#include "transport/frame.h"

#define RDM_TLV_HDR 4
#define RDM_PAD4(n) (((n) + 3u) & ~3u)

/* Which TLVs to write. A flow's state (STICKY) is everything but the per-packet SEQ and
 * hop times (PACKET). With SPLIT the hops go as HOP_NS (PACKET) and HOP_NODES (STICKY);
 * without it as one HOP_TS (PACKET). */
enum { RDM_SEL_STICKY = 1, RDM_SEL_PACKET = 2, RDM_SEL_SPLIT = 4 };

/* 1 when f's hop times fit HOP_NS (each within 2^31 ns of the first). */
int rdm_frame__split_ok(const struct rdm_frame *f);

/* Writes the TLVs sel picks into q; returns their bytes, -EMSGSIZE past cap, -EINVAL as
 * rdm_frame_hdr_len. */
int rdm_frame__put_tlvs(const struct rdm_frame *f, unsigned sel, uint8_t *q, size_t cap);

/* Writes the 8-byte fixed header of a header len bytes long. Inline: every frame sent
 * ends here. */
static inline void rdm_frame__put_base(const struct rdm_frame *f, uint8_t *buf, unsigned len,
				       uint8_t np)
{
	unsigned words = len / 4;

	/* Ver 0, O 0, U 0, TTL (6 bits), Length (6 bits), LenHi (4 bits), MD type (4 bits). */
	buf[0] = (uint8_t)((f->ttl >> 2) & 0x0F);
	buf[1] = (uint8_t)((f->ttl & 0x3) << 6 | (words & 0x3F));
	buf[2] = (uint8_t)(((words >> 6) & 0x0F) << 4 | RDM_NSH_MD_TYPE2);
	buf[3] = np;
	rdm_put_be32(buf + 4, (f->spi & 0xFFFFFF) << 8 | f->si);
}

/* Reads the fixed header into f (TTL, next protocol, SPI, SI; no TLV yet) and the
 * header's length into *hlen; -RDM_FERR_* when it is malformed. Inline: every frame
 * received starts here. */
static inline int rdm_frame__get_base(struct rdm_frame *f, const uint8_t *buf, size_t len,
				      unsigned *hlen)
{
	uint32_t w;
	unsigned words;

	if (len < RDM_NSH_BASE_LEN)
		return -RDM_FERR_SHORT;
	/* Word 0 read once: Ver 31-30, O U 29-28, TTL 27-22, Length 21-16, its high bits
	 * 15-12, MD type 11-8, next protocol 7-0 (transport/frame.h). */
	w = rdm_get_be32(buf);
	if (w >> 30 != RDM_NSH_VERSION)
		return -RDM_FERR_VERSION;
	if ((w >> 8 & 0x0F) != RDM_NSH_MD_TYPE2)
		return -RDM_FERR_MD_TYPE;
	words = (w >> 16 & 0x3F) | (w >> 12 & 0x0F) << 6;
	*hlen = words * 4;
	if (*hlen < RDM_NSH_BASE_LEN)
		return -RDM_FERR_HDR_ZERO;
	if (*hlen > len)
		return -RDM_FERR_HDR_OVERRUN;

	f->ttl = (uint8_t)(w >> 22 & 0x3F);
	f->next_proto = (uint8_t)w;
	f->spi = rdm_get_be32(buf + 4) >> 8;
	f->si = buf[7];
	f->present = 0;
	f->n_groups = 0;
	f->n_hops = 0;
	f->tcp_known = 0;
	f->owner_flow = NULL;
	f->state_src = 0;
	f->hints = NULL;
	return 0;
}

/* What a walk over TLVs saw, and where the flow's state goes. */
struct rdm_walk {
	uint8_t *keep;	   /* non-NULL: the flow's state TLVs are copied here, not decoded */
	unsigned keep_len; /* bytes in keep */
	unsigned keep_cap; /* -RDM_FERR_TOO_MANY past it */
	uint8_t hop_ns;	   /* hops HOP_NS counted, 0 if none */
	uint8_t hop_nodes; /* hops HOP_NODES counted, 0 if none */
};

/* Decodes the TLVs in buf[off, end) into f (adding to it); a CTX TLV there is an error
 * (-RDM_FERR_CTX): the caller handles the one allowed, first. */
int rdm_frame__walk(struct rdm_frame *f, const uint8_t *buf, unsigned off, unsigned end,
		    struct rdm_walk *wk);

/* The hops' two halves agree (as many times as nodes); -RDM_FERR_TLV_VALUE if not. */
int rdm_frame__hops_check(const struct rdm_walk *wk);

#endif
