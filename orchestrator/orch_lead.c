/* Taking the lead and giving it up (the etcd store, orch_store.c): a new leader reads
 * the desired state from the store and gives every node time to come over; one that
 * lost its lease drops every node channel, so that the nodes go to the new leader. A
 * follower sends each node that reaches it to the leader, and reads the store to
 * answer `ctl status`. */
#include "orchestrator/orch_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/clock.h"

#define CANNOT_LEAD_MS 5000 /* after a takeover that failed, others get the chance */

struct rdm_plan *rdm_orch__restore(struct orch *o, int *moved, char *err, size_t errlen)
{
	struct rdm_plan *p = rdm_state_plan(&o->st, &o->rack, &o->spec, err, errlen);

	for (int k = 0; p && k < o->rack.n_nodes; k++)
		o->nodes[k].dead = o->nodes[k].drained = 0;
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
			rdm_orch__log(o, "state: %s cannot stay on %s:%u: placed on %s (%s)",
				      sr->id, sr->node, sr->port, o->rack.nodes[r->node].name,
				      r->listen);
	}
	return p;
}

int rdm_orch__reload(struct orch *o, int *moved, char *err, size_t errlen)
{
	struct rdm_orch_state st, old_st = o->st;
	struct rdm_chain_spec spec, old_spec = o->spec;
	struct rdm_plan *p;
	int64_t seen = o->store.state_rev;
	char *text;
	int rc = rdm_orch__store_state(o, &st, err, errlen);

	*moved = 0;
	if (rc)
		return rc == 1 ? 0 : rc; /* 1: what we hold */
	rc = rdm_chain_spec_parse(st.chain, o->store.chain_text, &spec, err, errlen);
	if (rc) {
		rdm_state_free(&st);
		o->store.state_rev = seen;
		return rc;
	}
	o->st = st;
	o->spec = spec;
	p = rdm_orch__restore(o, moved, err, errlen);
	text = p ? rdm_plan_render(p, err, errlen) : NULL;
	if (!text) {
		rdm_plan_free(p);
		rdm_chain_spec_free(&o->spec);
		rdm_state_free(&o->st);
		o->st = old_st;
		o->spec = old_spec;
		o->store.state_rev = seen;
		rdm_plan_free(rdm_orch__restore(o, moved, err, errlen)); /* flags as they were */
		*moved = 0;
		return -EINVAL;
	}
	if (o->plan)
		o->plan->spec = &old_spec;
	rdm_plan_free(o->plan);
	rdm_chain_spec_free(&old_spec);
	rdm_state_free(&old_st);
	o->plan = p;
	free(o->rendered);
	o->rendered = text;
	return 0;
}

static void take_over(struct orch *o)
{
	struct store *s = &o->store;
	uint64_t now = rdm_now_ns();
	char err[1024];
	int moved = 0, rc;

	pthread_mutex_lock(&s->mu);
	s->acting = 1;
	s->since = time(NULL);
	pthread_mutex_unlock(&s->mu);
	rdm_orch__log(o,
		      "leading: etcd lease %" PRIx64 " (leader key revision %" PRId64
		      ", TTL %d s); reading the desired state",
		      (uint64_t)s->lease, s->lead_rev, s->lease_s);
	s->state_rev = 0; /* read it all again: another leader may have changed it */
	rc = rdm_orch__reload(o, &moved, err, sizeof(err));
	if (rc == -ENOENT || (!rc && moved)) {
		/* The rack's first epoch (from --chain), or one for replicas that cannot stay. */
		struct rdm_plan *np = rdm_plan_copy(o->plan);

		rc = np ? rdm_orch__commit(o, np, rc == -ENOENT ? o->st.chain : NULL, err,
					   sizeof(err))
			: -ENOMEM;
	}
	if (rc) {
		rdm_orch__log(o, "cannot lead: %s; letting the lease go, not campaigning for %d s",
			      rc == -ENOMEM ? "out of memory" : err, CANNOT_LEAD_MS / 1000);
		pthread_mutex_lock(&s->mu);
		s->leading = 0;
		s->acting = 0;
		s->campaign_after_ns = rdm_now_ns() + CANNOT_LEAD_MS * 1000000ull;
		pthread_mutex_unlock(&s->mu);
		return;
	}
	/* Nodes come over from the old leader now: each gets the time a node never seen
	 * gets, from now. */
	for (int k = 0; k < o->rack.n_nodes; k++) {
		o->nodes[k].last_seen_ns = now;
		o->nodes[k].ever_seen = 0;
		o->nodes[k].epoch = 0;
		o->nodes[k].running[0] = 0;
	}
	o->last_check_ns = 0;
	o->grace_until = 0;
	o->next_judge_ns = 0;
	rdm_orch__log(o, "leading at epoch %" PRIu64 ": chain '%s', %d replicas", o->st.epoch,
		      o->spec.name, o->plan->n_replicas);
}

