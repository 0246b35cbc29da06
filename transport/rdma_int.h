/* The RDMA backend's private declarations, shared by its files (transport/rdma*.c; the
 * design is in the header comment of transport/rdma.c).
 *
 * Naming: nothing private to this backend starts with rdma_ or ibv_, the namespaces of
 * librdmacm and libibverbs. Its types, macros and file-local (static) functions use the
 * backend's own prefix rdmx_ / RDMX_ (struct rdmx_conn, rdmx_on_recv ...); functions
 * one file of the backend defines and another calls are rdm_rdma__name (module prefix,
 * double underscore), declared here. */
#ifndef RDM_RDMA_INT_H
#define RDM_RDMA_INT_H

#include <arpa/inet.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#include <stdint.h>

#include "transport/rdma.h"
#include "transport/transport.h"
#include "lib/util.h"

#define RDMX_MAX_CONNS	8  /* connections per (worker, device) context */
#define RDMX_POST_BATCH 16 /* work requests per doorbell */
#define RDMX_NONE	0xFFFFFFFFu
#define RDMX_CTRL	0xFFFFFFFEu /* a posted credit or keepalive message: no slot, not a frame */
#define RDMX_TAG	16	    /* opts.encrypt: the AES-GCM tag after a message's bytes */

/* Immediate data of a SEND: type << 24 | credits returned (transport/rdma.h). */
#define RDMX_IMM(type, credits) htonl((uint32_t)(type) << 24 | ((credits)&0xFFFFFF))

struct rdmx_worker;
struct rdmx_listener;
struct rdmx_seal;

/* A device's resources in one worker: protection domain, completion queue and channel,
 * shared receive queue and its registered slots. */
struct rdmx_ctx {
	struct rdmx_worker *rw;
	struct rdmx_ctx *next;
	struct ibv_context *verbs;
	struct ibv_pd *pd;
	struct ibv_comp_channel *ch;
	struct ibv_cq *cq;
	struct ibv_srq *srq;
	struct rdm_io ch_io, async_io;
	struct rdm_poller poller;
	uint64_t hot_until; /* keep polling the CQ until then, then arm and sleep */
	uint64_t poll_ns;   /* when the current batch of completions was taken */
	uint32_t slot;	    /* receive slot size = max_frame */
	uint32_t n_rslots;
	uint8_t *rbuf;
	struct ibv_mr *rmr;
	uint16_t *rrefs;  /* sends still reading each receive slot (zero copy) */
	uint8_t *rheld;	  /* consumed, waiting for rrefs to fall to zero */
	uint32_t *rowner; /* connection (idx << 16 | gen) the slot's message came from */
	struct rdmx_conn *conns[RDMX_MAX_CONNS];
	uint16_t gen[RDMX_MAX_CONNS];
	unsigned unacked;
	uint64_t spin_ns;
	uint32_t credits;
};

/* One per event loop (worker thread): its CM event channel and its device contexts. */
struct rdmx_worker {
	struct rdmx_worker *next;
	struct rdm_loop *loop;
	struct rdma_event_channel *ech;
	struct rdm_io ech_io;
	struct rdmx_ctx *ctxs;
	int refs;
};

/* A message waiting for credits, in a send slot. Frames that fit a record are kept as
 * records, so later frames can join the message until it is posted; a message of one
 * record goes out as a plain frame (its record header skipped). */
struct rdmx_pend {
	uint32_t slot, len; /* len: bytes used in the slot */
	uint32_t frames;
	int rec; /* 1: records; 0: one frame as is (too large for a record) */
};

struct rdmx_posted {
	uint32_t sslot;	 /* send slot to free, RDMX_CTRL, or RDMX_NONE */
	uint32_t rslot;	 /* receive slot read by this send (zero copy), or RDMX_NONE */
	uint32_t frames; /* frames in the message: 0 for credit, keepalive and raw messages */
};

/* A received message not yet consumed: its next frame (or record) starts at off. */
struct rdmx_rxq {
	uint32_t slot, off, end;
	int packed;
};

/* Proving an RDMA hop (opts.tls, rdma_bind.c): the binding handshake on the peer's TCP
 * port (dialler), then what the RDMA set-up's MACs need on both sides. */
struct rdmx_auth {
	int fd, fd_open; /* dialler: the TCP connection of the binding handshake */
	struct rdm_io io;
	struct rdm_tls_hs *hs;
	struct rdm_timer deadline; /* not proven by then: refused */
	uint64_t start_ns;
	int await_bind; /* listener: established, waiting for the dialler's binding message */
	uint8_t token[16], key[32], nonce[8];
	uint32_t peer_qpn; /* the QP at the other end, as the set-up told it */
};

/* What a cm_id's context points at: every such struct starts with its kind. */
enum { RDMX_KIND_CONN = 1, RDMX_KIND_LISTENER };

