/* The TCP backend's private declarations, for transport/tcp*.c: its connection and
 * listener, and what tcp.c (framing, receiving, reconnecting), tcp_tx.c (sending) and
 * tcp_prove.c (proving both ends, encrypted reads) call of each other. */
#ifndef RDM_TCP_INT_H
#define RDM_TCP_INT_H

#include <stdint.h>
#include <sys/socket.h>

#include "lib/util.h"
#include "transport/loop.h"
#include "transport/transport.h"

#define LEN_PREFIX 4

struct tcp_listener;

struct tcp_conn {
	struct rdm_conn base;
	struct rdm_loop *loop;
	struct rdm_io io;
	struct rdm_conn_opts o;
	struct tcp_listener *lst; /* owner of an accepted connection, NULL if outbound */
	struct tcp_conn *next;	  /* in lst->conns */
	struct rdm_addr peer;
	struct sockaddr_storage src; /* accepted: the peer's address */
	struct rdm_tls_hs *hs;	     /* proving itself (opts.tls), NULL once up */
	int hs_write;		     /* the handshake waits to write, not to read */
	struct rdm_timer hs_timer;   /* a connection not proven in time is closed */
	uint64_t hs_start_ns;	     /* when the socket was connected */
	struct rdm_tls_stream *tls;  /* opts.encrypt: the session, once proven */
	int kernel_tx;		     /* the kernel encrypts what is sent (kTLS) */
	struct rdm_timer kick_rd;    /* read what TLS holds after room was made */
	char peer_name[64];	     /* connect: the certificate name expected */
	int connecting;
	int closed;
	struct rdm_timer retry; /* reconnect, outbound only */
	struct rdm_timer kick;	/* deliver buffered frames after resume_rx */
	uint32_t backoff_ms;

	/* Send ring: absolute byte counters, index = counter % tx_cap. */
	uint8_t *tx;
	uint32_t tx_cap;
	uint64_t tx_head, tx_tail;
	uint32_t head_left;   /* bytes left of the frame at tx_head, 0 at a frame start */
	uint64_t tx_frames_q; /* frames queued and not fully written */

	uint8_t *rx;
	uint32_t rx_cap, rx_start, rx_end;
	/* Busy reading (a loop on poll: busy or adaptive): the socket read on every turn
	 * until hot_until_ns, spin_ns after the last bytes. */
	struct rdm_poller poller;
	uint64_t spin_ns, hot_until_ns;
	int rx_paused;
	int eof;     /* the peer closed; frames still buffered go to the owner first */
	int tx_shut; /* we are done sending (shutdown_tx): no reconnect after the peer closes */
	int fin_sent;
};

struct tcp_listener {
	struct rdm_loop *loop;
	struct rdm_io io;
	struct rdm_conn_opts o;
	struct rdm_conn_cbs cbs;
	struct tcp_conn *conns;
};

static inline struct tcp_conn *to_tcp(struct rdm_conn *c)
{
	return container_of(c, struct tcp_conn, base);
}

/* tcp.c */
void rdm_tcp__update_events(struct tcp_conn *c);
void rdm_tcp__fail(struct tcp_conn *c);
void rdm_tcp__deliver(struct tcp_conn *c);
void rdm_tcp__eof(struct tcp_conn *c);
void rdm_tcp__became_up(struct tcp_conn *c);

/* tcp_tx.c */
/* Bytes queued in the ring, not yet written. */
size_t rdm_tcp__queued(const struct rdm_conn *bc);
/* Writes as much of the ring as the socket takes. 0, or -1 after the connection failed. */
int rdm_tcp__flush(struct tcp_conn *c);
/* The backend's send_batch (transport/transport.h). */
int rdm_tcp__send_batch(struct rdm_conn *bc, const struct rdm_txframe *f, int n);

/* tcp_prove.c */
/* The socket is connected (or accepted): with opts.tls both ends prove themselves
 * first, then the connection comes up. */
void rdm_tcp__connected(struct tcp_conn *c);
/* Advances the handshake of a connection proving itself; on its events. */
void rdm_tcp__prove_step(struct tcp_conn *c);
/* 0 when the listener may take one more unproven connection from ss, else -1 with why. */
int rdm_tcp__half_open_full(const struct tcp_listener *lst, const struct sockaddr_storage *ss,
			    char *why, size_t len);
/* Reads and decrypts an encrypted connection until the socket has nothing more. */
void rdm_tcp__tls_read(struct tcp_conn *c);

#endif
