/* RDMA backend: RC queue pairs set up with librdmacm, two-sided SEND/RECV.
 *
 * Per worker thread (one event loop) there is one CM event channel, and per device a
 * context: protection domain, one completion queue with its channel, and a shared
 * receive queue whose slots are registered once and pre-posted. Connections on that
 * device share it. The CM channel, the completion channel and the device's async fd all
 * sit in the worker's epoll loop.
 *
 * Flow control is by credits: each side grants the other `credits` receive slots. Every
 * message carries the credits its sender returns in the immediate data; a side that has
 * nothing to send returns them in an explicit credit message once a quarter of the grant
 * is owed. A sender keeps one credit back for such messages, so two idle sides can never
 * both be stuck. Since no peer ever sends into a slot that was not granted, the receive
 * queue never runs dry and RNR NAKs do not happen under normal load. When credits run out
 * frames wait in registered send slots (the bounded queue); past half of those the
 * connection reports congestion.
 *
 * A frame that fits the max_inline_data the QP actually got goes inline, header and
 * packet as two SGEs. A larger one gets its header copied into a send slot; its packet is
 * sent straight from the receive slot it arrived in when that slot belongs to the same
 * device (the receive slot is then reposted only after the send completes), and copied
 * otherwise. Work requests are posted in lists of up to 16 with one signalled completion.
 *
 * Small frames are packed. rxe (and any RDMA device) pays per message: building the
 * packet, its ICRC, the work request and its completion. So when a batch, or the queue
 * waiting for credits, holds several frames in a row that we would copy anyway (anything
 * but a packet that is zero-copy from a receive slot and too large to go inline), they
 * are copied into one send slot as one message, up to the slot size. Only what is in
 * hand is packed: a lone frame goes out at once on the path above, never held back to
 * fill a message. A credit is still one message, one receive slot.
 *
 * Messages (transport/rdma.h has the constants). Immediate data: type << 24 | credits
 * returned. IMM_DATA: the payload is one frame. IMM_PACKED: the payload is a sequence of
 * records [u32 length, network order][frame], each record starting 4-byte aligned from
 * the start of the message, the last one unpadded:
 *
 *   | len0 | frame0 ... | pad | len1 | frame1 ... | pad | ... | lenN | frameN ... |
 *
 * IMM_CREDIT and IMM_KEEPALIVE carry no payload. The receiver hands the frames of a
 * packed message to on_frames in order, straight from the receive slot, and reposts the
 * slot once every frame of it is consumed and every zero-copy send reading it completed.
 * A record running past the end of its message makes the message malformed: the frames
 * before it are delivered, the rest is dropped and counted (rx_bad_len); the connection
 * carries on.
 */
#include "transport/rdma.h"
#include "transport/transport.h"
#include "lib/byteorder.h"
#include "lib/util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_CONNS    8	/* connections per (worker, device) context */
#define POST_BATCH   16 /* work requests per doorbell */
#define WIRE_VERSION 1	/* private data and message layout */
#define RESOLVE_MS   2000
#define NONE	     0xFFFFFFFFu
#define CTRL	     0xFFFFFFFEu /* a posted credit or keepalive message: no slot, not a frame */

enum imm_type {
	IMM_DATA = RDM_RDMA_IMM_DATA,
	IMM_CREDIT = RDM_RDMA_IMM_CREDIT,
	IMM_KEEPALIVE = RDM_RDMA_IMM_KEEPALIVE,
	IMM_PACKED = RDM_RDMA_IMM_PACKED,
};
#define REC_HDR		   RDM_RDMA_REC_HDR
#define REC_ALIGN(off)	   RDM_RDMA_REC_ALIGN(off)
#define IMM(type, credits) htonl((uint32_t)(type) << 24 | ((credits)&0xFFFFFF))

/* Connection private data: explicit bytes, network order. */
#define PDATA_LEN 12
static void pdata_put(uint8_t *p, uint32_t credits, uint32_t node, uint32_t epoch)
{
	p[0] = WIRE_VERSION;
	p[1] = 0;
	p[2] = (uint8_t)(credits >> 8);
	p[3] = (uint8_t)credits;
	for (int i = 0; i < 4; i++) {
		p[4 + i] = (uint8_t)(node >> (24 - 8 * i));
		p[8 + i] = (uint8_t)(epoch >> (24 - 8 * i));
	}
}

struct rdma_worker;
struct rdma_listener;

struct rdma_ctx {
	struct rdma_worker *rw;
	struct rdma_ctx *next;
	struct ibv_context *verbs;
	struct ibv_pd *pd;
	struct ibv_comp_channel *ch;
	struct ibv_cq *cq;
	struct ibv_srq *srq;
	struct rdm_io ch_io, async_io;
	struct rdm_poller poller;
	uint64_t hot_until; /* keep polling the CQ until then, then arm and sleep */
	uint64_t poll_ns;   /* when the current batch of completions was taken */
	uint32_t slot;	    /* receive slot size = max_frame */
	uint32_t n_rslots;
	uint8_t *rbuf;
	struct ibv_mr *rmr;
	uint16_t *rrefs;  /* sends still reading each receive slot (zero copy) */
	uint8_t *rheld;	  /* consumed, waiting for rrefs to fall to zero */
	uint32_t *rowner; /* connection (idx << 16 | gen) the slot's message came from */
	struct rdma_conn *conns[MAX_CONNS];
	uint16_t gen[MAX_CONNS];
	unsigned unacked;
	uint64_t spin_ns;
	uint32_t credits;
};

struct rdma_worker {
	struct rdma_worker *next;
	struct rdm_loop *loop;
	struct rdma_event_channel *ech;
	struct rdm_io ech_io;
	struct rdma_ctx *ctxs;
	int refs;
};

/* A message waiting for credits, in a send slot. Frames that fit a record are kept as
 * records, so later frames can join the message until it is posted; a message of one
 * record goes out as a plain frame (its record header skipped). */
struct pend {
	uint32_t slot, len; /* len: bytes used in the slot */
	uint32_t frames;
	int rec; /* 1: records; 0: one frame as is (too large for a record) */
};

struct posted {
	uint32_t sslot;	 /* send slot to free, or NONE */
	uint32_t rslot;	 /* receive slot read by this send (zero copy), or NONE */
	uint32_t frames; /* frames in the message: 0 for credit, keepalive and raw messages */
};

/* A received message not yet consumed: its next frame (or record) starts at off. */
struct rxq {
	uint32_t slot, off, end;
	int packed;
};

/* What a cm_id's context points at: every such struct starts with its kind. */
enum { KIND_CONN = 1, KIND_LISTENER };

struct rdma_conn {
	int kind;
	struct rdm_conn base;
	struct rdma_worker *rw;
	struct rdma_ctx *ctx;
	struct rdma_listener *lst;
	struct rdma_cm_id *id;
	struct ibv_qp *qp;
	int idx;
	uint16_t gen;
	struct rdm_conn_opts o;
	struct rdm_addr peer, local;
	int outbound, closed, established;
	struct rdm_timer retry, ka, kick;
	uint32_t backoff_ms;
	uint32_t max_inline;
	uint32_t credits, owed, peer_grant;
	uint32_t sq_depth, sq_used;
	int rx_paused;

	uint32_t slot;
	uint8_t *sbuf;
	struct ibv_mr *smr;
	uint32_t n_sslots, *sfree, n_sfree;
	struct pend *pend;
	uint32_t pend_head, pend_n;
	struct posted *post; /* ring of sq_depth, in posting order */
	uint32_t post_head, post_n;
	struct rxq *rxq; /* received, not yet consumed by the owner */
	uint32_t rxq_head, rxq_n, rxq_cap;
	uint64_t last_rx_ns, last_tx_ns;
	char last_why[64];
};

