/* Flow contexts: a flow's state crosses a connection once, not with every packet.
 *
 * What does not change within a flow (its key and id, tenant, user, groups,
 * application, host, verdict, flags, risk, the nodes its hops were stamped on) is its
 * state; the packet's sequence number and hop times are not. The sender of a connection
 * keeps, per slot (one per direction of a flow: from the flow's hash, modulo
 * RDM_CTX_SLOTS), the state it last sent there.
 * A frame whose flow's state is what its slot holds carries only a CTX TLV (USE) and
 * the per-packet TLVs: 8 + 8 + 16 + 8 + 4 per hop bytes of header. Otherwise it carries
 * the whole state (SET) and the slot takes it; a state that would not fit a 252-byte
 * header (RFC 8300's limit) with the packet's TLVs goes ahead in state-only frames
 * (PART) that carry no packet. The receiver keeps the same slots for the connection.
 *
 * Delivery is ordered per connection, so both ends agree on every slot without any
 * acknowledgement; a connection made again starts empty at both ends (reset), so a
 * replica that gets a flow for the first time (scale, drain, failover, reconnect) gets
 * its state whole. Two flows in one slot take turns: each change of hands sends the
 * state again. The slots are the connection's: what one upstream sets cannot touch
 * another's flows.
 *
 * Wire: CTX is the first TLV, value slot u16, op u8 (USE, SET, PART), first u8 (1 on a
 * state's first frame, PART or SET). A frame that carries no CTX is decoded whole, as
 * before flow contexts.
 *
 * A sender whose connection did not take every frame it encoded (a full queue, the
 * connection down) resets its slots: the frames lost may have set some.
 *
 * Every state a receiver keeps has an id, and a frame that takes it names it
 * (rdm_frame's state_src). A sender's slot remembers the id its state came with: a frame
 * of the same id whose state nobody changed since (a stage that changes states clears the
 * id or gives the new state its own) is known to be the slot's without comparing fields,
 * save the nodes of hops added since. Otherwise the fields are compared. */
#ifndef RDM_FRAMECTX_H
#define RDM_FRAMECTX_H

#include <stddef.h>
#include <stdint.h>

#include "transport/frame.h"
#include "transport/transport.h"

#define RDM_CTX_SLOTS	  16384
#define RDM_CTX_STATE_MAX 1536 /* a larger state goes whole on every packet (counted) */
#define RDM_CTX_OUT_MAX	  8    /* frames one rdm_ctx_encode writes at most */
#define RDM_NSH_RFC_HDR	  252  /* RFC 8300's largest header */

enum rdm_ctx_op {
	RDM_CTX_USE = 0,  /* the flow's state is the slot's */
	RDM_CTX_SET = 1,  /* the slot's state is what PART frames before brought and this
			   * frame's state TLVs; the frame carries a packet (or notice) */
	RDM_CTX_PART = 2, /* a state-only frame: a SET follows */
};

/* A sender's counters (what rdm_ctx_encode did). */
struct rdm_ctx_tx_stats {
	uint64_t uses, sets, parts;
	uint64_t whole;	    /* frames sent with their whole state: no flow key, a state over
			     * RDM_CTX_STATE_MAX, or no context kept (t NULL) */
	uint64_t hdr_bytes; /* header bytes of every frame written, parts too */
	uint64_t hdr_over;  /* frames whose header passed RDM_NSH_RFC_HDR */
	uint64_t hdr_max;   /* the largest header written */
};

/* A receiver's counters. */
struct rdm_ctx_rx_stats {
	uint64_t uses, sets, parts;
	uint64_t parts_dropped; /* states whose first frame never came: none of it taken */
};

struct rdm_ctx_tx;
struct rdm_ctx_rx;

/* A sender's slots for one connection, counting into st (or its own counters when
 * NULL); NULL with errno set. */
struct rdm_ctx_tx *rdm_ctx_tx_new(struct rdm_ctx_tx_stats *st);
void rdm_ctx_tx_free(struct rdm_ctx_tx *t);
/* The connection was made again: every slot empty. */
void rdm_ctx_tx_reset(struct rdm_ctx_tx *t);

/* Writes the header(s) that carry frame f on t's connection into buf (cap bytes) and
 * fills out[0..k): state-only frames first (no packet), then f's own with f's packet.
 * Returns k (1..RDM_CTX_OUT_MAX), or -EINVAL / -EMSGSIZE as rdm_frame_encode_hdr. With
 * t NULL, one frame with the whole state (rdm_frame_encode_hdr). */
int rdm_ctx_encode(struct rdm_ctx_tx *t, const struct rdm_frame *f, uint8_t *buf, size_t cap,
		   struct rdm_txframe *out);

/* A receiver's slots for one connection, counting into st as rdm_ctx_tx_new. */
struct rdm_ctx_rx *rdm_ctx_rx_new(struct rdm_ctx_rx_stats *st);
void rdm_ctx_rx_free(struct rdm_ctx_rx *r);
void rdm_ctx_rx_reset(struct rdm_ctx_rx *r);

/* Decodes one received frame of r's connection into f: 0 for a frame, 1 for a
 * state-only frame (nothing to pass on), -RDM_FERR_* for a malformed one (-RDM_FERR_CTX:
 * a slot never set, or r NULL and the frame uses a context). f's strings may point into
 * r's slots: they stay valid until rdm_ctx_rx_release(r), even when a later frame sets
 * the slot again. */
int rdm_ctx_decode(struct rdm_ctx_rx *r, struct rdm_frame *f, const uint8_t *buf, size_t len);

/* The frames decoded so far are done with: frees the states later frames replaced. */
void rdm_ctx_rx_release(struct rdm_ctx_rx *r);

#endif
