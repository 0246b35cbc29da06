/* The upstream side of a worker: listening, frames arriving from upstream nodes, and
 * the way back to them (which connection brought each flow). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/pkt.h"
#include "node/node_int.h"

/* The upstream connection that carried flow f here, as an index into w->ups, or -1. */
static int path_of(struct worker *w, const struct rdm_frame *f)
{
	struct rdm_flow *fl;
	const struct nflow *d;
	int dir;

	if (w->n_ups == 1)
		return 0;
	if (!w->track_paths || !(f->present & RDM_F_FLOW_KEY))
		return -1;
	fl = rdm_flowtab_find(w->flows, &f->key, rdm_frame_flow_hash(f, &f->key), &dir);
	if (!fl)
		return -1;
	d = rdm_flow_data(fl);
	for (int u = 0; u < w->n_ups; u++)
		if (d->path && w->up_serial[u] == d->path)
			return u;
	return -1; /* that connection is gone */
}

/* Remembers which upstream connection (serial) brought flow f, for the way back; the
 * frame keeps its flow's entry for steering. */
static void path_note(struct worker *w, struct rdm_frame *f, uint64_t serial, uint64_t now)
{
	struct rdm_flow *fl;
	int dir;

	if (!(f->present & RDM_F_FLOW_KEY))
		return;
	fl =
	    rdm_flowtab_track_hinted(w->flows, &f->key, rdm_frame_flow_hash(f, &f->key), f->pkt_len,
				     rdm_frame_tcp_flags(f), now, &dir, NULL, f->hints);
	((struct nflow *)rdm_flow_data(fl))->path = serial;
	f->owner_flow = fl;
}

/* Sends frames back towards the client: into this edge's TUN, or up the connection each
 * flow came in on. */
void rdm_node__send_back(struct worker *w, struct rdm_frame *const *fs, int m)
{
	struct rdm_node *n = w->node;

	if (m == 0)
		return;
	if (n->conf->ingress.mode == RDM_INGRESS_TUN) {
		rdm_node__tun_write(w, fs, m);
		return;
	}
	if (n->conf->ingress.mode != RDM_INGRESS_NONE || !n->conf->has_listen) {
		w->st.drops[DROP_NO_CLIENT] += (uint64_t)m;
		return;
	}
	for (int i = 0; i < m; i++) {
		w->upi[i] = path_of(w, fs[i]);
		if (w->upi[i] < 0)
			w->st.drops[DROP_NO_PATH]++;
	}
	for (int u = 0; u < w->n_ups; u++) {
		int k = rdm_node__encode_tx(w, w->up_tx[u], fs, m, u, BACK), rc;
		uint64_t lost;

		if (k == 0)
			continue;
		rc = rdm_node__send_tx(w, w->ups[u], w->up_tx[u], k, &lost);
		if (rc < 0) {
			w->st.drops[DROP_PEER_DOWN] += lost;
			continue;
		}
		w->st.back_tx_frames += (uint64_t)rc;
		w->st.drops[DROP_QUEUE_FULL] += lost;
	}
}

/* Frames from an upstream node: they run forward, and each flow's connection is noted
 * for the way back. */
static int up_frames(struct rdm_conn *c, const struct rdm_rxframe *rx, int n, void *arg)
{
	struct worker *w = arg;
	int m = 0, u, parts;

	if (w->stopping)
		return 0;
	if (rdm_node__downs_congested(w)) {
		/* Leave the frames with the transport: it stops reading, TCP's window
		 * closes, and the upstream sender sees congestion in turn. */
		w->st.stalls++;
		return 0;
	}
	if (w->node->conf->egress.enabled)
		n = rdm_node__egress_budget(w, n);
	for (u = 0; u < w->n_ups && w->ups[u] != c; u++)
		;
	if (u == w->n_ups) {
		/* Not a connection this worker took in (it never came up): nothing passes. */
		w->st.rx_frames += (uint64_t)n;
		w->st.drops[DROP_WRONG_PATH] += (uint64_t)n;
		return n;
	}
	m = rdm_node__decode_batch(w, w->up_rx[u], rx, n, FWD, &parts);
	w->st.rx_frames += (uint64_t)(n - parts);
	m = rdm_node__path_check(w, u, m);
	if (w->track_paths) {
		uint64_t now = rdm_loop_now(w->loop); /* as steering times flows */

		for (int i = 0; i < m; i++)
			path_note(w, w->frp[i], w->up_serial[u], now);
	}
	rdm_node__handle_batch(w, m, FWD);
	return n;
}

/* Upstream connection i leaves the worker (closed): its counters stay in up_closed. */
static void up_forget(struct worker *w, int i)
{
	const struct rdm_conn_stats *s = &w->ups[i]->stats;

	w->up_closed.rx_frames += s->rx_frames;
	w->up_closed.rx_bytes += s->rx_bytes;
	w->up_closed.rx_bad_len += s->rx_bad_len;
	w->up_closed.rx_lost_on_close += s->rx_lost_on_close;
	w->up_closed.rx_tls_errors += s->rx_tls_errors;
	rdm_ctx_rx_free(w->up_rx[i]);
	rdm_ctx_tx_free(w->up_tx[i]);
	w->ups[i] = w->ups[--w->n_ups];
	w->up_serial[i] = w->up_serial[w->n_ups];
	w->up_si[i] = w->up_si[w->n_ups];
	w->up_rx[i] = w->up_rx[w->n_ups];
	w->up_tx[i] = w->up_tx[w->n_ups];
}

