/* The RDMA backend's message layout: the one source of truth for what crosses the wire
 * besides the frames themselves (see the header comment of transport/rdma.c), and a hook
 * the tests use to post messages no correct sender would. */
#ifndef RDM_RDMA_H
#define RDM_RDMA_H

#include <stdint.h>

#include "transport/transport.h"

/* Immediate data of every SEND: the message's type in the top 8 bits, the credits its
 * sender returns in the low 24. */
enum rdm_rdma_imm {
	RDM_RDMA_IMM_DATA = 0,	    /* one frame, the whole message */
	RDM_RDMA_IMM_CREDIT = 1,    /* no payload: credits only */
	RDM_RDMA_IMM_KEEPALIVE = 2, /* no payload */
	RDM_RDMA_IMM_PACKED = 3,    /* several frames, as records */
};

/* A packed message is a sequence of records, each [u32 length, network order][length
 * bytes of frame], the next record starting at the next multiple of 4 from the message's
 * start. The last record is not padded: the message ends where its frame does. */
#define RDM_RDMA_REC_HDR	4u
#define RDM_RDMA_REC_ALIGN(off) (((off) + 3u) & ~3u)

/* Tests only: posts len bytes of buf as one SEND of the given type on an established
 * connection, as is (no checks on what it holds). 0, or a negative errno: -ENOTCONN,
 * -EMSGSIZE over the slot size, -EAGAIN without a credit or a free send slot. */
int rdm_rdma__send_raw(struct rdm_conn *c, uint32_t type, const void *buf, uint32_t len);

#endif
