#include "orchestrator/orch.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/msg.h"
#include "orchestrator/plan.h"
#include "orchestrator/rack.h"
#include "orchestrator/state.h"
#include "lib/tls.h"
#include "lib/clock.h"

#define LOG_RING      1000 /* lines `ctl logs` can show */
#define TICK_MS	      100
#define FIRST_SEEN_MS 5000 /* a node never seen since we started gets at least this */
#define PPS_WINDOW_NS 1000000000ull
#define MAX_HOPS      16

/* One control connection: a node's (node >= 0) or the operator's. */
struct conn {
	struct rdm_tls_conn *c;
	int node; /* index in the rack, or -1 for ctl */
	int hello;
	struct conn *next;
};

/* What the orchestrator knows of a rack node. */
struct nstate {
	struct conn *conn;     /* the live channel, or NULL */
	uint64_t last_seen_ns; /* last message from it (or our start) */
	int ever_seen;	       /* since this orchestrator started */
	int dead, drained;     /* marked down in the plan: by health, by the operator */
	uint64_t epoch;	       /* the epoch it applied */
	char running[1024];    /* replica ids it runs, as it last said */
	char refused[256];     /* why it refused our last assign, or "" */
};

/* The latest counters of a replica, from its node's heartbeats. */
struct rstat {
	char id[RDM_RACK_NAME_MAX + 1];
	char state[16];
	char via[8]; /* how it reaches the next stage: tcp, rdma ("" at the chain's end) */
	int node;
	uint64_t frames, drops, lost, egress_packets;
	uint64_t t_ns, base_frames, base_ns; /* base: a sample >= PPS_WINDOW_NS older */
	double pps;
	int n_hops;
	uint64_t hop_count[MAX_HOPS], hop_p50[MAX_HOPS], hop_p99[MAX_HOPS];
};

struct orch {
	struct rdm_rack rack;
	struct rdm_chain_spec spec;
	struct rdm_plan *plan;
	struct rdm_orch_state st; /* what is persisted */
	char *state_path;
	char *rendered; /* the plan as a chain config, for assigns */
	int dead_ms, heartbeat_ms;
	char listen[64];
	struct nstate *nodes;
	struct conn *conns;
	struct rstat *rs;
	int n_rs;
	struct rdm_tls_ctx *tls;
	int lfd;
	uint64_t start_ns;

	/* accept thread -> main loop */
	pthread_t acc;
	pthread_mutex_t mu;
	struct conn *accepted;
	int wake[2];
	atomic_int stop;

	/* the log ring (any thread) */
	pthread_mutex_t log_mu;
	char *log[LOG_RING];
	int log_next, log_n;
};

