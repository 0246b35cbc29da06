/* The shm backend's private declarations, for transport/shm*.c: its connection and
 * listener, and what shm.c (connections, the data path) and shm_offer.c (handing the
 * rings over) call of each other. */
#ifndef RDM_SHM_INT_H
#define RDM_SHM_INT_H

#include <stdint.h>

#include "transport/shm_ring.h"
#include "transport/transport.h"

#define OFFER_MAGIC "RDMSHM1"
#define OFFER_LEN   16
#define BURSTS	    8 /* batches one turn of the loop delivers at most, per connection */

enum { S_CONNECTING, S_PROVING, S_OFFER, S_UP };

struct shm_listener;

struct shm_conn {
	struct rdm_conn base;
	struct rdm_loop *loop;
	struct rdm_io io;   /* the socket */
	struct rdm_io wake; /* our eventfd, once up */
	struct rdm_poller poller;
	struct rdm_conn_opts o;
	struct shm_listener *lst; /* owner of an accepted connection, NULL if outbound */
	struct shm_conn *next;	  /* in lst->conns */
	struct rdm_addr peer;
	char peer_name[64];
	int state;
	struct rdm_tls_hs *hs;
	int hs_write;
	struct rdm_timer hs_timer, retry, kick, shut;
	uint64_t hs_start_ns;
	uint32_t backoff_ms;
	int efd_peer; /* the peer's eventfd: written to wake it */
	void *map;
	size_t map_len;
	struct rdm_shm_ring tx, rx;
	uint64_t limit; /* congested above this many bytes in tx */
	uint64_t spin_ns, hot_until_ns;
	int rx_paused, tx_shut, closed;
	int eof; /* the peer is gone: what it published is delivered, then the end */
	struct rdm_rxframe *rxf;
	uint64_t *rxpos;
};

struct shm_listener {
	struct rdm_loop *loop;
	struct rdm_io io;
	struct rdm_conn_opts o;
	struct rdm_conn_cbs cbs;
	struct shm_conn *conns;
};

/* shm.c */
/* The connection failed: tell the owner, then reconnect (outbound) or free (accepted). */
void rdm_shm__fail(struct shm_conn *c);
void rdm_shm__update_io(struct shm_conn *c);
void rdm_shm__became_up(struct shm_conn *c);
/* The connection did not prove itself, or its set-up was wrong: say so, then fail. */
void rdm_shm__refuse(struct shm_conn *c, const char *why);
/* Ring capacity for opts o: room for the congestion limit and a batch beyond it. */
uint32_t rdm_shm__cap_for(const struct rdm_conn_opts *o);

/* shm_offer.c */
/* Dialler, once proven: makes the rings and the eventfds and hands them over. */
void rdm_shm__send_offer(struct shm_conn *c);
/* Listener: takes the dialler's rings and eventfds, checked, and acknowledges them. */
void rdm_shm__take_offer(struct shm_conn *c);

#endif