struct rdma_listener {
	int kind;
	struct rdma_worker *rw;
	struct rdma_cm_id *id;
	struct rdm_conn_opts o;
	struct rdm_conn_cbs cbs;
};

/* Workers by loop. Looked up only when connections and listeners are made, which may
 * happen on another thread than the loop's (a node builds them before its workers run). */
static pthread_mutex_t workers_mu = PTHREAD_MUTEX_INITIALIZER;
static struct rdma_worker *workers;

static void conn_fail(struct rdma_conn *c, const char *why);
static void start_connect(void *arg);
static void ctx_poll(struct rdma_ctx *x);
static int ctx_poller(struct rdm_poller *p);

static inline struct rdma_conn *to_rc(struct rdm_conn *c)
{
	return container_of(c, struct rdma_conn, base);
}

static void opts_defaults(struct rdm_conn_opts *o)
{
	if (!o->max_frame)
		o->max_frame = 16384;
	if (!o->batch)
		o->batch = 32;
	if (!o->queue_bytes)
		o->queue_bytes = 4u << 20;
	if (!o->credits)
		o->credits = 64;
	if (o->credits < 4)
		o->credits = 4;
	if (!o->inline_max)
		o->inline_max = 256;
	if (!o->backoff_min_ms)
		o->backoff_min_ms = 20;
	if (o->backoff_max_ms < o->backoff_min_ms)
		o->backoff_max_ms = o->backoff_min_ms;
	if (!o->keepalive_ms)
		o->keepalive_ms = 3000;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -errno : 0;
}

/* ---- the per-thread worker and per-device contexts -------------------------------- */

static void cm_io(struct rdm_io *io, uint32_t events);

static struct rdma_worker *worker_get(struct rdm_loop *l)
{
	struct rdma_worker *rw;

	pthread_mutex_lock(&workers_mu);
	for (rw = workers; rw; rw = rw->next)
		if (rw->loop == l)
			break;
	if (rw) {
		rw->refs++;
		pthread_mutex_unlock(&workers_mu);
		return rw;
	}
	rw = calloc(1, sizeof(*rw));
	if (!rw)
		goto out;
	rw->loop = l;
	rw->ech = rdma_create_event_channel();
	if (!rw->ech || set_nonblock(rw->ech->fd) < 0 ||
	    rdm_io_add(l, &rw->ech_io, rw->ech->fd, EPOLLIN, cm_io) < 0) {
		int e = errno ? errno : ENODEV;

		if (rw->ech)
			rdma_destroy_event_channel(rw->ech);
		free(rw);
		rw = NULL;
		errno = e;
		goto out;
	}
	rw->refs = 1;
	rw->next = workers;
	workers = rw;
out:
	pthread_mutex_unlock(&workers_mu);
	return rw;
}

static void ctx_free(struct rdma_ctx *x)
{
	if (!x)
		return;
	rdm_poller_del(x->rw->loop, &x->poller);
	if (x->ch_io.fn)
		rdm_io_del(x->rw->loop, &x->ch_io);
	if (x->async_io.fn)
		rdm_io_del(x->rw->loop, &x->async_io);
	if (x->srq)
		ibv_destroy_srq(x->srq);
	if (x->cq) {
		if (x->unacked)
			ibv_ack_cq_events(x->cq, x->unacked);
		ibv_destroy_cq(x->cq);
	}
	if (x->ch)
		ibv_destroy_comp_channel(x->ch);
	if (x->rmr)
		ibv_dereg_mr(x->rmr);
	if (x->pd)
		ibv_dealloc_pd(x->pd);
	free(x->rbuf);
	free(x->rrefs);
	free(x->rheld);
	free(x->rowner);
	free(x);
}

static void worker_put(struct rdma_worker *rw)
{
	struct rdma_worker **pp;

	if (!rw)
		return;
	pthread_mutex_lock(&workers_mu);
	if (--rw->refs > 0) {
		pthread_mutex_unlock(&workers_mu);
		return;
	}
	for (pp = &workers; *pp; pp = &(*pp)->next)
		if (*pp == rw) {
			*pp = rw->next;
			break;
		}
	pthread_mutex_unlock(&workers_mu);
	while (rw->ctxs) {
		struct rdma_ctx *x = rw->ctxs;

		rw->ctxs = x->next;
		ctx_free(x);
	}
	rdm_io_del(rw->loop, &rw->ech_io);
	rdma_destroy_event_channel(rw->ech);
	free(rw);
}

static int post_recv(struct rdma_ctx *x, uint32_t slot)
{
	struct ibv_sge sge = {.addr = (uintptr_t)(x->rbuf + (size_t)slot * x->slot),
			      .length = x->slot,
			      .lkey = x->rmr->lkey};
	struct ibv_recv_wr wr = {.wr_id = slot, .sg_list = &sge, .num_sge = 1}, *bad;

	return ibv_post_srq_recv(x->srq, &wr, &bad) ? -EIO : 0;
}

static void ch_io(struct rdm_io *io, uint32_t events)
{
	struct rdma_ctx *x = container_of(io, struct rdma_ctx, ch_io);
	struct ibv_cq *cq;
	void *cq_ctx;

	while (ibv_get_cq_event(x->ch, &cq, &cq_ctx) == 0) {
		/* Acknowledging is a lock round trip: do it in batches. */
		if (++x->unacked >= 64) {
			ibv_ack_cq_events(x->cq, x->unacked);
			x->unacked = 0;
		}
	}
	x->hot_until = rdm_now_ns() + x->spin_ns;
	rdm_poller_wake(x->rw->loop, &x->poller);
	x->poller.hot = ctx_poller(&x->poller);
}

static void async_io(struct rdm_io *io, uint32_t events)
{
	struct rdma_ctx *x = container_of(io, struct rdma_ctx, async_io);
	struct ibv_async_event ev;

	while (ibv_get_async_event(x->verbs, &ev) == 0) {
		enum ibv_event_type t = ev.event_type;
		struct ibv_qp *qp = ev.element.qp;

		ibv_ack_async_event(&ev);
		if (t == IBV_EVENT_QP_FATAL || t == IBV_EVENT_QP_REQ_ERR ||
		    t == IBV_EVENT_QP_ACCESS_ERR) {
			for (int i = 0; i < MAX_CONNS; i++)
				if (x->conns[i] && x->conns[i]->qp == qp)
					conn_fail(x->conns[i], ibv_event_type_str(t));
		} else if (t == IBV_EVENT_DEVICE_FATAL || t == IBV_EVENT_PORT_ERR) {
			for (int i = 0; i < MAX_CONNS; i++)
				if (x->conns[i])
					conn_fail(x->conns[i], ibv_event_type_str(t));
		}
	}
}

