/* Steering: which replica of the next stage each frame goes to (a Maglev table over the
 * replicas' names, each flow pinned to the replica it started on), and sending there. */
#include <stdlib.h>

#include "lib/pkt.h"
#include "node/maglev.h"
#include "node/node_int.h"

/* The steering of node conf c of chain: its next replicas and their Maglev table.
 * owned is a reloaded chain the steer keeps (freed with it), or NULL. */
struct steer *rdm_node__steer_new(const struct rdm_chain_conf *chain, const struct rdm_node_conf *c,
				  struct rdm_chain_conf *owned)
{
	struct steer *sp = calloc(1, sizeof(*sp));

	if (!sp)
		return NULL;
	sp->n = c->n_next;
	for (int r = 0; r < c->n_next; r++) {
		const struct rdm_node_conf *nx = &chain->nodes[c->nexts[r]];

		sp->name[r] = nx->name;
		sp->ident[r] = nx->identity;
		sp->peer[r] = c->has_connect ? &c->connect : &nx->listen;
	}
	sp->mg = rdm_maglev_new(sp->name, sp->n, 0);
	if (!sp->mg) {
		free(sp);
		return NULL;
	}
	sp->chain = owned;
	return sp;
}

/* Frees sp and every older steer hanging off it. */
void rdm_node__steer_free_all(struct steer *sp)
{
	while (sp) {
		struct steer *o = sp->older;

		rdm_maglev_free(sp->mg);
		if (sp->chain) {
			rdm_chain_free(sp->chain);
			free(sp->chain);
		}
		free(sp);
		sp = o;
	}
}

/* Pins frame f's flow (see steer_frame) and returns its slot; *moved says whether the
 * flow has moved mid-stream (0 for a frame with no flow key). */
static int steer_pin(struct worker *w, struct rdm_frame *f, uint64_t now, int *moved)
{
	uint64_t hash;
	struct rdm_flow *fl;
	struct pin *p;
	int dir, created, slot, pick;

	*moved = 0;
	if (!(f->present & RDM_F_FLOW_KEY))
		return w->slot_of[0];
	hash = rdm_frame_flow_hash(f, &f->key);
	fl = f->owner_flow;
	/* The entry found when the frame arrived, if it still holds this flow (a frame
	 * made here, a notice with its key turned round, has none); else tracked now. */
	if (!fl || fl->hash != hash ||
	    !(rdm_flow_key_eq(&fl->key, &f->key) || rdm_flow_key_rev(&fl->key, &f->key)))
		fl = rdm_flowtab_track_hinted(w->flows, &f->key, hash, f->pkt_len,
					      rdm_frame_tcp_flags(f), now, &dir, NULL, f->hints);
	p = &((struct nflow *)rdm_flow_data(fl))->pin;
	created = !p->pinned;
	if (created)
		p->moved = 0;
	/* A pin holds while its replica is in the table, or drains and is still there: a
	 * replica that left the table and is unreachable (its node died) gives its flows
	 * to the table at once rather than dropping their packets until the drain ends. */
	if (!created && p->gen == w->downs[p->slot].gen && w->downs[p->slot].c &&
	    (w->downs[p->slot].active || w->downs[p->slot].c->up)) {
		if (p->epoch != w->downs[p->slot].c->epoch && w->downs[p->slot].c->up) {
			p->moved = 1; /* the replica's end was made again since */
			p->epoch = w->downs[p->slot].c->epoch;
		}
		*moved = p->moved;
		return (int)p->slot;
	}
	if (!created) {
		p->moved = 1;
		w->st.pins_moved++;
		if (p->gen == w->downs[p->slot].gen && w->downs[p->slot].pins)
			w->downs[p->slot].pins--; /* the old replica has one flow less */
	}
	pick = rdm_maglev_lookup(w->steer->mg, hash);
	slot = w->slot_of[pick];
	if (!w->downs[slot].c || !w->downs[slot].c->up) {
		/* The table's pick is not connected (a replica just added and still dialling,
		 * or one whose node died): the flow starts on the next connected replica in
		 * table order instead of losing its first packets, and stays there. */
		for (int k = 1; k < w->steer->n; k++) {
			int alt = w->slot_of[(pick + k) % w->steer->n];

			if (w->downs[alt].c && w->downs[alt].c->up) {
				slot = alt;
				w->st.pins_detoured++;
				break;
			}
		}
	}
	p->slot = (uint32_t)slot;
	p->pinned = 1;
	p->gen = w->downs[slot].gen;
	p->epoch = w->downs[slot].c ? w->downs[slot].c->epoch : 0;
	w->downs[slot].pins++;
	*moved = p->moved;
	return slot;
}

