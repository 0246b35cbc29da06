/* A connection's queue pair and send buffers: allocating them, creating the QP on its
 * device's context, and tearing it down with everything it held given back. */
#include "transport/rdma_int.h"
#include "transport/rdma_pack.h"

#include <errno.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

int rdm_rdma__conn_bufs(struct rdmx_conn *c)
{
	uint32_t n = c->o.queue_bytes / c->o.max_frame;

	n = n < 32 ? 32 : n > 1024 ? 1024 : n;
	c->room = c->o.max_frame;
	c->slot = c->o.max_frame + RDMX_TAG;
	c->n_sslots = n;
	c->sq_depth = 2 * c->o.credits + RDMX_POST_BATCH;
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

void rdm_rdma__conn_free(void *p)
{
	struct rdmx_conn *c = p;

	free(c->sbuf);
	free(c->sfree);
	free(c->pend);
	free(c->post);
	free(c->rxq);
	rdm_rdma__worker_put(c->rw);
	free(c);
}

/* The frames received message q still held for the owner: its records from q->off on
 * (checked whole on arrival). */
static uint64_t frames_left(const struct rdmx_ctx *x, const struct rdmx_rxq *q)
{
	struct rdm_pack_rd r = {x->rbuf + (size_t)q->slot * x->slot, q->end, q->off};
	struct rdm_pack_rec rec;
	uint64_t n = 0;

	if (!q->packed)
		return q->off < q->end;
	while (rdm_pack_next(&r, &rec) == 1)
		n++;
	return n;
}

/* Gives back what the queue pair held: send slots, zero-copy references, unconsumed
 * receive slots (their frames counted lost: the peer counted them sent). Only after the
 * QP is gone, so the device reads none of it any more. */
static void rdmx_reclaim(struct rdmx_conn *c)
{
	struct rdmx_ctx *x = c->ctx;

	while (c->post_n) {
		struct rdmx_posted *p = &c->post[c->post_head];

		if (p->rslot != RDMX_NONE && x) {
			x->rrefs[p->rslot]--;
			if (x->rheld[p->rslot] && x->rrefs[p->rslot] == 0)
				rdm_rdma__release_rslot(x, p->rslot);
		}
		c->post_head = (c->post_head + 1) % c->sq_depth;
		c->post_n--;
	}
	while (c->rxq_n) {
		c->base.stats.rx_lost_on_close += frames_left(x, &c->rxq[c->rxq_head]);
		rdm_rdma__release_rslot(x, c->rxq[c->rxq_head].slot);
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

void rdm_rdma__teardown_qp(struct rdmx_conn *c)
{
	if (c->ctx && c->idx >= 0) {
		c->ctx->conns[c->idx] = NULL;
		c->ctx->gen[c->idx]++;
	}
	if (c->qp) {
		rdma_destroy_qp(c->id);
		c->qp = NULL;
	}
	rdmx_reclaim(c);
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
	rdm_rdma__bind_stop(c);
	rdm_rdma__seal_stop(c);
	rdm_timer_cancel(c->rw->loop, &c->ka);
	rdm_timer_cancel(c->rw->loop, &c->kick);
	rdm_timer_cancel(c->rw->loop, &c->shut);
}

/* Creates the QP on id's device and the send buffers. 0 or a negative errno. */
int rdm_rdma__setup_qp(struct rdmx_conn *c, struct rdma_cm_id *id)
{
	struct ibv_qp_init_attr qa = {0};
	struct ibv_qp_attr attr;
	struct ibv_qp_init_attr init;
	struct rdmx_ctx *x = rdm_rdma__ctx_get(c->rw, id->verbs, &c->o);
	int idx = -1;

	if (!x)
		return -errno;
	for (int i = 0; i < RDMX_MAX_CONNS; i++)
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

/* 1 when this process holds CAP_IPC_LOCK (the memlock limit does not bind it). */
static int can_lock_any(void)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d) < 0)
		return 0;
	return (d[CAP_IPC_LOCK / 32].effective >> (CAP_IPC_LOCK % 32)) & 1;
}

void rdm_rdma__setup_why(const struct rdmx_conn *c, int rc, char *out, size_t len)
{
	size_t slot = (size_t)c->o.max_frame + RDMX_TAG;
	uint32_t n_tx = c->n_sslots ? c->n_sslots : 32;
	size_t need = ((size_t)c->o.credits * RDMX_MAX_CONNS + n_tx) * slot;
	struct rlimit rl;

	if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < need && !can_lock_any()) {
		snprintf(out, len,
			 "cannot register RDMA buffers: the memlock limit (%lu KiB) is below the "
			 "%zu KiB a hop registers (%u receive slots per worker and device and %u "
			 "send slots, %zu B each): raise it (ulimit -l; in a pod, a memlock limit "
			 "or the IPC_LOCK capability)",
			 (unsigned long)(rl.rlim_cur / 1024), need / 1024,
			 c->o.credits * RDMX_MAX_CONNS, n_tx, slot);
		return;
	}
	snprintf(out, len, "setting up RDMA here: %s", strerror(-rc));
}
