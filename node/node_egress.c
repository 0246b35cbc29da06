/* The chain's egress: accounting for the packets that leave it (per-origin sequence
 * gaps, flows, per-hop latency), writing them out, and pacing what it takes. */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "lib/clock.h"
#include "node/node_int.h"

/* The accounting of origin id (an ingress worker), added on first sight; NULL when
 * MAX_ORIGINS are taken. Under eg_mu. */
static struct origin *origin_get(struct rdm_node *n, uint32_t id)
{
	for (int i = 0; i < n->n_origins; i++)
		if (n->origins[i].id == id)
			return &n->origins[i];
	if (n->n_origins == MAX_ORIGINS)
		return NULL;
	n->origins[n->n_origins].id = id;
	return &n->origins[n->n_origins++];
}

/* Writes the packets of fs[0..m) into this edge's TUN device (notices have none). */
void rdm_node__tun_write(struct worker *w, struct rdm_frame *const *fs, int m)
{
	for (int i = 0; i < m; i++) {
		if (fs[i]->pkt_len == 0)
			continue; /* a notice: state only */
		if (write(w->tun_fd, fs[i]->pkt, fs[i]->pkt_len) == (ssize_t)fs[i]->pkt_len)
			w->st.tun_tx++;
		else
			w->st.drops[DROP_TUN]++;
	}
}

/* Writes frame f to the frames capture as a next hop would receive it: with the flow
 * contexts of one connection, state-only frames first. */
static void write_frames(struct worker *w, const struct rdm_frame *f, uint64_t now)
{
	uint32_t max = w->node->copts.max_frame;
	uint8_t *hdrs = w->framebuf + max;
	struct rdm_txframe out[RDM_CTX_OUT_MAX];
	int k = rdm_ctx_encode(w->fout_ctx, f, hdrs, HDR_SLOT, out);

	for (int i = 0; i < k; i++) {
		if (out[i].hdr_len + out[i].pkt_len > max) {
			rdm_ctx_tx_reset(w->fout_ctx); /* not written: start the flows again */
			return;
		}
		memcpy(w->framebuf, out[i].hdr, out[i].hdr_len);
		if (out[i].pkt_len)
			memcpy(w->framebuf + out[i].hdr_len, out[i].pkt, out[i].pkt_len);
		rdm_pcap_write(w->fout, w->framebuf, out[i].hdr_len + out[i].pkt_len, now);
	}
}

/* Frames leaving the chain here: written out (TUN, pcap files) and accounted for; the
 * node stops once egress.count packets are. */
void rdm_node__egress(struct worker *w, struct rdm_frame *const *fs, int m)
{
	struct rdm_node *n = w->node;
	uint64_t count = n->conf->egress.count;
	int done = 0;

	if (w->tun_fd >= 0)
		rdm_node__tun_write(w, fs, m);
	for (int i = 0; i < m; i++) {
		struct rdm_frame *f = fs[i];
		uint64_t now = f->n_hops ? f->hops[f->n_hops - 1].ns : rdm_wall_ns();

		if (f->pkt_len == 0) {
			w->st.notices++;
			continue; /* a notice: the packet was dropped upstream by policy */
		}
		if (w->pout)
			rdm_pcap_write(w->pout, f->pkt, f->pkt_len, now);
		if (w->fout)
			write_frames(w, f, now);
		if (f->present & RDM_F_FLOW_ID)
			rdm_flowcount_add(&w->eflows, f->flow_id, f->pkt_len);
		for (int h = 0; h + 1 < f->n_hops; h++)
			if (f->hops[h + 1].ns >= f->hops[h].ns)
				rdm_hist_add(&w->hops[h], f->hops[h + 1].ns - f->hops[h].ns);
		if (f->n_hops >= 2 && f->hops[f->n_hops - 1].ns >= f->hops[0].ns)
			rdm_hist_add(&w->e2e, f->hops[f->n_hops - 1].ns - f->hops[0].ns);
		w->st.egress_packets++;
		w->st.egress_bytes += f->pkt_len;
	}
	if (m > 0) {
		w->eg_last_ns = rdm_wall_ns();
		if (!w->eg_first_ns)
			w->eg_first_ns = w->eg_last_ns;
	}

	/* Sequence accounting: a gap in an origin's numbers is loss, counted exactly. */
	pthread_mutex_lock(&n->eg_mu);
	for (int i = 0; i < m; i++) {
		struct rdm_frame *f = fs[i];
		struct origin *o = (f->present & RDM_F_SEQ) ? origin_get(n, f->origin) : NULL;

		if (!o) {
			n->eg_unsequenced++;
			n->eg_accounted++;
			continue;
		}
		o->received++;
		if (f->seq >= o->next) {
			o->lost += f->seq - o->next;
			n->eg_missing += f->seq - o->next;
			n->eg_accounted += f->seq - o->next + 1;
			o->next = f->seq + 1;
		} else {
			/* Late, by another replica's path: it fills a gap counted as lost. */
			o->reordered++;
			if (o->lost) {
				o->lost--;
				n->eg_missing--;
			}
		}
	}
	if (count && n->eg_accounted >= count) {
		/* Everything is accounted for; packets still missing may be on a slower
		 * replica's path: wait for them a moment (see rdm_node__egress_check_late). */
		if (n->eg_missing == 0)
			done = 1;
		else if (!n->eg_full_ns)
			n->eg_full_ns = rdm_now_ns();
	}
	pthread_mutex_unlock(&n->eg_mu);
	if (done && !atomic_load(&n->stop)) {
		rdm_node__log(n, "egress: %" PRIu64 " packets accounted for, stopping", count);
		atomic_store(&n->stop, 1);
	}
}

/* The egress rate allows more frames again. */
static void egress_resume(void *arg)
{
	rdm_node__resume_inputs(arg);
}

/* How many frames the egress may take now under its configured rate. */
int rdm_node__egress_budget(struct worker *w, int n)
{
	double rate = w->node->conf->egress.rate / w->node->n_workers;
	uint64_t now = rdm_now_ns(), allowed;

	if (rate <= 0)
		return n;
	if (!w->eg_start_ns)
		w->eg_start_ns = now;
	allowed = (uint64_t)((double)(now - w->eg_start_ns) * rate / 1e9) + 1;
	if (allowed - w->eg_taken < (uint64_t)n || allowed <= w->eg_taken) {
		/* Whatever is left waits in the transport, which stops reading until the
		 * timer resumes it: the sender feels a slow egress as backpressure. */
		n = allowed > w->eg_taken ? (int)(allowed - w->eg_taken) : 0;
		rdm_timer_arm(w->loop, &w->eg_resume, 1, egress_resume, w);
	}
	w->eg_taken += (uint64_t)n;
	return n;
}

/* Called every tick at an egress that stops at a count: once everything is accounted
 * for but packets are still missing, they are counted lost after EGRESS_GRACE_NS and the
 * node stops. */
void rdm_node__egress_check_late(struct rdm_node *n, uint64_t now)
{
	int late = 0;

	pthread_mutex_lock(&n->eg_mu);
	late = n->eg_full_ns && now - n->eg_full_ns >= EGRESS_GRACE_NS;
	pthread_mutex_unlock(&n->eg_mu);
	if (late && !atomic_load(&n->stop)) {
		rdm_node__log(n,
			      "egress: %" PRIu64 " packets accounted for, %" PRIu64
			      " missing after %d ms: counted lost, stopping",
			      n->conf->egress.count, n->eg_missing,
			      (int)(EGRESS_GRACE_NS / 1000000));
		atomic_store(&n->stop, 1);
	}
}
