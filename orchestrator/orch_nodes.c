/* The orchestrator's side of the node exchange: hello, assign, applied, heartbeats, and
 * declaring silent nodes dead. */
#include "orchestrator/orch_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/util.h"

/* ---- talking to nodes ------------------------------------------------------------- */

/* 1 when the space-separated sets a and b hold the same words. */
static int same_set(const char *a, const char *b)
{
	char wa[1024];

	for (int pass = 0; pass < 2; pass++) {
		snprintf(wa, sizeof(wa), "%s", pass ? b : a);
		for (char *s = strtok(wa, " "); s; s = strtok(NULL, " "))
			if (!rdm_word_in(pass ? a : b, s))
				return 0;
	}
	return 1;
}

/* The first stage with no replica in the plan (pod-backed, none of its pods joined or
 * all gone), or -1. */
static int empty_stage(const struct rdm_plan *p)
{
	for (int s = 0; s < p->spec->n_stages; s++) {
		int n = p->stage_replicas[s];

		for (int i = p->n_replicas - p->n_pods; i < p->n_replicas; i++)
			n += p->replicas[i].stage == s;
		if (!n)
			return s;
	}
	return -1;
}

static int send_assign(struct orch *o, int k)
{
	struct nstate *ns = &o->nodes[k];
	char reps[1024], hb[16], dead[16];
	const char *kv[] = {
	    "node", o->rack.nodes[k].name, "replicas", reps, "heartbeat_ms", hb, "dead_ms", dead,
	    NULL};
	int rc, empty = empty_stage(o->plan);

	if (empty >= 0) {
		/* The chain cannot run without that stage: nothing is assigned (no replica
		 * starts, so no frame bypasses it); nodes keep what they run, and frames for
		 * replicas that left are dropped and counted there. */
		if (o->held_epoch != o->st.epoch)
			rdm_orch__log(o,
				      "epoch %" PRIu64
				      " not sent: stage '%s' has no replica (its pods "
				      "have not joined, or all left); nodes keep what they run",
				      o->st.epoch, o->spec.stages[empty].name);
		o->held_epoch = o->st.epoch;
		return 0;
	}

	rdm_orch__assigned(o->plan, k, reps, sizeof(reps));
	snprintf(hb, sizeof(hb), "%d", o->heartbeat_ms);
	snprintf(dead, sizeof(dead), "%d", o->dead_ms);
	rc = rdm_msg_send(ns->conn->c, "assign", o->st.epoch, kv, o->rendered, strlen(o->rendered),
			  RDM_ORCH_SEND_MS);
	if (rc < 0) {
		rdm_orch__log(o, "%s: sending epoch %" PRIu64 ": %s", o->rack.nodes[k].name,
			      o->st.epoch, strerror(-rc));
		rdm_orch__drop_conn(o, ns->conn, "send failed");
		return rc;
	}
	rdm_orch__log(o, "%s: assigned epoch %" PRIu64 ": replicas [%s]", o->rack.nodes[k].name,
		      o->st.epoch, reps);
	return 0;
}

