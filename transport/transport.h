/* The transport ops table: every backend (tcp now, rdma next) moves the same frames
 * behind the same calls, and the data path never asks which backend it has.
 *
 * Delivery is ordered per connection. Backpressure, never silent loss: send_batch takes
 * a batch whole while the send queue is below its limit and then reports the connection
 * congested; the caller stops feeding it (and pauses its own inputs) until on_writable. */
#ifndef RDM_TRANSPORT_H
#define RDM_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "node/config.h"
#include "transport/loop.h"

struct rdm_conn;
struct rdm_listener;

/* One frame to send, gathered from up to two pieces (header and state, then packet) so
 * the packet is never copied into a staging frame first. */
struct rdm_txframe {
	const uint8_t *hdr;
	uint32_t hdr_len;
	const uint8_t *pkt;
	uint32_t pkt_len;
};

/* A received frame, valid until the on_frames callback returns. */
struct rdm_rxframe {
	const uint8_t *data;
	uint32_t len;
};

struct rdm_conn_cbs {
	/* Frames arrived, in order. Returns how many it consumed; when fewer than n, the
	 * rest stay queued and receiving stops until rdm_conn_resume_rx(). */
	int (*on_frames)(struct rdm_conn *c, const struct rdm_rxframe *f, int n, void *arg);
	/* The send queue fell below half its limit after the connection was congested. */
	void (*on_writable)(struct rdm_conn *c, void *arg);
	/* The connection came up (up = 1) or failed (up = 0). An accepted connection is
	 * freed by its listener right after its down call; an outbound one reconnects. */
	void (*on_state)(struct rdm_conn *c, int up, void *arg);
	void *arg;
};

struct rdm_conn_opts {
	uint32_t queue_bytes; /* send queue limit */
	uint32_t max_frame;   /* largest frame, header + packet */
	uint32_t backoff_min_ms, backoff_max_ms;
	uint32_t batch;       /* frames per on_frames call at most */
	int sndbuf, rcvbuf;   /* socket buffer sizes, 0 = the kernel's */
	int reuseport;        /* listeners: one per worker on the same port */
	uint32_t keepalive_ms; /* a silent peer is declared dead after about this long */
	const struct rdm_addr *local; /* outbound: source address (port ignored), or NULL */
	uint32_t node_id;     /* announced to the peer at connection set-up */
	/* rdma */
	uint32_t credits;     /* receive slots granted to each peer (default 64) */
	uint32_t inline_max;  /* inline bytes to ask the device for (default 256) */
	uint32_t spin_us;     /* poll the CQ this long before sleeping (default 20) */
};

struct rdm_conn_stats {
	uint64_t tx_frames, tx_bytes;
	uint64_t partial_writes; /* writes the socket took only part of */
	uint64_t rx_frames, rx_bytes;
	uint64_t congested;      /* times the send queue passed its limit */
	uint64_t queue_full;     /* frames refused at the hard limit (caller ignored congestion) */
	uint64_t lost_on_close;  /* frames still queued when the connection failed */
	uint64_t rx_bad_len;     /* tcp: length prefixes over max_frame (connection reset);
				  * rdma: packed messages with a record past their end (the
				  * rest of that message dropped) */
	uint64_t connects, connect_fails, disconnects;
	/* rdma */
	uint64_t inline_sends;   /* frames sent inline (copied by the device at post) */
	uint64_t zero_copy;      /* frames whose packet was sent from the receive slot */
	uint64_t credit_stalls;  /* frames that had to wait for credits */
	uint64_t credit_msgs;    /* explicit credit returns (one-way traffic) */
	uint64_t keepalives;
	uint64_t rnr_errors, retry_errors, wc_errors;
	uint64_t unreachable;    /* attempts that found no RDMA responder at the peer */
	uint64_t tx_msgs;        /* messages that carried frames, one or several */
	uint64_t tx_packed;      /* of those, messages that carried several (packed) */
	uint64_t rx_packed;      /* packed messages received */
};

struct rdm_transport_ops {
	const char *name;
	/* Starts connecting to peer and keeps the connection up, reconnecting with
	 * backoff. NULL with errno set on a bad argument or no memory. */
	struct rdm_conn *(*connect)(struct rdm_loop *l, const struct rdm_addr *peer,
				    const struct rdm_conn_opts *o, const struct rdm_conn_cbs *cbs);
	/* Accepts connections; each gets cbs. NULL with errno set. */
	struct rdm_listener *(*listen)(struct rdm_loop *l, const struct rdm_addr *addr,
				       const struct rdm_conn_opts *o,
				       const struct rdm_conn_cbs *cbs);
	/* Queues frames in order. Returns how many were taken (all unless the hard limit
	 * was hit, counted in queue_full), or -ENOTCONN while the connection is down. */
	int (*send_batch)(struct rdm_conn *c, const struct rdm_txframe *f, int n);
	/* Bytes queued but not yet handed to the network. */
	size_t (*queued)(const struct rdm_conn *c);
	void (*pause_rx)(struct rdm_conn *c);
	void (*resume_rx)(struct rdm_conn *c);
	/* Optional. The sender is done: once everything queued is out, tell the peer so
	 * (TCP: a FIN) and stay to read until the peer closes too, when the connection goes
	 * down and is not reopened. Closing at once instead could make the peer lose what
	 * it has not read yet (a TCP reset discards it). */
	void (*shutdown_tx)(struct rdm_conn *c);
	/* Closes at once; queued frames count as lost_on_close. Accepts NULL. */
	void (*close)(struct rdm_conn *c);
	void (*close_listener)(struct rdm_listener *lst);
};

/* The part every backend's connection embeds. */
struct rdm_conn {
	const struct rdm_transport_ops *ops;
	struct rdm_conn_cbs cbs;
	struct rdm_conn_stats stats;
	int up;
	int congested;
	uint32_t epoch; /* bumped on every (re)connect */
	char peer[64];
};

extern const struct rdm_transport_ops rdm_tcp_ops;
extern const struct rdm_transport_ops rdm_rdma_ops;

/* 1 when an RDMA device with an active port owns local's address, else 0. Blocks for
 * no network round trip: it only binds. */
int rdm_rdma_probe(const struct rdm_addr *local);

/* The backend called name ("tcp"), or NULL. */
const struct rdm_transport_ops *rdm_transport_find(const char *name);

/* Options from the chain's transport section, with keepalive and socket defaults. */
void rdm_conn_opts_from_conf(struct rdm_conn_opts *o, const struct rdm_transport_conf *t);

static inline int rdm_conn_send(struct rdm_conn *c, const struct rdm_txframe *f, int n)
{
	return c->ops->send_batch(c, f, n);
}

/* Writes "a.b.c.d:port" or "[v6]:port" into out. */
void rdm_addr_format(const struct sockaddr_storage *ss, socklen_t len, char *out, size_t cap);

#endif