static struct rdma_ctx *ctx_get(struct rdma_worker *rw, struct ibv_context *verbs,
				const struct rdm_conn_opts *o)
{
	struct rdma_ctx *x;
	struct ibv_srq_init_attr sa = {0};

	for (x = rw->ctxs; x; x = x->next)
		if (x->verbs == verbs)
			return x;
	x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	x->rw = rw;
	x->verbs = verbs;
	x->slot = o->max_frame;
	x->credits = o->credits;
	x->n_rslots = o->credits * MAX_CONNS;
	x->spin_ns = (uint64_t)o->spin_us * 1000;
	x->poller.poll = ctx_poller;
	x->pd = ibv_alloc_pd(verbs);
	x->ch = ibv_create_comp_channel(verbs);
	if (!x->pd || !x->ch)
		goto err;
	x->cq = ibv_create_cq(verbs, (int)(x->n_rslots + MAX_CONNS * (2 * o->credits + 16)), x,
			      x->ch, 0);
	if (!x->cq)
		goto err;
	sa.attr.max_wr = x->n_rslots;
	sa.attr.max_sge = 1;
	x->srq = ibv_create_srq(x->pd, &sa);
	/* Page-aligned and registered once: nothing is registered on the data path. */
	if (!x->srq || posix_memalign((void **)&x->rbuf, 4096, (size_t)x->n_rslots * x->slot))
		goto err;
	x->rrefs = calloc(x->n_rslots, sizeof(*x->rrefs));
	x->rheld = calloc(x->n_rslots, 1);
	x->rowner = calloc(x->n_rslots, sizeof(*x->rowner));
	if (!x->rrefs || !x->rheld || !x->rowner)
		goto err;
	x->rmr = ibv_reg_mr(x->pd, x->rbuf, (size_t)x->n_rslots * x->slot, IBV_ACCESS_LOCAL_WRITE);
	if (!x->rmr)
		goto err;
	for (uint32_t s = 0; s < x->n_rslots; s++)
		if (post_recv(x, s) < 0)
			goto err;
	if (set_nonblock(x->ch->fd) < 0 || set_nonblock(verbs->async_fd) < 0 ||
	    ibv_req_notify_cq(x->cq, 0) ||
	    rdm_io_add(rw->loop, &x->ch_io, x->ch->fd, EPOLLIN, ch_io) < 0)
		goto err;
	if (rdm_io_add(rw->loop, &x->async_io, verbs->async_fd, EPOLLIN, async_io) < 0)
		goto err;
	x->next = rw->ctxs;
	rw->ctxs = x;
	return x;
err:
	ctx_free(x);
	errno = ENOMEM;
	return NULL;
}

/* ---- connections -------------------------------------------------------------------- */

static int conn_bufs(struct rdma_conn *c)
{
	uint32_t n = c->o.queue_bytes / c->o.max_frame;

	n = n < 32 ? 32 : n > 1024 ? 1024 : n;
	c->slot = c->o.max_frame;
	c->n_sslots = n;
	c->sq_depth = 2 * c->o.credits + POST_BATCH;
	c->rxq_cap = c->o.credits + 1;
	if (posix_memalign((void **)&c->sbuf, 4096, (size_t)n * c->slot))
		return -ENOMEM;
	c->sfree = malloc(n * sizeof(*c->sfree));
	c->pend = malloc(n * sizeof(*c->pend));
	c->post = malloc(c->sq_depth * sizeof(*c->post));
	c->rxq = malloc(c->rxq_cap * sizeof(*c->rxq));
	if (!c->sfree || !c->pend || !c->post || !c->rxq)
		return -ENOMEM;
	for (uint32_t s = 0; s < n; s++)
		c->sfree[c->n_sfree++] = s;
	return 0;
}

static void conn_free(void *p)
{
	struct rdma_conn *c = p;

	free(c->sbuf);
	free(c->sfree);
	free(c->pend);
	free(c->post);
	free(c->rxq);
	worker_put(c->rw);
	free(c);
}

static void release_rslot(struct rdma_ctx *x, uint32_t s);

/* Gives back what the queue pair held: send slots, zero-copy references, unconsumed
 * receive slots. Only after the QP is gone, so the device reads none of it any more. */
static void reclaim(struct rdma_conn *c)
{
	struct rdma_ctx *x = c->ctx;

	while (c->post_n) {
		struct posted *p = &c->post[c->post_head];

		if (p->rslot != NONE && x) {
			x->rrefs[p->rslot]--;
			if (x->rheld[p->rslot] && x->rrefs[p->rslot] == 0)
				release_rslot(x, p->rslot);
		}
		c->post_head = (c->post_head + 1) % c->sq_depth;
		c->post_n--;
	}
	while (c->rxq_n) {
		release_rslot(x, c->rxq[c->rxq_head].slot);
		c->rxq_head = (c->rxq_head + 1) % c->rxq_cap;
		c->rxq_n--;
	}
	for (uint32_t i = 0; i < c->pend_n; i++)
		c->base.stats.lost_on_close += c->pend[(c->pend_head + i) % c->n_sslots].frames;
	c->pend_n = 0;
	c->pend_head = 0;
	c->n_sfree = 0;
	for (uint32_t s = 0; s < c->n_sslots; s++)
		c->sfree[c->n_sfree++] = s;
	c->sq_used = 0;
	c->owed = 0;
	c->credits = 0;
	c->base.congested = 0;
	c->rx_paused = 0;
}

static void teardown_qp(struct rdma_conn *c)
{
	if (c->ctx && c->idx >= 0) {
		c->ctx->conns[c->idx] = NULL;
		c->ctx->gen[c->idx]++;
	}
	if (c->qp) {
		rdma_destroy_qp(c->id);
		c->qp = NULL;
	}
	reclaim(c);
	if (c->smr) {
		ibv_dereg_mr(c->smr);
		c->smr = NULL;
	}
	if (c->id) {
		rdma_destroy_id(c->id);
		c->id = NULL;
	}
	c->idx = -1;
	c->ctx = NULL;
	c->established = 0;
	rdm_timer_cancel(c->rw->loop, &c->ka);
	rdm_timer_cancel(c->rw->loop, &c->kick);
}

static void conn_fail(struct rdma_conn *c, const char *why)
{
	int was_up = c->base.up;

	if (c->closed)
		return;
	/* Say why, once per distinct reason, so a retry loop does not flood the log. */
	if (strcmp(c->last_why, why) &&
	    (c->outbound || strcmp(why, "RDMA_CM_EVENT_DISCONNECTED"))) {
		fprintf(stderr, "rdma %s: %s%s\n", c->base.peer, why,
			c->outbound ? ", retrying with backoff" : "");
		snprintf(c->last_why, sizeof(c->last_why), "%s", why);
	}
	teardown_qp(c);
	c->base.up = 0;
	if (was_up) {
		c->base.stats.disconnects++;
		if (c->base.cbs.on_state)
			c->base.cbs.on_state(&c->base, 0, c->base.cbs.arg);
	}
	if (c->closed)
		return;
	if (!c->outbound) {
		c->closed = 1;
		rdm_loop_defer_free(c->rw->loop, c, conn_free);
		return;
	}
	rdm_timer_arm(c->rw->loop, &c->retry, c->backoff_ms, start_connect, c);
	c->backoff_ms =
	    c->backoff_ms * 2 > c->o.backoff_max_ms ? c->o.backoff_max_ms : c->backoff_ms * 2;
}

