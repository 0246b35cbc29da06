/* Pods: nodes that are not in rack.yaml, each one replica of the stage its certificate
 * binds it to (issue I). The exchange:
 *
 *   pod  -> orch  join     token, name, stage  (body: a request for its name, PEM);
 *                          on a connection with no client certificate
 *   orch -> pod   joined   cert_len, valid_s (body: the certificate, OU "pod STAGE",
 *                          then the CA bundle), or error: why; then the channel closes
 *   pod  -> orch  hello    (with its new certificate) data: IP, cert_until, running
 *                          ... the node exchange (orch_nodes.c) from here on
 *   orch -> pod   renew    reload: now  (a third of the certificate's life left)
 *   pod  -> orch  leaving  (SIGTERM: scaled down, evicted) its replica leaves the plan
 *                          at once and drains there; the pod exits once it has
 *
 * A join is refused, counted and logged with who and why when the token is not this
 * rack's, expired, for another stage, or (one-time) spent; when the name is a host's
 * or a live pod's; or when the stage takes no pods. A one-time token is spent in the
 * saved state before the certificate goes out, so neither a restart nor another leader
 * takes it twice. The hello of a pod the orchestrator does not know yet (it restarted,
 * or took the lead) is taken on its certificate alone: the CA signed the binding. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/certs.h"
#include "lib/clock.h"
#include "lib/jointoken.h"
#include "orchestrator/orch_int.h"

/* The address part of "IP:PORT" or "[IPV6]:PORT" into out. */
static void host_of(const char *addr, char *out, size_t len)
{
	const char *colon = strrchr(addr, ':');
	size_t n = colon ? (size_t)(colon - addr) : strlen(addr);

	if (n >= 2 && addr[0] == '[' && addr[n - 1] == ']') {
		addr++;
		n -= 2;
	}
	snprintf(out, len, "%.*s", (int)n, addr);
}

/* The join's checks, in order; 0, or -1 with why. The token's id in *id. */
static int check_join(struct orch *o, const struct rdm_msg *m, struct rdm_join_token *t, char *why,
		      size_t len)
{
	const char *token = rdm_msg_get(m, "token"), *name = rdm_msg_get(m, "name"),
		   *stage = rdm_msg_get(m, "stage");
	const struct rdm_state_token *used;
	int s, k;

	if (rdm_join_token_check(o->certs, token, time(NULL), t, why, len) < 0)
		return -1;
	if (!stage || strcmp(stage, t->stage)) {
		snprintf(why, len, "token %s is for stage '%s', not '%s'", t->id, t->stage,
			 stage ? stage : "");
		return -1;
	}
	s = rdm_chain_spec_find(&o->spec, stage);
	if (s < 0 || !o->spec.stages[s].pods) {
		snprintf(why, len, "stage '%s' %s", stage,
			 s < 0 ? "is not in the chain" : "takes no pods (no `pods:` under it)");
		return -1;
	}
	if (!name || !rdm_certs_name_ok(name)) {
		snprintf(why, len, "bad pod name '%s'", name ? name : "");
		return -1;
	}
	if (!strcmp(name, RDM_ORCH_NAME) || !strcmp(name, RDM_CTL_NAME)) {
		/* a certificate named so would pass for the orchestrator, or the operator */
		snprintf(why, len, "'%s' is a reserved name", name);
		return -1;
	}
	k = rdm_rack_find(&o->rack, name);
	if (k >= 0) {
		snprintf(why, len, "'%s' is already a %s of the mesh", name,
			 o->rack.nodes[k].pod ? "pod" : "host");
		return -1;
	}
	if (t->uses == 1 && (used = rdm_state_spent(&o->st, t->id))) {
		snprintf(why, len, "token %s was used already (by %s): it is for one pod", t->id,
			 used->pod);
		return -1;
	}
	return 0;
}