static void olog(struct orch *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void olog(struct orch *o, const char *fmt, ...)
{
	char msg[1024], line[1100], ts[32];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	rdm_log_clock(ts, sizeof(ts));
	snprintf(line, sizeof(line), "%s %s", ts, msg);
	pthread_mutex_lock(&o->log_mu);
	fprintf(stderr, "rdmesh orch: %s\n", line);
	free(o->log[o->log_next]);
	o->log[o->log_next] = strdup(line);
	o->log_next = (o->log_next + 1) % LOG_RING;
	if (o->log_n < LOG_RING)
		o->log_n++;
	pthread_mutex_unlock(&o->log_mu);
}

/* ---- the plan ----------------------------------------------------------------------- */

/* Space-separated ids of the replicas the plan gives rack node k ("" when none). */
static void assigned(const struct rdm_plan *p, int k, char *out, size_t len)
{
	const struct rdm_replica *r[RDM_PLAN_MAX_STAGES];
	int n = rdm_plan_node_replicas(p, p->rack->nodes[k].name, r, RDM_PLAN_MAX_STAGES);
	size_t used = 0;

	out[0] = 0;
	for (int i = 0; i < n && i < RDM_PLAN_MAX_STAGES; i++)
		used += (size_t)snprintf(out + used, used < len ? len - used : 0, "%s%s",
					 i ? " " : "", r[i]->id);
}

/* 1 when the space-separated sets a and b hold the same words. */
static int same_set(const char *a, const char *b)
{
	char wa[1024], wb[1030];

	for (int pass = 0; pass < 2; pass++) {
		snprintf(wa, sizeof(wa), "%s", pass ? b : a);
		snprintf(wb, sizeof(wb), " %s ", pass ? a : b);
		for (char *s = strtok(wa, " "); s; s = strtok(NULL, " ")) {
			char key[RDM_RACK_NAME_MAX + 3];

			snprintf(key, sizeof(key), " %s ", s);
			if (!strstr(wb, key))
				return 0;
		}
	}
	return 1;
}

/* Writes what changes from plan a to plan b, one line per replica ("+ dpi-2 on host4
 * (10.77.0.4:7100)", "- dpi-3 from host1", "~ dpi-2: host4 -> host3 (...)"). Returns
 * how many lines. */
static int plan_diff(FILE *f, const struct rdm_plan *a, const struct rdm_plan *b)
{
	int k = 0;

	for (int i = 0; i < b->n_replicas; i++) {
		const struct rdm_replica *nr = &b->replicas[i];
		const struct rdm_replica * or = a ? rdm_plan_replica(a, nr->id) : NULL;

		if (! or) {
			fprintf(f, "  + %s on %s (%s)\n", nr->id, b->rack->nodes[nr->node].name,
				nr->listen);
			k++;
		} else if (or->node != nr->node || strcmp(or->listen, nr->listen)) {
			fprintf(f, "  ~ %s: %s -> %s (%s)\n", nr->id, a->rack->nodes[or->node].name,
				b->rack->nodes[nr->node].name, nr->listen);
			k++;
		}
	}
	for (int i = 0; a && i < a->n_replicas; i++)
		if (!rdm_plan_replica(b, a->replicas[i].id)) {
			fprintf(f, "  - %s from %s\n", a->replicas[i].id,
				a->rack->nodes[a->replicas[i].node].name);
			k++;
		}
	return k;
}

/* Saves the state for plan np at epoch+1 (chain: the chain file in force from now on,
 * NULL: the same), then makes np current and pushes it. On a failure nothing changes:
 * np is freed and -errno returned with err set. */
static void push_all(struct orch *o);
static int commit(struct orch *o, struct rdm_plan *np, const char *chain, char *err, size_t errlen)
{
	struct rdm_orch_state ns = {.epoch = o->st.epoch + 1,
				    .chain = (char *)(chain ? chain : o->st.chain)};
	enum rdm_down_why *why = calloc((size_t)o->rack.n_nodes + 1, sizeof(*why));
	char *text = rdm_plan_render(np, err, errlen), *dup = chain ? strdup(chain) : NULL;
	int rc = -ENOMEM;

	if (!text) {
		rc = -EINVAL;
		goto fail;
	}
	if (!why || (chain && !dup))
		goto fail;
	for (int k = 0; k < o->rack.n_nodes; k++)
		why[k] = o->nodes[k].drained ? RDM_DOWN_DRAINED : RDM_DOWN_DEAD;
	rc = rdm_state_set_plan(&ns, np, why);
	if (rc < 0)
		goto fail;
	rc = rdm_state_save(o->state_path, &ns, err, errlen);
	if (rc < 0)
		goto fail;
	free(o->st.replicas);
	free(o->st.down);
	o->st.replicas = ns.replicas;
	o->st.n_replicas = ns.n_replicas;
	o->st.down = ns.down;
	o->st.n_down = ns.n_down;
	o->st.epoch = ns.epoch;
	if (dup) {
		free(o->st.chain);
		o->st.chain = dup;
	}
	free(why);
	rdm_plan_free(o->plan);
	o->plan = np;
	free(o->rendered);
	o->rendered = text;
	push_all(o);
	return 0;
fail:
	if (rc == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	free(ns.replicas);
	free(ns.down);
	free(why);
	free(dup);
	free(text);
	rdm_plan_free(np);
	return rc;
}

/* ---- talking to nodes ------------------------------------------------------------- */

static void drop_conn(struct orch *o, struct conn *c, const char *why)
{
	struct conn **pp = &o->conns;

	while (*pp && *pp != c)
		pp = &(*pp)->next;
	if (*pp)
		*pp = c->next;
	if (c->node >= 0) {
		if (o->nodes[c->node].conn == c)
			o->nodes[c->node].conn = NULL;
		olog(o, "%s: control channel closed: %s", o->rack.nodes[c->node].name, why);
	}
	rdm_tls_close(c->c);
	free(c);
}

static int send_assign(struct orch *o, int k)
{
	struct nstate *ns = &o->nodes[k];
	char reps[1024], hb[16], dead[16];
	const char *kv[] = {
	    "node", o->rack.nodes[k].name, "replicas", reps, "heartbeat_ms", hb, "dead_ms", dead,
	    NULL};
	int rc;

	assigned(o->plan, k, reps, sizeof(reps));
	snprintf(hb, sizeof(hb), "%d", o->heartbeat_ms);
	snprintf(dead, sizeof(dead), "%d", o->dead_ms);
	rc = rdm_msg_send(ns->conn->c, "assign", o->st.epoch, kv, o->rendered, strlen(o->rendered),
			  RDM_ORCH_SEND_MS);
	if (rc < 0) {
		olog(o, "%s: sending epoch %" PRIu64 ": %s", o->rack.nodes[k].name, o->st.epoch,
		     strerror(-rc));
		drop_conn(o, ns->conn, "send failed");
		return rc;
	}
	olog(o, "%s: assigned epoch %" PRIu64 ": replicas [%s]", o->rack.nodes[k].name, o->st.epoch,
	     reps);
	return 0;
}

static void push_all(struct orch *o)
{
	for (int k = 0; k < o->rack.n_nodes; k++)
		if (o->nodes[k].conn && o->nodes[k].conn->hello)
			send_assign(o, k);
}

static struct rstat *rstat_get(struct orch *o, const char *id)
{
	struct rstat *r;

	for (int i = 0; i < o->n_rs; i++)
		if (!strcmp(o->rs[i].id, id))
			return &o->rs[i];
	r = realloc(o->rs, sizeof(*r) * (size_t)(o->n_rs + 1));
	if (!r)
		return NULL;
	o->rs = r;
	r = &o->rs[o->n_rs++];
	memset(r, 0, sizeof(*r));
	snprintf(r->id, sizeof(r->id), "%s", id);
	return r;
}

/* A heartbeat's body: "replica ID STATE" opens each replica's section, then its report
 * lines ("key value"). */
static void take_heartbeat(struct orch *o, int k, const char *body)
{
	uint64_t now = rdm_now_ns();
	struct rstat *r = NULL;
	char *copy = strdup(body), *save = NULL;
	uint64_t rx = 0, tx = 0, denied = 0;

	if (!copy)
		return;
	for (char *line = strtok_r(copy, "\n", &save);; line = strtok_r(NULL, "\n", &save)) {
		char key[64], val[64];
		int h;

		if (!line || !strncmp(line, "replica ", 8)) {
			if (r) { /* close the previous section */
				r->frames = rx > tx ? rx : tx;
				if (!r->base_ns || r->frames < r->base_frames) {
					r->base_ns = now;
					r->base_frames = r->frames;
				} else if (now - r->base_ns >= PPS_WINDOW_NS) {
					r->pps = (double)(r->frames - r->base_frames) * 1e9 /
						 (double)(now - r->base_ns);
					r->base_ns = now;
					r->base_frames = r->frames;
				}
				r->t_ns = now;
			}
			if (!line)
				break;
			if (sscanf(line + 8, "%63s %15s", key, val) != 2)
				continue;
			r = rstat_get(o, key);
			if (!r)
				break;
			snprintf(r->state, sizeof(r->state), "%.15s", val);
			r->node = k;
			r->via[0] = 0;
			rx = tx = denied = 0;
			continue;
		}
		if (!r || sscanf(line, "%63s %63s", key, val) != 2)
			continue;
		if (!strcmp(key, "rx_frames"))
			rx = strtoull(val, NULL, 10);
		else if (!strcmp(key, "tx_frames"))
			tx = strtoull(val, NULL, 10);
		else if (!strcmp(key, "drops"))
			r->drops = strtoull(val, NULL, 10) - denied;
		else if (!strcmp(key, "drop_stage_verdict") || !strcmp(key, "drop_reply_no_client"))
			denied += strtoull(val, NULL, 10); /* policy's work, not a fault */
		else if (!strcmp(key, "down_transport"))
			snprintf(r->via, sizeof(r->via), "%.7s", val);
		else if (!strcmp(key, "egress_lost"))
			r->lost = strtoull(val, NULL, 10);
		else if (!strcmp(key, "egress_packets"))
			r->egress_packets = strtoull(val, NULL, 10);
		else if (sscanf(key, "hop%d_", &h) == 1 && h >= 1 && h <= MAX_HOPS) {
			if (h > r->n_hops)
				r->n_hops = h;
			if (strstr(key, "_count"))
				r->hop_count[h - 1] = strtoull(val, NULL, 10);
			else if (strstr(key, "_p50_ns"))
				r->hop_p50[h - 1] = strtoull(val, NULL, 10);
			else if (strstr(key, "_p99_ns"))
				r->hop_p99[h - 1] = strtoull(val, NULL, 10);
		}
	}
	free(copy);
}

/* A node said hello: bring it in step with the plan, sending nothing when it is. */
static void take_hello(struct orch *o, int k, const struct rdm_msg *m)
{
	struct nstate *ns = &o->nodes[k];
	const char *run = rdm_msg_get(m, "running");
	const char *name = o->rack.nodes[k].name;
	char want[1024], err[512];

	snprintf(ns->running, sizeof(ns->running), "%s", run ? run : "");
	ns->epoch = m->epoch;
	olog(o, "%s: hello from %s: epoch %" PRIu64 ", running [%s]", name,
	     rdm_tls_peer_addr(ns->conn->c), m->epoch, ns->running);
	if (ns->dead) {
		struct rdm_plan *np = rdm_plan_node_up(o->plan, name, err, sizeof(err));

		ns->dead = 0;
		if (!np || commit(o, np, NULL, err, sizeof(err)) < 0)
			olog(o, "%s: back, but the plan did not change: %s", name, err);
		else
			olog(o,
			     "%s: back after being declared dead: eligible for new replicas "
			     "(epoch %" PRIu64 ")",
			     name, o->st.epoch);
		/* commit pushed the plan to everyone that said hello: not yet to this node */
	}
	ns->conn->hello = 1;
	if (m->epoch > o->st.epoch) {
		/* The node applied an epoch we never made: our state is older than the rack's
		 * (restored from a backup, or lost). Move past it, or the nodes would refuse
		 * every assignment from now on. */
		struct rdm_plan *np = rdm_plan_copy(o->plan);

		olog(o,
		     "%s: applied epoch %" PRIu64 ", newer than ours (%" PRIu64 "): moving past it",
		     name, m->epoch, o->st.epoch);
		o->st.epoch = m->epoch;
		if (!np)
			snprintf(err, sizeof(err), "out of memory");
		if (!np || commit(o, np, NULL, err, sizeof(err)) < 0)
			olog(o, "cannot move past epoch %" PRIu64 ": %s", m->epoch, err);
		return;
	}
	assigned(o->plan, k, want, sizeof(want));
	if (m->epoch == o->st.epoch && same_set(want, ns->running)) {
		olog(o, "%s: in step at epoch %" PRIu64 ": nothing to redeploy", name, o->st.epoch);
		return;
	}
	send_assign(o, k);
}

static void take_node_msg(struct orch *o, struct conn *c, const struct rdm_msg *m)
{
	struct nstate *ns = &o->nodes[c->node];
	const char *name = o->rack.nodes[c->node].name;

	ns->last_seen_ns = rdm_now_ns();
	ns->ever_seen = 1;
	if (!strcmp(m->type, "hello")) {
		take_hello(o, c->node, m);
	} else if (!c->hello) {
		olog(o, "%s: '%s' before hello: ignored", name, m->type);
	} else if (!strcmp(m->type, "heartbeat")) {
		const char *run = rdm_msg_get(m, "running");

		snprintf(ns->running, sizeof(ns->running), "%s", run ? run : "");
		ns->epoch = m->epoch;
		take_heartbeat(o, c->node, m->body);
		if (rdm_msg_send(c->c, "ack", o->st.epoch, NULL, NULL, 0, RDM_ORCH_SEND_MS) < 0)
			drop_conn(o, c, "ack failed");
	} else if (!strcmp(m->type, "applied")) {
		const char *res = rdm_msg_get(m, "result");

		if (res && !strcmp(res, "ok")) {
			ns->epoch = m->epoch;
			ns->refused[0] = 0;
			olog(o, "%s: applied epoch %" PRIu64, name, m->epoch);
		} else {
			snprintf(ns->refused, sizeof(ns->refused), "%s", res ? res : "(no reason)");
			olog(o, "%s: did not apply epoch %" PRIu64 ": %s", name, m->epoch,
			     ns->refused);
		}
	} else {
		olog(o, "%s: unexpected message '%s': ignored", name, m->type);
	}
}

/* ---- health ----------------------------------------------------------------------- */

static void check_health(struct orch *o)
{
	uint64_t now = rdm_now_ns();

	for (int k = 0; k < o->rack.n_nodes; k++) {
		struct nstate *ns = &o->nodes[k];
		const char *name = o->rack.nodes[k].name;
		uint64_t limit = (uint64_t)o->dead_ms * 1000000ull, silent;
		char err[512], *diff = NULL;
		size_t dlen = 0;
		struct rdm_plan *np;
		FILE *f;

		if (ns->dead || ns->drained || !rdm_plan_node_replicas(o->plan, name, NULL, 0))
			continue;
		if (!ns->ever_seen && limit < FIRST_SEEN_MS * 1000000ull)
			limit = FIRST_SEEN_MS * 1000000ull;
		silent = now - ns->last_seen_ns;
		if (silent <= limit)
			continue;
		ns->dead = 1;
		np = rdm_plan_node_down(o->plan, name, err, sizeof(err));
		if (!np) {
			olog(o,
			     "%s: silent for %" PRIu64
			     " ms: dead, but its replicas cannot move: %s",
			     name, silent / 1000000, err);
			continue;
		}
		f = open_memstream(&diff, &dlen);
		if (f) {
			plan_diff(f, o->plan, np);
			fclose(f);
		}
		if (commit(o, np, NULL, err, sizeof(err)) < 0) {
			/* Nothing changed: try again after another dead time. */
			olog(o,
			     "%s: silent for %" PRIu64 " ms: dead, but the new plan was not saved: "
			     "%s",
			     name, silent / 1000000, err);
			ns->dead = 0;
			ns->last_seen_ns = now;
		} else
			olog(o,
			     "%s: silent for %" PRIu64 " ms (limit %" PRIu64
			     "): dead; epoch %" PRIu64 " moves its replicas:\n%s",
			     name, silent / 1000000, limit / 1000000, o->st.epoch,
			     diff ? diff : "");
		free(diff);
		if (ns->conn)
			drop_conn(o, ns->conn, "declared dead");
	}
}

/* ---- ctl requests ----------------------------------------------------------------- */

static void fmt_us(char *out, size_t len, uint64_t ns)
{
	if (!ns)
		snprintf(out, len, "-");
	else
		snprintf(out, len, "%.1f us", (double)ns / 1000.0);
}

static const char *node_state(const struct orch *o, int k)
{
	const struct nstate *ns = &o->nodes[k];

	if (ns->drained)
		return "drained";
	if (ns->dead)
		return "dead";
	if (!ns->conn)
		return ns->ever_seen ? "gone" : "absent";
	if (rdm_now_ns() - ns->last_seen_ns > (uint64_t)o->heartbeat_ms * 3000000ull)
		return "silent";
	return ns->epoch == o->st.epoch ? "up" : "behind";
}

/* The state of a replica as its node last said, or why there is none. */
static const char *replica_state(const struct orch *o, const struct rdm_replica *r,
				 const struct rstat **rsp)
{
	const struct nstate *ns = &o->nodes[r->node];
	char key[RDM_RACK_NAME_MAX + 3], set[1030];

	*rsp = NULL;
	for (int i = 0; i < o->n_rs; i++)
		if (!strcmp(o->rs[i].id, r->id) && o->rs[i].node == r->node)
			*rsp = &o->rs[i];
	if (!ns->conn)
		return "no node";
	snprintf(key, sizeof(key), " %s ", r->id);
	snprintf(set, sizeof(set), " %s ", ns->running);
	if (!strstr(set, key))
		return ns->epoch < o->st.epoch ? "pending" : "missing";
	return *rsp ? (*rsp)->state : "starting";
}

static void status(struct orch *o, FILE *f)
{
	const struct rstat *eg = NULL;
	int up = 0;

	for (int k = 0; k < o->rack.n_nodes; k++)
		up += o->nodes[k].conn != NULL;
	fprintf(f, "orchestrator %s  chain '%s' (%s)  epoch %" PRIu64 "  nodes %d/%d connected\n\n",
		o->listen, o->spec.name, o->st.chain, o->st.epoch, up, o->rack.n_nodes);
	fprintf(f, "%-12s %-8s %-6s %-10s %s\n", "NODE", "STATE", "EPOCH", "HEARTBEAT", "REPLICAS");
	for (int k = 0; k < o->rack.n_nodes; k++) {
		const struct nstate *ns = &o->nodes[k];
		char reps[1024], ago[32], ep[24];

		assigned(o->plan, k, reps, sizeof(reps));
		if (ns->ever_seen)
			snprintf(ago, sizeof(ago), "%.1f s ago",
				 (double)(rdm_now_ns() - ns->last_seen_ns) / 1e9);
		else
			snprintf(ago, sizeof(ago), "never");
		snprintf(ep, sizeof(ep), "%" PRIu64, ns->epoch);
		fprintf(f, "%-12s %-8s %-6s %-10s %s%s%s\n", o->rack.nodes[k].name,
			node_state(o, k), ns->ever_seen ? ep : "-", ago, reps[0] ? reps : "-",
			ns->refused[0] ? "  refused: " : "", ns->refused);
	}
	/* Hop latency comes from the chain's exit: the egress replica that saw most. */
	for (int i = 0; i < o->n_rs; i++)
		if (o->rs[i].n_hops && (!eg || o->rs[i].hop_count[0] > eg->hop_count[0]))
			eg = &o->rs[i];
	fprintf(f, "\n%-12s %-8s %-12s %-22s %-8s %9s %11s %8s %10s %10s  %s\n", "REPLICA", "STAGE",
		"NODE", "ADDRESS", "STATE", "PPS", "FRAMES", "DROPS", "HOP p50", "HOP p99", "NEXT");
	for (int i = 0; i < o->plan->n_replicas; i++) {
		const struct rdm_replica *r = &o->plan->replicas[i];
		const struct rstat *rs;
		const char *st = replica_state(o, r, &rs);
		char p50[24] = "-", p99[24] = "-", pps[24] = "-", frames[24] = "-", drops[24] = "-";
		const char *via = "-";

		if (rs && !strcmp(st, rs->state)) {
			if (rs->via[0] && strcmp(rs->via, "none"))
				via = rs->via;
			snprintf(pps, sizeof(pps), "%.0f", rs->pps);
			snprintf(frames, sizeof(frames), "%" PRIu64, rs->frames);
			snprintf(drops, sizeof(drops), "%" PRIu64, rs->drops);
		}
		/* hop N ends at stage N (hop 1: the first stage to the second) */
		if (eg && r->stage >= 1 && r->stage <= eg->n_hops) {
			fmt_us(p50, sizeof(p50), eg->hop_p50[r->stage - 1]);
			fmt_us(p99, sizeof(p99), eg->hop_p99[r->stage - 1]);
		}
		fprintf(f, "%-12s %-8s %-12s %-22s %-8s %9s %11s %8s %10s %10s  %s\n", r->id,
			o->spec.stages[r->stage].name, o->rack.nodes[r->node].name, r->listen, st,
			pps, frames, drops, p50, p99, via);
	}
	if (eg)
		fprintf(f,
			"\negress (%s): %" PRIu64 " packets, %" PRIu64
			" lost\nDROPS: for any reason but policy (a verdict, or a reply with no "
			"client to go "
			"to); HOP: the hop\ninto each stage, as the egress measures it; NEXT: the "
			"transport "
			"to the next stage\n",
			eg->id, eg->egress_packets, eg->lost);
}

/* ctl apply: the new chain file's plan against the running one, then (unless a dry run)
 * the switch to it. */
static int req_apply(struct orch *o, const char *path, int dry, FILE *f)
{
	struct rdm_chain_spec ns;
	struct rdm_plan *np;
	char err[1024], real[PATH_MAX], *text, *cur;
	int changes;

	if (!path || !realpath(path, real)) {
		fprintf(f, "%s: %s\n", path ? path : "(no file)", strerror(path ? errno : EINVAL));
		return -1;
	}
	if (rdm_chain_spec_load(real, &ns, err, sizeof(err)) < 0) {
		fprintf(f, "%s\nnothing changed\n", err);
		return -1;
	}
	/* Replicas the new file still has stay where they run. */
	np = rdm_plan_rebase(&o->rack, &ns, NULL, o->plan->down, o->plan->replicas,
			     o->plan->n_replicas, err, sizeof(err));
	if (!np) {
		fprintf(f, "%s\nnothing changed\n", err);
		rdm_chain_spec_free(&ns);
		return -1;
	}
	text = rdm_plan_render(np, err, sizeof(err));
	cur = o->rendered;
	fprintf(f, "%s: chain '%s', %d replicas (running: '%s', %d replicas)\n", real, ns.name,
		np->n_replicas, o->spec.name, o->plan->n_replicas);
	changes = plan_diff(f, o->plan, np);
	if (text && strcmp(text, cur)) {
		/* The settings part: which lines of the rendered chain differ. */
		char *a = strdup(cur), *b = strdup(text), *sa = NULL, *sb = NULL;
		int shown = 0, differ = 0;

		for (char *la = a ? strtok_r(a, "\n", &sa) : NULL,
			  *lb = b ? strtok_r(b, "\n", &sb) : NULL;
		     (la || lb) && shown < 40; la = la ? strtok_r(NULL, "\n", &sa) : NULL,
			  lb = lb ? strtok_r(NULL, "\n", &sb) : NULL) {
			if ((la && lb && !strcmp(la, lb)) ||
			    (la && lb && la[0] == '#' && lb[0] == '#'))
				continue;
			if (!differ++)
				fprintf(f, "  rendered chain config differs:\n");
			if (la)
				fprintf(f, "    - %s\n", la);
			if (lb)
				fprintf(f, "    + %s\n", lb);
			shown++;
		}
		free(a);
		free(b);
		changes += differ > 0;
	}
	free(text);
	if (!changes || dry) {
		fprintf(f, "%s\n", changes ? "dry run: nothing applied" : "no change");
		rdm_plan_free(np);
		rdm_chain_spec_free(&ns);
		return 0;
	}
	{
		/* The plan points at the spec: move the new spec into place, keeping the old
		 * one until the switch is committed. */
		struct rdm_chain_spec old_spec = o->spec;

		o->spec = ns;
		np->spec = &o->spec;
		o->plan->spec = &old_spec;
		if (commit(o, np, real, err, sizeof(err)) < 0) {
			fprintf(f, "%s\nnothing changed\n", err);
			rdm_chain_spec_free(&o->spec);
			o->spec = old_spec;
			o->plan->spec = &o->spec;
			return -1;
		}
		rdm_chain_spec_free(&old_spec);
	}
	fprintf(f, "applied: epoch %" PRIu64 "\n", o->st.epoch);
	olog(o, "ctl apply %s: epoch %" PRIu64, real, o->st.epoch);
	return 0;
}

static int req_scale(struct orch *o, const char *stage, const char *count, FILE *f)
{
	char err[512], *end = NULL;
	long n = count ? strtol(count, &end, 10) : -1;
	int s = stage ? rdm_chain_spec_find(&o->spec, stage) : -1;
	struct rdm_plan *np;
	int was;

	if (s < 0) {
		fprintf(f, "no stage '%s' in chain '%s'\n", stage ? stage : "", o->spec.name);
		return -1;
	}
	if (!count || !*count || *end || n < 1 || n > RDM_PLAN_MAX_REPLICAS) {
		fprintf(f, "scale %s: replicas must be 1..%d\n", stage, RDM_PLAN_MAX_REPLICAS);
		return -1;
	}
	was = o->plan->stage_replicas[s];
	if (was == n) {
		fprintf(f, "%s: already %d replicas\n", stage, was);
		return 0;
	}
	np = rdm_plan_scale(o->plan, stage, (int)n, err, sizeof(err));
	if (!np) {
		fprintf(f, "%s\nnothing changed\n", err);
		return -1;
	}
	fprintf(f, "%s: %d -> %ld replicas\n", stage, was, n);
	plan_diff(f, o->plan, np);
	if (commit(o, np, NULL, err, sizeof(err)) < 0) {
		fprintf(f, "%s\nnothing changed\n", err);
		return -1;
	}
	fprintf(f, "epoch %" PRIu64 "\n", o->st.epoch);
	olog(o, "ctl scale %s %ld: epoch %" PRIu64, stage, n, o->st.epoch);
	return 0;
}

static int req_drain(struct orch *o, const char *node, FILE *f)
{
	int k = node ? rdm_rack_find(&o->rack, node) : -1;
	char err[512];
	struct rdm_plan *np;

	if (k < 0) {
		fprintf(f, "no node '%s' in %s\n", node ? node : "", o->rack.file);
		return -1;
	}
	if (o->nodes[k].drained) {
		fprintf(f, "%s: already drained\n", node);
		return 0;
	}
	np = rdm_plan_node_down(o->plan, node, err, sizeof(err));
	if (!np) {
		fprintf(f, "%s\nnothing changed\n", err);
		return -1;
	}
	fprintf(f, "%s: draining; its replicas move (flows already on them finish there):\n", node);
	if (!plan_diff(f, o->plan, np))
		fprintf(f, "  (it runs none)\n");
	o->nodes[k].drained = 1; /* saved with the plan */
	if (commit(o, np, NULL, err, sizeof(err)) < 0) {
		o->nodes[k].drained = 0;
		fprintf(f, "%s\nnothing changed\n", err);
		return -1;
	}
	fprintf(f, "epoch %" PRIu64 "\n", o->st.epoch);
	olog(o, "ctl drain %s: epoch %" PRIu64, node, o->st.epoch);
	return 0;
}

static void req_logs(struct orch *o, const char *lines, FILE *f)
{
	int want = lines ? atoi(lines) : 50;

	pthread_mutex_lock(&o->log_mu);
	if (want <= 0 || want > o->log_n)
		want = o->log_n;
	for (int i = 0; i < want; i++) {
		int at = (o->log_next - want + i + LOG_RING) % LOG_RING;

		fprintf(f, "%s\n", o->log[at]);
	}
	pthread_mutex_unlock(&o->log_mu);
}

static void take_request(struct orch *o, struct conn *c, const struct rdm_msg *m)
{
	const char *cmd = rdm_msg_get(m, "cmd");
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	int rc = 0;

	if (!f)
		return;
	if (strcmp(m->type, "request") || !cmd)
		fprintf(f, "not a request\n"), rc = -1;
	else if (!strcmp(cmd, "status"))
		status(o, f);
	else if (!strcmp(cmd, "scale"))
		rc = req_scale(o, rdm_msg_get(m, "stage"), rdm_msg_get(m, "replicas"), f);
	else if (!strcmp(cmd, "drain"))
		rc = req_drain(o, rdm_msg_get(m, "node"), f);
	else if (!strcmp(cmd, "apply"))
		rc = req_apply(o, rdm_msg_get(m, "file"), !!rdm_msg_get(m, "dry_run"), f);
	else if (!strcmp(cmd, "logs"))
		req_logs(o, rdm_msg_get(m, "lines"), f);
	else
		fprintf(f, "unknown command '%s'\n", cmd), rc = -1;
	fclose(f);
	{
		const char *kv[] = {"status", rc ? "error" : "ok", NULL};

		if (rdm_msg_send(c->c, "reply", o->st.epoch, kv, out, len, RDM_ORCH_SEND_MS) < 0)
			olog(o, "ctl: reply not sent");
	}
	free(out);
}

/* ---- the loops -------------------------------------------------------------------- */

static int admit(const char *name, void *arg, char *why, size_t len)
{
	struct orch *o = arg;

	if (!strcmp(name, RDM_CTL_NAME) || rdm_rack_find(&o->rack, name) >= 0)
		return 0;
	snprintf(why, len, "unknown node '%s': not in %s", name, o->rack.file);
	return -1;
}

static void *accept_main(void *arg)
{
	struct orch *o = arg;

	while (!atomic_load(&o->stop)) {
		char err[512];
		struct rdm_tls_conn *tc =
		    rdm_tls_accept(o->tls, o->lfd, 200, admit, o, err, sizeof(err));
		struct conn *c;

		if (!tc) {
			if (errno != ETIMEDOUT || strstr(err, "handshake"))
				olog(o, "refused: %s", err);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			rdm_tls_close(tc);
			continue;
		}
		c->c = tc;
		c->node = strcmp(rdm_tls_peer_name(tc), RDM_CTL_NAME)
			      ? rdm_rack_find(&o->rack, rdm_tls_peer_name(tc))
			      : -1;
		pthread_mutex_lock(&o->mu);
		c->next = o->accepted;
		o->accepted = c;
		pthread_mutex_unlock(&o->mu);
		if (write(o->wake[1], "x", 1) < 0) {
			/* the main loop polls every tick anyway */
		}
	}
	return NULL;
}

static void take_accepted(struct orch *o)
{
	struct conn *c;

	pthread_mutex_lock(&o->mu);
	c = o->accepted;
	o->accepted = NULL;
	pthread_mutex_unlock(&o->mu);
	while (c) {
		struct conn *nx = c->next;

		if (c->node >= 0) {
			struct nstate *ns = &o->nodes[c->node];

			if (ns->conn)
				drop_conn(o, ns->conn, "replaced by a new connection");
			ns->conn = c;
			olog(o, "%s: connected from %s", o->rack.nodes[c->node].name,
			     rdm_tls_peer_addr(c->c));
		}
		c->next = o->conns;
		o->conns = c;
		c = nx;
	}
}

/* Reads every whole message c has; 0, or -1 when c was dropped. */
static int serve(struct orch *o, struct conn *c)
{
	for (;;) {
		struct rdm_msg m;
		char err[512] = "";
		int rc = rdm_msg_recv(c->c, &m, 0, err, sizeof(err));

		if (rc == -ETIMEDOUT)
			return 0;
		if (rc == -EBADMSG) {
			/* A message that does not parse: say so. Another protocol version will
			 * not get better: hang up; anything else may be a one-off. */
			olog(o, "%s: bad message: %s",
			     c->node >= 0 ? o->rack.nodes[c->node].name : RDM_CTL_NAME, err);
			if (strstr(err, "unsupported protocol")) {
				drop_conn(o, c, err);
				return -1;
			}
			continue;
		}
		if (rc < 0) {
			if (c->node >= 0)
				drop_conn(o, c, err[0] ? err : strerror(-rc));
			else
				drop_conn(o, c, "");
			return -1;
		}
		if (c->node >= 0)
			take_node_msg(o, c, &m);
		else
			take_request(o, c, &m);
		rdm_msg_free(&m);
		if (c->node >= 0 && o->nodes[c->node].conn != c)
			return -1; /* dropped while handling */
	}
}

static void run(struct orch *o)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	while (!atomic_load(&o->stop)) {
		struct pollfd pf[1 + 512];
		struct conn *byfd[1 + 512];
		struct timespec zero = {0, 0};
		int n = 1, timeout = TICK_MS, sig;

		pf[0] = (struct pollfd){.fd = o->wake[0], .events = POLLIN};
		for (struct conn *c = o->conns; c && n < 513; c = c->next) {
			if (rdm_tls_pending(c->c) > 0)
				timeout = 0;
			byfd[n] = c;
			pf[n++] = (struct pollfd){.fd = rdm_tls_fd(c->c), .events = POLLIN};
		}
		if (poll(pf, (nfds_t)n, timeout) < 0 && errno != EINTR)
			break;
		if (pf[0].revents) {
			char buf[64];

			while (read(o->wake[0], buf, sizeof(buf)) > 0) {
			}
		}
		take_accepted(o);
		for (int i = 1; i < n; i++) {
			struct conn *c;

			for (c = o->conns; c && c != byfd[i]; c = c->next) {
			}
			if (!c) /* dropped while serving another */
				continue;
			if (pf[i].revents || rdm_tls_pending(c->c) > 0)
				if (serve(o, c) < 0)
					continue;
			if (c->node < 0 && (pf[i].revents & (POLLHUP | POLLERR)))
				drop_conn(o, c, "");
		}
		check_health(o);
		sig = sigtimedwait(&set, NULL, &zero);
		if (sig == SIGINT || sig == SIGTERM) {
			olog(o, "%s: stopping (nodes keep forwarding on epoch %" PRIu64 ")",
			     strsignal(sig), o->st.epoch);
			atomic_store(&o->stop, 1);
		}
	}
}

/* ---- start-up --------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: rdmesh orch --rack RACK.yaml --chain CHAIN.yaml [--certs DIR] [--state FILE]\n"
	    "                   [--listen IP:PORT] [--dead-ms MS] [--heartbeat-ms MS] [--check]\n"
	    "  --rack FILE       the nodes replicas may go on (configs/rack.yaml explains it)\n"
	    "  --chain FILE      the chain to deploy the first time (later: `rdmesh ctl apply`)\n"
	    "  --certs DIR       ca.pem, orch.pem and orch.key (`rdmesh ctl certs`); default "
	    "certs\n"
	    "  --state FILE      the desired state, persisted; when it exists it wins over\n"
	    "                    --chain (default rdmesh-orch.state)\n"
	    "  --listen IP:PORT  the control channel (default: rack.yaml's orchestrator.listen,\n"
	    "                    else 0.0.0.0:%d)\n"
	    "  --dead-ms MS      a node with replicas silent this long is dead (default %d)\n"
	    "  --heartbeat-ms MS how often nodes report (default %d)\n"
	    "  --check           validate the files, print the placement, and exit\n",
	    RDM_ORCH_PORT, RDM_ORCH_DEAD_MS, RDM_ORCH_HEARTBEAT_MS);
}

/* The plan the saved state describes (every replica where it ran); a replica that cannot
 * stay (its node left rack.yaml, labels changed) is placed afresh and logged. */
static struct rdm_plan *restore(struct orch *o, int *moved, char *err, size_t errlen)
{
	struct rdm_plan *p = rdm_state_plan(&o->st, &o->rack, &o->spec, err, errlen);

	for (int i = 0; p && i < o->st.n_down; i++) {
		int k = rdm_rack_find(&o->rack, o->st.down[i].node);

		o->nodes[k].dead = o->st.down[i].why == RDM_DOWN_DEAD;
		o->nodes[k].drained = o->st.down[i].why == RDM_DOWN_DRAINED;
	}
	for (int i = 0; p && i < o->st.n_replicas; i++) {
		const struct rdm_state_replica *sr = &o->st.replicas[i];
		const struct rdm_replica *r = rdm_plan_replica(p, sr->id);

		if (r && (strcmp(o->rack.nodes[r->node].name, sr->node) || r->port != sr->port) &&
		    ++*moved)
			olog(o, "state: %s cannot stay on %s:%u: placed on %s (%s)", sr->id,
			     sr->node, sr->port, o->rack.nodes[r->node].name, r->listen);
	}
	return p;
}

int rdm_cmd_orch(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"rack", required_argument, NULL, 'r'},
	    {"chain", required_argument, NULL, 'c'},
	    {"certs", required_argument, NULL, 'C'},
	    {"state", required_argument, NULL, 's'},
	    {"listen", required_argument, NULL, 'l'},
	    {"dead-ms", required_argument, NULL, 'd'},
	    {"heartbeat-ms", required_argument, NULL, 'b'},
	    {"check", no_argument, NULL, 'k'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *rack = NULL, *chain = NULL, *certs = "certs", *listen_at = NULL;
	struct orch o = {.dead_ms = RDM_ORCH_DEAD_MS,
			 .heartbeat_ms = RDM_ORCH_HEARTBEAT_MS,
			 .lfd = -1,
			 .wake = {-1, -1}};
	char err[1024], ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX], real[PATH_MAX];
	int c, check = 0, rc = 1, have_state, moved = 0;
	sigset_t set;

	o.state_path = "rdmesh-orch.state";
	while ((c = getopt_long(argc, argv, "r:c:C:s:l:d:b:kh", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			rack = optarg;
			break;
		case 'c':
			chain = optarg;
			break;
		case 'C':
			certs = optarg;
			break;
		case 's':
			o.state_path = optarg;
			break;
		case 'l':
			listen_at = optarg;
			break;
		case 'd':
			o.dead_ms = atoi(optarg);
			break;
		case 'b':
			o.heartbeat_ms = atoi(optarg);
			break;
		case 'k':
			check = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!rack || optind != argc || o.dead_ms < 100 || o.heartbeat_ms < 10 ||
	    o.heartbeat_ms * 2 > o.dead_ms) {
		if (rack && optind == argc)
			fprintf(stderr, "rdmesh orch: need --dead-ms >= 100 and at least twice "
					"--heartbeat-ms\n");
		usage(stderr);
		return 2;
	}
	pthread_mutex_init(&o.mu, NULL);
	pthread_mutex_init(&o.log_mu, NULL);
	if (rdm_rack_load(rack, &o.rack, err, sizeof(err)) < 0) {
		fprintf(stderr, "rdmesh orch: %s\n", err);
		goto out;
	}
	o.nodes = calloc((size_t)o.rack.n_nodes, sizeof(*o.nodes));
	if (!o.nodes)
		goto out;
	c = check ? -ENOENT : rdm_state_load(o.state_path, &o.st, err, sizeof(err));
	if (c < 0 && c != -ENOENT) {
		fprintf(stderr, "rdmesh orch: %s\n", err);
		goto out;
	}
	have_state = c == 0;
	if (!have_state) {
		if (!chain) {
			fprintf(stderr,
				"rdmesh orch: no state in %s: --chain is needed the first time\n",
				o.state_path);
			goto out;
		}
		if (!realpath(chain, real)) {
			fprintf(stderr, "rdmesh orch: %s: %s\n", chain, strerror(errno));
			goto out;
		}
		o.st.chain = strdup(real);
	} else if (chain && realpath(chain, real) && strcmp(real, o.st.chain)) {
		fprintf(stderr,
			"rdmesh orch: state %s runs %s (epoch %" PRIu64 "): --chain %s is "
			"ignored; `rdmesh ctl apply` changes the chain\n",
			o.state_path, o.st.chain, o.st.epoch, chain);
	}
	if (!o.st.chain || rdm_chain_spec_load(o.st.chain, &o.spec, err, sizeof(err)) < 0 ||
	    !(o.plan = have_state ? restore(&o, &moved, err, sizeof(err))
				  : rdm_plan_new(&o.rack, &o.spec, err, sizeof(err))) ||
	    !(o.rendered = rdm_plan_render(o.plan, err, sizeof(err)))) {
		fprintf(stderr, "rdmesh orch: %s\n", o.st.chain ? err : "out of memory");
		goto out;
	}
	if (check) {
		printf("%s", o.rendered);
		for (int i = 0; i < o.plan->n_replicas; i++)
			fprintf(stderr, "  %-12s on %-12s %s\n", o.plan->replicas[i].id,
				o.rack.nodes[o.plan->replicas[i].node].name,
				o.plan->replicas[i].listen);
		rc = 0;
		goto out;
	}
	if (!have_state || moved) {
		/* The first epoch, or a new one for replicas that could not stay. */
		struct rdm_plan *np = rdm_plan_copy(o.plan);

		if (!np || commit(&o, np, NULL, err, sizeof(err)) < 0) {
			fprintf(stderr, "rdmesh orch: %s\n", np ? err : "out of memory");
			goto out;
		}
	}
	if (listen_at)
		snprintf(o.listen, sizeof(o.listen), "%s", listen_at);
	else if (o.rack.has_orch_listen)
		snprintf(o.listen, sizeof(o.listen), "%s", o.rack.orch_listen.text);
	else
		snprintf(o.listen, sizeof(o.listen), "0.0.0.0:%d", RDM_ORCH_PORT);
	snprintf(ca, sizeof(ca), "%s/ca.pem", certs);
	snprintf(cert, sizeof(cert), "%s/%s.pem", certs, RDM_ORCH_NAME);
	snprintf(key, sizeof(key), "%s/%s.key", certs, RDM_ORCH_NAME);
	o.tls = rdm_tls_ctx_new(ca, cert, key, 1, err, sizeof(err));
	if (!o.tls) {
		fprintf(stderr, "rdmesh orch: %s\n", err);
		goto out;
	}
	o.lfd = rdm_tls_listen(o.listen, err, sizeof(err));
	if (o.lfd < 0) {
		fprintf(stderr, "rdmesh orch: %s\n", err);
		goto out;
	}
	if (pipe(o.wake) < 0)
		goto out;
	for (int i = 0; i < 2; i++) {
		int fl = fcntl(o.wake[i], F_GETFL);

		fcntl(o.wake[i], F_SETFL, fl | O_NONBLOCK);
	}
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	o.start_ns = rdm_now_ns();
	for (int k = 0; k < o.rack.n_nodes; k++)
		o.nodes[k].last_seen_ns = o.start_ns;
	olog(&o, "listening on %s: chain '%s' (%s), %d replicas on %d nodes, epoch %" PRIu64 "%s",
	     o.listen, o.spec.name, o.st.chain, o.plan->n_replicas, o.rack.n_nodes, o.st.epoch,
	     have_state ? " (from the saved state: reconciling with what nodes report)" : "");
	for (int i = 0; i < o.plan->n_replicas; i++)
		olog(&o, "  %-12s on %-12s %s", o.plan->replicas[i].id,
		     o.rack.nodes[o.plan->replicas[i].node].name, o.plan->replicas[i].listen);
	if (pthread_create(&o.acc, NULL, accept_main, &o)) {
		fprintf(stderr, "rdmesh orch: cannot start the accept thread\n");
		goto out;
	}
	run(&o);
	pthread_join(o.acc, NULL);
	rc = 0;
out:
	while (o.conns) {
		struct conn *nx = o.conns->next;

		rdm_tls_close(o.conns->c);
		free(o.conns);
		o.conns = nx;
	}
	while (o.accepted) {
		struct conn *nx = o.accepted->next;

		rdm_tls_close(o.accepted->c);
		free(o.accepted);
		o.accepted = nx;
	}
	if (o.lfd >= 0)
		close(o.lfd);
	for (int i = 0; i < 2; i++)
		if (o.wake[i] >= 0)
			close(o.wake[i]);
	rdm_tls_ctx_free(o.tls);
	rdm_plan_free(o.plan);
	free(o.rendered);
	rdm_chain_spec_free(&o.spec);
	rdm_state_free(&o.st);
	free(o.nodes);
	free(o.rs);
	rdm_rack_free(&o.rack);
	for (int i = 0; i < LOG_RING; i++)
		free(o.log[i]);
	pthread_mutex_destroy(&o.mu);
	pthread_mutex_destroy(&o.log_mu);
	return rc;
}
