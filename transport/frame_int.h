/* The frame codec's pieces that transport/framectx.c builds on: encoding a chosen part of
 * a frame's TLVs, the fixed header, and walking TLVs. Only transport/frame*.c include it. */
#ifndef RDM_FRAME_INT_H
#define RDM_FRAME_INT_H

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

/* Writes the 8-byte fixed header of a header len bytes long. */
void rdm_frame__put_base(const struct rdm_frame *f, uint8_t *buf, unsigned len, uint8_t np);

/* Reads the fixed header into f (TTL, next protocol, SPI, SI; no TLV yet) and the
 * header's length into *hlen; -RDM_FERR_* when it is malformed. */
int rdm_frame__get_base(struct rdm_frame *f, const uint8_t *buf, size_t len, unsigned *hlen);

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