/* A join: the token checked, the one-time token spent, the request signed. */
static void take_join(struct orch *o, struct conn *c, const struct rdm_msg *m)
{
	const char *name = rdm_msg_get(m, "name"), *addr = rdm_tls_peer_addr(c->c);
	struct rdm_join_token t;
	char why[512] = "", unit[80], clen[24], valid[24], *cert = NULL, *body = NULL;
	size_t blen = 0;
	int rc = strcmp(m->type, "join") ? -1 : check_join(o, m, &t, why, sizeof(why));

	if (rc < 0 && !why[0])
		snprintf(why, sizeof(why), "'%s' before joining: only join is taken here", m->type);
	if (!rc) {
		snprintf(unit, sizeof(unit), RDM_POD_UNIT "%s", t.stage);
		rc = rdm_certs_sign_for(o->certs, name, unit, m->body, m->body_len, o->pod_cert_s,
					&cert, why, sizeof(why));
	}
	if (!rc && !(body = rdm_orch__cert_body(o, cert, &blen, why, sizeof(why))))
		rc = -1;
	if (!rc && t.uses == 1) {
		/* Spent before the certificate leaves: a crash after this wastes the token,
		 * never lets it in twice. */
		int64_t now = time(NULL);

		rc = rdm_state_spend(&o->st, t.id, name, t.expires, now);
		if (!rc)
			rc = rdm_orch__store_save(o, &o->st, NULL, why, sizeof(why));
		else
			snprintf(why, sizeof(why), "out of memory");
		if (rc)
			rdm_orch__log(o, "join: token %s could not be recorded as spent: %s", t.id,
				      why);
	}
	if (rc) {
		const char *kv[] = {"error", why, NULL};

		o->joins_refused++;
		rdm_orch__log(o, "join refused: %s (name '%s', stage '%s'): %s", addr,
			      name ? name : "",
			      rdm_msg_get(m, "stage") ? rdm_msg_get(m, "stage") : "", why);
		rdm_msg_send(c->c, "joined", o->st.epoch, kv, NULL, 0, RDM_ORCH_SEND_MS);
	} else {
		const char *kv[] = {"cert_len", clen, "valid_s", valid, NULL};

		snprintf(clen, sizeof(clen), "%zu", strlen(cert));
		snprintf(valid, sizeof(valid), "%d", o->pod_cert_s);
		o->joins_ok++;
		rdm_orch__log(o,
			      "join: %s (%s) may join as a replica of %s: token %s (%s), a "
			      "certificate for %d s",
			      name, addr, t.stage, t.id, t.uses ? "one-time, now spent" : "shared",
			      o->pod_cert_s);
		rdm_msg_send(c->c, "joined", o->st.epoch, kv, body, blen, RDM_ORCH_SEND_MS);
	}
	free(cert);
	free(body);
	rdm_orch__drop_conn(o, c, NULL); /* it comes back with its certificate */
}

/* Refuses a pod's hello: why goes to the pod and the log. */
static void refuse_pod(struct orch *o, struct conn *c, const char *why)
{
	const char *kv[] = {"why", why, NULL};

	rdm_orch__log(o, "pod %s (%s) refused: %s", rdm_tls_peer_name(c->c),
		      rdm_tls_peer_addr(c->c), why);
	rdm_msg_send(c->c, "refused", o->st.epoch, kv, NULL, 0, RDM_ORCH_SEND_MS);
	rdm_orch__drop_conn(o, c, NULL);
}

/* The replica number a pod says it runs ("dpi-53" of its stage), or 0. */
static int running_number(const char *running, const char *stage)
{
	size_t n = strlen(stage);

	for (const char *p = running; p && *p;) {
		if (!strncmp(p, stage, n) && p[n] == '-')
			return atoi(p + n + 1);
		p = strchr(p, ' ');
		p = p ? p + 1 : NULL;
	}
	return 0;
}