void rdm_orch__push_all(struct orch *o)
{
	if (!rdm_orch__leads(o))
		return; /* a follower, or a leader whose lease is unproven: nobody hears us */
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

/* What node k runs, and drains before it stops, as m (hello or heartbeat) says: the
 * held ports of replicas it no longer runs there are free again. */
static void note_running(struct orch *o, int k, const struct rdm_msg *m)
{
	struct nstate *ns = &o->nodes[k];
	const char *run = rdm_msg_get(m, "running"), *drain = rdm_msg_get(m, "draining");
	char have[2 * sizeof(ns->running) + 2];
	int n;

	snprintf(ns->running, sizeof(ns->running), "%s", run ? run : "");
	ns->epoch = m->epoch;
	snprintf(have, sizeof(have), "%s %s", ns->running, drain ? drain : "");
	n = rdm_plan_release(o->plan, o->rack.nodes[k].name, have);
	if (n)
		rdm_orch__log(o, "%s: %d replica%s it drained stopped: %s port%s free again",
			      o->rack.nodes[k].name, n, n == 1 ? "" : "s", n == 1 ? "its" : "their",
			      n == 1 ? " is" : "s are");
}

/* A node said hello: bring it in step with the plan, sending nothing when it is. */
static void take_hello(struct orch *o, int k, const struct rdm_msg *m)
{
	struct nstate *ns = &o->nodes[k];
	const char *name = o->rack.nodes[k].name;
	char want[1024], err[512];

	note_running(o, k, m);
	rdm_orch__log(o, "%s: hello from %s: epoch %" PRIu64 ", running [%s]", name,
		      rdm_tls_peer_addr(ns->conn->c), m->epoch, ns->running);
	if (ns->dead) {
		struct rdm_plan *np = rdm_plan_node_up(o->plan, name, err, sizeof(err));

		ns->dead = 0;
		if (!np || rdm_orch__commit(o, np, NULL, err, sizeof(err)) < 0)
			rdm_orch__log(o, "%s: back, but the plan did not change: %s", name, err);
		else
			rdm_orch__log(
			    o,
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

		rdm_orch__log(o,
			      "%s: applied epoch %" PRIu64 ", newer than ours (%" PRIu64
			      "): moving past it",
			      name, m->epoch, o->st.epoch);
		o->st.epoch = m->epoch;
		if (!np)
			snprintf(err, sizeof(err), "out of memory");
		if (!np || rdm_orch__commit(o, np, NULL, err, sizeof(err)) < 0)
			rdm_orch__log(o, "cannot move past epoch %" PRIu64 ": %s", m->epoch, err);
		return;
	}
	rdm_orch__assigned(o->plan, k, want, sizeof(want));
	if (m->epoch == o->st.epoch && same_set(want, ns->running)) {
		rdm_orch__log(o, "%s: in step at epoch %" PRIu64 ": nothing to redeploy", name,
			      o->st.epoch);
		return;
	}
	send_assign(o, k);
}

void rdm_orch__take_node_msg(struct orch *o, struct conn *c, const struct rdm_msg *m)
{
	struct nstate *ns = &o->nodes[c->node];
	const char *name = o->rack.nodes[c->node].name;

	if (!rdm_orch__leads(o)) {
		rdm_orch__redirect(o, c);
		return;
	}
	ns->last_seen_ns = rdm_now_ns();
	ns->ever_seen = 1;
	if (!strcmp(m->type, "hello")) {
		take_hello(o, c->node, m);
	} else if (!c->hello) {
		rdm_orch__log(o, "%s: '%s' before hello: ignored", name, m->type);
	} else if (!strcmp(m->type, "heartbeat")) {
		note_running(o, c->node, m);
		take_heartbeat(o, c->node, m->body);
		if (rdm_msg_send(c->c, "ack", o->st.epoch, NULL, NULL, 0, RDM_ORCH_SEND_MS) < 0)
			rdm_orch__drop_conn(o, c, "ack failed");
	} else if (!strcmp(m->type, "applied")) {
		const char *res = rdm_msg_get(m, "result");

		if (res && !strcmp(res, "ok")) {
			ns->epoch = m->epoch;
			ns->refused[0] = 0;
			rdm_orch__log(o, "%s: applied epoch %" PRIu64, name, m->epoch);
		} else {
			snprintf(ns->refused, sizeof(ns->refused), "%s", res ? res : "(no reason)");
			rdm_orch__log(o, "%s: did not apply epoch %" PRIu64 ": %s", name, m->epoch,
				      ns->refused);
		}
	} else if (!strcmp(m->type, "leaving") && o->rack.nodes[c->node].pod) {
		rdm_orch__pod_leaving(o, c->node);
	} else if (!strcmp(m->type, "csr") || !strcmp(m->type, "renewed")) {
		rdm_orch__take_renewal(o, c->node, m);
	} else {
		rdm_orch__log(o, "%s: unexpected message '%s': ignored", name, m->type);
	}
}

/* ---- health ----------------------------------------------------------------------- */

/* Declares node k dead when it has replicas and was silent too long, and moves them. */
static void judge(struct orch *o, int k, uint64_t now, uint64_t dead_ns)
{
	struct nstate *ns = &o->nodes[k];
	const char *name = o->rack.nodes[k].name;
	uint64_t limit = dead_ns, silent;
	const uint64_t first =
	    (FIRST_SEEN_MS + (uint64_t)o->rack.n_nodes * FIRST_SEEN_PER_NODE_MS) * 1000000ull;
	char err[512], *diff = NULL;
	size_t dlen = 0;
	struct rdm_plan *np;
	FILE *f;

	if (o->rack.nodes[k].gone || ns->dead || ns->drained ||
	    (!o->rack.nodes[k].pod && !rdm_plan_node_replicas(o->plan, name, NULL, 0)))
		return;
	/* A node not seen since we started (or took the lead) may be dialling the others
	 * first, or queued behind the rest of the rack's handshakes. */
	if (!ns->ever_seen && limit < first)
		limit = first;
	silent = now - ns->last_seen_ns;
	if (silent <= limit)
		return;
	if (o->rack.nodes[k].pod) { /* a pod is one replica: it leaves, nothing moves */
		rdm_orch__pod_gone(o, k, silent / 1000000);
		return;
	}
	ns->dead = 1;
	np = rdm_plan_node_down(o->plan, name, err, sizeof(err));
	if (!np) {
		rdm_orch__log(
		    o, "%s: silent for %" PRIu64 " ms: dead, but its replicas cannot move: %s",
		    name, silent / 1000000, err);
		return;
	}
	f = open_memstream(&diff, &dlen);
	if (f) {
		rdm_orch__plan_diff(f, o->plan, np);
		fclose(f);
	}
	if (rdm_orch__commit(o, np, NULL, err, sizeof(err)) < 0) {
		/* Nothing changed: try again after another dead time. */
		rdm_orch__log(o,
			      "%s: silent for %" PRIu64
			      " ms: dead, but the new plan was not saved: "
			      "%s",
			      name, silent / 1000000, err);
		ns->dead = 0;
		ns->last_seen_ns = now;
	} else
		rdm_orch__log(o,
			      "%s: silent for %" PRIu64 " ms (limit %" PRIu64
			      "): dead; epoch %" PRIu64 " moves its replicas:\n%s",
			      name, silent / 1000000, limit / 1000000, o->st.epoch,
			      diff ? diff : "");
	free(diff);
	if (ns->conn)
		rdm_orch__drop_conn(o, ns->conn, "declared dead");
}

void rdm_orch__check_health(struct orch *o)
{
	uint64_t now = rdm_now_ns(), dead_ns = (uint64_t)o->dead_ms * 1000000ull;
	int died = 0;

	/* Our own stall (a slow request, SIGSTOP, the VM paused) is not our nodes' silence:
	 * their heartbeats wait unread in our sockets. After a turn that came more than half
	 * a dead time late, nobody is judged for one dead time, while we read them. */
	if (o->last_check_ns && now - o->last_check_ns > dead_ns / 2) {
		o->grace_until = now + dead_ns;
		rdm_orch__log(o,
			      "this orchestrator was stalled for %" PRIu64
			      " ms: no node is judged dead for the next %d ms, while their "
			      "heartbeats are read",
			      (now - o->last_check_ns) / 1000000, o->dead_ms);
	}
	o->last_check_ns = now;
	if (now < o->grace_until || now < o->next_judge_ns)
		return;
	o->next_judge_ns = now + JUDGE_EVERY_NS; /* not on every message of a large rack */
	for (int k = 0; k < o->rack.n_nodes; k++) {
		int was_dead = o->nodes[k].dead;

		judge(o, k, now, dead_ns);
		died += !was_dead && o->nodes[k].dead;
	}
	if (o->grace_until) {
		/* Logged after the first judgement past the grace, with what it found. */
		rdm_orch__log(o, "the grace after our stall is over: %d nodes declared dead", died);
		o->grace_until = 0;
	}
}
