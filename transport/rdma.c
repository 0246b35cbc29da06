/* RDMA backend's entry points: the ops table (connect, listen, send, close ...) and the
 * device probe. The backend: RC queue pairs set up with librdmacm, two-sided SEND/RECV.
 * Its files: rdma_dev.c (workers, device contexts), rdma_qp.c (a connection's QP and
 * buffers), rdma_cm.c (connection lifetime: CM events, keepalive, reconnect), rdma_tx.c
 * (credits, the send path), rdma_rx.c (completions, receiving), rdma_pack.c (the
 * packed-record codec, no verbs); rdma_int.h has their private declarations.
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
 * IMM_CREDIT, IMM_KEEPALIVE and IMM_SHUT carry no payload. IMM_SHUT says the sender is
 * done (shutdown_tx, once all it queued is out): the receiver disconnects once it has
 * handed over every frame that came before, as TCP's reader closes after a FIN; until
 * then frames a paused receiver holds stay in its slots. The receiver hands the frames of a
 * packed message to on_frames in order, straight from the receive slot, and reposts the
 * slot once every frame of it is consumed and every zero-copy send reading it completed.
 * A record running past the end of its message (or a message holding no record) makes the
 * message malformed: the frames before it are delivered, the rest is dropped and counted
 * (rx_bad_len); the connection carries on. Pad bytes after the last record, short of the
 * next 4-byte boundary, are not a record.
 */
#include "transport/rdma_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void rdmx_opts_defaults(struct rdm_conn_opts *o)
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
	if (!o->handshake_ms)
		o->handshake_ms = RDM_HANDSHAKE_MS;
}

