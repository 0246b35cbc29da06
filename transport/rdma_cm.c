/* The RDMA backend's connection lifetime, driven by librdmacm events: resolving, connecting
 * and accepting (with the private data that carries each side's credit grant), keepalive,
 * and failure, after which an outbound connection reconnects with backoff. */
#include "transport/rdma_int.h"
#include "lib/byteorder.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RDMX_WIRE_VERSION 1 /* private data and message layout */
#define RDMX_RESOLVE_MS	  2000
#define RDMX_REJECT_MAX	  140 /* bytes of a reason a reject carries (IB CM: 148) */
#define RDMX_PEER_DONE	  "the peer is done sending" /* a close, not a failure: not logged */

/* Connection private data: explicit bytes, network order: version, flags, credits (16
 * bits), node id, epoch (32 bits each); with opts.tls the binding follows (rdma_bind.c). */
static void rdmx_pdata_put(uint8_t *p, uint32_t credits, uint32_t node, uint32_t epoch)
{
	p[0] = RDMX_WIRE_VERSION;
	p[1] = 0;
	rdm_put_be16(p + 2, (uint16_t)credits);
	rdm_put_be32(p + 4, node);
	rdm_put_be32(p + 8, epoch);
}

void rdm_rdma__conn_fail(struct rdmx_conn *c, const char *why)
{
	int was_up = c->base.up, retry = c->outbound && !c->tx_shut;
	/* A peer that leaves is news only to a side that will dial it again. */
	int quiet =
	    !strcmp(why, RDMX_PEER_DONE) || (!retry && !strcmp(why, "RDMA_CM_EVENT_DISCONNECTED"));

	if (c->closed)
		return;
	/* Say why, once per distinct reason, so a retry loop does not flood the log. */
	if (strncmp(c->last_why, why, sizeof(c->last_why) - 1) && /* kept truncated */
	    !quiet) {
		fprintf(stderr, "rdma %s: %s%s\n", c->base.peer, why,
			retry ? ", retrying with backoff" : "");
		snprintf(c->last_why, sizeof(c->last_why), "%s", why);
	}
	rdm_rdma__teardown_qp(c);
	c->base.up = 0;
	if (was_up) {
		c->base.stats.disconnects++;
		if (c->base.cbs.on_state)
			c->base.cbs.on_state(&c->base, 0, c->base.cbs.arg);
	}
	if (c->closed || c->tx_shut)
		return; /* done sending: the owner closes it */
	if (!c->outbound) {
		c->closed = 1;
		rdm_loop_defer_free(c->rw->loop, c, rdm_rdma__conn_free);
		return;
	}
	rdm_timer_arm(c->rw->loop, &c->retry, c->backoff_ms, rdm_rdma__start_connect, c);
	c->backoff_ms =
	    c->backoff_ms * 2 > c->o.backoff_max_ms ? c->o.backoff_max_ms : c->backoff_ms * 2;
}

void rdm_rdma__peer_done(struct rdmx_conn *c)
{
	if (c->closed || !c->established)
		return;
	rdma_disconnect(c->id); /* the sender waits for it to leave */
	rdm_rdma__conn_fail(c, RDMX_PEER_DONE);
}

/* Every keepalive_ms / 3: a peer silent for keepalive_ms is dead; an idle side sends a
 * keepalive. */
static void rdmx_keepalive(void *arg)
{
	struct rdmx_conn *c = arg;
	uint64_t now = rdm_now_ns(), ka = (uint64_t)c->o.keepalive_ms * 1000000ull;

	if (!c->established)
		return;
	/* A paused receiver holds the peer's credits: its silence is ours, not death. */
	if (!c->rx_paused && c->credits > 0 && now - c->last_rx_ns > ka) {
		rdm_rdma__conn_fail(c, "keepalive timeout");
		return;
	}
	if (now - c->last_tx_ns >= ka / 3)
		rdm_rdma__send_ctrl(c, RDM_RDMA_IMM_KEEPALIVE);
	rdm_timer_arm(c->rw->loop, &c->ka, c->o.keepalive_ms / 3, rdmx_keepalive, c);
}

static int rdmx_check_pdata(const void *p, uint8_t len)
{
	const uint8_t *b = p;

	return b && len >= RDMX_PDATA_LEN && b[0] == RDMX_WIRE_VERSION ? 0 : -EPROTO;
}

