/* The node's counters summed over its workers, as "key value" lines for scripts and as
 * a one-line human summary. */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "lib/hist.h"
#include "node/node_int.h"

/* The name of drop reason r in reports (drop_NAME). */
static const char *drop_name(int r)
{
	static const char *const names[] = {
	    [DROP_TTL] = "ttl_expired",		  [DROP_NOT_IP] = "not_ip",
	    [DROP_PEER_DOWN] = "peer_down",	  [DROP_QUEUE_FULL] = "queue_full",
	    [DROP_OVERSIZE] = "oversize",	  [DROP_STAGE] = "stage_verdict",
	    [DROP_STAGE_ERROR] = "stage_error",	  [DROP_NO_PATH] = "no_return_path",
	    [DROP_NO_CLIENT] = "reply_no_client", [DROP_TUN] = "tun_full",
	    [DROP_WRONG_PATH] = "wrong_path",
	};

	if (r < RDM_FERR_COUNT)
		return rdm_frame_strerror(-(RDM_FERR_FIRST + r));
	return names[r];
}

/* Every worker's counters added up, for one report. */
struct totals {
	struct worker_stats st;
	struct rdm_conn_stats down, up;
	uint64_t flows;
	struct rdm_hist hops[RDM_MAX_HOPS - 1];
	struct rdm_hist all_hops; /* every hop of every frame, for a per-hop figure */
	struct rdm_hist e2e;
	int n_hops;
	uint64_t eg_first_ns, eg_last_ns;
};

/* Sums every worker's counters, connection counters and histograms into t. */
static void sum_totals(const struct rdm_node *n, struct totals *t)
{
	memset(t, 0, sizeof(*t));
	for (int h = 0; h < RDM_MAX_HOPS - 1; h++)
		rdm_hist_init(&t->hops[h]);
	rdm_hist_init(&t->e2e);
	rdm_hist_init(&t->all_hops);
	for (int i = 0; i < n->n_workers; i++) {
		const struct worker *w = &n->w[i];
		const uint64_t *src = (const uint64_t *)&w->st;
		uint64_t *dst = (uint64_t *)&t->st;

		for (size_t k = 0; k < sizeof(w->st) / sizeof(uint64_t); k++)
			dst[k] += src[k];
		t->st.ingress_reconnect_seq = w->st.ingress_reconnect_seq;
		t->st.ctx_tx.hdr_max = 0;
		for (int j = 0; j <= i; j++)
			if (n->w[j].st.ctx_tx.hdr_max > t->st.ctx_tx.hdr_max)
				t->st.ctx_tx.hdr_max = n->w[j].st.ctx_tx.hdr_max;
		if (atomic_load(&n->running)) {
			/* Live: the worker's copies from its last tick (at most 100 ms old). */
			rdm_node__stats_add(&t->down, &w->down_snap);
			rdm_node__stats_add(&t->up, &w->up_snap);
		} else {
			rdm_node__stats_add(&t->down, &w->down_closed);
			for (int r = 0; r < MAX_DOWNS; r++)
				if (w->downs[r].c)
					rdm_node__stats_add(&t->down, &w->downs[r].c->stats);
			rdm_node__stats_add(&t->up, &w->up_closed);
			for (int u = 0; u < w->n_ups; u++)
				rdm_node__stats_add(&t->up, &w->ups[u]->stats);
		}
		if (n->conf->egress.enabled) {
			t->flows += w->eflows.flows;
			if (w->eg_first_ns && (!t->eg_first_ns || w->eg_first_ns < t->eg_first_ns))
				t->eg_first_ns = w->eg_first_ns;
			if (w->eg_last_ns > t->eg_last_ns)
				t->eg_last_ns = w->eg_last_ns;
			for (int h = 0; h < RDM_MAX_HOPS - 1; h++) {
				rdm_hist_merge(&t->hops[h], &w->hops[h]);
				rdm_hist_merge(&t->all_hops, &w->hops[h]);
				if (w->hops[h].count && h + 1 > t->n_hops)
					t->n_hops = h + 1;
			}
			rdm_hist_merge(&t->e2e, &w->e2e);
		}
	}
}