/* Creates the QP on id's device and the send buffers. 0 or a negative errno. */
static int setup_qp(struct rdma_conn *c, struct rdma_cm_id *id)
{
	struct ibv_qp_init_attr qa = {0};
	struct ibv_qp_attr attr;
	struct ibv_qp_init_attr init;
	struct rdma_ctx *x = ctx_get(c->rw, id->verbs, &c->o);
	int idx = -1;

	if (!x)
		return -errno;
	for (int i = 0; i < MAX_CONNS; i++)
		if (!x->conns[i]) {
			idx = i;
			break;
		}
	if (idx < 0)
		return -EMFILE;
	qa.send_cq = x->cq;
	qa.recv_cq = x->cq;
	qa.srq = x->srq;
	qa.qp_type = IBV_QPT_RC;
	qa.cap.max_send_wr = c->sq_depth;
	qa.cap.max_send_sge = 2;
	qa.cap.max_inline_data = c->o.inline_max;
	if (rdma_create_qp(id, x->pd, &qa)) {
		/* The device may grant no inline at all: ask again without. */
		qa.cap.max_inline_data = 0;
		if (rdma_create_qp(id, x->pd, &qa))
			return -errno;
	}
	c->qp = id->qp;
	/* Use what the device actually granted, never what was asked for. */
	c->max_inline = qa.cap.max_inline_data;
	if (ibv_query_qp(c->qp, &attr, IBV_QP_CAP, &init) == 0 &&
	    attr.cap.max_inline_data < c->max_inline)
		c->max_inline = attr.cap.max_inline_data;
	c->smr = ibv_reg_mr(x->pd, c->sbuf, (size_t)c->n_sslots * c->slot, IBV_ACCESS_LOCAL_WRITE);
	if (!c->smr)
		return -errno;
	c->ctx = x;
	c->idx = idx;
	c->gen = x->gen[idx];
	x->conns[idx] = c;
	c->credits = 0;
	c->owed = 0;
	return 0;
}

static void keepalive(void *arg);

/* The connection is established; grant is what the peer lets us send (its credits). */
static void became_up(struct rdma_conn *c, uint32_t grant)
{
	/* Our send queue is sized for our own credit count: use no more than that. */
	c->credits = grant && grant < c->ctx->credits ? grant : c->ctx->credits;
	c->established = 1;
	c->base.up = 1;
	c->base.epoch++;
	c->base.stats.connects++;
	c->backoff_ms = c->o.backoff_min_ms;
	c->last_why[0] = 0;
	c->last_rx_ns = c->last_tx_ns = rdm_now_ns();
	rdm_timer_arm(c->rw->loop, &c->ka, c->o.keepalive_ms / 3, keepalive, c);
	if (c->base.cbs.on_state)
		c->base.cbs.on_state(&c->base, 1, c->base.cbs.arg);
}

static int check_pdata(const void *p, uint8_t len)
{
	const uint8_t *b = p;

	return b && len >= PDATA_LEN && b[0] == WIRE_VERSION ? 0 : -EPROTO;
}

/* The credits a checked private data grants. */
static uint32_t pdata_credits(const void *p)
{
	const uint8_t *b = p;

	return (uint32_t)b[2] << 8 | b[3];
}

/* ---- sending -------------------------------------------------------------------------- */

static uint32_t take_owed(struct rdma_conn *c)
{
	uint32_t o = c->owed > 0xFFFFFF ? 0xFFFFFF : c->owed;

	c->owed -= o;
	return o;
}