/* The credits a checked private data grants. */
static uint32_t rdmx_pdata_credits(const void *p)
{
	const uint8_t *b = p;

	return rdm_get_be16(b + 2);
}

void rdm_rdma__established(struct rdmx_conn *c, uint32_t grant)
{
	/* Our send queue is sized for our own credit count: use no more than that. */
	c->credits = grant && grant < c->ctx->credits ? grant : c->ctx->credits;
	c->established = 1;
	c->shut_sent = c->peer_shut = 0;
	c->last_rx_ns = c->last_tx_ns = rdm_now_ns();
	rdm_timer_arm(c->rw->loop, &c->ka, c->o.keepalive_ms / 3, rdmx_keepalive, c);
}

void rdm_rdma__became_up(struct rdmx_conn *c)
{
	c->base.up = 1;
	c->base.epoch++;
	c->base.stats.connects++;
	c->backoff_ms = c->o.backoff_min_ms;
	c->last_why[0] = 0;
	if (c->base.cbs.on_state)
		c->base.cbs.on_state(&c->base, 1, c->base.cbs.arg);
}

/* The dialler's connection is established: with opts.tls, once the accept proves the
 * listener holds our binding and the binding message is posted. */
static void rdmx_dialler_up(struct rdmx_conn *c, const uint8_t *pd, uint8_t len)
{
	char why[256];

	rdm_rdma__established(c, rdmx_pdata_credits(pd));
	if (c->o.tls) {
		if (rdm_rdma__bind_check_rep(c, pd, len, why, sizeof(why)) < 0) {
			rdm_rdma__refuse(c, why);
			return;
		}
		rdm_timer_cancel(c->rw->loop, &c->auth.deadline);
		snprintf(c->base.peer_id, sizeof(c->base.peer_id), "%s", c->o.peer_name);
		c->base.stats.handshakes++;
		c->base.stats.handshake_us += (rdm_now_ns() - c->auth.start_ns) / 1000;
	}
	rdm_rdma__became_up(c);
}

/* A rejection that carries an rdmesh listener's reason is a refusal: 1 when it was. */
static int rdmx_refusal(struct rdmx_conn *c, const struct rdma_cm_event *ev)
{
	const char *pd = ev->param.conn.private_data;
	size_t len = ev->param.conn.private_data_len, pl = strlen(RDMX_REJECT_PREFIX);
	char why[256];

	if (!pd || len <= pl || memcmp(pd, RDMX_REJECT_PREFIX, pl))
		return 0;
	len = strnlen(pd + pl, len - pl);
	snprintf(why, sizeof(why), "server %s refused us: %.*s", c->base.peer, (int)len, pd + pl);
	for (char *p = why; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	rdm_rdma__refuse(c, why);
	return 1;
}

void rdm_rdma__start_connect(void *arg)
{
	struct rdmx_conn *c = arg;

	if (c->o.tls)
		rdm_rdma__bind_start(c); /* then rdm_rdma__cm_connect */
	else
		rdm_rdma__cm_connect(c);
}

void rdm_rdma__cm_connect(struct rdmx_conn *c)
{
	struct sockaddr_storage src;

	if (rdma_create_id(c->rw->ech, &c->id, c, RDMA_PS_TCP)) {
		c->base.stats.connect_fails++;
		rdm_rdma__conn_fail(c, "rdma_create_id");
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
			      (struct sockaddr *)&c->peer.ss, RDMX_RESOLVE_MS)) {
		c->base.stats.unreachable++;
		c->base.stats.connect_fails++;
		rdm_rdma__conn_fail(c, "rdma_resolve_addr");
	}
}