struct rdmx_conn {
	int kind;
	struct rdm_conn base;
	struct rdmx_worker *rw;
	struct rdmx_ctx *ctx;
	struct rdmx_listener *lst;
	struct rdma_cm_id *id;
	struct ibv_qp *qp;
	int idx;
	uint16_t gen;
	struct rdm_conn_opts o;
	struct rdm_addr peer, local;
	int outbound, closed, established;
	int tx_shut, shut_sent; /* shutdown_tx: asked; IMM_SHUT posted */
	int peer_shut;		/* the peer's IMM_SHUT came: disconnect once all is handed over */
	struct rdm_timer retry, ka, kick, shut;
	uint32_t backoff_ms;
	uint32_t max_inline;
	uint32_t credits, owed, peer_grant;
	uint32_t sq_depth, sq_used;
	int rx_paused;

	uint32_t slot; /* send slot size: max_frame and room for a tag (RDMX_TAG) */
	uint32_t room; /* bytes a message may carry: max_frame */
	uint8_t *sbuf;
	struct ibv_mr *smr;
	uint32_t n_sslots, *sfree, n_sfree;
	struct rdmx_pend *pend;
	uint32_t pend_head, pend_n;
	struct rdmx_posted *post; /* ring of sq_depth, in posting order */
	uint32_t post_head, post_n;
	struct rdmx_rxq *rxq; /* received, not yet consumed by the owner */
	uint32_t rxq_head, rxq_n, rxq_cap;
	uint64_t last_rx_ns, last_tx_ns;
	char last_why[64];
	struct rdmx_auth auth;
	struct rdmx_seal *seal; /* opts.encrypt: the keys, once the binding holds */
};

struct rdmx_listener {
	int kind;
	struct rdmx_worker *rw;
	struct rdma_cm_id *id;
	struct rdm_conn_opts o;
	struct rdm_conn_cbs cbs;
};

static inline struct rdmx_conn *rdm_rdma__conn(struct rdm_conn *c)
{
	return container_of(c, struct rdmx_conn, base);
}

/* rdma_dev.c: workers and device contexts. */
/* The worker of loop l, made on first use; each call takes a reference. NULL and errno. */
struct rdmx_worker *rdm_rdma__worker_get(struct rdm_loop *l);
/* Drops a reference; the last one frees the worker and its contexts. */
void rdm_rdma__worker_put(struct rdmx_worker *rw);
/* The worker's context on device verbs, made (and its receive slots posted) on first use. */
struct rdmx_ctx *rdm_rdma__ctx_get(struct rdmx_worker *rw, struct ibv_context *verbs,
				   const struct rdm_conn_opts *o);
/* Posts receive slot `slot` to the shared receive queue. 0 or -EIO. */
int rdm_rdma__post_recv(struct rdmx_ctx *x, uint32_t slot);

/* rdma_qp.c: a connection's buffers and queue pair. */
/* Allocates the send slots and the rings, sized from the options. 0 or -ENOMEM. */
int rdm_rdma__conn_bufs(struct rdmx_conn *c);
/* Frees a connection and drops its worker reference (rdm_loop_defer_free's callback). */
void rdm_rdma__conn_free(void *p);
/* Creates the QP on id's device and registers the send buffers. 0 or a negative errno. */
int rdm_rdma__setup_qp(struct rdmx_conn *c, struct rdma_cm_id *id);

/* Why setting up c here failed with rc (a negative errno), in words: when this process
 * may lock less memory than a hop registers (RLIMIT_MEMLOCK, without CAP_IPC_LOCK), says
 * so with both sizes and what to raise; else strerror. */
void rdm_rdma__setup_why(const struct rdmx_conn *c, int rc, char *out, size_t len);
/* Destroys the QP, its send MR and its cm_id, giving back what they held; c stays. */
void rdm_rdma__teardown_qp(struct rdmx_conn *c);

/* rdma_cm.c: connection management. */
/* The worker's CM event channel is readable. */
void rdm_rdma__cm_io(struct rdm_io *io, uint32_t events);
/* (Re)starts an outbound connection: a new cm_id, then address resolution. */
void rdm_rdma__start_connect(void *arg);
/* The connection failed (why, for the log): tear it down; reconnect or free it. */
void rdm_rdma__conn_fail(struct rdmx_conn *c, const char *why);
/* The peer sent IMM_SHUT and every frame before it is handed over: disconnect, quietly. */
void rdm_rdma__peer_done(struct rdmx_conn *c);

/* The set-up is done (grant: the credits the peer lets us send): keepalive starts. */
void rdm_rdma__established(struct rdmx_conn *c, uint32_t grant);
/* The connection is proven (or needs no proof): it comes up for its owner. */
void rdm_rdma__became_up(struct rdmx_conn *c);
/* Starts the RDMA set-up proper: a new cm_id, then address resolution. */
void rdm_rdma__cm_connect(struct rdmx_conn *c);

/* rdma_bind.c: proving both ends (opts.tls). The private data of a connect request:
 * RDMX_PDATA_LEN bytes (version, flags, credits, node id, epoch), then with the auth
 * flag: token (16), nonce (8), MAC (16); of the accept: the same 12, then the
 * listener's QP number (4), MAC (16). */
