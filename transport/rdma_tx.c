/* The RDMA backend's send path: credits, the queue of messages waiting for them in send
 * slots, and posting frames inline, zero copy from a receive slot, copied, or packed
 * several to a message (the design is in transport/rdma.c). */
#include "transport/rdma_int.h"
#include "transport/rdma_pack.h"

#include <errno.h>
#include <string.h>

static uint32_t rdmx_take_owed(struct rdmx_conn *c)
{
	uint32_t o = c->owed > 0xFFFFFF ? 0xFFFFFF : c->owed;

	c->owed -= o;
	return o;
}

/* Posts n prepared work requests as one list, the last one signalled. */
static int rdmx_post_list(struct rdmx_conn *c, struct ibv_send_wr *wr, int n)
{
	struct ibv_send_wr *bad;

	for (int i = 0; i < n; i++) {
		wr[i].next = i + 1 < n ? &wr[i + 1] : NULL;
		wr[i].send_flags |= i + 1 == n ? IBV_SEND_SIGNALED : 0;
	}
	if (ibv_post_send(c->qp, wr, &bad)) {
		rdm_rdma__conn_fail(c, "ibv_post_send failed");
		return -EIO;
	}
	c->sq_used += (uint32_t)n;
	c->last_tx_ns = rdm_now_ns();
	/* Completions (and, often, the peer's answer) follow a send: poll for them. */
	if (c->ctx->spin_ns) {
		c->ctx->hot_until = c->last_tx_ns + c->ctx->spin_ns;
		rdm_poller_wake(c->rw->loop, &c->ctx->poller);
	}
	return 0;
}

static void rdmx_note_posted(struct rdmx_conn *c, struct ibv_send_wr *wr, uint32_t sslot,
			     uint32_t rslot, uint32_t frames)
{
	uint32_t pos = (c->post_head + c->post_n) % c->sq_depth;

	c->post[pos].sslot = sslot;
	c->post[pos].rslot = rslot;
	c->post[pos].frames = frames;
	c->post_n++;
	wr->wr_id = (uint64_t)c->idx << 48 | (uint64_t)c->gen << 32 | pos;
}

/* Sends an empty message carrying returned credits (or a keepalive). */
void rdm_rdma__send_ctrl(struct rdmx_conn *c, uint32_t t)
{
	struct ibv_send_wr wr = {0};

	if (!c->established || c->credits < 1 || c->sq_used >= c->sq_depth)
		return;
	wr.opcode = IBV_WR_SEND_WITH_IMM;
	wr.imm_data = RDMX_IMM(t, rdmx_take_owed(c));
	wr.num_sge = 0;
	rdmx_note_posted(c, &wr, RDMX_CTRL, RDMX_NONE, 0);
	c->credits--;
	if (rdmx_post_list(c, &wr, 1) == 0) {
		if (t == RDM_RDMA_IMM_CREDIT)
			c->base.stats.credit_msgs++;
		else if (t == RDM_RDMA_IMM_KEEPALIVE)
			c->base.stats.keepalives++;
	}
}