static void rdmx_conn_event(struct rdmx_conn *c, struct rdma_cm_event *ev)
{
	struct rdma_conn_param p = {0};
	uint8_t pd[RDMX_REQ_AUTH_LEN];

	switch (ev->event) {
	case RDMA_CM_EVENT_ADDR_RESOLVED:
		if (rdma_resolve_route(c->id, RDMX_RESOLVE_MS)) {
			c->base.stats.connect_fails++;
			rdm_rdma__conn_fail(c, "rdma_resolve_route");
		}
		return;
	case RDMA_CM_EVENT_ROUTE_RESOLVED: {
		int rc = rdm_rdma__setup_qp(c, c->id);

		if (rc < 0) {
			char why[400];

			rdm_rdma__setup_why(c, rc, why, sizeof(why));
			c->base.stats.connect_fails++;
			c->base.stats.local_fails++;
			rdm_rdma__conn_fail(c, why);
			return;
		}
		rdmx_pdata_put(pd, c->o.credits, c->o.node_id, c->base.epoch + 1);
		p.private_data = pd;
		p.private_data_len = c->o.tls ? rdm_rdma__bind_req(c, pd) : RDMX_PDATA_LEN;
		p.responder_resources = 0;
		p.initiator_depth = 0;
		p.retry_count = 7;
		p.rnr_retry_count = 7;
		if (rdma_connect(c->id, &p)) {
			c->base.stats.connect_fails++;
			rdm_rdma__conn_fail(c, "rdma_connect");
		}
		return;
	}
	case RDMA_CM_EVENT_ESTABLISHED:
		if (rdmx_check_pdata(ev->param.conn.private_data, ev->param.conn.private_data_len) <
		    0) {
			c->base.stats.connect_fails++;
			rdm_rdma__conn_fail(c, "peer speaks another protocol version");
			return;
		}
		rdmx_dialler_up(c, ev->param.conn.private_data, ev->param.conn.private_data_len);
		return;
	case RDMA_CM_EVENT_ADDR_ERROR:
	case RDMA_CM_EVENT_ROUTE_ERROR:
	case RDMA_CM_EVENT_UNREACHABLE:
		/* No RDMA path to the peer, or nothing there answers RDMA CM. */
		c->base.stats.unreachable++;
		c->base.stats.connect_fails++;
		rdm_rdma__conn_fail(c, rdma_event_str(ev->event));
		return;
	case RDMA_CM_EVENT_REJECTED:
		/* Rejected by an rdmesh listener, or by the device or the CM. */
		if (rdmx_refusal(c, ev))
			return;
		__attribute__((fallthrough));
	case RDMA_CM_EVENT_CONNECT_ERROR:
		c->base.stats.connect_fails++;
		rdm_rdma__conn_fail(c, rdma_event_str(ev->event));
		return;
	case RDMA_CM_EVENT_DISCONNECTED:
		/* Frames the peer sent before it left are already in our slots: hand them
		 * over first, as TCP delivers what precedes a FIN. */
		if (c->ctx && c->established)
			rdm_rdma__ctx_poll(c->ctx);
		if (c->established && c->rxq_n && !c->rx_paused)
			rdm_rdma__deliver(c);
		if (c->id && !c->closed)
			rdm_rdma__conn_fail(c, rdma_event_str(ev->event));
		return;
	case RDMA_CM_EVENT_DEVICE_REMOVAL:
	case RDMA_CM_EVENT_ADDR_CHANGE:
	case RDMA_CM_EVENT_TIMEWAIT_EXIT:
		if (c->id)
			rdm_rdma__conn_fail(c, rdma_event_str(ev->event));
		return;
	default:
		return;
	}
}

/* Refuses a connect request with a reason the dialler logs (at most what a reject
 * carries), and tells the listener's owner. */
static void rdmx_reject(struct rdmx_listener *lst, struct rdmx_conn *c, struct rdma_cm_id *id,
			const char *why)
{
	char pd[RDMX_REJECT_MAX];
	int len = snprintf(pd, sizeof(pd), "%s%s", RDMX_REJECT_PREFIX, why);

	rdma_reject(id, pd, (uint8_t)(len < (int)sizeof(pd) ? len : (int)sizeof(pd) - 1));
	if (lst->cbs.on_refused)
		lst->cbs.on_refused(&c->base, why, lst->cbs.arg);
}

