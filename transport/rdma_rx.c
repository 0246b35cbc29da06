/* The RDMA backend's completions: polling a device's completion queue (adaptively, then
 * sleeping on its channel), freeing what finished sends held, taking received messages
 * (a packed one checked by the codec, transport/rdma_pack.h) and handing their frames to
 * the owner in order, and giving receive slots back to the shared queue as credits. */
#include "transport/rdma_int.h"
#include "transport/rdma_pack.h"

#include <string.h>

void rdm_rdma__release_rslot(struct rdmx_ctx *x, uint32_t s)
{
	uint32_t own = x->rowner[s];
	int idx = (int)(own >> 16);

	if (x->rrefs[s]) {
		x->rheld[s] = 1;
		return;
	}
	x->rheld[s] = 0;
	rdm_rdma__post_recv(x, s);
	/* The slot is the peer's again: one credit owed to the connection it came from. */
	if (idx < RDMX_MAX_CONNS && x->conns[idx] && x->gen[idx] == (uint16_t)own)
		x->conns[idx]->owed++;
}

/* Hands queued frames to on_frames in order, at most `batch` a call: whole messages, and
 * the records of packed ones one by one. A slot is released once its last frame is taken. */
void rdm_rdma__deliver(struct rdmx_conn *c)
{
	struct rdm_rxframe fr[64];
	uint32_t next[64]; /* where its message's cursor goes once frame i is taken */
	struct rdmx_ctx *x = c->ctx;

	while (!c->rx_paused && c->rxq_n && !c->closed && c->established) {
		uint32_t max = c->o.batch < 64 ? c->o.batch : 64, qi = 0, n = 0;
		uint32_t off = c->rxq[c->rxq_head].off;
		int took;

		while (n < max && qi < c->rxq_n) {
			struct rdmx_rxq *q = &c->rxq[(c->rxq_head + qi) % c->rxq_cap];
			const uint8_t *b = x->rbuf + (size_t)q->slot * x->slot;

			if (q->packed) {
				/* Checked on arrival: every record up to end is whole, so this
				 * reads one, and moves to the next or to end. */
				struct rdm_pack_rd r = {b, q->end, off};
				struct rdm_pack_rec rec = {b + off, 0};

				rdm_pack_next(&r, &rec);
				fr[n] = (struct rdm_rxframe){rec.frame, rec.len};
				next[n] = r.off;
			} else {
				fr[n] = (struct rdm_rxframe){b, q->end};
				next[n] = q->end;
			}
			off = next[n];
			if (next[n++] >= q->end && ++qi < c->rxq_n)
				off = c->rxq[(c->rxq_head + qi) % c->rxq_cap].off;
		}
		took = c->base.cbs.on_frames(&c->base, fr, (int)n, c->base.cbs.arg);
		if (c->closed || !c->established)
			return;
		if (took < 0)
			took = 0;
		for (int i = 0; i < took; i++) {
			struct rdmx_rxq *q = &c->rxq[c->rxq_head];

			q->off = next[i];
			c->base.stats.rx_frames++;
			if (q->off < q->end)
				continue;
			rdm_rdma__release_rslot(x, q->slot);
			c->rxq_head = (c->rxq_head + 1) % c->rxq_cap;
			c->rxq_n--;
		}
		if ((uint32_t)took < n)
			c->rx_paused = 1;
	}
	if (c->peer_shut && !c->rxq_n)
		rdm_rdma__peer_done(c);
}

static struct rdmx_conn *rdmx_conn_of_qp(struct rdmx_ctx *x, uint32_t qp_num)
{
	for (int i = 0; i < RDMX_MAX_CONNS; i++)
		if (x->conns[i] && x->conns[i]->qp && x->conns[i]->qp->qp_num == qp_num)
			return x->conns[i];
	return NULL;
}