/* Posts queued frames while credits and send-queue room last. */
void rdm_rdma__flush_pending(struct rdmx_conn *c)
{
	struct ibv_send_wr wr[RDMX_POST_BATCH];
	struct ibv_sge sge[RDMX_POST_BATCH];

	while (c->established && c->pend_n && c->credits > 1 && c->sq_used < c->sq_depth) {
		int n = 0;

		memset(wr, 0, sizeof(wr));
		while (n < RDMX_POST_BATCH && c->pend_n && c->credits > 1 &&
		       c->sq_used + (uint32_t)n < c->sq_depth) {
			struct rdmx_pend *p = &c->pend[c->pend_head];
			uint8_t *b = c->sbuf + (size_t)p->slot * c->slot;
			int one = !p->rec || p->frames == 1;

			uint32_t type = one ? RDM_RDMA_IMM_DATA : RDM_RDMA_IMM_PACKED;

			/* One frame kept as a record goes out plain, without its header. */
			sge[n].addr = (uintptr_t)(p->rec && one ? b + RDM_RDMA_REC_HDR : b);
			sge[n].length = p->rec && one ? p->len - RDM_RDMA_REC_HDR : p->len;
			sge[n].lkey = c->smr->lkey;
			if (c->seal) {
				if (rdm_rdma__seal(c, type, (uint8_t *)(uintptr_t)sge[n].addr,
						   sge[n].length) < 0) {
					rdm_rdma__conn_fail(c, "cannot encrypt a message");
					return;
				}
				sge[n].length += RDMX_TAG;
			}
			wr[n].sg_list = &sge[n];
			wr[n].num_sge = 1;
			wr[n].opcode = IBV_WR_SEND_WITH_IMM;
			wr[n].imm_data = RDMX_IMM(type, rdmx_take_owed(c));
			rdmx_note_posted(c, &wr[n], p->slot, RDMX_NONE, p->frames);
			c->credits--;
			c->pend_head = (c->pend_head + 1) % c->n_sslots;
			c->pend_n--;
			n++;
		}
		if (rdmx_post_list(c, wr, n) < 0)
			return;
	}
	/* Congestion counts every send slot in use: queued frames and large frames posted
	 * but not yet completed both hold one. */
	if (c->base.congested && c->n_sslots - c->n_sfree <= c->n_sslots / 4) {
		c->base.congested = 0;
		if (c->base.cbs.on_writable)
			c->base.cbs.on_writable(&c->base, c->base.cbs.arg);
	}
}

static uint32_t rdmx_frame_len(const struct rdm_txframe *f)
{
	return f->hdr_len + f->pkt_len;
}

/* The receive slot of this connection's device that holds f's packet, or RDMX_NONE. */
static uint32_t rdmx_rslot_of(const struct rdmx_conn *c, const struct rdm_txframe *f)
{
	const struct rdmx_ctx *x = c->ctx;

	if (!f->pkt_len || f->pkt < x->rbuf ||
	    f->pkt + f->pkt_len > x->rbuf + (size_t)x->n_rslots * x->slot)
		return RDMX_NONE;
	return (uint32_t)((size_t)(f->pkt - x->rbuf) / x->slot);
}

/* Whether f may be copied into a packed message: it fits a record, and it is not a packet
 * that would otherwise go zero copy from its receive slot (too large for inline). */
static int rdmx_packable(const struct rdmx_conn *c, const struct rdm_txframe *f)
{
	uint32_t len = rdmx_frame_len(f);

	return rdm_pack_room(c->room, 0, len) &&
	       (len <= c->max_inline || rdmx_rslot_of(c, f) == RDMX_NONE);
}

/* Appends f as a record to the message of *used bytes in the send slot b (the codec,
 * transport/rdma_pack.h). 0, or -EMSGSIZE when it does not fit the slot. */
static int rdmx_pack_frame(const struct rdmx_conn *c, uint8_t *b, uint32_t *used,
			   const struct rdm_txframe *f)
{
	return rdm_pack_add(b, c->room, used, f->hdr, f->hdr_len, f->pkt, f->pkt_len);
}

/* How many frames from f[0] on go into one packed message (at most n): 0 or 1 when f[0]
 * is better sent alone. */
static int rdmx_pack_run(const struct rdmx_conn *c, const struct rdm_txframe *f, int n)
{
	uint32_t used = 0, next;
	int k = 0;

	while (k < n && rdmx_packable(c, &f[k]) &&
	       (next = rdm_pack_room(c->room, used, rdmx_frame_len(&f[k])))) {
		used = next;
		k++;
	}
	return k;
}

/* Queues f behind the messages waiting for credits: into the last of them when it is
 * still open to records and f fits, else into a send slot of its own. 0, or -ENOBUFS
 * without a free send slot. */
