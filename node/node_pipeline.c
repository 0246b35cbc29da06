/* A batch through the node's stages: decoding received frames, running the stages hosted
 * here over them, and passing what survives on (replies the other way). */
#include <string.h>

#include "transport/frame.h"
#include "transport/framectx.h"
#include "node/node_int.h"

/* A frame a stage dropped or answered but marked RDM_FF_NOTICE goes on without its
 * packet, so that the stages after it (the flow log) learn the decision. */
static struct rdm_frame *as_notice(struct rdm_frame *f)
{
	f->pkt = NULL;
	f->pkt_len = 0;
	f->tcp_known = 0;
	return f;
}

/* Runs the node's stages over w->frp[0..m) and compacts it to the frames that pass;
 * replies a stage made go to w->back and skip the stages after it. */
static int run_stages(struct worker *w, int m)
{
	struct rdm_node *n = w->node;

	w->n_back = 0;
	w->n_notice = 0;
	for (int s = 0; s < n->n_stages && m > 0; s++) {
		int k = 0, keeps = n->stage_ops[s]->keeps_state;

		n->stage_ops[s]->process(w->stage_rt[s], w->frp, m, w->verdict);
		for (int i = 0; i < m; i++) {
			struct rdm_frame *f = w->frp[i];
			int notice;

			if (!keeps)
				f->state_src = 0; /* the stage may have changed it */
			if (w->verdict[i] == RDM_STAGE_PASS) {
				w->frp[k++] = f; /* the common case first */
				continue;
			}
			notice = (f->present & RDM_F_FLAGS) && (f->flags & RDM_FF_NOTICE);
			if (w->verdict[i] == RDM_STAGE_REPLY) {
				/* A reply's key is turned round, and below its flags change
				 * and its notice's key turns back: neither keeps an id, nor
				 * the flow tables' hints. */
				f->state_src = 0;
				f->hints = NULL;
				w->back[w->n_back++] = f;
				w->st.replies++;
				if (notice) {
					/* The reply holds the state with its 5-tuple turned
					 * round; the notice goes on the original's way. */
					struct rdm_frame *c = &w->notice[w->n_notice++];
					struct rdm_flow_key *ck = &c->key;
					uint8_t a[16];
					uint16_t p;

					*c = *f;
					memcpy(a, ck->src, 16);
					memcpy(ck->src, ck->dst, 16);
					memcpy(ck->dst, a, 16);
					p = ck->sport;
					ck->sport = ck->dport;
					ck->dport = p;
					w->frp[k++] = as_notice(c);
					f->flags &= ~RDM_FF_NOTICE;
				}
			} else if (w->verdict[i] > 0) {
				w->frp[k++] = f;
			} else if (w->verdict[i] == 0) {
				w->st.stage_drop[s]++;
				w->st.drops[DROP_STAGE]++;
				if (notice)
					w->frp[k++] = as_notice(f);
			} else {
				w->st.stage_error[s]++;
				w->st.drops[DROP_STAGE_ERROR]++;
			}
		}
		m = k;
	}
	return m;
}

/* Encodes frames fs[0..m) into w->tx (headers in w->hdr) for the connection whose flow
 * contexts are t; frames whose upi differs from want are skipped (want -1 takes all).
 * A frame may take several tx frames (state-only ones first: w->tx_part). Returns how
 * many tx frames. */
int rdm_node__encode_tx(struct worker *w, struct rdm_ctx_tx *t, struct rdm_frame *const *fs, int m,
			int want, int dir)
{
	struct rdm_node *n = w->node;
	int k = 0, j = 0;

	for (int i = 0; i < m; i++) {
		struct rdm_frame *f = fs[i];
		struct rdm_txframe *out = &w->tx[k];
		int got;

		if (want >= 0 && w->upi[i] != want)
			continue;
		/* The service index counts the chain's positions down; going back it stays. */
		if (dir == FWD)
			f->si--;
		got = rdm_ctx_encode(t, f, w->hdr + (size_t)j * HDR_SLOT, HDR_SLOT, out);
		if (got < 0 || out[got - 1].hdr_len + f->pkt_len > n->copts.max_frame) {
			/* Not sent: the slot it may have set must not be relied on. */
			rdm_ctx_tx_reset(t);
			w->st.ctx_resets += t != NULL;
			w->st.drops[DROP_OVERSIZE]++;
			continue;
		}
		w->tx_part[k + got - 1] = 0;
		for (int g = 0; g < got - 1; g++)
			w->tx_part[k + g] = 1;
		k += got;
		j++;
	}
	w->tx_pkts = j;
	return k;
}

/* Sends w->tx[0..k), as rdm_node__encode_tx just wrote them, on c, whose flow contexts
 * are t. Returns how many frames with a packet (or notice) it took, or -ENOTCONN; *lost
 * says how many it did not take. A connection that did not take every frame gets its
 * contexts reset: a frame it did not take may have set one. */
int rdm_node__send_tx(struct worker *w, struct rdm_conn *c, struct rdm_ctx_tx *t, int k,
		      uint64_t *lost)
{
	int rc = rdm_conn_send(c, w->tx, k), taken = 0;

	if (rc == k) {
		*lost = 0;
		return w->tx_pkts;
	}
	for (int i = 0; i < rc; i++)
		taken += !w->tx_part[i];
	*lost = (uint64_t)(w->tx_pkts - taken);
	if (t) {
		rdm_ctx_tx_reset(t);
		w->st.ctx_resets++;
	}
	return rc < 0 ? rc : taken;
}

/* Decodes received frames of the connection whose flow contexts are r into w->fr /
 * w->frp; returns how many are good, and in *parts how many were state-only (neither
 * good nor dropped). Frames going back keep their service index, so only forward ones
 * can run out of it. */
int rdm_node__decode_batch(struct worker *w, struct rdm_ctx_rx *r, const struct rdm_rxframe *rx,
			   int n, int dir, int *parts)
{
	int m = 0;

	*parts = 0;
	rdm_ctx_rx_release(r); /* the last batch is done: its states may go */
	for (int i = 0; i < n; i++) {
		struct rdm_frame *f = &w->fr[m];
		int rc = rdm_ctx_decode(r, f, rx[i].data, rx[i].len);

		if (rc > 0) {
			(*parts)++;
			continue;
		}
		if (rc < 0) {
			w->st.drops[-rc - RDM_FERR_FIRST]++;
			continue;
		}
		if (f->ttl <= 1 || (dir == FWD && f->si == 0)) {
			w->st.drops[DROP_TTL]++;
			continue;
		}
		f->ttl--;
		w->frp[m] = f;
		m++;
	}
	return m;
}

/* Sends frames on in direction dir. */
static void send_on(struct worker *w, struct rdm_frame *const *fs, int m, int dir)
{
	if (m == 0)
		return;
	if (dir == BACK)
		rdm_node__send_back(w, fs, m);
	else if (w->node->conf->egress.enabled)
		rdm_node__egress(w, fs, m);
	else if (w->steer)
		rdm_node__forward(w, fs, m);
}

/* Stages, then on in the batch's direction; replies go the other way. The frames are
 * w->frp[0..m). */
void rdm_node__handle_batch(struct worker *w, int m, int dir)
{
	m = run_stages(w, m);
	send_on(w, w->frp, m, dir);
	if (w->n_back)
		send_on(w, w->back, w->n_back, dir == FWD ? BACK : FWD);
}