static void rdmx_on_send_done(struct rdmx_ctx *x, struct ibv_wc *wc)
{
	int idx = (int)(wc->wr_id >> 48);
	uint16_t gen = (uint16_t)(wc->wr_id >> 32);
	uint32_t pos = (uint32_t)wc->wr_id;
	struct rdmx_conn *c = idx < RDMX_MAX_CONNS ? x->conns[idx] : NULL;

	if (!c || x->gen[idx] != gen)
		return; /* a connection already torn down: reclaimed then */
	if (wc->status != IBV_WC_SUCCESS) {
		if (wc->status == IBV_WC_RNR_RETRY_EXC_ERR)
			c->base.stats.rnr_errors++;
		else if (wc->status == IBV_WC_RETRY_EXC_ERR)
			c->base.stats.retry_errors++;
		else
			c->base.stats.wc_errors++;
		rdm_rdma__conn_fail(c, ibv_wc_status_str(wc->status));
		return;
	}
	/* RC completes in order: everything up to the signalled request is done. */
	while (c->post_n) {
		uint32_t h = c->post_head;
		struct rdmx_posted *p = &c->post[h];

		if (p->sslot != RDMX_NONE && p->sslot != RDMX_CTRL)
			c->sfree[c->n_sfree++] = p->sslot;
		if (p->rslot != RDMX_NONE) {
			x->rrefs[p->rslot]--;
			if (x->rheld[p->rslot] && x->rrefs[p->rslot] == 0)
				rdm_rdma__release_rslot(x, p->rslot);
		}
		c->post_head = (h + 1) % c->sq_depth;
		c->post_n--;
		c->sq_used--;
		c->base.stats.tx_frames += p->frames;
		if (p->frames)
			c->base.stats.tx_msgs++;
		if (p->frames > 1)
			c->base.stats.tx_packed++;
		if (h == pos)
			break;
	}
}

static void rdmx_on_recv(struct rdmx_ctx *x, struct ibv_wc *wc)
{
	uint32_t slot = (uint32_t)wc->wr_id, imm, end;
	struct rdmx_conn *c = rdmx_conn_of_qp(x, wc->qp_num);

	if (wc->status != IBV_WC_SUCCESS) {
		if (wc->status != IBV_WC_WR_FLUSH_ERR)
			rdm_rdma__post_recv(x, slot);
		if (c)
			rdm_rdma__conn_fail(c, ibv_wc_status_str(wc->status));
		return;
	}
	if (!c) {
		rdm_rdma__post_recv(x, slot); /* its connection is gone */
		return;
	}
	imm = (wc->wc_flags & IBV_WC_WITH_IMM) ? ntohl(wc->imm_data) : 0;
	c->credits += imm & 0xFFFFFF;
	c->last_rx_ns = x->poll_ns;
	x->rowner[slot] = (uint32_t)c->idx << 16 | c->gen;
	end = wc->byte_len;
	if (c->auth.await_bind) {
		/* No frame is handed over before the dialler has proven its queue pair. */
		uint8_t m[RDMX_BIND_MSG_LEN] = {0};

		memcpy(m, x->rbuf + (size_t)slot * x->slot, end < sizeof(m) ? end : sizeof(m));
		x->rrefs[slot] = 0;
		rdm_rdma__release_rslot(x, slot);
		rdm_rdma__bind_recv(c, imm >> 24, m, end);
		return;
	}
	if (c->seal && (imm >> 24 == RDM_RDMA_IMM_DATA || imm >> 24 == RDM_RDMA_IMM_PACKED) &&
	    rdm_rdma__open(c, imm >> 24, x->rbuf + (size_t)slot * x->slot, &end) < 0) {
		/* Changed on the wire, replayed or forged: the stream ends at this message;
		 * what arrived intact before it is delivered. */
		c->base.stats.rx_tls_errors++;
		x->rrefs[slot] = 0;
		rdm_rdma__release_rslot(x, slot);
		if (c->rxq_n && !c->rx_paused)
			rdm_rdma__deliver(c);
		rdm_rdma__conn_fail(c,
				    "a message failed its check (AES-GCM): changed on the wire?");
		return;
	}
	if (imm >> 24 == RDM_RDMA_IMM_PACKED) {
		uint64_t bytes = 0, len = end;

		c->base.stats.rx_packed++;
		if (rdm_pack_scan(x->rbuf + (size_t)slot * x->slot, (uint32_t)len, &end, &bytes) <
		    0)
			c->base.stats.rx_bad_len++; /* the frames before the bad record still go */
		c->base.stats.rx_bytes += bytes;
	} else if (imm >> 24 == RDM_RDMA_IMM_DATA) {
		c->base.stats.rx_bytes += end;
	}
	if ((imm >> 24 != RDM_RDMA_IMM_DATA && imm >> 24 != RDM_RDMA_IMM_PACKED) ||
	    (imm >> 24 == RDM_RDMA_IMM_PACKED && end == 0)) {
		x->rrefs[slot] = 0;
		rdm_rdma__release_rslot(x, slot);
		if (imm >> 24 == RDM_RDMA_IMM_SHUT) {
			/* RC is in order: every frame of the peer's is here, in the queue;
			 * deliver disconnects once it has handed them all over. */
			c->peer_shut = 1;
			rdm_rdma__deliver(c);
		}
		return;
	}
	if (c->rxq_n == c->rxq_cap) {
		/* The peer sent past its credits: a protocol error, not a reason to lose
		 * the frames already taken. */
		rdm_rdma__release_rslot(x, slot);
		rdm_rdma__conn_fail(c, "peer exceeded its credits");
		return;
	}
	c->rxq[(c->rxq_head + c->rxq_n) % c->rxq_cap] =
	    (struct rdmx_rxq){slot, 0, end, imm >> 24 == RDM_RDMA_IMM_PACKED};
	c->rxq_n++;
}