/* The slot of the replica that carries frame f. A flow's first packet picks one from the
 * Maglev table by the flow's symmetric hash (both directions alike) and pins the flow to
 * it; later packets follow the pin, so a changed table never moves a flow. A pin to a
 * replica that has gone is renewed from the table (counted: pins_moved).
 *
 * Fail closed: a replica that takes a flow mid-stream (moved to it, or its connection
 * made again, as after a restart) may never have seen the flow's start, and what it
 * decides from the middle could differ. Such flows carry RDM_FF_MOVED from then on (DPI
 * treats one it does not know as lost, and the policy denies it while its decision
 * waits on what DPI would have seen). */
static int steer_frame(struct worker *w, struct rdm_frame *f, uint64_t now)
{
	int moved, slot = steer_pin(w, f, now, &moved);

	if (moved)
		rdm_frame_add_flags(f, RDM_FF_MOVED);
	return slot;
}
/* A pin leaves with its flow (idle, closed, evicted): its replica has one flow less. */
void rdm_node__pin_end(void *arg, struct rdm_flow *fl, enum rdm_flow_end why)
{
	struct worker *w = arg;
	const struct pin *p = &((const struct nflow *)rdm_flow_data(fl))->pin;

	if (p->pinned && p->slot < MAX_DOWNS && p->gen == w->downs[p->slot].gen &&
	    w->downs[p->slot].pins)
		w->downs[p->slot].pins--;
}

/* Sends frames fs[0..m) forward, each to the replica its flow is pinned to. Flows are
 * timed by the loop's clock of this turn: no clock reading per batch. */
void rdm_node__forward(struct worker *w, struct rdm_frame *const *fs, int m)
{
	uint64_t now = rdm_loop_now(w->loop);

	for (int i = 0; i < m; i++)
		w->upi[i] = steer_frame(w, fs[i], now);
	for (int r = 0; r < w->n_downs; r++) {
		struct rdm_conn *c = w->downs[r].c;
		uint64_t lost;
		int k, rc;

		if (!c)
			continue;
		k = rdm_node__encode_tx(w, w->downs[r].ctx_tx, fs, m, r, FWD);
		if (k == 0)
			continue;
		rc = rdm_node__send_tx(w, c, w->downs[r].ctx_tx, k, &lost);
		if (rc < 0) {
			w->st.drops[DROP_PEER_DOWN] += lost;
			continue;
		}
		w->st.tx_frames += (uint64_t)rc;
		w->st.drops[DROP_QUEUE_FULL] += lost;
	}
}

/* 1 when some replica of the next stage pushes back: the worker holds its input. */
int rdm_node__downs_congested(const struct worker *w)
{
	for (int r = 0; r < w->n_downs; r++)
		if (w->downs[r].c && w->downs[r].c->congested)
			return 1;
	return 0;
}

/* How many replicas in the current table are connected. */
int rdm_node__downs_up(const struct worker *w)
{
	int k = 0;

	for (int i = 0; w->steer && i < w->steer->n; i++)
		k += w->downs[w->slot_of[i]].c && w->downs[w->slot_of[i]].c->up;
	return k;
}