static void step_down(struct orch *o, const char *why)
{
	struct store *s = &o->store;

	pthread_mutex_lock(&s->mu);
	s->acting = 0;
	s->leading = 0;
	s->leader[0] = 0; /* until the store names the next */
	pthread_mutex_unlock(&s->mu);
	rdm_orch__log(o,
		      "no longer leading: %s; the plan is not changed here (epoch %" PRIu64
		      "), nodes are sent to whoever leads",
		      why[0] ? why : "the lease's time ran out", o->st.epoch);
	for (struct conn *c = o->conns, *nx; c; c = nx) {
		nx = c->next;
		if (c->node >= 0)
			rdm_orch__drop_conn(o, c, "this orchestrator no longer leads");
	}
}

void rdm_orch__store_turn(struct orch *o)
{
	struct store *s = &o->store;
	char why[sizeof(s->why)];
	int lead;

	if (!s->etcd)
		return;
	pthread_mutex_lock(&s->mu);
	lead = s->leading && rdm_now_ns() < s->valid_until_ns;
	snprintf(why, sizeof(why), "%s", s->why);
	pthread_mutex_unlock(&s->mu);
	if (s->acting && !lead)
		step_down(o, why);
	else if (!s->acting && lead)
		take_over(o);
}

void rdm_orch__redirect(struct orch *o, struct conn *c)
{
	char leader[64], why[512];
	const char *kv[] = {"leader", leader, "why", why, NULL};
	struct nstate *ns = c->node >= 0 ? &o->nodes[c->node] : NULL;

	rdm_orch__leader(o, leader, sizeof(leader), why, sizeof(why));
	if (!why[0])
		snprintf(why, sizeof(why), "%s", leader[0] ? "not the leader" : "no leader yet");
	rdm_msg_send(c->c, "leader", o->st.epoch, kv, NULL, 0, RDM_ORCH_SEND_MS);
	if (!ns) { /* a pod: joining, or not yet a node here */
		rdm_orch__log(o, "pod %s (from %s): not leading: sent to %s",
			      rdm_tls_peer_name(c->c)[0] ? rdm_tls_peer_name(c->c) : "(joining)",
			      rdm_tls_peer_addr(c->c), leader[0] ? leader : "(no leader yet)");
	} else if (strcmp(ns->sent_to, leader)) {
		/* Nodes come back here until the leader answers: once per leader is enough. */
		snprintf(ns->sent_to, sizeof(ns->sent_to), "%s", leader);
		rdm_orch__log(o, "%s (from %s): not leading: sent to %s",
			      o->rack.nodes[c->node].name, rdm_tls_peer_addr(c->c),
			      leader[0] ? leader : "(no leader yet)");
	}
	rdm_orch__drop_conn(o, c, NULL);
}

void rdm_orch__store_status(struct orch *o, FILE *f)
{
	struct store *s = &o->store;
	char leader[64], why[512], since[64] = "";
	char health[sizeof(s->health)];
	int healthy, acting;
	time_t t;

	if (!s->etcd) {
		fprintf(f, "store: file %s (one orchestrator)\n", o->state_path);
		return;
	}
	pthread_mutex_lock(&s->mu);
	snprintf(leader, sizeof(leader), "%s", s->leader);
	snprintf(why, sizeof(why), "%s", s->why);
	snprintf(health, sizeof(health), "%s", s->health);
	healthy = s->healthy;
	acting = s->acting;
	t = s->since;
	pthread_mutex_unlock(&s->mu);
	if (acting) {
		struct tm tm;

		gmtime_r(&t, &tm);
		strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%SZ", &tm);
		fprintf(f, "leader: this orchestrator (%s) since %s (%.0f s), lease TTL %d s\n",
			o->advertise, since, difftime(time(NULL), t), s->lease_s);
	} else {
		fprintf(f,
			"leader: %s; this orchestrator (%s) follows: the plan below is the "
			"store's, node states are the leader's\n",
			leader[0] ? leader : "none", o->advertise);
	}
	fprintf(f, "store: %s, %d of %d members answer%s%s\n", s->url, healthy, s->n_members,
		why[0] ? "; " : "", why);
	for (char *line = health, *nl; *line; line = nl + 1) {
		nl = strchr(line, '\n');
		if (!nl)
			break;
		fprintf(f, "  %.*s\n", (int)(nl - line), line);
	}
}
