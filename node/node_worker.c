/* A worker: setting up and tearing down its state, and the thread that runs its event
 * loop with its periodic work (stage housekeeping, flow expiry, progress lines). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/mem.h"
#include "node/tun.h"
#include "node/node_int.h"

/* Lets the worker take input again once the next hops have room or the egress's rate
 * allows: the TUN device, upstream connections, the ingress pump. */
void rdm_node__resume_inputs(struct worker *w)
{
	if (w->tun_fd >= 0 && w->node->conf->ingress.mode == RDM_INGRESS_TUN && !w->stopping)
		rdm_io_mod(w->loop, &w->tun_io, EPOLLIN);
	for (int i = 0; i < w->n_ups; i++)
		rdm_conn_resume_rx(w->ups[i]);
	if (w->gen || w->pin)
		rdm_timer_arm(w->loop, &w->pump, 0, rdm_node__pump, w);
}

/* Empties the wake eventfd: a write to it (a stop, a reload) only ends the loop's wait. */
static void wake_io(struct rdm_io *io, uint32_t events)
{
	uint64_t v;

	if (read(io->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
}

/* Once a second, ingress and egress workers say how far they are: users watch long runs. */
static void progress(void *arg)
{
	struct worker *w = arg;
	struct rdm_node *n = w->node;

	if (w->gen || w->pin)
		rdm_node__log(
		    n, "w%d ingress: %" PRIu64 " taken, %" PRIu64 " sent, %" PRIu64 " dropped",
		    w->idx, w->st.ingress_taken, w->st.ingress_sent,
		    w->st.ingress_taken - w->st.ingress_sent);
	if (n->conf->egress.enabled)
		rdm_node__log(n, "w%d egress: %" PRIu64 " packets, %u flows", w->idx,
			      w->st.egress_packets, w->eflows.flows);
	rdm_timer_arm(w->loop, &w->progress, 1000, progress, w);
}

/* The connection counters readers on other threads see (refreshed every tick). */
void rdm_node__snap_stats(struct worker *w)
{
	struct rdm_conn_stats up = w->up_closed, down = w->down_closed;

	for (int u = 0; u < w->n_ups; u++)
		rdm_node__stats_add(&up, &w->ups[u]->stats);
	for (int r = 0; r < MAX_DOWNS; r++)
		if (w->downs[r].c)
			rdm_node__stats_add(&down, &w->downs[r].c->stats);
	w->up_snap = up;
	w->down_snap = down;
}

/* Every TICK_MS: stages' housekeeping (flow expiry, log flushing), expiry of return
 * paths and flow pins, draining replicas, counter snapshots for reports, and the
 * egress's wait for late packets. */
static void tick(void *arg)
{
	struct worker *w = arg;
	struct rdm_node *n = w->node;
	uint64_t now = rdm_now_ns();

	for (int s = 0; s < n->n_stages; s++)
		if (n->stage_ops[s]->tick)
			n->stage_ops[s]->tick(w->stage_rt[s], now);
	if (w->flows)
		rdm_flowtab_expire(w->flows, now, 4096);
	if (w->flows && n->steer)
		rdm_node__drain_check(w, now);
	rdm_node__snap_stats(w);
	rdm_node__auth_tick(w);
	if (n->conf->egress.count)
		rdm_node__egress_check_late(n, now);
	rdm_timer_arm(w->loop, &w->tick, TICK_MS, tick, w);
}

/* A worker's thread: its event loop, and between rounds the reload, stop and finish
 * checks; returns once the worker has finished. */
void *rdm_node__worker_main(void *arg)
{
	struct worker *w = arg;
	struct rdm_node *n = w->node;

	if (!w->steer && n->conf->has_listen)
		rdm_node__start_listener(w);
	if (w->gen || w->pin)
		rdm_timer_arm(w->loop, &w->pump, 0, rdm_node__pump, w);
	if (w->gen || w->pin || n->conf->egress.enabled)
		rdm_timer_arm(w->loop, &w->progress, 1000, progress, w);
	rdm_timer_arm(w->loop, &w->tick, TICK_MS, tick, w);
	while (!w->finished) {
		rdm_loop_run_once(w->loop, 50);
		rdm_node__take_reload(w, 1);
		if (atomic_load(&n->stop) && !w->stopping)
			rdm_node__begin_stop(w);
		rdm_node__auto_check(w);
		rdm_node__check_finished(w);
	}
	rdm_node__close_ups(w);
	rdm_node__snap_stats(w);
	return NULL;
}

/* The file worker idx of n writes for an output named base: one file per worker
 * (base.wIDX) when there are several, so that workers write without a lock. */
static void worker_path(char *path, size_t len, const char *base, const struct rdm_node *n, int idx)
{
	if (n->n_workers > 1)
		snprintf(path, len, "%s.w%d", base, idx);
	else
		snprintf(path, len, "%s", base);
}

/* Sets up worker idx of n (buffers, stages, TUN, ingress source, egress writers, next-hop
 * connections); 0, or -errno with a message in err (rdm_node__worker_fini cleans up). */
int rdm_node__worker_init(struct rdm_node *n, struct worker *w, int idx, char *err, size_t errlen)
{
	const struct rdm_node_conf *c = n->conf;
	uint32_t batch = n->copts.batch;
	struct rdm_stage_env env = {
	    .node_id = c->id, .node_name = c->name, .worker = idx, .flows = &n->chain->flows};
	struct rdm_flow_conf fc;
	int fd;

	w->node = n;
	w->idx = idx;
	w->tun_fd = -1;
	w->loop = rdm_loop_new();
	if (w->loop)
		rdm_loop_set_poll(w->loop, c->poll, n->chain->transport.spin_us);
	w->fr = calloc(batch, sizeof(*w->fr));
	w->frp = calloc(batch, sizeof(*w->frp));
	w->back = calloc(batch, sizeof(*w->back));
	w->notice = calloc(batch, sizeof(*w->notice));
	w->verdict = calloc(batch, sizeof(*w->verdict));
	w->upi = calloc(batch, sizeof(*w->upi));
	w->hdr = rdm_calloc_touched(batch, HDR_SLOT);
	w->tx = calloc((size_t)batch * RDM_CTX_OUT_MAX, sizeof(*w->tx));
	w->tx_part = calloc((size_t)batch * RDM_CTX_OUT_MAX, 1);
	if (!w->loop || !w->fr || !w->frp || !w->back || !w->notice || !w->verdict || !w->upi ||
	    !w->hdr || !w->tx || !w->tx_part)
		goto nomem;
	/* The node's own table (the way back, steering pins) always takes a new flow:
	 * refusing one there would drop traffic the stages never saw. */
	fc = n->chain->flows;
	fc.refuse_new = 0;
	w->track_paths = n->returns && c->has_listen;
	if (w->track_paths || n->steer) {
		w->flows = rdm_flowtab_new(&fc, sizeof(struct nflow), rdm_node__pin_end, w);
		if (!w->flows)
			goto nomem;
	}
	fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (fd < 0 || rdm_io_add(w->loop, &w->wake, fd, EPOLLIN, wake_io) < 0) {
		if (fd >= 0)
			close(fd);
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		return -EIO;
	}
	for (int s = 0; s < n->n_stages; s++) {
		w->stage_rt[s] = n->stage_ops[s]->init(n->stage_conf[s], &env);
		if (!w->stage_rt[s]) {
			snprintf(err, errlen, "stage %s: %s", n->stage_ops[s]->name,
				 strerror(errno));
			return -EIO;
		}
	}
	if (n->tun) {
		w->tun_fd = rdm_tun_open(n->tun->name, n->tun->mtu, err, (unsigned)errlen);
		if (w->tun_fd < 0)
			return w->tun_fd;
		if (rdm_io_add(w->loop, &w->tun_io, w->tun_fd, EPOLLIN, rdm_node__tun_io) < 0) {
			snprintf(err, errlen, "tun %s: epoll: %s", n->tun->name, strerror(errno));
			return -EIO;
		}
	}
	if (c->ingress.mode != RDM_INGRESS_NONE || n->tun) {
		w->pkt = rdm_calloc_touched(batch, n->copts.max_frame);
		if (!w->pkt)
			goto nomem;
	}
	if (c->ingress.mode == RDM_INGRESS_GEN || c->ingress.mode == RDM_INGRESS_PCAP) {
		if (c->ingress.mode == RDM_INGRESS_GEN) {
			struct rdm_gen_conf gc = {.flows = c->ingress.flows,
						  .packets = c->ingress.count,
						  .seed = c->ingress.seed};

			w->gen = rdm_gen_new(&gc);
			if (!w->gen) {
				snprintf(err, errlen,
					 "%s: ingress generator: %s (flows %u, count %" PRIu64 ")",
					 n->chain->file, strerror(errno), gc.flows, gc.packets);
				return -EINVAL;
			}
		} else {
			w->pin = rdm_pcap_open_in(c->ingress.file, err, (unsigned)errlen);
			if (!w->pin)
				return -EINVAL;
		}
		w->wait_until_ns =
		    rdm_now_ns() +
		    (uint64_t)(c->ingress.wait_ms ? c->ingress.wait_ms : 5000) * 1000000ull;
	}
	if (c->egress.enabled) {
		char path[4096];

		if (rdm_flowcount_init(&w->eflows, 1u << 20) < 0)
			goto nomem;
		rdm_hist_init(&w->e2e);
		for (int h = 0; h < RDM_MAX_HOPS - 1; h++)
			rdm_hist_init(&w->hops[h]);
		if (c->egress.pcap) {
			worker_path(path, sizeof(path), c->egress.pcap, n, idx);
			w->pout = rdm_pcap_open_out(path, RDM_PCAP_IP, err, (unsigned)errlen);
			if (!w->pout)
				return -EIO;
		}
		if (c->egress.frames) {
			worker_path(path, sizeof(path), c->egress.frames, n, idx);
			w->fout = rdm_pcap_open_out(path, RDM_PCAP_NSH, err, (unsigned)errlen);
			w->framebuf = malloc(n->copts.max_frame + HDR_SLOT);
			w->fout_ctx = rdm_ctx_tx_new(NULL);
			if (!w->fout || !w->framebuf || !w->fout_ctx)
				return -EIO;
		}
	}
	if (n->steer) {
		if (rdm_node__apply_steer(w, n->steer) < 0) {
			snprintf(err, errlen, "connecting to the next hops: %s", strerror(errno));
			return -EIO;
		}
	}
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
	return -ENOMEM;
}

/* Frees what rdm_node__worker_init set up, however far it got. */
void rdm_node__worker_fini(struct rdm_node *n, struct worker *w)
{
	if (!w->node)
		return;
	for (int r = 0; r < MAX_DOWNS; r++)
		if (w->downs[r].c)
			rdm_conn_close(w->downs[r].c);
	if (w->lst)
		rdm_listener_close(&rdm_tcp_ops, w->lst);
	if (w->lst_rdma)
		rdm_listener_close(&rdm_rdma_ops, w->lst_rdma);
	if (w->lst_shm)
		rdm_listener_close(&rdm_shm_ops, w->lst_shm);
	for (int s = 0; s < n->n_stages; s++)
		if (w->stage_rt[s])
			n->stage_ops[s]->deinit(w->stage_rt[s]);
	if (w->loop) {
		if (w->wake.fd > 0) {
			rdm_io_del(w->loop, &w->wake);
			close(w->wake.fd);
		}
		if (w->tun_fd >= 0)
			rdm_io_del(w->loop, &w->tun_io);
		rdm_loop_free(w->loop);
	}
	if (w->tun_fd >= 0)
		close(w->tun_fd);
	rdm_flowtab_free(w->flows);
	free(w->back);
	free(w->notice);
	free(w->upi);
	rdm_gen_free(w->gen);
	rdm_pcap_close_in(w->pin);
	rdm_pcap_close_out(w->pout);
	rdm_pcap_close_out(w->fout);
	rdm_flowcount_fini(&w->eflows);
	free(w->framebuf);
	free(w->pkt);
	free(w->fr);
	free(w->frp);
	free(w->verdict);
	free(w->hdr);
	free(w->tx);
	free(w->tx_part);
	for (int r = 0; r < MAX_DOWNS; r++) {
		rdm_ctx_tx_free(w->downs[r].ctx_tx);
		rdm_ctx_rx_free(w->downs[r].ctx_rx);
	}
	for (int u = 0; u < w->n_ups; u++) {
		rdm_ctx_tx_free(w->up_tx[u]);
		rdm_ctx_rx_free(w->up_rx[u]);
	}
	rdm_ctx_tx_free(w->fout_ctx);
	w->node = NULL;
}