static void rdmx_accept_request(struct rdmx_listener *lst, struct rdma_cm_event *ev)
{
	struct rdma_cm_id *id = ev->id;
	struct rdmx_conn *c = calloc(1, sizeof(*c));
	struct rdma_conn_param p = {0};
	uint8_t pd[RDMX_REP_AUTH_LEN];
	char why[400];
	int rc;

	if (!c ||
	    rdmx_check_pdata(ev->param.conn.private_data, ev->param.conn.private_data_len) < 0) {
		free(c);
		rdma_reject(id, NULL, 0);
		rdma_destroy_id(id);
		return;
	}
	c->kind = RDMX_KIND_CONN;
	c->base.ops = &rdm_rdma_ops;
	c->base.cbs = lst->cbs;
	c->o = lst->o;
	c->rw = rdm_rdma__worker_get(lst->rw->loop); /* a reference of its own */
	c->idx = -1;
	c->lst = lst;
	c->id = id;
	id->context = c;
	rdm_addr_format((struct sockaddr_storage *)rdma_get_peer_addr(id),
			sizeof(struct sockaddr_storage), c->base.peer, sizeof(c->base.peer));
	if (c->o.tls && rdm_rdma__bind_check_req(c, ev->param.conn.private_data,
						 ev->param.conn.private_data_len,
						 ev->param.conn.qp_num, why, sizeof(why)) < 0) {
		rdmx_reject(lst, c, id, why);
		rdma_destroy_id(id);
		rdm_rdma__bind_stop(c); /* forgets the key it may have taken */
		rdm_rdma__conn_free(c);
		return;
	}
	if ((rc = rdm_rdma__conn_bufs(c)) < 0 || (rc = rdm_rdma__setup_qp(c, id)) < 0) {
		rdm_rdma__setup_why(c, rc, why, sizeof(why));
		fprintf(stderr, "rdma %s: refused: %s\n", c->base.peer, why);
		rdma_reject(id, NULL, 0);
		c->id = NULL;
		rdm_rdma__teardown_qp(c);
		rdma_destroy_id(id);
		rdm_rdma__conn_free(c);
		return;
	}
	/* The peer's grant, from its request, is what we may send it. */
	c->peer_grant = rdmx_pdata_credits(ev->param.conn.private_data);
	rdmx_pdata_put(pd, c->o.credits, c->o.node_id, 1);
	p.private_data = pd;
	p.private_data_len = c->o.tls ? rdm_rdma__bind_rep(c, pd) : RDMX_PDATA_LEN;
	p.retry_count = 7;
	p.rnr_retry_count = 7;
	if (c->o.tls)
		rdm_rdma__bind_await(c);
	if (rdma_accept(id, &p)) {
		c->id = NULL;
		rdm_rdma__teardown_qp(c);
		rdma_destroy_id(id);
		rdm_rdma__conn_free(c);
	}
}

void rdm_rdma__cm_io(struct rdm_io *io, uint32_t events)
{
	struct rdmx_worker *rw = container_of(io, struct rdmx_worker, ech_io);
	struct rdma_cm_event *ev;

	while (rdma_get_cm_event(rw->ech, &ev) == 0) {
		struct rdma_cm_event copy = *ev;
		uint8_t pd[UINT8_MAX]; /* private_data_len is 8 bits */

		/* Private data lives in the event: keep a copy past the ack. */
		if (ev->param.conn.private_data_len && ev->param.conn.private_data) {
			memcpy(pd, ev->param.conn.private_data, ev->param.conn.private_data_len);
			copy.param.conn.private_data = pd;
		}
		if (ev->event == RDMA_CM_EVENT_CONNECT_REQUEST) {
			rdmx_accept_request(ev->listen_id->context, &copy);
			rdma_ack_cm_event(ev);
			continue;
		}
		rdma_ack_cm_event(ev);
		if (!copy.id || !copy.id->context)
			continue;
		if (*(int *)copy.id->context == RDMX_KIND_LISTENER) {
			/* The listening id itself: its device went away, or its address. */
			fprintf(stderr, "rdma listener: %s\n", rdma_event_str(copy.event));
			continue;
		}
		if (copy.listen_id == NULL) {
			struct rdmx_conn *c = copy.id->context;

			if (!c->outbound && copy.event == RDMA_CM_EVENT_ESTABLISHED) {
				/* With opts.tls, up once the binding message came too (it may
				 * complete before this event). */
				rdm_rdma__established(c, c->peer_grant);
				if (!c->auth.await_bind)
					rdm_rdma__became_up(c);
				continue;
			}
			rdmx_conn_event(c, &copy);
		}
	}
}