/* A pod's hello: the pod becomes a rack node (the first time) and gets its replica. */
static void pod_hello(struct orch *o, struct conn *c, const struct rdm_msg *m)
{
	const char *name = rdm_tls_peer_name(c->c), *stage = rdm_tls_peer_unit(c->c),
		   *data = rdm_msg_get(m, "data"), *until = rdm_msg_get(m, "cert_until"),
		   *run = rdm_msg_get(m, "running");
	char ip[64], why[512];
	int k, s;

	stage += strlen(RDM_POD_UNIT); /* admitted on it (orch_accept.c) */
	s = rdm_chain_spec_find(&o->spec, stage);
	if (strcmp(m->type, "hello")) {
		snprintf(why, sizeof(why), "'%s' before hello", m->type);
		refuse_pod(o, c, why);
		return;
	}
	if (s < 0 || !o->spec.stages[s].pods) {
		snprintf(why, sizeof(why), "its certificate binds it to stage '%s', which %s",
			 stage, s < 0 ? "the chain does not have" : "takes no pods");
		refuse_pod(o, c, why);
		return;
	}
	if (!strcmp(name, RDM_ORCH_NAME) || !strcmp(name, RDM_CTL_NAME)) {
		refuse_pod(o, c, "a reserved name");
		return;
	}
	if (data && data[0])
		snprintf(ip, sizeof(ip), "%s", data);
	else
		host_of(rdm_tls_peer_addr(c->c), ip, sizeof(ip));
	k = rdm_rack_find(&o->rack, name);
	if (k >= 0 && (!o->rack.nodes[k].pod || strcmp(o->rack.nodes[k].pod, stage))) {
		snprintf(why, sizeof(why), "'%s' is a %s of the mesh", name,
			 o->rack.nodes[k].pod ? "pod of another stage" : "host");
		refuse_pod(o, c, why);
		return;
	}
	if (k < 0) {
		pthread_mutex_lock(&o->mu); /* the accept thread reads the names */
		k = rdm_rack_add_pod(&o->rack, name, stage, ip, rdm_msg_get(m, "rdma"), why,
				     sizeof(why));
		pthread_mutex_unlock(&o->mu);
		if (k < 0) {
			refuse_pod(o, c, why);
			return;
		}
		memset(&o->nodes[k], 0, sizeof(o->nodes[k]));
	}
	if (o->nodes[k].conn && o->nodes[k].conn != c)
		rdm_orch__drop_conn(o, o->nodes[k].conn, "replaced by a new connection");
	c->node = k;
	o->nodes[k].conn = c;
	o->nodes[k].cert_until = until ? strtoll(until, NULL, 10) : 0;
	o->nodes[k].last_seen_ns = rdm_now_ns();
	if (!rdm_plan_pod_replica(o->plan, k)) {
		struct rdm_plan *np =
		    rdm_plan_add_pod(o->plan, k, running_number(run, stage), why, sizeof(why));

		if (!np || rdm_orch__commit(o, np, NULL, why, sizeof(why)) < 0) {
			c->node = CONN_POD;
			o->nodes[k].conn = NULL;
			pthread_mutex_lock(&o->mu);
			rdm_rack_remove_pod(&o->rack, k);
			pthread_mutex_unlock(&o->mu);
			refuse_pod(o, c, why);
			return;
		}
		rdm_orch__log(o,
			      "pod %s (%s, data %s) runs %s from epoch %" PRIu64
			      ": its upstreams add it to their tables",
			      name, rdm_tls_peer_addr(c->c), ip,
			      rdm_plan_pod_replica(o->plan, k)->id, o->st.epoch);
	}
	rdm_orch__take_node_msg(o, c, m); /* the node's hello: its assign */
}

void rdm_orch__take_pod_msg(struct orch *o, struct conn *c, const struct rdm_msg *m)
{
	if (!rdm_orch__leads(o)) {
		rdm_orch__redirect(o, c);
		return;
	}
	if (c->node == CONN_JOIN)
		take_join(o, c, m);
	else
		pod_hello(o, c, m);
}

void rdm_orch__pod_gone(struct orch *o, int k, uint64_t silent_ms)
{
	const struct rdm_replica *r = rdm_plan_pod_replica(o->plan, k);
	char err[512], id[RDM_RACK_NAME_MAX + 1] = "";
	struct rdm_plan *np;

	if (r) {
		snprintf(id, sizeof(id), "%s", r->id);
		np = rdm_plan_remove_pod(o->plan, k, err, sizeof(err));
		if (!np || rdm_orch__commit(o, np, NULL, err, sizeof(err)) < 0) {
			/* Nothing changed: judged again after another dead time. */
			rdm_orch__log(
			    o, "pod %s: silent for %" PRIu64 " ms, but the plan did not change: %s",
			    o->rack.nodes[k].name, silent_ms, err);
			o->nodes[k].last_seen_ns = rdm_now_ns();
			return;
		}
	}
	rdm_orch__log(o, "pod %s: silent for %" PRIu64 " ms: gone; %s%s%s (epoch %" PRIu64 ")",
		      o->rack.nodes[k].name, silent_ms, id[0] ? "its replica " : "no replica", id,
		      id[0] ? " leaves the plan and its flows move to the others" : "",
		      o->st.epoch);
	if (o->nodes[k].conn)
		rdm_orch__drop_conn(o, o->nodes[k].conn, "gone");
	pthread_mutex_lock(&o->mu);
	rdm_rack_remove_pod(&o->rack, k);
	pthread_mutex_unlock(&o->mu);
}

