/* Packets entering the chain here: read from the generator, a pcap file or the TUN
 * device, made into frames, and paced by the configured rate and by congestion. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/pkt.h"
#include "lib/util.h"
#include "node/node_int.h"

/* Reads this worker's next packet from the source into slot; 0 at the end. */
static int source_next(struct worker *w, uint8_t *slot, uint32_t cap)
{
	const struct rdm_ingress_conf *ic = &w->node->conf->ingress;

	for (;;) {
		int len;

		if (ic->count && w->src_read >= ic->count)
			return 0;
		if (w->gen) {
			len = rdm_gen_next(w->gen, slot, cap);
		} else {
			const uint8_t *p;

			len = rdm_pcap_next(w->pin, &p);
			if (len > (int)cap) {
				w->src_read++;
				w->st.drops[DROP_OVERSIZE]++;
				continue;
			}
			if (len > 0)
				memcpy(slot, p, (size_t)len);
		}
		if (len <= 0)
			return len;
		w->src_read++;
		if (w->node->n_workers > 1) {
			struct rdm_flow_key k;
			uint64_t nw = (uint64_t)w->node->n_workers, owner = 0;

			/* Each worker replays the flows that hash to it, in order; what does
			 * not parse goes to worker 0, which counts it. */
			if (rdm_pkt_flow_key(slot, (uint32_t)len, &k) == 0)
				owner = rdm_flow_hash(&k) % nw;
			if (owner != (uint64_t)w->idx)
				continue;
		}
		return len;
	}
}

/* A fresh frame for an IP packet entering the chain here; -EINVAL (counted) if it is
 * not one. */
static int frame_of_packet(struct worker *w, struct rdm_frame *f, const uint8_t *pkt, uint32_t len)
{
	rdm_frame_init(f, w->node->chain->spi, INGRESS_SI, rdm_pkt_next_proto(pkt, len));
	if (rdm_pkt_flow_key(pkt, len, &f->key) < 0) {
		w->st.drops[DROP_NOT_IP]++;
		return -EINVAL;
	}
	f->flow_id = rdm_flow_hash(&f->key);
	f->present = RDM_F_FLOW_KEY | RDM_F_FLOW_ID;
	f->pkt = pkt;
	f->pkt_len = len;
	return 0;
}

/* Takes up to want packets from the source and builds their frames into frp. */
static int fill_batch(struct worker *w, int want)
{
	struct rdm_node *n = w->node;
	uint32_t cap = n->copts.max_frame;
	int m = 0;

	for (int i = 0; i < want; i++) {
		uint8_t *slot = w->pkt + (size_t)i * cap;
		struct rdm_frame *f = &w->fr[m];
		uint64_t seq = w->st.ingress_taken;
		int len = source_next(w, slot, cap);

		if (len <= 0) {
			if (len < 0)
				rdm_node__log(n, "ingress source: %s", strerror(-len));
			w->src_done = 1;
			break;
		}
		w->st.ingress_taken++;
		if (frame_of_packet(w, f, slot, (uint32_t)len) < 0)
			continue;
		f->origin = n->conf->id << 8 | (uint32_t)w->idx;
		f->seq = seq;
		f->present |= RDM_F_SEQ;
		w->frp[m++] = f;
	}
	return m;
}

/* Reads up to batch packets from the TUN device and runs them: forward at an ingress
 * edge, back at an egress edge. */
void rdm_node__tun_io(struct rdm_io *io, uint32_t events)
{
	struct worker *w = container_of(io, struct worker, tun_io);
	struct rdm_node *n = w->node;
	uint32_t cap = n->copts.max_frame;
	int dir = n->conf->ingress.mode == RDM_INGRESS_TUN ? FWD : BACK, m = 0;

	if (w->stopping)
		return;
	if (dir == FWD && rdm_node__downs_congested(w)) {
		/* The kernel queues, then drops, as a full NIC would; writable resumes us. */
		w->st.stalls++;
		rdm_io_mod(w->loop, &w->tun_io, 0);
		return;
	}
	for (uint32_t i = 0; i < n->copts.batch; i++) {
		uint8_t *slot = w->pkt + (size_t)i * cap;
		struct rdm_frame *f = &w->fr[m];
		ssize_t len = read(w->tun_fd, slot, cap);

		if (len <= 0)
			break;
		w->st.tun_rx++;
		if (frame_of_packet(w, f, slot, (uint32_t)len) < 0)
			continue;
		if (dir == FWD) {
			f->origin = n->conf->id << 8 | (uint32_t)w->idx;
			f->seq = w->st.ingress_taken++;
			f->present |= RDM_F_SEQ;
		}
		w->frp[m++] = f;
	}
	if (dir == FWD)
		w->st.ingress_sent += (uint64_t)m;
	rdm_node__handle_batch(w, m, dir);
}

/* The ingress pump: paced by the configured rate, held back by congestion. */
void rdm_node__pump(void *arg)
{
	struct worker *w = arg;
	struct rdm_node *n = w->node;
	const struct rdm_ingress_conf *ic = &n->conf->ingress;
	double rate = ic->rate / n->n_workers;
	uint64_t now = rdm_now_ns(), allow;
	int batch = (int)n->copts.batch;

	if (w->stopping || w->src_done)
		return;
	if (!w->started) {
		if (w->steer && rdm_node__downs_up(w) < w->steer->n && now < w->wait_until_ns) {
			rdm_timer_arm(w->loop, &w->pump, 10, rdm_node__pump, w);
			return;
		}
		if (w->steer && rdm_node__downs_up(w) < w->steer->n)
			rdm_node__log(
			    n,
			    "%d of %d next hops not up after %d ms: starting anyway, counting "
			    "drops",
			    w->steer->n - rdm_node__downs_up(w), w->steer->n, ic->wait_ms);
		w->started = 1;
		w->start_ns = now;
	}
	allow = (uint64_t)batch * 8;
	if (rate > 0) {
		uint64_t due = (uint64_t)((double)(now - w->start_ns) * rate / 1e9) + 1;

		allow = due > w->st.ingress_taken ? due - w->st.ingress_taken : 0;
		if (allow > (uint64_t)batch * 64)
			allow = (uint64_t)batch * 64;
	}
	while (allow > 0 && !w->src_done) {
		int m, want = allow < (uint64_t)batch ? (int)allow : batch;
		uint64_t before = w->st.ingress_taken;

		if (rdm_node__downs_congested(w)) {
			w->st.stalls++;
			return; /* down_writable re-arms the pump */
		}
		m = fill_batch(w, want);
		allow -= w->st.ingress_taken - before;
		if (m > 0) {
			uint64_t tx0 = w->st.tx_frames;

			rdm_node__handle_batch(w, m, FWD);
			w->st.ingress_sent += w->st.tx_frames - tx0;
		}
	}
	if (w->src_done) {
		rdm_node__log(n,
			      "ingress: source done, %" PRIu64 " packets taken, %" PRIu64 " sent",
			      w->st.ingress_taken, w->st.ingress_sent);
		return;
	}
	if (rate > 0) {
		double next_s = (double)(w->st.ingress_taken + 1) / rate;
		uint64_t at = w->start_ns + (uint64_t)(next_s * 1e9);

		rdm_timer_arm_ns(w->loop, &w->pump, at > now ? at - now : 0, rdm_node__pump, w);
	} else {
		rdm_timer_arm(w->loop, &w->pump, 0, rdm_node__pump, w);
	}
}