static struct rdm_conn *rdmx_connect(struct rdm_loop *l, const struct rdm_addr *peer,
				     const struct rdm_conn_opts *o, const struct rdm_conn_cbs *cbs)
{
	struct rdmx_conn *c;

	if (!peer || !peer->len || !cbs || !cbs->on_frames) {
		errno = EINVAL;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->rw = rdm_rdma__worker_get(l);
	if (!c->rw) {
		int e = errno;

		free(c);
		errno = e;
		return NULL;
	}
	c->kind = RDMX_KIND_CONN;
	c->base.ops = &rdm_rdma_ops;
	c->base.cbs = *cbs;
	c->o = *o;
	rdmx_opts_defaults(&c->o);
	c->peer = *peer;
	if (o->local)
		c->local = *o->local;
	c->outbound = 1;
	c->idx = -1;
	c->backoff_ms = c->o.backoff_min_ms;
	snprintf(c->base.peer, sizeof(c->base.peer), "%s", peer->text);
	if (rdm_rdma__conn_bufs(c) < 0) {
		rdm_rdma__conn_free(c);
		errno = ENOMEM;
		return NULL;
	}
	rdm_rdma__start_connect(c);
	return &c->base;
}

static struct rdm_listener *rdmx_listen(struct rdm_loop *l, const struct rdm_addr *addr,
					const struct rdm_conn_opts *o,
					const struct rdm_conn_cbs *cbs)
{
	struct rdmx_listener *lst;
	int e;

	if (!addr || !addr->len || !cbs || !cbs->on_frames) {
		errno = EINVAL;
		return NULL;
	}
	lst = calloc(1, sizeof(*lst));
	if (!lst)
		return NULL;
	lst->rw = rdm_rdma__worker_get(l);
	if (!lst->rw)
		goto err;
	lst->kind = RDMX_KIND_LISTENER;
	lst->o = *o;
	rdmx_opts_defaults(&lst->o);
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
	rdm_rdma__worker_put(lst->rw);
	free(lst);
	errno = e;
	return NULL;
}

static size_t rdmx_queued(const struct rdm_conn *bc)
{
	const struct rdmx_conn *c = container_of(bc, struct rdmx_conn, base);

	return (size_t)c->pend_n * c->slot + (size_t)c->post_n;
}

/* Sends IMM_SHUT once nothing of ours is queued or in flight and a credit is free; else
 * looks again in a millisecond. */
static void rdmx_shut_check(void *arg)
{
	struct rdmx_conn *c = arg;

	if (c->closed || !c->established || c->shut_sent)
		return;
	if (rdmx_queued(&c->base) == 0 && c->credits >= 1 && c->sq_used < c->sq_depth) {
		rdm_rdma__send_ctrl(c, RDM_RDMA_IMM_SHUT);
		c->shut_sent = 1;
		return;
	}
	rdm_timer_arm(c->rw->loop, &c->shut, 1, rdmx_shut_check, c);
}

static void rdmx_shutdown_tx(struct rdm_conn *bc)
{
	struct rdmx_conn *c = rdm_rdma__conn(bc);

	if (c->closed || c->tx_shut)
		return;
	c->tx_shut = 1;
	rdm_timer_cancel(c->rw->loop, &c->retry);
	if (!c->established) {
		rdm_rdma__conn_fail(c, "done sending before the connection was up");
		return;
	}
	rdmx_shut_check(c);
}

static void rdmx_close(struct rdm_conn *bc)
{
	struct rdmx_conn *c;

	if (!bc)
		return;
	c = rdm_rdma__conn(bc);
	if (c->closed)
		return;
	c->closed = 1;
	rdm_timer_cancel(c->rw->loop, &c->retry);
	rdm_timer_cancel(c->rw->loop, &c->shut);
	if (c->id && c->established)
		rdma_disconnect(c->id);
	rdm_rdma__teardown_qp(c);
	bc->up = 0;
	rdm_loop_defer_free(c->rw->loop, c, rdm_rdma__conn_free);
}

static void rdmx_close_listener(struct rdm_listener *bl)
{
	struct rdmx_listener *lst = (struct rdmx_listener *)bl;
	struct rdmx_worker *rw;

	if (!lst)
		return;
	rw = lst->rw;
	/* Accepted connections belong to the worker's contexts, not the listener. */
	for (struct rdmx_ctx *x = rw->ctxs; x; x = x->next)
		for (int i = 0; i < RDMX_MAX_CONNS; i++)
			if (x->conns[i] && x->conns[i]->lst == lst)
				rdmx_close(&x->conns[i]->base);
	rdma_destroy_id(lst->id);
	free(lst);
	rdm_rdma__worker_put(rw);
}

/* The RDMA devices libibverbs lists, "rxe0, mlx5_0", into out; how many. */
static int device_names(char *out, size_t len)
{
	int n = 0;
	struct ibv_device **l = ibv_get_device_list(&n);
	size_t used = 0;

	out[0] = '\0';
	for (int i = 0; l && i < n; i++)
		used += (size_t)snprintf(out + used, used < len ? len - used : 0, "%s%s",
					 i ? ", " : "", ibv_get_device_name(l[i]));
	if (l)
		ibv_free_device_list(l);
	return l ? n : 0;
}

int rdm_rdma_probe(const struct rdm_addr *local, char *why, size_t whylen)
{
	struct rdma_event_channel *ch;
	struct rdma_cm_id *id = NULL;
	struct sockaddr_storage ss;
	struct ibv_port_attr pa;
	char devs[256];
	int ok = 0, e;

	if (!local || !local->len) {
		snprintf(why, whylen, "this node has no listen address");
		return 0;
	}
	if (!device_names(devs, sizeof(devs))) {
		snprintf(why, whylen,
			 "no RDMA device in this host or container (libibverbs lists none; a pod "
			 "needs one given to it: an RDMA device plugin resource or an SR-IOV VF)");
		return 0;
	}
	ch = rdma_create_event_channel();
	if (!ch) {
		snprintf(why, whylen,
			 "the RDMA devices here (%s) cannot be used: rdma_cm: %s "
			 "(/dev/infiniband/rdma_cm missing from the container?)",
			 devs, strerror(errno));
		return 0;
	}
	memcpy(&ss, &local->ss, sizeof(ss));
	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = 0;
	else
		((struct sockaddr_in6 *)&ss)->sin6_port = 0;
	if (rdma_create_id(ch, &id, NULL, RDMA_PS_TCP) < 0) {
		snprintf(why, whylen, "rdma_create_id: %s", strerror(errno));
	} else if (rdma_bind_addr(id, (struct sockaddr *)&ss) < 0 || !id->verbs) {
		e = errno;
		snprintf(why, whylen,
			 "%s is on no RDMA device: no GID for it on %s (%s; a pod's RoCE address "
			 "must be on the device's network, e.g. a Multus network on the RoCE port)",
			 local->text, devs, e ? strerror(e) : "no device bound");
	} else if (ibv_query_port(id->verbs, id->port_num, &pa) < 0) {
		snprintf(why, whylen, "%s: %s port %u: %s", local->text,
			 ibv_get_device_name(id->verbs->device), id->port_num, strerror(errno));
	} else if (pa.state != IBV_PORT_ACTIVE) {
		snprintf(why, whylen, "%s is on %s port %u, which is not active (%s)", local->text,
			 ibv_get_device_name(id->verbs->device), id->port_num,
			 ibv_port_state_str(pa.state));
	} else {
		ok = 1;
		snprintf(why, whylen, "%s is on %s port %u", local->text,
			 ibv_get_device_name(id->verbs->device), id->port_num);
	}
	if (id)
		rdma_destroy_id(id);
	rdma_destroy_event_channel(ch);
	return ok;
}

const struct rdm_transport_ops rdm_rdma_ops = {
    .name = "rdma",
    .connect = rdmx_connect,
    .listen = rdmx_listen,
    .send_batch = rdm_rdma__send_batch,
    .queued = rdmx_queued,
    .pause_rx = rdm_rdma__pause_rx,
    .resume_rx = rdm_rdma__resume_rx,
    .shutdown_tx = rdmx_shutdown_tx,
    .close = rdmx_close,
    .close_listener = rdmx_close_listener,
};
