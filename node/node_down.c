/* A worker's connections to the next stage's replicas: connecting them to follow a
 * steering table, their events, and transport auto's fallback to TCP. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "lib/clock.h"
#include "node/node_int.h"

/* How long a replica on this host may leave its shm listener unanswered before transport
 * auto reaches it otherwise: its node takes well under a second to listen. */
#define SHM_WAIT_NS (3000ull * 1000000ull)

/* A next hop that was congested has room again. */
static void down_writable(struct rdm_conn *c, void *arg)
{
	rdm_node__resume_inputs(arg);
}

/* A next hop connected or went away. */
static void down_state(struct rdm_conn *c, int up, void *arg)
{
	struct worker *w = arg;
	struct rdm_node *n = w->node;
	int r = 0;

	while (r + 1 < MAX_DOWNS && w->downs[r].c != c)
		r++;
	if (up) {
		struct down *d = &w->downs[r];

		/* A connection made again starts with no flow context at either end. */
		if (!d->ctx_tx)
			d->ctx_tx = rdm_ctx_tx_new(&w->st.ctx_tx);
		if (!d->ctx_rx)
			d->ctx_rx = rdm_ctx_rx_new(&w->st.ctx_rx);
		rdm_ctx_tx_reset(d->ctx_tx);
		rdm_ctx_rx_reset(d->ctx_rx);
		rdm_node__log(n, "next hop %s (%s) up over %s, epoch %u", w->downs[r].name, c->peer,
			      c->ops->name, c->epoch);
		if (w->ever_up && (w->gen || w->pin))
			w->st.ingress_reconnect_seq = w->st.ingress_taken;
		w->ever_up = 1;
		w->downs[r].ever_up = 1;
		/* A node takes frames only once it can pass them on. */
		if (!w->lst && n->conf->has_listen)
			rdm_node__start_listener(w);
	} else {
		rdm_node__log(
		    n, "next hop %s (%s) down: frames are dropped and counted until it is back",
		    w->downs[r].name, c->peer);
	}
	rdm_node__resume_inputs(w);
}

/* Frames the next hop sends back: inline mode's return traffic and stages' replies. */
static int down_frames(struct rdm_conn *c, const struct rdm_rxframe *rx, int n, void *arg)
{
	struct worker *w = arg;
	int m, parts, r = 0;

	if (w->stopping)
		return 0;
	while (r + 1 < MAX_DOWNS && w->downs[r].c != c)
		r++;
	m = rdm_node__decode_batch(w, w->downs[r].ctx_rx, rx, n, BACK, &parts);
	w->st.back_rx_frames += (uint64_t)(n - parts);
	rdm_node__handle_batch(w, m, BACK);
	return n;
}

/* Callbacks of a worker's downstream connection; arg is set per worker. */
static const struct rdm_conn_cbs down_cbs_tmpl = {
    .on_frames = down_frames, .on_writable = down_writable, .on_state = down_state};

/* Starts the connection of slot d to its replica (d->peer, which must prove it is
 * d->ident) over ops, or over shared memory when may_shm and the replica runs on this
 * host: its shm listener answers, or its address is this host's (a replica still
 * starting: rdm_node__auto_check falls back if no shm listener ever answers). */
static struct rdm_conn *dial(struct worker *w, struct down *d, const struct rdm_transport_ops *ops,
			     int may_shm)
{
	struct rdm_conn_cbs cbs = down_cbs_tmpl;
	struct rdm_conn_opts o = w->node->copts;

	cbs.arg = w;
	rdm_node__auth_dial(w, d->ident, &o, &cbs);
	if (may_shm && w->node->try_shm && (rdm_shm_probe(d->peer) || rdm_shm_local(d->peer)))
		ops = &rdm_shm_ops;
	d->dial_ns = rdm_now_ns();
	return rdm_connect(ops, w->loop, d->peer, &o, &cbs);
}

/* Switches worker w to steer sp: replicas it names keep their connections (a draining
 * one comes back), new ones are connected, and those it no longer names start to
 * drain. 0, or -errno when a connection cannot be set up (the old table then stays). */
