/* The orchestrator's answers to `rdmesh ctl`: status, scale, drain, apply, logs. */
#include "orchestrator/orch_int.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/clock.h"
#include "lib/util.h"
#include "lib/yaml.h"

static void fmt_us(char *out, size_t len, uint64_t ns)
{
	if (!ns)
		snprintf(out, len, "-");
	else
		snprintf(out, len, "%.1f us", (double)ns / 1000.0);
}

static const char *node_state(struct orch *o, int k)
{
	const struct nstate *ns = &o->nodes[k];

	if (!rdm_orch__leads(o))
		return ns->drained ? "drained" : ns->dead ? "dead" : "(leader)";
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
	*rsp = NULL;
	for (int i = 0; i < o->n_rs; i++)
		if (!strcmp(o->rs[i].id, r->id) && o->rs[i].node == r->node)
			*rsp = &o->rs[i];
	if (!ns->conn)
		return "no node";
	if (!rdm_word_in(ns->running, r->id))
		return ns->epoch < o->st.epoch ? "pending" : "missing";
	return *rsp ? (*rsp)->state : "starting";
}

/* What the chain's transport.protect asks of every hop, in words for ctl status. */
static const char *protect_text(const struct rdm_chain_spec *spec)
{
	const struct rdm_ynode *v =
	    spec->transport ? rdm_ymap_get(spec->transport, "protect") : NULL;
	const char *s = v ? rdm_ynode_scalar(v) : NULL;

	if (s && !strcmp(s, "none"))
		return "none (hops are not proven: anyone who reaches a data port may send)";
	if (s && !strcmp(s, "encrypt"))
		return "encrypt (every hop proves both ends and is encrypted, TLS 1.3)";
	return "auth (every hop proves both ends with the rack's certificates)";
}