void rdm_orch__pod_leaving(struct orch *o, int k)
{
	const struct rdm_replica *r = rdm_plan_pod_replica(o->plan, k);
	char err[512], id[RDM_RACK_NAME_MAX + 1];
	struct rdm_plan *np;

	if (!r)
		return;
	snprintf(id, sizeof(id), "%s", r->id);
	np = rdm_plan_remove_pod(o->plan, k, err, sizeof(err));
	if (!np || rdm_orch__commit(o, np, NULL, err, sizeof(err)) < 0) {
		rdm_orch__log(o, "pod %s is leaving, but the plan did not change: %s",
			      o->rack.nodes[k].name, err);
		return;
	}
	rdm_orch__log(o,
		      "pod %s is leaving (stopping): its replica %s leaves the plan (epoch %" PRIu64
		      "): its upstreams move its flows, then it stops",
		      o->rack.nodes[k].name, id, o->st.epoch);
}

int rdm_orch__pod_conn_new(struct orch *o, struct conn *c)
{
	uint64_t now = rdm_now_ns();
	int open = 0;

	for (struct conn *x = o->conns; x; x = x->next)
		open += x->node == CONN_JOIN || x->node == CONN_POD;
	if (open >= JOINS_OPEN_MAX) {
		o->joins_shed++;
		if (now - o->joins_shed_log_ns > 1000000000ull) {
			rdm_orch__log(o,
				      "%s: closed: %d joining connections are open, the most taken "
				      "(%" PRIu64 " closed so far)",
				      rdm_tls_peer_addr(c->c), open, o->joins_shed);
			o->joins_shed_log_ns = now;
		}
		return -1;
	}
	c->until_ns = now + (uint64_t)POD_FIRST_MSG_MS * 1000000ull;
	return 0;
}

void rdm_orch__pods_reap(struct orch *o)
{
	uint64_t now = rdm_now_ns();

	if (now < o->next_reap_ns)
		return;
	o->next_reap_ns = now + JUDGE_EVERY_NS; /* not on every turn of a large rack's loop */

	for (struct conn *c = o->conns, *nx; c; c = nx) {
		nx = c->next;
		if ((c->node == CONN_JOIN || c->node == CONN_POD) && c->until_ns &&
		    now > c->until_ns) {
			rdm_orch__log(o, "%s (%s): said nothing within %d ms: closed",
				      rdm_tls_peer_addr(c->c),
				      c->node == CONN_JOIN ? "joining" : rdm_tls_peer_name(c->c),
				      POD_FIRST_MSG_MS);
			rdm_orch__drop_conn(o, c, NULL);
		}
	}
}

void rdm_orch__pods_tick(struct orch *o)
{
	int64_t now = time(NULL);
	const char *kv[] = {"reload", "now", NULL};

	for (int k = o->rack.n_hosts; k < o->rack.n_nodes; k++) {
		struct nstate *ns = &o->nodes[k];

		if (o->rack.nodes[k].gone || !ns->conn || !ns->conn->hello || ns->renewing ||
		    !ns->cert_until || now < ns->cert_until - o->pod_cert_s / 3)
			continue;
		if (rdm_msg_send(ns->conn->c, "renew", o->st.epoch, kv, NULL, 0, RDM_ORCH_SEND_MS) <
		    0) {
			rdm_orch__drop_conn(o, ns->conn, "renew not sent");
			continue;
		}
		ns->renewing = 2;
		rdm_orch__log(o, "pod %s: its certificate expires in %" PRId64 " s: renewing it",
			      o->rack.nodes[k].name, ns->cert_until - now);
	}
}
