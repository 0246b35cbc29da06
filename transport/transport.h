/* The transport ops table: every backend (tcp, rdma) moves the same frames
 * behind the same calls, and the data path never asks which backend it has.
 *
 * Delivery is ordered per connection. Backpressure, never silent loss: send_batch takes
 * a batch whole while the send queue is below its limit and then reports the connection
 * congested; the caller stops feeding it (and pauses its own inputs) until on_writable. */
#ifndef RDM_TRANSPORT_H
#define RDM_TRANSPORT_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/addr.h"
#include "transport/loop.h"

/* What proves each hop (transport.protect). */
enum rdm_protect {
	RDM_PROTECT_AUTH = 0, /* mutual certificates at connect time, frames in the clear */
	RDM_PROTECT_NONE,     /* nothing: anyone who reaches a port may send (benchmarks) */
	RDM_PROTECT_ENCRYPT,  /* auth, and every byte encrypted and authenticated (TLS 1.3) */
};

/* A chain's transport settings (the chain config's transport: section). */
struct rdm_transport_conf {
	enum rdm_protect protect;
	char *certs;	      /* the rack's certificates (ca.pem, NAME.pem, NAME.key), or NULL */
	uint32_t queue_bytes; /* bounded send queue per connection */
	uint32_t max_frame;   /* largest frame accepted, header + packet */
	uint32_t backoff_min_ms, backoff_max_ms; /* reconnect backoff */
	uint32_t batch;				 /* frames per receive/send batch */
	uint32_t keepalive_ms; /* a silent peer is declared dead after about this long */
	uint32_t credits;      /* rdma: receive slots granted to each peer */
	uint32_t inline_max;   /* rdma: inline bytes asked of the device */
	uint32_t spin_us;      /* rdma: CQ polling before sleeping on the channel */
	uint32_t drain_ms;     /* a replica that leaves a next list keeps its flows this long */
	int shm; /* transport auto may take shared memory to a node on this host (default 1) */
};

struct rdm_conn;
struct rdm_listener;
struct rdm_tls_ctx; /* lib/tls.h */

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
	/* Listeners with opts.tls: 0 admits the proven peer called name, anything else
	 * refuses it with a one-line reason written into why (sent to the peer too). NULL
	 * admits every name the CA vouches for. */
	int (*admit)(const char *name, void *arg, char *why, size_t whylen);
	/* A connection did not prove itself, or was refused before it could (opts.tls):
	 * why says who and why in one line, with c->peer its address. It never came up;
	 * an accepted one is freed after this call, an outbound one retries with backoff. */
	void (*on_refused)(struct rdm_conn *c, const char *why, void *arg);
	void *arg;
};

struct rdm_conn_opts {
	uint32_t queue_bytes; /* send queue limit */
	uint32_t max_frame;   /* largest frame, header + packet */
	uint32_t backoff_min_ms, backoff_max_ms;
	uint32_t batch;		      /* frames per on_frames call at most */
	int sndbuf, rcvbuf;	      /* socket buffer sizes, 0 = the kernel's */
	int reuseport;		      /* listeners: one per worker on the same port */
	uint32_t keepalive_ms;	      /* a silent peer is declared dead after about this long */
	const struct rdm_addr *local; /* outbound: source address (port ignored), or NULL */
	uint32_t node_id;	      /* announced to the peer at connection set-up */
	/* Proving both ends (protect: auth). With tls set, every connection runs a TLS 1.3
	 * handshake with mutual certificates (lib/tls_hs.h) before its first frame, and
	 * only then comes up. The context's role fits the call: server to listen, client
	 * to connect. A listener keeps at most RDM_TCP_HALF_OPEN_PER_SOURCE connections
	 * of one source address, and RDM_TCP_HALF_OPEN all told, waiting to prove
	 * themselves; more are refused at once. */
	struct rdm_tls_ctx *tls;
	const char *peer_name; /* connect: the name the peer's certificate must carry */
	uint32_t handshake_ms; /* a connection not proven by then is closed (default 3000) */
	int encrypt; /* with tls: keep the session, every byte encrypted (lib/tls_stream.h) */
	/* TCP listeners with tls: also run the binding handshakes of RDMA connections to
	 * the same address (transport/rdma_bind.c); such a connection ends after it. */
	int rdma_bind;
	/* rdma */
	uint32_t credits;    /* receive slots granted to each peer (default 64) */
	uint32_t inline_max; /* inline bytes to ask the device for (default 256) */
	uint32_t spin_us;    /* rdma, shm: poll this long after the last frame before sleeping
			      * (default 20); UINT32_MAX: never sleep (a node's poll: busy);
			      * tcp: read the socket this long after the last bytes while the
			      * loop polls (poll: busy or adaptive; 0: never; UINT32_MAX: 1 ms) */
};