#define RDMX_PDATA_LEN	   12
#define RDMX_PDATA_AUTH	   0x01 /* flags: the request carries a binding */
#define RDMX_PDATA_ENC	   0x02 /* flags: the dialler seals its messages (opts.encrypt) */
#define RDMX_REQ_AUTH_LEN  (RDMX_PDATA_LEN + 16 + 8 + 16)
#define RDMX_REP_AUTH_LEN  (RDMX_PDATA_LEN + 4 + 16)
#define RDMX_BIND_MSG_LEN  16
#define RDMX_REJECT_PREFIX "rdmesh: "
/* Dialler: runs the binding handshake, then rdm_rdma__cm_connect; on failure the
 * connection is refused (on_refused) and retries with backoff. */
void rdm_rdma__bind_start(struct rdmx_conn *c);
/* Ends a binding handshake in progress and forgets the binding. */
void rdm_rdma__bind_stop(struct rdmx_conn *c);
/* Dialler: completes the connect request's private data pd (its first RDMX_PDATA_LEN
 * bytes made) with the binding; returns its length. */
uint8_t rdm_rdma__bind_req(struct rdmx_conn *c, uint8_t *pd);
/* Listener: checks a connect request's private data and takes its binding (the token
 * is spent); c->base.peer_id is set. 0, or -1 with why. */
int rdm_rdma__bind_check_req(struct rdmx_conn *c, const uint8_t *pd, uint8_t len, uint32_t peer_qpn,
			     char *why, size_t whylen);
/* Listener: completes the accept's private data (first RDMX_PDATA_LEN bytes made);
 * returns its length. */
uint8_t rdm_rdma__bind_rep(struct rdmx_conn *c, uint8_t *pd);
/* Dialler: checks the accept's private data, then sends the binding message. 0, or -1
 * with why. */
int rdm_rdma__bind_check_rep(struct rdmx_conn *c, const uint8_t *pd, uint8_t len, char *why,
			     size_t whylen);
/* Listener: the connection is accepted; it waits for the binding message (which may
 * complete before the CM's established event), no longer than opts.handshake_ms. */
void rdm_rdma__bind_await(struct rdmx_conn *c);
/* Listener: the first message of an established connection awaiting its binding. */
void rdm_rdma__bind_recv(struct rdmx_conn *c, uint32_t type, const uint8_t *msg, uint32_t len);
/* A proving connection failed: on_refused, then the usual failure. */
void rdm_rdma__refuse(struct rdmx_conn *c, const char *why);

/* rdma_seal.c: encrypting an RDMA hop (opts.encrypt): AES-256-GCM per message, a key
 * each way derived from the binding's, the nonce a count of the messages so far. */
/* Starts the connection's keys from the binding's key; dialler: which side we are.
 * 0, or -ENOMEM. */
int rdm_rdma__seal_start(struct rdmx_conn *c, const uint8_t *bind_key, int dialler);
/* Encrypts the len bytes at b of a message of type in place and writes its tag after
 * them (RDMX_TAG bytes: the slot has room). 0, or -EIO. */
int rdm_rdma__seal(struct rdmx_conn *c, uint32_t type, uint8_t *b, uint32_t len);
/* Checks and decrypts a received message of type in place: *len, with the tag, becomes
 * the payload's. 0, or -EBADMSG (changed, replayed, reordered or forged). */
int rdm_rdma__open(struct rdmx_conn *c, uint32_t type, uint8_t *b, uint32_t *len);
/* Forgets the keys. Accepts a connection without them. */
void rdm_rdma__seal_stop(struct rdmx_conn *c);

/* rdma_tx.c: credits and the send path. */
/* Posts len bytes of buf as one message of the given type, ahead of anything waiting
 * (the binding message; rdm_rdma__send_raw). 0, or -ENOTCONN, -EMSGSIZE, -EAGAIN. */
int rdm_rdma__post_msg(struct rdmx_conn *c, uint32_t type, const void *buf, uint32_t len);
/* Sends an empty message of type RDM_RDMA_IMM_CREDIT or _KEEPALIVE carrying owed credits. */
void rdm_rdma__send_ctrl(struct rdmx_conn *c, uint32_t type);
/* Posts the messages waiting for credits while credits and send-queue room last. */
void rdm_rdma__flush_pending(struct rdmx_conn *c);
/* The ops table's send_batch. */
int rdm_rdma__send_batch(struct rdm_conn *bc, const struct rdm_txframe *f, int n);

/* rdma_rx.c: completions and receiving. */
/* Receive slot s is consumed: repost it (once no zero-copy send reads it) and owe its
 * connection a credit. */
void rdm_rdma__release_rslot(struct rdmx_ctx *x, uint32_t s);
/* Hands the connection's received frames to on_frames; once the peer said it is done
 * (IMM_SHUT) and every frame is handed over, disconnects (rdm_rdma__peer_done). */
void rdm_rdma__deliver(struct rdmx_conn *c);
/* The context's poller (adaptive polling); returns whether it stays hot. */
int rdm_rdma__ctx_poller(struct rdm_poller *p);
/* Takes every completion there is now. */
void rdm_rdma__ctx_poll(struct rdmx_ctx *x);
/* The ops table's pause_rx and resume_rx. */
void rdm_rdma__pause_rx(struct rdm_conn *bc);
void rdm_rdma__resume_rx(struct rdm_conn *bc);

#endif