static int rdmx_queue_frame(struct rdmx_conn *c, const struct rdm_txframe *f)
{
	uint32_t len = rdmx_frame_len(f), s;
	struct rdmx_pend *t =
	    c->pend_n ? &c->pend[(c->pend_head + c->pend_n - 1) % c->n_sslots] : NULL;
	uint8_t *b;

	if (t && t->rec &&
	    rdmx_pack_frame(c, c->sbuf + (size_t)t->slot * c->slot, &t->len, f) == 0) {
		t->frames++;
		return 0;
	}
	if (c->n_sfree == 0)
		return -ENOBUFS;
	s = c->sfree[--c->n_sfree];
	b = c->sbuf + (size_t)s * c->slot;
	t = &c->pend[(c->pend_head + c->pend_n) % c->n_sslots];
	c->pend_n++;
	*t = (struct rdmx_pend){.slot = s, .frames = 1, .rec = rdm_pack_room(c->room, 0, len) != 0};
	if (t->rec) {
		rdmx_pack_frame(c, b, &t->len, f); /* fits: just checked */
	} else {
		memcpy(b, f->hdr, f->hdr_len);
		if (f->pkt_len)
			memcpy(b + f->hdr_len, f->pkt, f->pkt_len);
		t->len = len;
	}
	return 0;
}

int rdm_rdma__send_batch(struct rdm_conn *bc, const struct rdm_txframe *f, int n)
{
	struct rdmx_conn *c = rdm_rdma__conn(bc);
	struct ibv_send_wr wr[RDMX_POST_BATCH];
	struct ibv_sge sge[RDMX_POST_BATCH][2];
	int i = 0, nw = 0;

	if (!bc->up || !c->established)
		return -ENOTCONN;
	if (n > 0 && rdmx_frame_len(&f[0]) > c->room)
		return -EMSGSIZE;
	memset(wr, 0, sizeof(wr));
	while (i < n) {
		uint32_t len = rdmx_frame_len(&f[i]);
		/* Encrypted messages are sealed in their send slot: the queue's path. */
		int direct = !c->seal && c->pend_n == 0 && c->credits > 1 &&
			     c->sq_used + (uint32_t)nw < c->sq_depth;
		int k;

		if (len > c->room)
			break; /* post what was prepared: those frames were taken */
		if (!direct) {
			/* Out of credits or send queue: wait, packed with what already waits. */
			if (rdmx_queue_frame(c, &f[i]) < 0) {
				bc->stats.queue_full += (uint64_t)(n - i);
				break;
			}
			if (c->credits <= 1)
				bc->stats.credit_stalls++;
			bc->stats.tx_bytes += len;
			i++;
			continue;
		}
		k = rdmx_pack_run(c, &f[i], n - i);
		if (k >= 2 && c->n_sfree) {
			/* Several frames in hand: one message. */
			uint32_t s = c->sfree[--c->n_sfree], used = 0;
			uint8_t *p = c->sbuf + (size_t)s * c->slot;

			/* All k fit: rdmx_pack_run measured them. */
			for (int j = 0; j < k; j++) {
				rdmx_pack_frame(c, p, &used, &f[i + j]);
				bc->stats.tx_bytes += rdmx_frame_len(&f[i + j]);
			}
			sge[nw][0] = (struct ibv_sge){(uintptr_t)p, used, c->smr->lkey};
			wr[nw].sg_list = sge[nw];
			wr[nw].num_sge = 1;
			wr[nw].opcode = IBV_WR_SEND_WITH_IMM;
			wr[nw].imm_data = RDMX_IMM(RDM_RDMA_IMM_PACKED, rdmx_take_owed(c));
			rdmx_note_posted(c, &wr[nw], s, RDMX_NONE, (uint32_t)k);
			i += k;
		} else if (len <= c->max_inline) {
			/* Inline: the device copies at post time, both pieces as they are. */
			sge[nw][0] = (struct ibv_sge){(uintptr_t)f[i].hdr, f[i].hdr_len, 0};
			sge[nw][1] = (struct ibv_sge){(uintptr_t)f[i].pkt, f[i].pkt_len, 0};
			wr[nw].sg_list = sge[nw];
			wr[nw].num_sge = f[i].pkt_len ? 2 : 1;
			wr[nw].send_flags = IBV_SEND_INLINE;
			wr[nw].opcode = IBV_WR_SEND_WITH_IMM;
			wr[nw].imm_data = RDMX_IMM(RDM_RDMA_IMM_DATA, rdmx_take_owed(c));
			rdmx_note_posted(c, &wr[nw], RDMX_NONE, RDMX_NONE, 1);
			bc->stats.inline_sends++;
			bc->stats.tx_bytes += len;
			i++;
		} else {
			uint32_t s, rs;
			uint8_t *p;

			if (c->n_sfree == 0) {
				bc->stats.queue_full += (uint64_t)(n - i);
				break;
			}
			s = c->sfree[--c->n_sfree];
			p = c->sbuf + (size_t)s * c->slot;
			memcpy(p, f[i].hdr, f[i].hdr_len);
			sge[nw][0] = (struct ibv_sge){(uintptr_t)p, f[i].hdr_len, c->smr->lkey};
			wr[nw].sg_list = sge[nw];
			wr[nw].num_sge = 1;
			rs = rdmx_rslot_of(c, &f[i]);
			if (rs != RDMX_NONE) {
				/* Zero copy: the packet is still in the receive slot it arrived in;
				 * that slot waits for this send. */
				c->ctx->rrefs[rs]++;
				sge[nw][1] = (struct ibv_sge){(uintptr_t)f[i].pkt, f[i].pkt_len,
							      c->ctx->rmr->lkey};
				wr[nw].num_sge = 2;
				bc->stats.zero_copy++;
			} else if (f[i].pkt_len) {
				memcpy(p + f[i].hdr_len, f[i].pkt, f[i].pkt_len);
				sge[nw][0].length = len;
			}
			wr[nw].opcode = IBV_WR_SEND_WITH_IMM;
			wr[nw].imm_data = RDMX_IMM(RDM_RDMA_IMM_DATA, rdmx_take_owed(c));
			rdmx_note_posted(c, &wr[nw], s, rs, 1);
			bc->stats.tx_bytes += len;
			i++;
		}
		c->credits--;
		nw++;
		if (nw == RDMX_POST_BATCH) {
			if (rdmx_post_list(c, wr, nw) < 0)
				return i;
			memset(wr, 0, sizeof(wr));
			nw = 0;
		}
	}
	if (nw && rdmx_post_list(c, wr, nw) < 0)
		return i;
	if (c->seal)
		rdm_rdma__flush_pending(c); /* seals and posts what credits allow now */
	if (c->n_sslots - c->n_sfree >= c->n_sslots / 2 && !bc->congested) {
		bc->congested = 1;
		bc->stats.congested++;
	}
	return i;
}

