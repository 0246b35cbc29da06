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
	RDM_RDMA_IMM_BIND = 4,	    /* opts.tls: the dialler's first message, its binding MAC */
	RDM_RDMA_IMM_SHUT = 5,	    /* no payload: the sender is done (shutdown_tx) */
};

/* Proving an RDMA hop (opts.tls, transport/rdma_bind.c). The listener's side of the
 * binding handshake runs on the node's TCP listener at the same address (the TCP
 * backend's handshake hands this function what an admitted dialler asked to bind: its
 * name and the session's exported bytes, lib/tls_hs.h); the RDMA listener then takes
 * one connect request that proves it holds them, within RDM_HANDSHAKE_MS. Process-wide,
 * at most RDM_RDMA_BINDS waiting. 0, or -1 with why. Matches rdm_tls_bind_fn. */
#define RDM_RDMA_BINDS 64
int rdm_rdma_bind_offer(const char *peer, const unsigned char *material, void *arg, char *why,
			size_t whylen);

/* Tests only: when set, sees (and may change) the private data of every connect request
 * this process sends, after it is made and before it goes out: to replay one. */
extern void (*rdm_rdma__test_req)(uint8_t *pdata, uint8_t len);

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