static void status(struct orch *o, FILE *f)
{
	const struct rstat *eg = NULL;
	int up = 0, pods = 0;

	for (int k = 0; k < o->rack.n_nodes; k++) {
		up += o->nodes[k].conn != NULL;
		pods += o->rack.nodes[k].pod && !o->rack.nodes[k].gone;
	}
	fprintf(f,
		"orchestrator %s  chain '%s' (%s)  epoch %" PRIu64
		"  nodes %d/%d connected (%d hosts, %d pods)\n",
		o->listen, o->spec.name, o->st.chain, o->st.epoch, up, o->rack.n_hosts + pods,
		o->rack.n_hosts, pods);
	if (o->joins_ok || o->joins_refused)
		fprintf(f,
			"pods: %" PRIu64 " joins taken, %" PRIu64 " refused (ctl logs: who, why)\n",
			o->joins_ok, o->joins_refused);
	fprintf(f, "data plane: protect %s\n", protect_text(&o->spec));
	rdm_orch__store_status(o, f);
	fputc('\n', f);
	fprintf(f, "%-12s %-8s %-6s %-10s %s\n", "NODE", "STATE", "EPOCH", "HEARTBEAT", "REPLICAS");
	for (int k = 0; k < o->rack.n_nodes; k++) {
		const struct nstate *ns = &o->nodes[k];
		char reps[1024], ago[32], ep[24];

		if (o->rack.nodes[k].gone)
			continue;
		rdm_orch__assigned(o->plan, k, reps, sizeof(reps));
		if (o->rack.nodes[k].pod) { /* "dpi-51 (pod of dpi, certificate for 2400 s)" */
			size_t n = strlen(reps);

			snprintf(reps + n, sizeof(reps) - n,
				 " (pod of %s, certificate for %" PRId64 " s)",
				 o->rack.nodes[k].pod,
				 ns->cert_until ? ns->cert_until - (int64_t)time(NULL) : 0);
		}
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
			" not yet arrived (sequence gaps so far)\nDROPS: for any reason but policy "
			"(a verdict, or a reply with no "
			"client to go "
			"to); HOP: the hop\ninto each stage, as the egress measures it; NEXT: the "
			"transport "
			"to the next stage\n",
			eg->id, eg->egress_packets, eg->lost);
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
	if (o->spec.stages[s].pods) {
		/* The pod orchestrator owns the count: say what to run there. */
		const struct rdm_spec_stage *st = &o->spec.stages[s];
		int pods = 0;

		for (int i = o->plan->n_replicas - o->plan->n_pods; i < o->plan->n_replicas; i++)
			pods += o->plan->replicas[i].stage == s;
		fprintf(f,
			"%s is pod-backed (%d pods, %d host replicas): its pod orchestrator owns "
			"the count. Run:\n  kubectl -n %s scale deployment/%s --replicas %s\n"
			"(new pods join by themselves; host replicas change with `ctl apply`)\n",
			stage, pods, o->plan->stage_replicas[s], st->pod_namespace,
			st->pod_deployment, count && *count ? count : "N");
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
	rdm_orch__plan_diff(f, o->plan, np);
	if (rdm_orch__commit(o, np, NULL, err, sizeof(err)) < 0) {
		fprintf(f, "%s\nnothing changed\n", err);
		return -1;
	}
	fprintf(f, "epoch %" PRIu64 "\n", o->st.epoch);
	rdm_orch__log(o, "ctl scale %s %ld: epoch %" PRIu64, stage, n, o->st.epoch);
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
	if (!rdm_orch__plan_diff(f, o->plan, np))
		fprintf(f, "  (it runs none)\n");
	o->nodes[k].drained = 1; /* saved with the plan */
	if (rdm_orch__commit(o, np, NULL, err, sizeof(err)) < 0) {
		o->nodes[k].drained = 0;
		fprintf(f, "%s\nnothing changed\n", err);
		return -1;
	}
	fprintf(f, "epoch %" PRIu64 "\n", o->st.epoch);
	rdm_orch__log(o, "ctl drain %s: epoch %" PRIu64, node, o->st.epoch);
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

void rdm_orch__reply(struct orch *o, struct conn *c, const char *cmd, int rc, const char *out,
		     size_t len, const char *leader)
{
	const char *kv[] = {"status", rc ? "error" : "ok", leader && leader[0] ? "leader" : NULL,
			    leader, NULL};
	int sent = rdm_msg_send(c->c, "reply", o->st.epoch, kv, out, len, RDM_ORCH_SEND_MS);

	if (sent == -EMSGSIZE) {
		/* Too large for one message: ctl gets a clear error, not a silence. */
		char why[256];
		int n = snprintf(why, sizeof(why),
				 "the answer to '%s' (%zu bytes) is over the control "
				 "channel's limit of %u bytes and was not sent; the request "
				 "itself %s (ctl logs tells more)\n",
				 cmd ? cmd : "?", len, RDM_TLS_MAX_MSG,
				 rc ? "failed" : "was carried out");

		kv[1] = "error";
		sent =
		    rdm_msg_send(c->c, "reply", o->st.epoch, kv, why, (size_t)n, RDM_ORCH_SEND_MS);
	}
	if (sent < 0)
		rdm_orch__log(o, "ctl: reply not sent: %s", strerror(-sent));
}

void rdm_orch__take_request(struct orch *o, struct conn *c, const struct rdm_msg *m)
{
	const char *cmd = rdm_msg_get(m, "cmd");
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	char leader[64] = "";
	int rc = 0, started = 0;

	if (!f)
		return;
	if (strcmp(m->type, "request") || !cmd) {
		fprintf(f, "not a request\n"), rc = -1;
	} else if (!rdm_orch__leads(o) && strcmp(cmd, "status") && strcmp(cmd, "logs")) {
		/* Only the leader changes anything: say where it is (ctl follows). */
		rdm_orch__leader(o, leader, sizeof(leader), NULL, 0);
		fprintf(f, "this orchestrator (%s) does not lead: %s\n", o->advertise,
			leader[0] ? leader : "no leader yet; try again shortly");
		if (!leader[0])
			snprintf(leader, sizeof(leader), "none");
		rc = -1;
	} else if (!strcmp(cmd, "status")) {
		char err[1024];
		int moved;

		/* A follower shows the plan as the store has it now, and names the leader
		 * (ctl asks it too: only the leader hears the nodes). */
		if (!rdm_orch__leads(o)) {
			rc = rdm_orch__reload(o, &moved, err, sizeof(err));
			if (rc < 0)
				fprintf(f, "(%s: the plan below is as last read)\n",
					rc == -ENOENT ? "no state in the store yet" : err);
			rdm_orch__leader(o, leader, sizeof(leader), NULL, 0);
			if (!leader[0])
				snprintf(leader, sizeof(leader), "none");
			rc = 0;
		}
		status(o, f);
	} else if (!strcmp(cmd, "scale"))
		rc = req_scale(o, rdm_msg_get(m, "stage"), rdm_msg_get(m, "replicas"), f);
	else if (!strcmp(cmd, "drain"))
		rc = req_drain(o, rdm_msg_get(m, "node"), f);
	else if (!strcmp(cmd, "apply"))
		rc = rdm_orch__apply_start(o, c, rdm_msg_get(m, "file"),
					   !!rdm_msg_get(m, "dry_run"), f, &started);
	else if (!strcmp(cmd, "renew"))
		rc = rdm_orch__renew(o, rdm_msg_get(m, "days"), f);
	else if (!strcmp(cmd, "logs"))
		req_logs(o, rdm_msg_get(m, "lines"), f);
	else
		fprintf(f, "unknown command '%s'\n", cmd), rc = -1;
	fclose(f);
	if (started) /* the apply's check runs off the loop: its answer comes later */
		return;
	rdm_orch__reply(o, c, cmd, rc, out, len, leader);
	free(out);
}
