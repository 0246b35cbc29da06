/* Proving both ends of a TCP hop before its first frame (opts.tls: a TLS 1.3 handshake
 * with the rack's certificates, lib/tls_hs.h, driven by the connection's own events),
 * with a deadline and a cap on unproven connections per source; and, with
 * opts.encrypt, reading the kept session (lib/tls_stream.h). */
#include "transport/tcp_int.h"
#include "transport/rdma.h"
#include "lib/clock.h"
#include "lib/tls_hs.h"
#include "lib/tls_stream.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* Reads and decrypts (opts.encrypt) until the socket has nothing or the buffer is full;
 * a record that fails its check fails the connection. */
void rdm_tcp__tls_read(struct tcp_conn *c)
{
	char why[256];
	ssize_t n = 0;

	while (c->rx_end < c->rx_cap) {
		n = rdm_tls_stream_read(c->tls, c->rx + c->rx_end, c->rx_cap - c->rx_end, why,
					sizeof(why));
		if (n <= 0)
			break;
		c->rx_end += (uint32_t)n;
		c->base.stats.rx_bytes += (uint64_t)n;
	}
	/* A record that failed its check ends the stream there (it cannot skip one):
	 * what arrived intact before it is delivered, as at the peer's close. */
	if (n == -EPROTO)
		c->base.stats.rx_tls_errors++;
	if (n == 0 || n == -EPROTO) {
		rdm_tcp__eof(c);
		return;
	}
	rdm_tcp__deliver(c);
}

/* The connection did not prove itself: say so, then fail it (an outbound one retries). */
static void refuse(struct tcp_conn *c, const char *why)
{
	if (!c->lst)
		c->base.stats.connect_fails++;
	if (c->base.cbs.on_refused)
		c->base.cbs.on_refused(&c->base, why, c->base.cbs.arg);
	rdm_tcp__fail(c);
}

void rdm_tcp__prove_step(struct tcp_conn *c)
{
	char err[384];
	int rc = rdm_tls_hs_step(c->hs, &c->hs_write, err, sizeof(err));

	if (rc < 0) {
		refuse(c, err);
		return;
	}
	if (rc == 0) {
		rdm_tcp__update_events(c);
		return;
	}
	if (c->lst && rdm_tls_hs_binding(c->hs)) {
		/* An RDMA dialler's binding is made (rdm_rdma_bind_offer): this connection
		 * carries no frame. */
		rdm_timer_cancel(c->loop, &c->hs_timer);
		rdm_tcp__fail(c);
		return;
	}
	snprintf(c->base.peer_id, sizeof(c->base.peer_id), "%s", rdm_tls_hs_peer(c->hs));
	c->base.stats.handshakes++;
	c->base.stats.handshake_us += (rdm_now_ns() - c->hs_start_ns) / 1000;
	if (c->o.encrypt) {
		c->tls = rdm_tls_stream_from(c->hs); /* takes the handshake's session */
		c->hs = NULL;
		if (!c->tls) {
			refuse(c, "out of memory for the TLS session");
			return;
		}
		c->kernel_tx = rdm_tls_stream_ktls_tx(c->tls);
		c->base.stats.ktls_tx += (uint64_t)c->kernel_tx;
	}
	rdm_tls_hs_free(c->hs);
	c->hs = NULL;
	rdm_timer_cancel(c->loop, &c->hs_timer);
	rdm_tcp__became_up(c);
}

static void prove_timeout(void *arg)
{
	struct tcp_conn *c = arg;
	char why[160];

	snprintf(why, sizeof(why), "%s %s: not proven within %u ms (TLS handshake and verdict)",
		 c->lst ? "client" : "server", c->base.peer, c->o.handshake_ms);
	refuse(c, why);
}

/* The socket is connected: with opts.tls both ends prove themselves first. */
void rdm_tcp__connected(struct tcp_conn *c)
{
	char who[96], err[384];

	c->connecting = 0;
	if (!c->o.tls) {
		rdm_tcp__became_up(c);
		return;
	}
	snprintf(who, sizeof(who), "%s %s", c->lst ? "client" : "server", c->base.peer);
	c->base.peer_id[0] = '\0';
	c->hs = rdm_tls_hs_new(c->o.tls, c->io.fd, c->lst ? NULL : c->peer_name,
			       c->lst ? c->base.cbs.admit : NULL, c->base.cbs.arg, who, err,
			       sizeof(err));
	if (!c->hs || (c->o.encrypt && rdm_tls_hs_keep(c->hs) < 0)) {
		refuse(c, c->hs ? "out of memory for the TLS session" : err);
		return;
	}
	if (c->lst && c->o.rdma_bind)
		rdm_tls_hs_on_bind(c->hs, rdm_rdma_bind_offer, NULL);
	c->hs_start_ns = rdm_now_ns();
	rdm_timer_arm(c->loop, &c->hs_timer, c->o.handshake_ms, prove_timeout, c);
	rdm_tcp__prove_step(c);
}

/* 0 when the listener may take one more unproven connection from ss, else -1 with why. */
int rdm_tcp__half_open_full(const struct tcp_listener *lst, const struct sockaddr_storage *ss,
			    char *why, size_t len)
{
	int all = 0, from = 0;

	for (const struct tcp_conn *c = lst->conns; c; c = c->next) {
		if (!c->hs)
			continue;
		all++;
		from += rdm_addr_same_host(&c->src, ss);
	}
	if (from >= RDM_TCP_HALF_OPEN_PER_SOURCE)
		snprintf(why, len, "%d connections from this address are still proving themselves",
			 from);
	else if (all >= RDM_TCP_HALF_OPEN)
		snprintf(why, len, "%d connections are still proving themselves", all);
	else
		return 0;
	return -1;
}