struct rdm_conn_stats {
	uint64_t tx_frames, tx_bytes;
	uint64_t partial_writes; /* writes the socket took only part of */
	uint64_t rx_frames, rx_bytes;
	uint64_t rx_polled;	/* tcp: reads that busy polling made and that brought bytes */
	uint64_t congested;	/* times the send queue passed its limit */
	uint64_t queue_full;	/* frames refused at the hard limit (caller ignored congestion) */
	uint64_t lost_on_close; /* frames still queued when the connection failed */
	uint64_t rx_bad_len;	/* tcp: length prefixes over max_frame (connection reset);
				 * rdma: packed messages with a record past their end (the
				 * rest of that message dropped) */
	uint64_t connects, connect_fails, disconnects;
	uint64_t handshakes, handshake_us; /* proven set-ups (opts.tls), and their time in all */
	uint64_t ktls_tx;	/* encrypted set-ups whose sends the kernel encrypts (kTLS) */
	uint64_t rx_tls_errors; /* encrypted records that failed their check (connection reset) */
	/* Frames that came whole and the owner never took, gone with the connection (tcp:
	 * read, or in the socket as far as the close reads it away; rdma: records of
	 * received messages not handed over yet). The peer counted them sent. */
	uint64_t rx_lost_on_close;
	/* rdma */
	uint64_t inline_sends;	/* frames sent inline (copied by the device at post) */
	uint64_t zero_copy;	/* frames whose packet was sent from the receive slot */
	uint64_t credit_stalls; /* frames that had to wait for credits */
	uint64_t credit_msgs;	/* explicit credit returns (one-way traffic) */
	uint64_t keepalives;
	uint64_t rnr_errors, retry_errors, wc_errors;
	uint64_t unreachable; /* attempts that found no RDMA responder at the peer */
	uint64_t local_fails; /* set-ups that failed on this side: the device would not take
			       * our buffers (the memlock limit, no memory) or a QP */
	uint64_t tx_msgs;     /* messages that carried frames, one or several */
	uint64_t tx_packed;   /* of those, messages that carried several (packed) */
	uint64_t rx_packed;   /* packed messages received */
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
	/* Optional (rdm_conn_shutdown_tx says whether it exists). The sender is done: once
	 * everything queued is out, tell the peer so (TCP: a FIN) and stay to read until the peer
	 * closes too, when the connection goes down and is not reopened. Closing at once instead
	 * could make the peer lose what it has not read yet (a TCP reset discards it). */
	void (*shutdown_tx)(struct rdm_conn *c);
	/* Closes at once; queued frames count as lost_on_close, received ones never taken
	 * as rx_lost_on_close. c stays readable (its stats final) until the loop's next
	 * turn frees it. Accepts NULL. */
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
	char peer_id[64]; /* the peer's proven certificate name; "" without opts.tls */
};

#define RDM_TCP_HALF_OPEN_PER_SOURCE 8
#define RDM_TCP_HALF_OPEN	     64
#define RDM_HANDSHAKE_MS	     3000

extern const struct rdm_transport_ops rdm_tcp_ops;
extern const struct rdm_transport_ops rdm_rdma_ops;
/* Shared memory, between processes of one host (one network namespace): transport/shm.c.
 * The listener of address A is a Unix socket named after A; connect() reaches it only
 * from the same network namespace. */
extern const struct rdm_transport_ops rdm_shm_ops;

/* 1 when an shm listener for peer answers here (the peer runs on this host), else 0.
 * Never blocks. */
int rdm_shm_probe(const struct rdm_addr *peer);

/* 1 when peer's address is one of this network namespace's own: a node there listens
 * on shm too, though perhaps not yet (a replica still starting). Never blocks. */
int rdm_shm_local(const struct rdm_addr *peer);

/* 1 when an RDMA device with an active port owns local's address, else 0 with what is
 * missing in why (for a pod: no RDMA device given to it at all, none holding a GID for
 * its address, the port down). Blocks for no network round trip: it only binds. */
int rdm_rdma_probe(const struct rdm_addr *local, char *why, size_t whylen);

/* The backend called name ("tcp" or "rdma"), or NULL. */
const struct rdm_transport_ops *rdm_transport_find(const char *name);

/* Options from the chain's transport section, with keepalive and socket defaults. */
void rdm_conn_opts_from_conf(struct rdm_conn_opts *o, const struct rdm_transport_conf *t);

/* Every op has a wrapper, and callers use only these: an optional op a backend leaves
 * out (NULL in its table) is a no-op here, so no caller tests an op for NULL. */

/* ops->connect. */
static inline struct rdm_conn *rdm_connect(const struct rdm_transport_ops *ops, struct rdm_loop *l,
					   const struct rdm_addr *peer,
					   const struct rdm_conn_opts *o,
					   const struct rdm_conn_cbs *cbs)
{
	return ops->connect(l, peer, o, cbs);
}

/* ops->listen. */
static inline struct rdm_listener *rdm_listen(const struct rdm_transport_ops *ops,
					      struct rdm_loop *l, const struct rdm_addr *addr,
					      const struct rdm_conn_opts *o,
					      const struct rdm_conn_cbs *cbs)
{
	return ops->listen(l, addr, o, cbs);
}

static inline int rdm_conn_send(struct rdm_conn *c, const struct rdm_txframe *f, int n)
{
	return c->ops->send_batch(c, f, n);
}

static inline size_t rdm_conn_queued(const struct rdm_conn *c)
{
	return c->ops->queued(c);
}

static inline void rdm_conn_pause_rx(struct rdm_conn *c)
{
	if (c->ops->pause_rx)
		c->ops->pause_rx(c);
}

static inline void rdm_conn_resume_rx(struct rdm_conn *c)
{
	if (c->ops->resume_rx)
		c->ops->resume_rx(c);
}

/* The sender is done (ops->shutdown_tx): 0 when the backend closes gracefully (the
 * connection goes down once the peer has closed too: wait for on_down), -EOPNOTSUPP when
 * it has no graceful close (close it). */
static inline int rdm_conn_shutdown_tx(struct rdm_conn *c)
{
	if (!c->ops->shutdown_tx)
		return -EOPNOTSUPP;
	c->ops->shutdown_tx(c);
	return 0;
}

/* Closes at once (ops->close); accepts NULL. */
static inline void rdm_conn_close(struct rdm_conn *c)
{
	if (c)
		c->ops->close(c);
}

/* Closes a listener of backend ops; accepts NULL. */
static inline void rdm_listener_close(const struct rdm_transport_ops *ops, struct rdm_listener *lst)
{
	if (lst)
		ops->close_listener(lst);
}

#endif