/* An upstream node connected or went away. */
static void up_state(struct rdm_conn *c, int up, void *arg)
{
	struct worker *w = arg;

	if (up) {
		if (w->n_ups == MAX_UPS) {
			rdm_node__log(w->node, "refusing upstream %s: %d connections already",
				      c->peer, MAX_UPS);
			rdm_conn_close(c);
			return;
		}
		w->up_rx[w->n_ups] = rdm_ctx_rx_new(&w->st.ctx_rx);
		w->up_tx[w->n_ups] = rdm_ctx_tx_new(&w->st.ctx_tx);
		if (!w->up_rx[w->n_ups] || !w->up_tx[w->n_ups]) {
			rdm_node__log(w->node, "refusing upstream %s: no memory for its flows",
				      c->peer);
			rdm_ctx_rx_free(w->up_rx[w->n_ups]);
			rdm_ctx_tx_free(w->up_tx[w->n_ups]);
			rdm_conn_close(c);
			return;
		}
		w->up_serial[w->n_ups] = ++w->next_serial;
		rdm_node__path_of(w->node, c->peer_id, &w->up_si[w->n_ups]);
		w->ups[w->n_ups++] = c;
		if (c->peer_id[0])
			rdm_node__log(w->node, "upstream %s connected, proven as '%s'", c->peer,
				      c->peer_id);
		else
			rdm_node__log(w->node, "upstream %s connected (not proven: protect none)",
				      c->peer);
		return;
	}
	for (int i = 0; i < w->n_ups; i++) {
		if (w->ups[i] == c) {
			w->up_closed.disconnects++;
			up_forget(w, i);
			break;
		}
	}
	rdm_node__log(w->node, "upstream %s disconnected", c->peer);
}

/* The worker is done: its upstream connections close now, before the node's last
 * report, so that frames they had read and no stage took count in it (up_rx_lost_on_close;
 * a stopping node takes no more input). */
void rdm_node__close_ups(struct worker *w)
{
	while (w->n_ups) {
		struct rdm_conn *c = w->ups[w->n_ups - 1];

		rdm_conn_close(c);
		up_forget(w, w->n_ups - 1);
		if (c->stats.rx_lost_on_close)
			rdm_node__log(w->node,
				      "upstream %s closed with %" PRIu64
				      " frames it had sent that no stage took: counted lost",
				      c->peer, c->stats.rx_lost_on_close);
	}
}

/* A node that cannot take its place in the chain must not run half-way: its listen
 * address is tried before anything starts. The bind is made without SO_REUSEPORT, so
 * it fails while any other socket holds the address, a node's reuse-port group too. */
int rdm_node__listen_probe(const struct rdm_node *n, char *err, size_t errlen)
{
	const struct rdm_addr *a = &n->conf->listen;
	int fd, one = 1, rc = 0;

	if (!n->conf->has_listen)
		return 0;
	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		rc = -errno;
	else if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
		 bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	if (rc)
		snprintf(err, errlen, "node '%s': cannot listen on %s: %s%s", n->conf->name,
			 a->text, strerror(-rc),
			 rc == -EADDRINUSE
			     ? " (another process holds it: two nodes on one address?)"
			     : "");
	return rc;
}

/* Listens on TCP, and on RDMA too when an upstream node reaches this one that way. A
 * TCP listen that fails stops the node (rdm_node_run returns the error). */
int rdm_node__start_listener(struct worker *w)
{
	struct rdm_node *n = w->node;
	struct rdm_conn_cbs cbs = {.on_frames = up_frames, .on_state = up_state, .arg = w};
	struct rdm_conn_opts o = n->copts;

	o.reuseport = n->n_workers > 1;
	rdm_node__auth_listen(w, &o, &cbs);
	o.rdma_bind = n->listen_rdma; /* RDMA upstreams prove themselves on this port first */
	w->lst = rdm_listen(&rdm_tcp_ops, w->loop, &n->conf->listen, &o, &cbs);
	if (!w->lst) {
		int e = errno;

		rdm_node__log(n,
			      "listen on %s (tcp): %s: stopping: upstreams cannot reach this node",
			      n->conf->listen.text, strerror(e));
		rdm_node__fatal(n, -e);
		return -e;
	}
	if (n->listen_rdma) {
		w->lst_rdma = rdm_listen(&rdm_rdma_ops, w->loop, &n->conf->listen, &o, &cbs);
		if (!w->lst_rdma)
			rdm_node__log(
			    n,
			    "listen on %s (rdma): %s: upstream hops over RDMA cannot reach this "
			    "node",
			    n->conf->listen.text,
			    errno == ENODEV ? "no RDMA device has this address" : strerror(errno));
	}
	/* Upstreams on this host reach the first worker over shared memory (an abstract
	 * Unix socket has no reuse-port group to spread them). Not with encrypted hops. */
	if (w->idx == 0 && n->chain->transport.shm &&
	    n->chain->transport.protect != RDM_PROTECT_ENCRYPT) {
		w->lst_shm = rdm_listen(&rdm_shm_ops, w->loop, &n->conf->listen, &o, &cbs);
		if (!w->lst_shm)
			rdm_node__log(n, "listen on %s (shm): %s: upstreams on this host use TCP",
				      n->conf->listen.text, strerror(errno));
	}
	if (w->idx == 0)
		rdm_node__log(n, "listening on %s (tcp%s%s)", n->conf->listen.text,
			      w->lst_rdma ? ", rdma" : "", w->lst_shm ? ", shm" : "");
	return 0;
}
