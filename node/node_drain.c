/* Winding down a worker's next-hop connections: one replica that left the steering
 * table (once no flow is pinned to it, or at the drain timeout), or all of them when the
 * worker stops (once the send queues are empty, or at drain_ms). Either way the
 * connection then half-closes and waits a grace for the peer to close. */
#include <inttypes.h>
#include <stdatomic.h>

#include "lib/clock.h"
#include "node/node_int.h"

/* The node was told to stop: the worker takes no more input and drains for at most
 * drain_ms. */
void rdm_node__begin_stop(struct worker *w)
{
	struct rdm_node *n = w->node;

	w->stopping = 1;
	rdm_timer_cancel(w->loop, &w->pump);
	if (w->tun_fd >= 0)
		rdm_io_mod(w->loop, &w->tun_io, 0);
	for (int i = 0; i < w->n_ups; i++)
		rdm_conn_pause_rx(w->ups[i]);
	w->drain_until_ns = rdm_now_ns() + (uint64_t)n->drain_ms * 1000000ull;
}

/* Bytes still queued towards connected next hops. */
static size_t downs_queued(const struct worker *w)
{
	size_t q = 0;

	for (int r = 0; r < MAX_DOWNS; r++)
		if (w->downs[r].c && w->downs[r].c->up)
			q += rdm_conn_queued(w->downs[r].c);
	return q;
}

/* 1 when nothing is queued towards the next hops. */
static int drained(const struct worker *w)
{
	return downs_queued(w) == 0;
}

/* Next-hop connections that said they are done sending and wait for the peer to close. */
static int downs_closing(const struct worker *w)
{
	int k = 0;

	for (int r = 0; r < MAX_DOWNS; r++)
		k += w->downs[r].c && w->downs[r].c->up && w->downs[r].shut_tx;
	return k;
}

/* After each loop round: the worker finishes once its source is done or it was told to
 * stop, its queues drained (or timed out), and its next hops closed (or the grace
 * passed). */
void rdm_node__check_finished(struct worker *w)
{
	struct rdm_node *n = w->node;
	uint64_t now = rdm_loop_now(w->loop); /* the turn's clock: no reading per turn */
	int done = 0;

	if (w->finished)
		return;
	if (w->shut_ns) {
		done = 1;
	} else if (!w->stopping && (w->gen || w->pin) && w->src_done && drained(w)) {
		done = 1;
	} else if (w->stopping && (drained(w) || now >= w->drain_until_ns)) {
		if (!drained(w))
			rdm_node__log(n, "drain timeout: %zu bytes still queued", downs_queued(w));
		done = 1;
	}
	if (!done)
		return;
	/* Leave the way TCP means it: say we are done and let the next hops close first.
	 * A socket closed while data still comes in resets the connection, and the reset
	 * makes the next hop drop the frames it has not read yet. */
	if (!w->shut_ns) {
		w->shut_ns = now;
		for (int r = 0; r < MAX_DOWNS; r++)
			if (w->downs[r].c && w->downs[r].c->up)
				w->downs[r].shut_tx = rdm_conn_shutdown_tx(w->downs[r].c) == 0;
	}
	if (downs_closing(w) && now - w->shut_ns < SHUT_GRACE_NS)
		return;
	w->finished = 1;
	atomic_fetch_add(&n->n_finished, 1);
}

/* Closes draining replicas whose flows are all gone, or whose time is up. */
void rdm_node__drain_check(struct worker *w, uint64_t now)
{
	uint64_t limit = (uint64_t)w->node->chain->transport.drain_ms * 1000000ull;

	for (int r = 0; r < MAX_DOWNS; r++) {
		struct down *d = &w->downs[r];

		if (!d->c || d->active)
			continue;
		if (!d->c->up && !d->closing) {
			/* It left the table while unreachable (its node died, or its link): its
			 * flows moved on their next packet, and dialling it again could only
			 * bring back a replica its node has been told to stop. */
			w->st.drained_unreachable++;
			rdm_node__log(
			    w->node,
			    "steering: replica %s (%s) left the table unreachable: closed, "
			    "%" PRIu64 " pinned flows move on",
			    d->name, d->peer->text, d->pins);
			d->gen++;
			d->pins = 0;
			rdm_node__stats_add(&w->down_closed, &d->c->stats);
			rdm_conn_close(d->c);
			d->c = NULL;
			continue;
		}
		if (d->pins && now - d->drain_start_ns < limit)
			continue;
		if (d->closing) {
			/* Told the replica we are done; gone once it closed too (or the grace). */
			if (d->c->up && now - d->drain_start_ns < SHUT_GRACE_NS)
				continue;
			rdm_node__stats_add(&w->down_closed, &d->c->stats);
			rdm_conn_close(d->c);
			d->c = NULL;
			d->closing = 0;
			continue;
		}
		if (d->pins) {
			w->st.drain_timeouts++;
			rdm_node__log(w->node,
				      "steering: replica %s drained by timeout: %" PRIu64
				      " flows still pinned move on their next packet",
				      d->name, d->pins);
		} else {
			w->st.drained_idle++;
			rdm_node__log(w->node, "steering: replica %s drained: no flow left on it",
				      d->name);
		}
		/* No new frame goes to it (its pins are stale now); what is queued still
		 * does, then the connection closes the way TCP means it. */
		d->gen++;
		d->pins = 0;
		if (rdm_conn_shutdown_tx(d->c) == 0) {
			d->closing = 1;
			d->drain_start_ns = now;
			continue;
		}
		rdm_node__stats_add(&w->down_closed, &d->c->stats);
		rdm_conn_close(d->c);
		d->c = NULL;
	}
}