/* A stage's counters summed over the workers, in the order it first emits them. */
#define MAX_STAGE_COUNTERS 256
struct stage_sum {
	int n;
	char name[MAX_STAGE_COUNTERS][64];
	uint64_t v[MAX_STAGE_COUNTERS];
};

/* A stage's report callback: adds counter name's value v to the sum in arg. */
static void stage_emit(void *arg, const char *name, uint64_t v)
{
	struct stage_sum *sum = arg;
	int i;

	for (i = 0; i < sum->n; i++)
		if (!strcmp(sum->name[i], name))
			break;
	if (i == sum->n) {
		if (sum->n == MAX_STAGE_COUNTERS)
			return;
		snprintf(sum->name[sum->n++], sizeof(sum->name[0]), "%s", name);
		sum->v[i] = 0;
	}
	sum->v[i] += v;
}

void rdm_node_report(const struct rdm_node *n, FILE *out)
{
	const struct rdm_conn *down0 = n->n_next ? n->w[0].downs[n->w[0].slot_of[0]].c : NULL;
	struct totals t;
	uint64_t lost = 0, reordered = 0, drops = 0;

	sum_totals(n, &t);
	{
		struct rusage ru;

		getrusage(RUSAGE_SELF, &ru);
		fprintf(out,
			"node %s\nnode_id %u\nworkers %d\nrun_ms %" PRIu64 "\ncpu_ms %" PRIu64
			"\ncpu_user_ms %" PRIu64 "\n",
			n->conf->name, n->conf->id, n->n_workers, n->run_ns / 1000000,
			(uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
			    (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000,
			(uint64_t)ru.ru_utime.tv_sec * 1000 + (uint64_t)ru.ru_utime.tv_usec / 1000);
	}
	fprintf(out, "rx_frames %" PRIu64 "\ntx_frames %" PRIu64 "\nstalls %" PRIu64 "\n",
		t.st.rx_frames, t.st.tx_frames, t.st.stalls);
	fprintf(out, "protect %s\nauth_refused %" PRIu64 "\n",
		n->chain->transport.protect == RDM_PROTECT_NONE	     ? "none"
		: n->chain->transport.protect == RDM_PROTECT_ENCRYPT ? "encrypt"
								     : "auth",
		t.st.auth_refused);
	fprintf(out,
		"back_rx_frames %" PRIu64 "\nback_tx_frames %" PRIu64 "\nreplies %" PRIu64
		"\ntun_rx %" PRIu64 "\ntun_tx %" PRIu64 "\nnotices %" PRIu64 "\n",
		t.st.back_rx_frames, t.st.back_tx_frames, t.st.replies, t.st.tun_rx, t.st.tun_tx,
		t.st.notices);
	for (int r = 0; r < DROP_COUNT; r++) {
		fprintf(out, "drop_%s %" PRIu64 "\n", drop_name(r), t.st.drops[r]);
		drops += t.st.drops[r];
	}
	fprintf(out, "drops %" PRIu64 "\n", drops);
	fprintf(out,
		"ctx_tx_uses %" PRIu64 "\nctx_tx_sets %" PRIu64 "\nctx_tx_parts %" PRIu64
		"\nctx_tx_whole %" PRIu64 "\nctx_tx_hdr_bytes %" PRIu64 "\nctx_tx_hdr_max %" PRIu64
		"\nctx_tx_hdr_over %" PRIu64 "\nctx_resets %" PRIu64 "\nctx_rx_uses %" PRIu64
		"\nctx_rx_sets %" PRIu64 "\nctx_rx_parts %" PRIu64 "\nctx_rx_parts_dropped %" PRIu64
		"\n",
		t.st.ctx_tx.uses, t.st.ctx_tx.sets, t.st.ctx_tx.parts, t.st.ctx_tx.whole,
		t.st.ctx_tx.hdr_bytes, t.st.ctx_tx.hdr_max, t.st.ctx_tx.hdr_over, t.st.ctx_resets,
		t.st.ctx_rx.uses, t.st.ctx_rx.sets, t.st.ctx_rx.parts, t.st.ctx_rx.parts_dropped);
	if (n->conf->ingress.mode != RDM_INGRESS_NONE)
		fprintf(out,
			"ingress_taken %" PRIu64 "\ningress_sent %" PRIu64
			"\ningress_reconnect_seq %" PRIu64 "\n",
			t.st.ingress_taken, t.st.ingress_sent, t.st.ingress_reconnect_seq);
	if (n->n_next) {
		uint64_t fb = 0;

		for (int i = 0; i < n->n_workers; i++)
			fb += n->w[i].auto_fallbacks;
		if (n->auto_no_rdma) /* no RDMA here at all: each next replica over TCP */
			fb += (uint64_t)n->steer->n;
		fprintf(out,
			"down_transport %s\ndown_replicas %d\ndown_auto_fallbacks %" PRIu64
			"\npins_moved %" PRIu64 "\ndrained_idle %" PRIu64
			"\ndrain_timeouts %" PRIu64 "\ndrained_unreachable %" PRIu64
			"\npins_detoured %" PRIu64 "\n",
			down0 ? down0->ops->name : "none", n->steer->n, fb, t.st.pins_moved,
			t.st.drained_idle, t.st.drain_timeouts, t.st.drained_unreachable,
			t.st.pins_detoured);
	}
	if (n->n_next)
		fprintf(out,
			"down_tx_frames %" PRIu64 "\ndown_tx_bytes %" PRIu64
			"\ndown_connects %" PRIu64 "\ndown_connect_fails %" PRIu64
			"\ndown_disconnects %" PRIu64 "\ndown_congested %" PRIu64
			"\ndown_lost_on_close %" PRIu64 "\ndown_queue_full %" PRIu64
			"\ndown_handshakes %" PRIu64 "\ndown_handshake_us %" PRIu64
			"\ndown_ktls_tx %" PRIu64 "\ndown_rx_lost_on_close %" PRIu64 "\n",
			t.down.tx_frames, t.down.tx_bytes, t.down.connects, t.down.connect_fails,
			t.down.disconnects, t.down.congested, t.down.lost_on_close,
			t.down.queue_full, t.down.handshakes, t.down.handshake_us, t.down.ktls_tx,
			t.down.rx_lost_on_close);
	if (n->n_next && down0 && down0->ops == &rdm_rdma_ops)
		fprintf(out,
			"down_inline_sends %" PRIu64 "\ndown_zero_copy %" PRIu64
			"\ndown_credit_stalls %" PRIu64 "\ndown_credit_msgs %" PRIu64
			"\ndown_keepalives %" PRIu64 "\ndown_rnr_errors %" PRIu64
			"\ndown_retry_errors %" PRIu64 "\ndown_wc_errors %" PRIu64
			"\ndown_tx_msgs %" PRIu64 "\ndown_tx_packed %" PRIu64 "\n",
			t.down.inline_sends, t.down.zero_copy, t.down.credit_stalls,
			t.down.credit_msgs, t.down.keepalives, t.down.rnr_errors,
			t.down.retry_errors, t.down.wc_errors, t.down.tx_msgs, t.down.tx_packed);
	if (n->conf->has_listen)
		fprintf(out,
			"up_rx_frames %" PRIu64 "\nup_rx_bytes %" PRIu64 "\nup_rx_bad_len %" PRIu64
			"\nup_disconnects %" PRIu64 "\nup_rx_tls_errors %" PRIu64
			"\nup_rx_lost_on_close %" PRIu64 "\n",
			t.up.rx_frames, t.up.rx_bytes, t.up.rx_bad_len, t.up.disconnects,
			t.up.rx_tls_errors, t.up.rx_lost_on_close);
	if (n->conf->egress.enabled) {
		for (int i = 0; i < n->n_origins; i++) {
			lost += n->origins[i].lost;
			reordered += n->origins[i].reordered;
		}
		fprintf(out,
			"egress_packets %" PRIu64 "\negress_bytes %" PRIu64
			"\negress_flows %" PRIu64 "\negress_lost %" PRIu64
			"\negress_reordered %" PRIu64 "\negress_unsequenced %" PRIu64
			"\negress_origins %d\n",
			t.st.egress_packets, t.st.egress_bytes, t.flows, lost, reordered,
			n->eg_unsequenced, n->n_origins);
		for (int h = 0; h < t.n_hops; h++)
			fprintf(out,
				"hop%d_count %" PRIu64 "\nhop%d_p50_ns %" PRIu64
				"\nhop%d_p99_ns %" PRIu64 "\nhop%d_p999_ns %" PRIu64
				"\nhop%d_max_ns %" PRIu64 "\n",
				h + 1, t.hops[h].count, h + 1, rdm_hist_pct(&t.hops[h], 50), h + 1,
				rdm_hist_pct(&t.hops[h], 99), h + 1, rdm_hist_pct(&t.hops[h], 99.9),
				h + 1, t.hops[h].max);
		fprintf(out,
			"hops_count %" PRIu64 "\nhops_p50_ns %" PRIu64 "\nhops_p99_ns %" PRIu64
			"\nhops_p999_ns %" PRIu64 "\nhops_max_ns %" PRIu64
			"\negress_span_us %" PRIu64 "\n",
			t.all_hops.count, rdm_hist_pct(&t.all_hops, 50),
			rdm_hist_pct(&t.all_hops, 99), rdm_hist_pct(&t.all_hops, 99.9),
			t.all_hops.max,
			t.eg_last_ns > t.eg_first_ns ? (t.eg_last_ns - t.eg_first_ns) / 1000 : 0);
		fprintf(out, "e2e_p50_ns %" PRIu64 "\ne2e_p99_ns %" PRIu64 "\n",
			rdm_hist_pct(&t.e2e, 50), rdm_hist_pct(&t.e2e, 99));
	}
	for (int s = 0; s < n->n_stages; s++) {
		uint64_t fail = 0, drop = 0;

		struct stage_sum *sum = calloc(1, sizeof(*sum)); /* 18 KiB: not on the stack */

		if (!sum)
			break;
		pthread_rwlock_rdlock(&((struct rdm_node *)n)->report_mu);
		for (int i = 0; i < n->n_workers; i++) {
			n->stage_ops[s]->report(n->w[i].stage_rt[s], stage_emit, sum);
			fail += n->w[i].st.stage_error[s];
			drop += n->w[i].st.stage_drop[s];
		}
		pthread_rwlock_unlock(&((struct rdm_node *)n)->report_mu);
		for (int k = 0; k < sum->n; k++)
			fprintf(out, "stage_%s_%s %" PRIu64 "\n", n->stage_ops[s]->name,
				sum->name[k], sum->v[k]);
		free(sum);
		fprintf(out, "stage_%s_errors %" PRIu64 "\nstage_%s_dropped %" PRIu64 "\n",
			n->stage_ops[s]->name, fail, n->stage_ops[s]->name, drop);
	}
}

void rdm_node_summary(const struct rdm_node *n, FILE *out)
{
	struct totals t;
	uint64_t drops = 0, lost = 0;

	sum_totals(n, &t);
	for (int r = 0; r < DROP_COUNT; r++)
		drops += t.st.drops[r];
	fprintf(out, "%s: rx %" PRIu64 " tx %" PRIu64 " drops %" PRIu64, n->conf->name,
		t.st.rx_frames, t.st.tx_frames, drops);
	for (int r = 0; r < DROP_COUNT; r++)
		if (t.st.drops[r])
			fprintf(out, " %s=%" PRIu64, drop_name(r), t.st.drops[r]);
	if (n->conf->ingress.mode != RDM_INGRESS_NONE)
		fprintf(out, " | ingress taken %" PRIu64 " sent %" PRIu64, t.st.ingress_taken,
			t.st.ingress_sent);
	if (n->conf->egress.enabled) {
		for (int i = 0; i < n->n_origins; i++)
			lost += n->origins[i].lost;
		fprintf(out, " | egress packets %" PRIu64 " flows %" PRIu64 " lost %" PRIu64,
			t.st.egress_packets, t.flows, lost);
	}
	fputc('\n', out);
}