/* Tests only (transport/rdma.h). */
int rdm_rdma__send_raw(struct rdm_conn *bc, uint32_t type, const void *buf, uint32_t len)
{
	if (bc->ops != &rdm_rdma_ops || !bc->up)
		return -ENOTCONN;
	return rdm_rdma__post_msg(rdm_rdma__conn(bc), type, buf, len);
}

int rdm_rdma__post_msg(struct rdmx_conn *c, uint32_t type, const void *buf, uint32_t len)
{
	struct ibv_send_wr wr = {0};
	struct ibv_sge sge;
	uint32_t s;

	if (!c->established)
		return -ENOTCONN;
	if (len > c->room)
		return -EMSGSIZE;
	if (c->pend_n || c->credits <= 1 || !c->n_sfree || c->sq_used >= c->sq_depth)
		return -EAGAIN;
	s = c->sfree[--c->n_sfree];
	memcpy(c->sbuf + (size_t)s * c->slot, buf, len);
	sge = (struct ibv_sge){(uintptr_t)(c->sbuf + (size_t)s * c->slot), len, c->smr->lkey};
	wr.sg_list = &sge;
	wr.num_sge = len ? 1 : 0;
	wr.opcode = IBV_WR_SEND_WITH_IMM;
	wr.imm_data = RDMX_IMM(type, rdmx_take_owed(c));
	rdmx_note_posted(c, &wr, s, RDMX_NONE, 0);
	c->credits--;
	return rdmx_post_list(c, &wr, 1);
}