/* After a round of completions: deliver, send what credits allow, return credits. */
static void rdmx_after_poll(struct rdmx_ctx *x)
{
	for (int i = 0; i < RDMX_MAX_CONNS; i++) {
		struct rdmx_conn *c = x->conns[i];

		if (!c || !c->established)
			continue;
		rdm_rdma__deliver(c);
		if (!x->conns[i] || !c->established)
			continue;
		rdm_rdma__flush_pending(c);
		if (c->owed >= (c->o.credits / 4 ? c->o.credits / 4 : 1))
			rdm_rdma__send_ctrl(c, RDM_RDMA_IMM_CREDIT);
	}
}

/* Polls up to one batch of completions and acts on them; returns how many. */
static int rdmx_poll_batch(struct rdmx_ctx *x)
{
	struct ibv_wc wc[32];
	int n = ibv_poll_cq(x->cq, 32, wc);

	if (n > 0)
		x->poll_ns = rdm_now_ns(); /* one clock read a batch, not one a message */
	for (int i = 0; i < n; i++) {
		if (wc[i].opcode & IBV_WC_RECV)
			rdmx_on_recv(x, &wc[i]);
		else
			rdmx_on_send_done(x, &wc[i]);
	}
	if (n > 0)
		rdmx_after_poll(x);
	return n;
}

/* One turn of adaptive polling. While completions keep coming the context stays hot:
 * the loop calls this on every turn without blocking, so the worker goes on sending and
 * running its timers while it polls. After spin_us without a completion it arms the CQ
 * and sleeps on the completion channel. Returns whether it is still hot. */
int rdm_rdma__ctx_poller(struct rdm_poller *p)
{
	struct rdmx_ctx *x = container_of(p, struct rdmx_ctx, poller);
	uint64_t now = rdm_loop_now(x->rw->loop); /* this turn's: no clock read per poll */

	if (rdmx_poll_batch(x) > 0) {
		x->hot_until = now + x->spin_ns;
		return 1;
	}
	if (now < x->hot_until)
		return 1;
	/* Arm, then poll once more: a completion that raced the arming is not lost. */
	ibv_req_notify_cq(x->cq, 0);
	if (rdmx_poll_batch(x) > 0) {
		x->hot_until = rdm_now_ns() + x->spin_ns;
		return 1;
	}
	return 0;
}

/* Takes every completion there is now (before a teardown). */
void rdm_rdma__ctx_poll(struct rdmx_ctx *x)
{
	while (rdmx_poll_batch(x) > 0)
		;
}

static void rdmx_kick_deliver(void *arg)
{
	struct rdmx_conn *c = arg;

	if (!c->established)
		return;
	rdm_rdma__deliver(c);
	if (c->established)
		rdmx_after_poll(c->ctx);
}

void rdm_rdma__pause_rx(struct rdm_conn *bc)
{
	rdm_rdma__conn(bc)->rx_paused = 1;
}

void rdm_rdma__resume_rx(struct rdm_conn *bc)
{
	struct rdmx_conn *c = rdm_rdma__conn(bc);

	if (!c->rx_paused || c->closed)
		return;
	c->rx_paused = 0;
	if (c->rxq_n)
		rdm_timer_arm(c->rw->loop, &c->kick, 0, rdmx_kick_deliver, c);
}
