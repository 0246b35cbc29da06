/* The RDMA backend's per-thread and per-device resources: a worker (one per event loop:
 * its CM event channel in the loop) and, per device, a context (protection domain,
 * completion queue and channel, shared receive queue with its registered, pre-posted
 * slots), made on first use; a worker goes, with its contexts, with its last reference. */
#include "transport/rdma_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>

/* Workers by loop. Looked up only when connections and listeners are made, which may
 * happen on another thread than the loop's (a node builds them before its workers run). */
static pthread_mutex_t rdmx_workers_mu = PTHREAD_MUTEX_INITIALIZER;
static struct rdmx_worker *rdmx_workers;

static int rdmx_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -errno : 0;
}

struct rdmx_worker *rdm_rdma__worker_get(struct rdm_loop *l)
{
	struct rdmx_worker *rw;

	pthread_mutex_lock(&rdmx_workers_mu);
	for (rw = rdmx_workers; rw; rw = rw->next)
		if (rw->loop == l)
			break;
	if (rw) {
		rw->refs++;
		pthread_mutex_unlock(&rdmx_workers_mu);
		return rw;
	}
	rw = calloc(1, sizeof(*rw));
	if (!rw)
		goto out;
	rw->loop = l;
	rw->ech = rdma_create_event_channel();
	if (!rw->ech || rdmx_set_nonblock(rw->ech->fd) < 0 ||
	    rdm_io_add(l, &rw->ech_io, rw->ech->fd, EPOLLIN, rdm_rdma__cm_io) < 0) {
		int e = errno ? errno : ENODEV;

		if (rw->ech)
			rdma_destroy_event_channel(rw->ech);
		free(rw);
		rw = NULL;
		errno = e;
		goto out;
	}
	rw->refs = 1;
	rw->next = rdmx_workers;
	rdmx_workers = rw;
out:
	pthread_mutex_unlock(&rdmx_workers_mu);
	return rw;
}

static void rdmx_ctx_free(struct rdmx_ctx *x)
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

void rdm_rdma__worker_put(struct rdmx_worker *rw)
{
	struct rdmx_worker **pp;

	if (!rw)
		return;
	pthread_mutex_lock(&rdmx_workers_mu);
	if (--rw->refs > 0) {
		pthread_mutex_unlock(&rdmx_workers_mu);
		return;
	}
	for (pp = &rdmx_workers; *pp; pp = &(*pp)->next)
		if (*pp == rw) {
			*pp = rw->next;
			break;
		}
	pthread_mutex_unlock(&rdmx_workers_mu);
	while (rw->ctxs) {
		struct rdmx_ctx *x = rw->ctxs;

		rw->ctxs = x->next;
		rdmx_ctx_free(x);
	}
	rdm_io_del(rw->loop, &rw->ech_io);
	rdma_destroy_event_channel(rw->ech);
	free(rw);
}

int rdm_rdma__post_recv(struct rdmx_ctx *x, uint32_t slot)
{
	struct ibv_sge sge = {.addr = (uintptr_t)(x->rbuf + (size_t)slot * x->slot),
			      .length = x->slot,
			      .lkey = x->rmr->lkey};
	struct ibv_recv_wr wr = {.wr_id = slot, .sg_list = &sge, .num_sge = 1}, *bad;

	return ibv_post_srq_recv(x->srq, &wr, &bad) ? -EIO : 0;
}

static void rdmx_ch_io(struct rdm_io *io, uint32_t events)
{
	struct rdmx_ctx *x = container_of(io, struct rdmx_ctx, ch_io);
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
	x->poller.hot = rdm_rdma__ctx_poller(&x->poller);
}

static void rdmx_async_io(struct rdm_io *io, uint32_t events)
{
	struct rdmx_ctx *x = container_of(io, struct rdmx_ctx, async_io);
	struct ibv_async_event ev;

	while (ibv_get_async_event(x->verbs, &ev) == 0) {
		enum ibv_event_type t = ev.event_type;
		struct ibv_qp *qp = ev.element.qp;

		ibv_ack_async_event(&ev);
		if (t == IBV_EVENT_QP_FATAL || t == IBV_EVENT_QP_REQ_ERR ||
		    t == IBV_EVENT_QP_ACCESS_ERR) {
			for (int i = 0; i < RDMX_MAX_CONNS; i++)
				if (x->conns[i] && x->conns[i]->qp == qp)
					rdm_rdma__conn_fail(x->conns[i], ibv_event_type_str(t));
		} else if (t == IBV_EVENT_DEVICE_FATAL || t == IBV_EVENT_PORT_ERR) {
			for (int i = 0; i < RDMX_MAX_CONNS; i++)
				if (x->conns[i])
					rdm_rdma__conn_fail(x->conns[i], ibv_event_type_str(t));
		}
	}
}

struct rdmx_ctx *rdm_rdma__ctx_get(struct rdmx_worker *rw, struct ibv_context *verbs,
				   const struct rdm_conn_opts *o)
{
	struct rdmx_ctx *x;
	struct ibv_srq_init_attr sa = {0};

	for (x = rw->ctxs; x; x = x->next)
		if (x->verbs == verbs)
			return x;
	x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	x->rw = rw;
	x->verbs = verbs;
	x->slot = o->max_frame + RDMX_TAG; /* a message and its tag (opts.encrypt) */
	x->credits = o->credits;
	x->n_rslots = o->credits * RDMX_MAX_CONNS;
	x->spin_ns = (uint64_t)o->spin_us * 1000;
	x->poller.poll = rdm_rdma__ctx_poller;
	x->pd = ibv_alloc_pd(verbs);
	x->ch = ibv_create_comp_channel(verbs);
	if (!x->pd || !x->ch)
		goto err;
	x->cq = ibv_create_cq(verbs, (int)(x->n_rslots + RDMX_MAX_CONNS * (2 * o->credits + 16)), x,
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
		if (rdm_rdma__post_recv(x, s) < 0)
			goto err;
	if (rdmx_set_nonblock(x->ch->fd) < 0 || rdmx_set_nonblock(verbs->async_fd) < 0 ||
	    ibv_req_notify_cq(x->cq, 0) ||
	    rdm_io_add(rw->loop, &x->ch_io, x->ch->fd, EPOLLIN, rdmx_ch_io) < 0)
		goto err;
	if (rdm_io_add(rw->loop, &x->async_io, verbs->async_fd, EPOLLIN, rdmx_async_io) < 0)
		goto err;
	x->next = rw->ctxs;
	rw->ctxs = x;
	return x;
err:
	rdmx_ctx_free(x);
	errno = ENOMEM;
	return NULL;
}