int rdm_node__apply_steer(struct worker *w, const struct steer *sp)
{
	struct rdm_node *n = w->node;
	int slot_of[RDM_MAX_NEXT], keep[MAX_DOWNS] = {0};

	for (int i = 0; i < sp->n; i++) {
		int r, fr = -1;

		for (r = 0; r < MAX_DOWNS; r++) {
			if (w->downs[r].c && !w->downs[r].closing &&
			    !strcmp(w->downs[r].name, sp->name[i]) &&
			    !strcmp(w->downs[r].peer->text, sp->peer[i]->text))
				break;
			if (!w->downs[r].c && fr < 0 && !keep[r])
				fr = r;
		}
		if (r == MAX_DOWNS) {
			struct down *d;

			if (fr < 0) {
				rdm_node__log(n,
					      "steering: no free slot for replica %s (%d draining)",
					      sp->name[i], MAX_DOWNS);
				return -ENOSPC;
			}
			r = fr;
			d = &w->downs[r];
			if (r + 1 > w->n_downs)
				w->n_downs = r + 1;
			d->name = sp->name[i];
			d->ident = sp->ident[i];
			d->peer = sp->peer[i];
			d->c = dial(w, d, n->ops, 1);
			if (!d->c) {
				rdm_node__log(n, "connect %s: %s", sp->peer[i]->text,
					      strerror(errno));
				return -errno;
			}
			d->pins = 0;
			d->ever_up = 0;
		} else if (!w->downs[r].active && w->steer) {
			rdm_node__log(n,
				      "steering: replica %s is back in the table (%" PRIu64
				      " flows pinned)",
				      sp->name[i], w->downs[r].pins);
		}
		keep[r] = 1;
		slot_of[i] = r;
	}
	for (int r = 0; r < MAX_DOWNS; r++) {
		struct down *d = &w->downs[r];

		if (!d->c)
			continue;
		if (keep[r]) {
			d->active = 1;
		} else if (d->active) {
			d->active = 0;
			d->drain_start_ns = rdm_now_ns();
			rdm_node__log(n,
				      "steering: replica %s leaves the table: draining %" PRIu64
				      " pinned flows (at most %u ms)",
				      d->name, d->pins, n->chain->transport.drain_ms);
		}
	}
	memcpy(w->slot_of, slot_of, sizeof(slot_of));
	w->steer = sp;
	return 0;
}

/* Transport auto: a replica on this host whose shm listener has not answered for
 * SHM_WAIT_NS (its node could not listen there) is reached as the other hops are. */
static void shm_fallback(struct worker *w, struct down *d, uint64_t now)
{
	struct rdm_node *n = w->node;

	rdm_node__log(
	    n, "transport auto: no shared-memory listener at %s after %" PRIu64 " ms: using %s",
	    d->peer->text, (now - d->dial_ns) / 1000000, n->ops->name);
	w->auto_fallbacks++;
	rdm_node__stats_add(&w->down_closed, &d->c->stats);
	rdm_conn_close(d->c);
	d->c = dial(w, d, n->ops, 0);
	if (!d->c) {
		rdm_node__log(n, "connect %s: %s", d->peer->text, strerror(errno));
		d->gen++; /* the slot is free: pins to it renew */
	}
}

/* Transport auto: a peer with no RDMA responder (address or route errors, no answer to
 * RDMA CM), or RDMA that cannot be set up on this side (the device refused our buffers:
 * the memlock limit, logged with the sizes), is reached over TCP instead. A rejection
 * means RDMA is there, so it waits. A replica on this host that never answered on shm
 * falls back too (shm_fallback). */
void rdm_node__auto_check(struct worker *w)
{
	struct rdm_node *n = w->node;
	uint64_t now = 0;

	if (!n->auto_tcp_fallback && !n->try_shm)
		return;
	for (int r = 0; r < w->n_downs; r++) {
		struct down *d = &w->downs[r];

		if (d->ever_up || !d->c)
			continue;
		if (d->c->ops == &rdm_shm_ops) {
			now = now ? now : rdm_now_ns();
			if (!d->c->up && now - d->dial_ns >= SHM_WAIT_NS)
				shm_fallback(w, d, now);
			continue;
		}
		if (!n->auto_tcp_fallback || d->c->ops != &rdm_rdma_ops ||
		    (d->c->stats.unreachable < 2 && d->c->stats.local_fails < 2))
			continue;
		if (d->c->stats.local_fails >= 2)
			rdm_node__log(
			    n,
			    "transport auto: RDMA to %s cannot be set up here after %" PRIu64
			    " tries (why: above): using TCP",
			    d->peer->text, d->c->stats.local_fails);
		else
			rdm_node__log(n,
				      "transport auto: no RDMA responder at %s after %" PRIu64
				      " tries: using TCP",
				      d->peer->text, d->c->stats.unreachable);
		w->auto_fallbacks++;
		rdm_node__stats_add(&w->down_closed, &d->c->stats);
		rdm_conn_close(d->c);
		d->c = dial(w, d, &rdm_tcp_ops, 1);
		if (!d->c) {
			rdm_node__log(n, "connect %s: %s", d->peer->text, strerror(errno));
			d->gen++; /* the slot is free: pins to it renew */
		}
	}
}