/* Posts n prepared work requests as one list, the last one signalled. */
static int post_list(struct rdma_conn *c, struct ibv_send_wr *wr, int n)
{
	struct ibv_send_wr *bad;

	for (int i = 0; i < n; i++) {
		wr[i].next = i + 1 < n ? &wr[i + 1] : NULL;
		wr[i].send_flags |= i + 1 == n ? IBV_SEND_SIGNALED : 0;
	}
	if (ibv_post_send(c->qp, wr, &bad)) {
		conn_fail(c, "ibv_post_send failed");
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

static void note_posted(struct rdma_conn *c, struct ibv_send_wr *wr, uint32_t sslot, uint32_t rslot,
			uint32_t frames)
{
	uint32_t pos = (c->post_head + c->post_n) % c->sq_depth;

	c->post[pos].sslot = sslot;
	c->post[pos].rslot = rslot;
	c->post[pos].frames = frames;
	c->post_n++;
	wr->wr_id = (uint64_t)c->idx << 48 | (uint64_t)c->gen << 32 | pos;
}

/* Sends an empty message carrying returned credits (or a keepalive). */
static void send_ctrl(struct rdma_conn *c, enum imm_type t)
{
	struct ibv_send_wr wr = {0};

	if (!c->established || c->credits < 1 || c->sq_used >= c->sq_depth)
		return;
	wr.opcode = IBV_WR_SEND_WITH_IMM;
	wr.imm_data = IMM(t, take_owed(c));
	wr.num_sge = 0;
	note_posted(c, &wr, CTRL, NONE, 0);
	c->credits--;
	if (post_list(c, &wr, 1) == 0) {
		if (t == IMM_CREDIT)
			c->base.stats.credit_msgs++;
		else
			c->base.stats.keepalives++;
	}
}

/* Posts queued frames while credits and send-queue room last. */
static void flush_pending(struct rdma_conn *c)
{
	struct ibv_send_wr wr[POST_BATCH];
	struct ibv_sge sge[POST_BATCH];

	while (c->established && c->pend_n && c->credits > 1 && c->sq_used < c->sq_depth) {
		int n = 0;

		memset(wr, 0, sizeof(wr));
		while (n < POST_BATCH && c->pend_n && c->credits > 1 &&
		       c->sq_used + (uint32_t)n < c->sq_depth) {
			struct pend *p = &c->pend[c->pend_head];
			uint8_t *b = c->sbuf + (size_t)p->slot * c->slot;
			int one = !p->rec || p->frames == 1;

			/* One frame kept as a record goes out plain, without its header. */
			sge[n].addr = (uintptr_t)(p->rec && one ? b + REC_HDR : b);
			sge[n].length = p->rec && one ? p->len - REC_HDR : p->len;
			sge[n].lkey = c->smr->lkey;
			wr[n].sg_list = &sge[n];
			wr[n].num_sge = 1;
			wr[n].opcode = IBV_WR_SEND_WITH_IMM;
			wr[n].imm_data = IMM(one ? IMM_DATA : IMM_PACKED, take_owed(c));
			note_posted(c, &wr[n], p->slot, NONE, p->frames);
			c->credits--;
			c->pend_head = (c->pend_head + 1) % c->n_sslots;
			c->pend_n--;
			n++;
		}
		if (post_list(c, wr, n) < 0)
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

static uint32_t frame_len(const struct rdm_txframe *f)
{
	return f->hdr_len + f->pkt_len;
}

/* The receive slot of this connection's device that holds f's packet, or NONE. */
static uint32_t rslot_of(const struct rdma_conn *c, const struct rdm_txframe *f)
{
	const struct rdma_ctx *x = c->ctx;

	if (!f->pkt_len || f->pkt < x->rbuf ||
	    f->pkt + f->pkt_len > x->rbuf + (size_t)x->n_rslots * x->slot)
		return NONE;
	return (uint32_t)((size_t)(f->pkt - x->rbuf) / x->slot);
}

/* Whether f may be copied into a packed message: it fits a record, and it is not a packet
 * that would otherwise go zero copy from its receive slot (too large for inline). */
static int packable(const struct rdma_conn *c, const struct rdm_txframe *f)
{
	uint32_t len = frame_len(f);

	return len + REC_HDR <= c->slot && (len <= c->max_inline || rslot_of(c, f) == NONE);
}

/* Whether a record of len bytes still fits after `used` bytes of a message. */
static int rec_fits(const struct rdma_conn *c, uint32_t used, uint32_t len)
{
	return len + REC_HDR <= c->slot && REC_ALIGN(used) <= c->slot - REC_HDR - len;
}

/* Appends f as a record to the message in b that has `used` bytes; returns its new end. */
static uint32_t put_record(uint8_t *b, uint32_t used, const struct rdm_txframe *f)
{
	uint32_t at = REC_ALIGN(used);

	memset(b + used, 0, at - used);
	rdm_put_be32(b + at, frame_len(f));
	memcpy(b + at + REC_HDR, f->hdr, f->hdr_len);
	if (f->pkt_len)
		memcpy(b + at + REC_HDR + f->hdr_len, f->pkt, f->pkt_len);
	return at + REC_HDR + frame_len(f);
}

/* How many frames from f[0] on go into one packed message (at most n): 0 or 1 when f[0]
 * is better sent alone. */
static int pack_run(const struct rdma_conn *c, const struct rdm_txframe *f, int n)
{
	uint32_t used = 0;
	int k = 0;

	while (k < n && packable(c, &f[k]) && rec_fits(c, used, frame_len(&f[k]))) {
		used = REC_ALIGN(used) + REC_HDR + frame_len(&f[k]);
		k++;
	}
	return k;
}

/* Queues f behind the messages waiting for credits: into the last of them when it is
 * still open to records and f fits, else into a send slot of its own. 0, or -ENOBUFS
 * without a free send slot. */
static int queue_frame(struct rdma_conn *c, const struct rdm_txframe *f)
{
	uint32_t len = frame_len(f), s;
	struct pend *t = c->pend_n ? &c->pend[(c->pend_head + c->pend_n - 1) % c->n_sslots] : NULL;
	uint8_t *b;

	if (t && t->rec && rec_fits(c, t->len, len)) {
		t->len = put_record(c->sbuf + (size_t)t->slot * c->slot, t->len, f);
		t->frames++;
		return 0;
	}
	if (c->n_sfree == 0)
		return -ENOBUFS;
	s = c->sfree[--c->n_sfree];
	b = c->sbuf + (size_t)s * c->slot;
	t = &c->pend[(c->pend_head + c->pend_n) % c->n_sslots];
	c->pend_n++;
	*t = (struct pend){.slot = s, .frames = 1, .rec = len + REC_HDR <= c->slot};
	if (t->rec) {
		t->len = put_record(b, 0, f);
	} else {
		memcpy(b, f->hdr, f->hdr_len);
		if (f->pkt_len)
			memcpy(b + f->hdr_len, f->pkt, f->pkt_len);
		t->len = len;
	}
	return 0;
}

static int rdma_send_batch(struct rdm_conn *bc, const struct rdm_txframe *f, int n)
{
	struct rdma_conn *c = to_rc(bc);
	struct ibv_send_wr wr[POST_BATCH];
	struct ibv_sge sge[POST_BATCH][2];
	int i = 0, nw = 0;

	if (!bc->up || !c->established)
		return -ENOTCONN;
	if (n > 0 && frame_len(&f[0]) > c->slot)
		return -EMSGSIZE;
	memset(wr, 0, sizeof(wr));
	while (i < n) {
		uint32_t len = frame_len(&f[i]);
		int direct =
		    c->pend_n == 0 && c->credits > 1 && c->sq_used + (uint32_t)nw < c->sq_depth;
		int k;

		if (len > c->slot)
			break; /* post what was prepared: those frames were taken */
		if (!direct) {
			/* Out of credits or send queue: wait, packed with what already waits. */
			if (queue_frame(c, &f[i]) < 0) {
				bc->stats.queue_full += (uint64_t)(n - i);
				break;
			}
			if (c->credits <= 1)
				bc->stats.credit_stalls++;
			bc->stats.tx_bytes += len;
			i++;
			continue;
		}
		k = pack_run(c, &f[i], n - i);
		if (k >= 2 && c->n_sfree) {
			/* Several frames in hand: one message. */
			uint32_t s = c->sfree[--c->n_sfree], used = 0;
			uint8_t *p = c->sbuf + (size_t)s * c->slot;

			for (int j = 0; j < k; j++) {
				used = put_record(p, used, &f[i + j]);
				bc->stats.tx_bytes += frame_len(&f[i + j]);
			}
			sge[nw][0] = (struct ibv_sge){(uintptr_t)p, used, c->smr->lkey};
			wr[nw].sg_list = sge[nw];
			wr[nw].num_sge = 1;
			wr[nw].opcode = IBV_WR_SEND_WITH_IMM;
			wr[nw].imm_data = IMM(IMM_PACKED, take_owed(c));
			note_posted(c, &wr[nw], s, NONE, (uint32_t)k);
			i += k;
		} else if (len <= c->max_inline) {
			/* Inline: the device copies at post time, both pieces as they are. */
			sge[nw][0] = (struct ibv_sge){(uintptr_t)f[i].hdr, f[i].hdr_len, 0};
			sge[nw][1] = (struct ibv_sge){(uintptr_t)f[i].pkt, f[i].pkt_len, 0};
			wr[nw].sg_list = sge[nw];
			wr[nw].num_sge = f[i].pkt_len ? 2 : 1;
			wr[nw].send_flags = IBV_SEND_INLINE;
			wr[nw].opcode = IBV_WR_SEND_WITH_IMM;
			wr[nw].imm_data = IMM(IMM_DATA, take_owed(c));
			note_posted(c, &wr[nw], NONE, NONE, 1);
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
			rs = rslot_of(c, &f[i]);
			if (rs != NONE) {
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
			wr[nw].imm_data = IMM(IMM_DATA, take_owed(c));
			note_posted(c, &wr[nw], s, rs, 1);
			bc->stats.tx_bytes += len;
			i++;
		}
		c->credits--;
		nw++;
		if (nw == POST_BATCH) {
			if (post_list(c, wr, nw) < 0)
				return i;
			memset(wr, 0, sizeof(wr));
			nw = 0;
		}
	}
	if (nw && post_list(c, wr, nw) < 0)
		return i;
	if (c->n_sslots - c->n_sfree >= c->n_sslots / 2 && !bc->congested) {
		bc->congested = 1;
		bc->stats.congested++;
	}
	return i;
}

/* Tests only (transport/rdma.h). */
int rdm_rdma__send_raw(struct rdm_conn *bc, uint32_t type, const void *buf, uint32_t len)
{
	struct rdma_conn *c = to_rc(bc);
	struct ibv_send_wr wr = {0};
	struct ibv_sge sge;
	uint32_t s;

	if (bc->ops != &rdm_rdma_ops || !bc->up || !c->established)
		return -ENOTCONN;
	if (len > c->slot)
		return -EMSGSIZE;
	if (c->pend_n || c->credits <= 1 || !c->n_sfree || c->sq_used >= c->sq_depth)
		return -EAGAIN;
	s = c->sfree[--c->n_sfree];
	memcpy(c->sbuf + (size_t)s * c->slot, buf, len);
	sge = (struct ibv_sge){(uintptr_t)(c->sbuf + (size_t)s * c->slot), len, c->smr->lkey};
	wr.sg_list = &sge;
	wr.num_sge = len ? 1 : 0;
	wr.opcode = IBV_WR_SEND_WITH_IMM;
	wr.imm_data = IMM(type, take_owed(c));
	note_posted(c, &wr, s, NONE, 0);
	c->credits--;
	return post_list(c, &wr, 1);
}

/* ---- receiving and completions -------------------------------------------------------- */

static void release_rslot(struct rdma_ctx *x, uint32_t s)
{
	uint32_t own = x->rowner[s];
	int idx = (int)(own >> 16);

	if (x->rrefs[s]) {
		x->rheld[s] = 1;
		return;
	}
	x->rheld[s] = 0;
	post_recv(x, s);
	/* The slot is the peer's again: one credit owed to the connection it came from. */
	if (idx < MAX_CONNS && x->conns[idx] && x->gen[idx] == (uint16_t)own)
		x->conns[idx]->owed++;
}

/* Hands queued frames to on_frames in order, at most `batch` a call: whole messages, and
 * the records of packed ones one by one. A slot is released once its last frame is taken. */
static void deliver(struct rdma_conn *c)
{
	struct rdm_rxframe fr[64];
	uint32_t next[64]; /* where its message's cursor goes once frame i is taken */
	struct rdma_ctx *x = c->ctx;

	while (!c->rx_paused && c->rxq_n && !c->closed && c->established) {
		uint32_t max = c->o.batch < 64 ? c->o.batch : 64, qi = 0, n = 0;
		uint32_t off = c->rxq[c->rxq_head].off;
		int took;

		while (n < max && qi < c->rxq_n) {
			struct rxq *q = &c->rxq[(c->rxq_head + qi) % c->rxq_cap];
			const uint8_t *b = x->rbuf + (size_t)q->slot * x->slot;

			if (q->packed) {
				/* Checked on arrival: the record lies within [off, end). */
				uint32_t len = rdm_get_be32(b + off), e = off + REC_HDR + len;

				fr[n] = (struct rdm_rxframe){b + off + REC_HDR, len};
				next[n] = e < q->end ? REC_ALIGN(e) : q->end;
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
			struct rxq *q = &c->rxq[c->rxq_head];

			q->off = next[i];
			c->base.stats.rx_frames++;
			if (q->off < q->end)
				continue;
			release_rslot(x, q->slot);
			c->rxq_head = (c->rxq_head + 1) % c->rxq_cap;
			c->rxq_n--;
		}
		if ((uint32_t)took < n)
			c->rx_paused = 1;
	}
}

static struct rdma_conn *conn_of_qp(struct rdma_ctx *x, uint32_t qp_num)
{
	for (int i = 0; i < MAX_CONNS; i++)
		if (x->conns[i] && x->conns[i]->qp && x->conns[i]->qp->qp_num == qp_num)
			return x->conns[i];
	return NULL;
}

static void on_send_done(struct rdma_ctx *x, struct ibv_wc *wc)
{
	int idx = (int)(wc->wr_id >> 48);
	uint16_t gen = (uint16_t)(wc->wr_id >> 32);
	uint32_t pos = (uint32_t)wc->wr_id;
	struct rdma_conn *c = idx < MAX_CONNS ? x->conns[idx] : NULL;

	if (!c || x->gen[idx] != gen)
		return; /* a connection already torn down: reclaimed then */
	if (wc->status != IBV_WC_SUCCESS) {
		if (wc->status == IBV_WC_RNR_RETRY_EXC_ERR)
			c->base.stats.rnr_errors++;
		else if (wc->status == IBV_WC_RETRY_EXC_ERR)
			c->base.stats.retry_errors++;
		else
			c->base.stats.wc_errors++;
		conn_fail(c, ibv_wc_status_str(wc->status));
		return;
	}
	/* RC completes in order: everything up to the signalled request is done. */
	while (c->post_n) {
		uint32_t h = c->post_head;
		struct posted *p = &c->post[h];

		if (p->sslot != NONE && p->sslot != CTRL)
			c->sfree[c->n_sfree++] = p->sslot;
		if (p->rslot != NONE) {
			x->rrefs[p->rslot]--;
			if (x->rheld[p->rslot] && x->rrefs[p->rslot] == 0)
				release_rslot(x, p->rslot);
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

/* Walks the records of a packed message of len bytes in b. *end: where the last whole
 * record ends (0 when there is none), *bytes: the frame bytes up to there. 0, or -EBADMSG
 * when a record runs past the message or the message holds none. */
static int pack_scan(const uint8_t *b, uint32_t len, uint32_t *end, uint64_t *bytes)
{
	uint32_t off = 0;

	*end = 0;
	while (off < len) {
		uint32_t l;

		if (len - off < REC_HDR)
			return -EBADMSG;
		l = rdm_get_be32(b + off);
		if (l > len - off - REC_HDR)
			return -EBADMSG;
		*bytes += l;
		*end = off + REC_HDR + l;
		off = REC_ALIGN(*end);
	}
	return *end ? 0 : -EBADMSG;
}

static void on_recv(struct rdma_ctx *x, struct ibv_wc *wc)
{
	uint32_t slot = (uint32_t)wc->wr_id, imm, end;
	struct rdma_conn *c = conn_of_qp(x, wc->qp_num);

	if (wc->status != IBV_WC_SUCCESS) {
		if (wc->status != IBV_WC_WR_FLUSH_ERR)
			post_recv(x, slot);
		if (c)
			conn_fail(c, ibv_wc_status_str(wc->status));
		return;
	}
	if (!c) {
		post_recv(x, slot); /* its connection is gone */
		return;
	}
	imm = (wc->wc_flags & IBV_WC_WITH_IMM) ? ntohl(wc->imm_data) : 0;
	c->credits += imm & 0xFFFFFF;
	c->last_rx_ns = x->poll_ns;
	x->rowner[slot] = (uint32_t)c->idx << 16 | c->gen;
	end = wc->byte_len;
	if (imm >> 24 == IMM_PACKED) {
		uint64_t bytes = 0;

		c->base.stats.rx_packed++;
		if (pack_scan(x->rbuf + (size_t)slot * x->slot, wc->byte_len, &end, &bytes) < 0)
			c->base.stats.rx_bad_len++; /* the frames before the bad record still go */
		c->base.stats.rx_bytes += bytes;
	} else if (imm >> 24 == IMM_DATA) {
		c->base.stats.rx_bytes += wc->byte_len;
	}
	if ((imm >> 24 != IMM_DATA && imm >> 24 != IMM_PACKED) ||
	    (imm >> 24 == IMM_PACKED && end == 0)) {
		x->rrefs[slot] = 0;
		release_rslot(x, slot);
		return;
	}
	if (c->rxq_n == c->rxq_cap) {
		/* The peer sent past its credits: a protocol error, not a reason to lose
		 * the frames already taken. */
		release_rslot(x, slot);
		conn_fail(c, "peer exceeded its credits");
		return;
	}
	c->rxq[(c->rxq_head + c->rxq_n) % c->rxq_cap] =
	    (struct rxq){slot, 0, end, imm >> 24 == IMM_PACKED};
	c->rxq_n++;
}

/* After a round of completions: deliver, send what credits allow, return credits. */
static void after_poll(struct rdma_ctx *x)
{
	for (int i = 0; i < MAX_CONNS; i++) {
		struct rdma_conn *c = x->conns[i];

		if (!c || !c->established)
			continue;
		deliver(c);
		if (!x->conns[i] || !c->established)
			continue;
		flush_pending(c);
		if (c->owed >= (c->o.credits / 4 ? c->o.credits / 4 : 1))
			send_ctrl(c, IMM_CREDIT);
	}
}

/* Polls up to one batch of completions and acts on them; returns how many. */
static int poll_batch(struct rdma_ctx *x)
{
	struct ibv_wc wc[32];
	int n = ibv_poll_cq(x->cq, 32, wc);

	if (n > 0)
		x->poll_ns = rdm_now_ns(); /* one clock read a batch, not one a message */
	for (int i = 0; i < n; i++) {
		if (wc[i].opcode & IBV_WC_RECV)
			on_recv(x, &wc[i]);
		else
			on_send_done(x, &wc[i]);
	}
	if (n > 0)
		after_poll(x);
	return n;
}

/* One turn of adaptive polling. While completions keep coming the context stays hot:
 * the loop calls this on every turn without blocking, so the worker goes on sending and
 * running its timers while it polls. After spin_us without a completion it arms the CQ
 * and sleeps on the completion channel. Returns whether it is still hot. */
static int ctx_poller(struct rdm_poller *p)
{
	struct rdma_ctx *x = container_of(p, struct rdma_ctx, poller);

	if (poll_batch(x) > 0) {
		x->hot_until = rdm_now_ns() + x->spin_ns;
		return 1;
	}
	if (rdm_now_ns() < x->hot_until)
		return 1;
	/* Arm, then poll once more: a completion that raced the arming is not lost. */
	ibv_req_notify_cq(x->cq, 0);
	if (poll_batch(x) > 0) {
		x->hot_until = rdm_now_ns() + x->spin_ns;
		return 1;
	}
	return 0;
}

/* Takes every completion there is now (before a teardown). */
static void ctx_poll(struct rdma_ctx *x)
{
	while (poll_batch(x) > 0)
		;
}

static void kick_deliver(void *arg)
{
	struct rdma_conn *c = arg;

	if (!c->established)
		return;
	deliver(c);
	if (c->established)
		after_poll(c->ctx);
}

static void keepalive(void *arg)
{
	struct rdma_conn *c = arg;
	uint64_t now = rdm_now_ns(), ka = (uint64_t)c->o.keepalive_ms * 1000000ull;

	if (!c->established)
		return;
	/* A paused receiver holds the peer's credits: its silence is ours, not death. */
	if (!c->rx_paused && c->credits > 0 && now - c->last_rx_ns > ka) {
		conn_fail(c, "keepalive timeout");
		return;
	}
	if (now - c->last_tx_ns >= ka / 3)
		send_ctrl(c, IMM_KEEPALIVE);
	rdm_timer_arm(c->rw->loop, &c->ka, c->o.keepalive_ms / 3, keepalive, c);
}

/* ---- connection management ------------------------------------------------------------ */

static void start_connect(void *arg)
{
	struct rdma_conn *c = arg;
	struct sockaddr_storage src;

	if (rdma_create_id(c->rw->ech, &c->id, c, RDMA_PS_TCP)) {
		c->base.stats.connect_fails++;
		conn_fail(c, "rdma_create_id");
		return;
	}
	if (c->local.len) {
		memcpy(&src, &c->local.ss, sizeof(src));
		if (src.ss_family == AF_INET)
			((struct sockaddr_in *)&src)->sin_port = 0;
		else
			((struct sockaddr_in6 *)&src)->sin6_port = 0;
	}
	if (rdma_resolve_addr(c->id, c->local.len ? (struct sockaddr *)&src : NULL,
			      (struct sockaddr *)&c->peer.ss, RESOLVE_MS)) {
		c->base.stats.unreachable++;
		c->base.stats.connect_fails++;
		conn_fail(c, "rdma_resolve_addr");
	}
}

static void handle_conn_event(struct rdma_conn *c, struct rdma_cm_event *ev)
{
	struct rdma_conn_param p = {0};
	uint8_t pd[PDATA_LEN];

	switch (ev->event) {
	case RDMA_CM_EVENT_ADDR_RESOLVED:
		if (rdma_resolve_route(c->id, RESOLVE_MS)) {
			c->base.stats.connect_fails++;
			conn_fail(c, "rdma_resolve_route");
		}
		return;
	case RDMA_CM_EVENT_ROUTE_RESOLVED: {
		int rc = setup_qp(c, c->id);

		if (rc < 0) {
			c->base.stats.connect_fails++;
			conn_fail(c, strerror(-rc));
			return;
		}
		pdata_put(pd, c->o.credits, c->o.node_id, c->base.epoch + 1);
		p.private_data = pd;
		p.private_data_len = PDATA_LEN;
		p.responder_resources = 0;
		p.initiator_depth = 0;
		p.retry_count = 7;
		p.rnr_retry_count = 7;
		if (rdma_connect(c->id, &p)) {
			c->base.stats.connect_fails++;
			conn_fail(c, "rdma_connect");
		}
		return;
	}
	case RDMA_CM_EVENT_ESTABLISHED:
		if (check_pdata(ev->param.conn.private_data, ev->param.conn.private_data_len) < 0) {
			c->base.stats.connect_fails++;
			conn_fail(c, "peer speaks another protocol version");
			return;
		}
		became_up(c, pdata_credits(ev->param.conn.private_data));
		return;
	case RDMA_CM_EVENT_ADDR_ERROR:
	case RDMA_CM_EVENT_ROUTE_ERROR:
	case RDMA_CM_EVENT_UNREACHABLE:
		/* No RDMA path to the peer, or nothing there answers RDMA CM. */
		c->base.stats.unreachable++;
		c->base.stats.connect_fails++;
		conn_fail(c, rdma_event_str(ev->event));
		return;
	case RDMA_CM_EVENT_CONNECT_ERROR:
	case RDMA_CM_EVENT_REJECTED:
		c->base.stats.connect_fails++;
		conn_fail(c, rdma_event_str(ev->event));
		return;
	case RDMA_CM_EVENT_DISCONNECTED:
		/* Frames the peer sent before it left are already in our slots: hand them
		 * over first, as TCP delivers what precedes a FIN. */
		if (c->ctx && c->established)
			ctx_poll(c->ctx);
		if (c->established && c->rxq_n && !c->rx_paused)
			deliver(c);
		if (c->id && !c->closed)
			conn_fail(c, rdma_event_str(ev->event));
		return;
	case RDMA_CM_EVENT_DEVICE_REMOVAL:
	case RDMA_CM_EVENT_ADDR_CHANGE:
	case RDMA_CM_EVENT_TIMEWAIT_EXIT:
		if (c->id)
			conn_fail(c, rdma_event_str(ev->event));
		return;
	default:
		return;
	}
}

static void accept_request(struct rdma_listener *lst, struct rdma_cm_event *ev)
{
	struct rdma_cm_id *id = ev->id;
	struct rdma_conn *c = calloc(1, sizeof(*c));
	struct rdma_conn_param p = {0};
	uint8_t pd[PDATA_LEN];

	if (!c || check_pdata(ev->param.conn.private_data, ev->param.conn.private_data_len) < 0) {
		free(c);
		rdma_reject(id, NULL, 0);
		rdma_destroy_id(id);
		return;
	}
	c->kind = KIND_CONN;
	c->base.ops = &rdm_rdma_ops;
	c->base.cbs = lst->cbs;
	c->o = lst->o;
	c->rw = worker_get(lst->rw->loop); /* a reference of its own */
	c->idx = -1;
	c->lst = lst;
	c->id = id;
	id->context = c;
	rdm_addr_format((struct sockaddr_storage *)rdma_get_peer_addr(id),
			sizeof(struct sockaddr_storage), c->base.peer, sizeof(c->base.peer));
	if (conn_bufs(c) < 0 || setup_qp(c, id) < 0) {
		rdma_reject(id, NULL, 0);
		c->id = NULL;
		teardown_qp(c);
		rdma_destroy_id(id);
		conn_free(c);
		return;
	}
	/* The peer's grant, from its request, is what we may send it. */
	c->peer_grant = pdata_credits(ev->param.conn.private_data);
	pdata_put(pd, c->o.credits, c->o.node_id, 1);
	p.private_data = pd;
	p.private_data_len = PDATA_LEN;
	p.retry_count = 7;
	p.rnr_retry_count = 7;
	if (rdma_accept(id, &p)) {
		c->id = NULL;
		teardown_qp(c);
		rdma_destroy_id(id);
		conn_free(c);
	}
}

static void cm_io(struct rdm_io *io, uint32_t events)
{
	struct rdma_worker *rw = container_of(io, struct rdma_worker, ech_io);
	struct rdma_cm_event *ev;

	while (rdma_get_cm_event(rw->ech, &ev) == 0) {
		struct rdma_cm_event copy = *ev;
		uint8_t pd[64];

		/* Private data lives in the event: keep a copy past the ack. */
		if (ev->param.conn.private_data_len && ev->param.conn.private_data) {
			size_t l = ev->param.conn.private_data_len < sizeof(pd)
				       ? ev->param.conn.private_data_len
				       : sizeof(pd);

			memcpy(pd, ev->param.conn.private_data, l);
			copy.param.conn.private_data = pd;
		}
		if (ev->event == RDMA_CM_EVENT_CONNECT_REQUEST) {
			accept_request(ev->listen_id->context, &copy);
			rdma_ack_cm_event(ev);
			continue;
		}
		rdma_ack_cm_event(ev);
		if (!copy.id || !copy.id->context)
			continue;
		if (*(int *)copy.id->context == KIND_LISTENER) {
			/* The listening id itself: its device went away, or its address. */
			fprintf(stderr, "rdma listener: %s\n", rdma_event_str(copy.event));
			continue;
		}
		if (copy.listen_id == NULL) {
			struct rdma_conn *c = copy.id->context;

			if (!c->outbound && copy.event == RDMA_CM_EVENT_ESTABLISHED) {
				became_up(c, c->peer_grant);
				continue;
			}
			handle_conn_event(c, &copy);
		}
	}
}

static struct rdm_conn *rdma_connect_(struct rdm_loop *l, const struct rdm_addr *peer,
				      const struct rdm_conn_opts *o, const struct rdm_conn_cbs *cbs)
{
	struct rdma_conn *c;

	if (!peer || !peer->len || !cbs || !cbs->on_frames) {
		errno = EINVAL;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->rw = worker_get(l);
	if (!c->rw) {
		int e = errno;

		free(c);
		errno = e;
		return NULL;
	}
	c->kind = KIND_CONN;
	c->base.ops = &rdm_rdma_ops;
	c->base.cbs = *cbs;
	c->o = *o;
	opts_defaults(&c->o);
	c->peer = *peer;
	if (o->local)
		c->local = *o->local;
	c->outbound = 1;
	c->idx = -1;
	c->backoff_ms = c->o.backoff_min_ms;
	snprintf(c->base.peer, sizeof(c->base.peer), "%s", peer->text);
	if (conn_bufs(c) < 0) {
		conn_free(c);
		errno = ENOMEM;
		return NULL;
	}
	start_connect(c);
	return &c->base;
}

static struct rdm_listener *rdma_listen_(struct rdm_loop *l, const struct rdm_addr *addr,
					 const struct rdm_conn_opts *o,
					 const struct rdm_conn_cbs *cbs)
{
	struct rdma_listener *lst;
	int e;

	if (!addr || !addr->len || !cbs || !cbs->on_frames) {
		errno = EINVAL;
		return NULL;
	}
	lst = calloc(1, sizeof(*lst));
	if (!lst)
		return NULL;
	lst->rw = worker_get(l);
	if (!lst->rw)
		goto err;
	lst->kind = KIND_LISTENER;
	lst->o = *o;
	opts_defaults(&lst->o);
	lst->cbs = *cbs;
	if (rdma_create_id(lst->rw->ech, &lst->id, lst, RDMA_PS_TCP))
		goto err;
	if (rdma_bind_addr(lst->id, (struct sockaddr *)&addr->ss))
		goto err;
	if (!lst->id->verbs) {
		errno = ENODEV; /* the address is on no RDMA device */
		goto err;
	}
	if (rdma_listen(lst->id, 64))
		goto err;
	return (struct rdm_listener *)lst;
err:
	e = errno ? errno : EIO;
	if (lst->id)
		rdma_destroy_id(lst->id);
	worker_put(lst->rw);
	free(lst);
	errno = e;
	return NULL;
}

static size_t rdma_queued(const struct rdm_conn *bc)
{
	const struct rdma_conn *c = container_of(bc, struct rdma_conn, base);

	return (size_t)c->pend_n * c->slot + (size_t)c->post_n;
}

static void rdma_pause_rx(struct rdm_conn *bc)
{
	to_rc(bc)->rx_paused = 1;
}

static void rdma_resume_rx(struct rdm_conn *bc)
{
	struct rdma_conn *c = to_rc(bc);

	if (!c->rx_paused || c->closed)
		return;
	c->rx_paused = 0;
	if (c->rxq_n)
		rdm_timer_arm(c->rw->loop, &c->kick, 0, kick_deliver, c);
}

static void rdma_close(struct rdm_conn *bc)
{
	struct rdma_conn *c;

	if (!bc)
		return;
	c = to_rc(bc);
	if (c->closed)
		return;
	c->closed = 1;
	rdm_timer_cancel(c->rw->loop, &c->retry);
	if (c->id && c->established)
		rdma_disconnect(c->id);
	teardown_qp(c);
	bc->up = 0;
	rdm_loop_defer_free(c->rw->loop, c, conn_free);
}

static void rdma_close_listener(struct rdm_listener *bl)
{
	struct rdma_listener *lst = (struct rdma_listener *)bl;
	struct rdma_worker *rw;

	if (!lst)
		return;
	rw = lst->rw;
	/* Accepted connections belong to the worker's contexts, not the listener. */
	for (struct rdma_ctx *x = rw->ctxs; x; x = x->next)
		for (int i = 0; i < MAX_CONNS; i++)
			if (x->conns[i] && x->conns[i]->lst == lst)
				rdma_close(&x->conns[i]->base);
	rdma_destroy_id(lst->id);
	free(lst);
	worker_put(rw);
}

int rdm_rdma_probe(const struct rdm_addr *local)
{
	struct rdma_event_channel *ch;
	struct rdma_cm_id *id = NULL;
	struct sockaddr_storage ss;
	struct ibv_port_attr pa;
	int ok = 0;

	if (!local || !local->len)
		return 0;
	ch = rdma_create_event_channel();
	if (!ch)
		return 0;
	memcpy(&ss, &local->ss, sizeof(ss));
	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = 0;
	else
		((struct sockaddr_in6 *)&ss)->sin6_port = 0;
	if (rdma_create_id(ch, &id, NULL, RDMA_PS_TCP) == 0 &&
	    rdma_bind_addr(id, (struct sockaddr *)&ss) == 0 && id->verbs &&
	    ibv_query_port(id->verbs, id->port_num, &pa) == 0 && pa.state == IBV_PORT_ACTIVE)
		ok = 1;
	if (id)
		rdma_destroy_id(id);
	rdma_destroy_event_channel(ch);
	return ok;
}

const struct rdm_transport_ops rdm_rdma_ops = {
    .name = "rdma",
    .connect = rdma_connect_,
    .listen = rdma_listen_,
    .send_batch = rdma_send_batch,
    .queued = rdma_queued,
    .pause_rx = rdma_pause_rx,
    .resume_rx = rdma_resume_rx,
    .close = rdma_close,
    .close_listener = rdma_close_listener,
};
