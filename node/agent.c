/* The rack node agent (node/agent.h): the control channel to the orchestrator and the
 * replicas it assigns this node. */
#include "node/agent.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "node/config.h"
#include "node/metrics.h"
#include "node/node.h"
#include "lib/msg.h"
#include "lib/certs.h"
#include "lib/tls.h"
#include "lib/clock.h"
#include "lib/util.h"

#include <openssl/crypto.h>

#define MAX_REPLICAS   64
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1000
#define POLL_MS	       20
#define MAX_ORCHS      8
#define LEAVE_MS       25000 /* a pod leaving waits this long at most for its replicas to drain */

struct replica {
	char id[RDM_NODE_NAME_MAX + 1];
	char listen[64];
	struct rdm_chain_conf chain; /* its own copy, loaded when it started */
	struct rdm_node *node;
	pthread_t thr;
	int drain_ms;
	atomic_int ended; /* rdm_node_run returned */
	int joined;
	int stopping;		/* asked to stop (removed, or moved within this node) */
	uint64_t stop_at_ns;	/* 0: not scheduled */
	uint64_t idle_since_ns; /* leaving, and no upstream connected since */
	const char *state;	/* running, done, stopping, stopped */
};

struct agent {
	const struct rdm_agent_opts *o;
	struct rdm_tls_ctx *tls;
	struct rdm_tls_conn *c;
	uint64_t epoch; /* applied */
	int hb_ms, dead_ms;
	uint64_t last_rx_ns, last_hb_ns, next_dial_ns;
	int backoff_ms, dial_fails;
	/* --orch A,B,C: orchestrators sharing a store, one of which leads */
	char addr[MAX_ORCHS][64];
	int n_addr, at; /* the list, and the one dialled */
	char hint[64];	/* where a follower said the leader is: dialled next, or "" */
	char cur[64];	/* the address of the channel, or the last dialled */
	struct replica *r[MAX_REPLICAS];
	int n;
	char chain_path[PATH_MAX];
	char *new_key;	/* ctl renew: the key our certificate request was made with (PEM) */
	int reload_now; /* the renewal asks the replicas to take the new certificate at once */
	int leaving;	/* a pod that said it leaves: never dials again */
	/* Held by the main thread while it changes the list (r, n, stopping, epoch) and
	 * while it calls rdm_node_report (a static scratch buffer), and by the metrics
	 * callback; the main thread reads the list without it (it is the only writer). */
	pthread_mutex_t lock;
};

static void alog(const struct agent *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void alog(const struct agent *a, const char *fmt, ...)
{
	char msg[1024], ts[32];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	rdm_log_clock(ts, sizeof(ts));
	fprintf(stderr, "rdmesh: %s: %s %s\n", a->o->name, ts, msg);
}

/* ---- replicas --------------------------------------------------------------------- */

static void *replica_main(void *arg)
{
	struct replica *r = arg;

	rdm_node_run(r->node, r->drain_ms);
	atomic_store(&r->ended, 1);
	return NULL;
}

static struct replica *find(struct agent *a, const char *id)
{
	for (int i = 0; i < a->n; i++)
		if (!strcmp(a->r[i]->id, id) && !a->r[i]->stopping)
			return a->r[i];
	return NULL;
}

/* Starts replica id from the chain file now in place. 0 or -errno (logged). */
static int start(struct agent *a, const char *id)
{
	struct replica *r;
	char err[512];

	if (a->n == MAX_REPLICAS) {
		alog(a, "%s: more than %d replicas on one node", id, MAX_REPLICAS);
		return -ENOSPC;
	}
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	snprintf(r->id, sizeof(r->id), "%s", id);
	r->drain_ms = a->o->drain_ms;
	if (rdm_chain_load(a->chain_path, &r->chain, err, sizeof(err)) < 0) {
		alog(a, "%s: %s", id, err);
		free(r);
		return -EINVAL;
	}
	/* Replicas prove their hops with this host's certificate, as the agent does. */
	if (rdm_chain_use_certs(&r->chain, a->o->certs) < 0) {
		rdm_chain_free(&r->chain);
		free(r);
		return -ENOMEM;
	}
	r->node = rdm_node_new(&r->chain, id, err, sizeof(err));
	if (!r->node) {
		alog(a, "%s: %s", id, err);
		rdm_chain_free(&r->chain);
		free(r);
		return -EINVAL;
	}
	snprintf(r->listen, sizeof(r->listen), "%s",
		 rdm_chain_node(&r->chain, id)->has_listen
		     ? rdm_chain_node(&r->chain, id)->listen.text
		     : "-");
	rdm_node_embed(r->node);
	if (pthread_create(&r->thr, NULL, replica_main, r)) {
		alog(a, "%s: cannot start a thread", id);
		rdm_node_free(r->node);
		rdm_chain_free(&r->chain);
		free(r);
		return -EAGAIN;
	}
	r->state = "running";
	a->r[a->n++] = r;
	alog(a, "%s: started (listen %s)", id, r->listen);
	return 0;
}

/* A replica whose run ended: joined, its counters written, its state set. */
static void reap(struct agent *a, struct replica *r)
{
	char path[PATH_MAX];
	FILE *f;

	pthread_join(r->thr, NULL);
	r->joined = 1;
	r->state = r->stopping ? "stopped" : "done";
	rdm_node_summary(r->node, stderr);
	snprintf(path, sizeof(path), "%s/%s.stats", a->o->dir, r->id);
	f = fopen(path, "w");
	if (f) {
		rdm_node_report(r->node, f);
		fclose(f);
	} else {
		alog(a, "%s: %s", path, strerror(errno));
	}
	alog(a, "%s: %s (counters in %s)", r->id, r->state, path);
}

static void drop_replica(struct agent *a, int i)
{
	struct replica *r = a->r[i];

	rdm_node_free(r->node);
	rdm_chain_free(&r->chain);
	free(r);
	a->r[i] = a->r[--a->n];
}

/* Reaps ended replicas, stops the ones whose time came, frees stopped ones. */
static void housekeeping(struct agent *a)
{
	uint64_t now = rdm_now_ns();

	for (int i = 0; i < a->n; i++) {
		struct replica *r = a->r[i];

		if (!r->joined && atomic_load(&r->ended)) {
			pthread_mutex_lock(&a->lock);
			reap(a, r);
			pthread_mutex_unlock(&a->lock);
		}
		/* A leaving replica whose upstreams all closed (they drained it) need not
		 * wait for the timer: a second without upstreams will do. */
		if (r->stop_at_ns && !r->joined) {
			if (rdm_node_upstreams(r->node))
				r->idle_since_ns = 0;
			else if (!r->idle_since_ns)
				r->idle_since_ns = now;
			else if (now - r->idle_since_ns >= 1000000000ull)
				r->stop_at_ns = now;
		}
		if (r->stop_at_ns && now >= r->stop_at_ns && !r->joined) {
			r->stop_at_ns = 0;
			r->state = "stopping";
			rdm_node_stop(r->node);
		}
		if (r->stopping && r->joined) {
			pthread_mutex_lock(&a->lock);
			drop_replica(a, i);
			pthread_mutex_unlock(&a->lock);
			i--;
		}
	}
}

/* ---- the channel ------------------------------------------------------------------ */

/* Space-separated ids of the replicas the node has (running or done), or with draining
 * set, of those it was told to stop and still runs (their ports are still taken). */
static void replica_ids(const struct agent *a, int draining, char *out, size_t len)
{
	size_t used = 0;

	out[0] = 0;
	for (int i = 0; i < a->n; i++)
		if (draining ? a->r[i]->stopping && !a->r[i]->joined : !a->r[i]->stopping)
			used += (size_t)snprintf(out + used, used < len ? len - used : 0, "%s%s",
						 used ? " " : "", a->r[i]->id);
}

static void hang_up(struct agent *a, const char *why)
{
	alog(a, "control channel to %s lost: %s; replicas keep forwarding on epoch %" PRIu64,
	     a->cur, why, a->epoch);
	rdm_tls_close(a->c);
	a->c = NULL;
	a->at = (a->at + 1) % a->n_addr; /* unless told where the leader is: the next one */
	a->next_dial_ns = rdm_now_ns() + (uint64_t)BACKOFF_MIN_MS * 1000000ull;
	a->backoff_ms = BACKOFF_MIN_MS;
}

static void dial(struct agent *a)
{
	char err[512], ep[24], run[1024], drain[1024], data[64] = "", until[24] = "";
	const char *rdma = a->o->rdma_device ? a->o->rdma_device : "";
	const char *kv[] = {"running",	  run,	 "draining", drain, "data", data,
			    "cert_until", until, "rdma",     rdma,  NULL};

	snprintf(a->cur, sizeof(a->cur), "%s", a->hint[0] ? a->hint : a->addr[a->at]);
	a->hint[0] = 0;
	a->c = rdm_tls_connect(a->tls, a->cur, RDM_ORCH_NAME, 2000, err, sizeof(err));
	if (!a->c) {
		/* Every failure at first, then one in ten: an absent orchestrator is normal. */
		if (a->dial_fails++ % 10 == 0)
			alog(a, "orchestrator %s: %s (retrying%s)", a->cur, err,
			     a->n_addr > 1 ? " with the next" : "");
		a->at = (a->at + 1) % a->n_addr;
		a->next_dial_ns = rdm_now_ns() + (uint64_t)a->backoff_ms * 1000000ull;
		a->backoff_ms =
		    a->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : a->backoff_ms * 2;
		return;
	}
	a->dial_fails = 0;
	a->backoff_ms = BACKOFF_MIN_MS;
	replica_ids(a, 0, run, sizeof(run));
	replica_ids(a, 1, drain, sizeof(drain));
	if (a->o->stage) { /* a pod: where it listens, when its certificate runs out */
		if (rdm_agent_data_ip(a->o->data, rdm_tls_fd(a->c), data, sizeof(data), err,
				      sizeof(err)) < 0)
			alog(a, "%s", err);
		snprintf(until, sizeof(until), "%" PRId64,
			 rdm_certs_not_after(a->o->certs, a->o->name));
	} else {
		kv[4] = NULL; /* a host: rack.yaml says where it listens */
	}
	snprintf(ep, sizeof(ep), "%" PRIu64, a->epoch);
	alog(a, "connected to the orchestrator at %s: hello (epoch %s, running [%s]%s%s%s)", a->cur,
	     ep, run, drain[0] ? ", draining [" : "", drain, drain[0] ? "]" : "");
	a->last_rx_ns = rdm_now_ns();
	if (rdm_msg_send(a->c, "hello", a->epoch, kv, NULL, 0, RDM_ORCH_SEND_MS) < 0)
		hang_up(a, "hello not sent");
}

static void reply_applied(struct agent *a, uint64_t epoch, const char *result)
{
	const char *kv[] = {"result", result, NULL};

	if (a->c && rdm_msg_send(a->c, "applied", epoch, kv, NULL, 0, RDM_ORCH_SEND_MS) < 0)
		hang_up(a, "reply not sent");
}

/* An assign: refused unless newer; checked whole; then applied. */
static void take_assign(struct agent *a, const struct rdm_msg *m)
{
	const char *reps = rdm_msg_get(m, "replicas"), *hb = rdm_msg_get(m, "heartbeat_ms");
	const char *dead = rdm_msg_get(m, "dead_ms");
	char tmp[PATH_MAX + 8], err[600], why[700], list[1024];
	struct rdm_chain_conf check;
	uint64_t stop_ns;
	FILE *f;

	if (m->epoch <= a->epoch) {
		snprintf(why, sizeof(why),
			 "refused: epoch %" PRIu64 " is not newer than the applied %" PRIu64,
			 m->epoch, a->epoch);
		alog(a, "assignment %s; running replicas untouched", why);
		reply_applied(a, m->epoch, why);
		return;
	}
	snprintf(list, sizeof(list), "%s", reps ? reps : "");
	snprintf(tmp, sizeof(tmp), "%s.new", a->chain_path);
	f = fopen(tmp, "w");
	if (!f || fwrite(m->body, 1, m->body_len, f) != m->body_len || fclose(f)) {
		snprintf(why, sizeof(why), "error: %.500s: %s", tmp, strerror(errno));
		if (f)
			fclose(f);
		alog(a, "epoch %" PRIu64 ": %s", m->epoch, why);
		reply_applied(a, m->epoch, why);
		return;
	}
	/* Checked whole before anything changes: the chain parses, and names every replica. */
	if (rdm_chain_load(tmp, &check, err, sizeof(err)) < 0) {
		snprintf(why, sizeof(why), "error: %s", err);
		alog(a, "epoch %" PRIu64 " refused: %s; running replicas untouched", m->epoch, err);
		reply_applied(a, m->epoch, why);
		return;
	}
	for (char *save = NULL, *id = strtok_r(list, " ", &save); id;
	     id = strtok_r(NULL, " ", &save))
		if (!rdm_chain_node(&check, id)) {
			snprintf(why, sizeof(why), "error: the chain has no node '%s'", id);
			alog(a, "epoch %" PRIu64 " refused: %s", m->epoch, why);
			rdm_chain_free(&check);
			reply_applied(a, m->epoch, why);
			return;
		}
	stop_ns = ((uint64_t)check.transport.drain_ms + RDM_AGENT_STOP_GRACE_MS) * 1000000ull;
	if (rename(tmp, a->chain_path) < 0) {
		snprintf(why, sizeof(why), "error: %.500s: %s", a->chain_path, strerror(errno));
		rdm_chain_free(&check);
		reply_applied(a, m->epoch, why);
		return;
	}
	pthread_mutex_lock(&a->lock); /* until the list is the new one */
	a->epoch = m->epoch;
	if (hb && atoi(hb) > 0)
		a->hb_ms = atoi(hb);
	if (dead && atoi(dead) > 0)
		a->dead_ms = atoi(dead);
	alog(a, "epoch %" PRIu64 ": replicas [%s]", m->epoch, reps ? reps : "");

	/* Leaving: every replica not named (or named at another address). */
	for (int i = 0; i < a->n; i++) {
		struct replica *r = a->r[i];
		const struct rdm_node_conf *nc = rdm_chain_node(&check, r->id);
		int named;

		/* Gone or going for good; a leaving one still waiting to stop can stay. */
		if (r->stopping && (!r->stop_at_ns || r->joined))
			continue;
		named = rdm_word_in(reps, r->id);
		if (named && nc && nc->has_listen && strcmp(nc->listen.text, r->listen)) {
			alog(a, "%s: moves to %s: stopping the one at %s", r->id, nc->listen.text,
			     r->listen);
			r->stopping = 1;
			r->stop_at_ns = 0;
			if (!r->joined)
				rdm_node_stop(r->node);
			continue;
		}
		if (named) {
			if (r->stopping)
				alog(a, "%s: assigned again before it stopped: kept", r->id);
			r->stopping = 0;
			r->stop_at_ns = 0;
			r->idle_since_ns = 0;
			continue;
		}
		if (r->stopping)
			continue; /* already leaving */
		r->stopping = 1;
		if (!r->joined) {
			r->stop_at_ns = rdm_now_ns() + stop_ns;
			alog(a,
			     "%s: no longer assigned: stops in %" PRIu64 " ms, once its upstreams "
			     "have drained it",
			     r->id, stop_ns / 1000000);
		}
	}
	rdm_chain_free(&check);
	/* Staying ones re-read their next list; new ones start. */
	snprintf(list, sizeof(list), "%s", reps ? reps : "");
	for (char *save = NULL, *id = strtok_r(list, " ", &save); id;
	     id = strtok_r(NULL, " ", &save)) {
		struct replica *r = find(a, id);

		if (r && !r->joined)
			rdm_node_reload(r->node);
		else if (!r)
			start(a, id); /* a failure is logged and shows in the heartbeat */
	}
	pthread_mutex_unlock(&a->lock);
	reply_applied(a, m->epoch, "ok");
}

/* ---- certificates handed out by the orchestrator (orchestrator/orch_certs.c) ---- */

static void forget_new_key(struct agent *a)
{
	if (a->new_key)
		OPENSSL_cleanse(a->new_key, strlen(a->new_key));
	free(a->new_key);
	a->new_key = NULL;
}

/* renew: a new key, and a certificate request for our name. */
static void take_renew(struct agent *a, const struct rdm_msg *m)
{
	char err[512], *csr = NULL;
	const char *reload = rdm_msg_get(m, "reload");

	forget_new_key(a);
	a->reload_now = reload && !strcmp(reload, "now");
	if (rdm_certs_request(a->o->name, &a->new_key, &csr, err, sizeof(err)) < 0) {
		const char *kv[] = {"result", err, NULL};

		alog(a, "renew: %s", err);
		if (rdm_msg_send(a->c, "renewed", m->epoch, kv, NULL, 0, RDM_ORCH_SEND_MS) < 0)
			hang_up(a, "renewed not sent");
		return;
	}
	if (rdm_msg_send(a->c, "csr", m->epoch, NULL, csr, strlen(csr), RDM_ORCH_SEND_MS) < 0)
		hang_up(a, "csr not sent");
	free(csr);
}

/* cert: the signed certificate and the CA bundle, checked and installed. The replicas
 * read them on the epoch that follows; our own channel uses them when it connects again. */
static void take_cert(struct agent *a, const struct rdm_msg *m)
{
	const char *e = rdm_msg_get(m, "error"), *cl = rdm_msg_get(m, "cert_len");
	size_t clen = cl ? strtoull(cl, NULL, 10) : 0;
	char err[640] = "", why[512];
	const char *kv[] = {"result", "ok", NULL};

	if (e)
		snprintf(err, sizeof(err), "the orchestrator refused our request: %s", e);
	else if (!a->new_key)
		snprintf(err, sizeof(err), "a certificate without our request");
	else if (!clen || clen >= m->body_len)
		snprintf(err, sizeof(err), "a malformed cert message (cert_len %s)",
			 cl ? cl : "none");
	else if (rdm_certs_install(a->o->certs, a->o->name, a->new_key, m->body, clen,
				   m->body + clen, m->body_len - clen, err, sizeof(err)) == 0 &&
		 rdm_tls_ctx_reload(a->tls, a->o->certs, why, sizeof(why)) < 0)
		snprintf(err, sizeof(err), "installed, but our channel's context: %s", why);
	forget_new_key(a);
	if (err[0]) {
		kv[1] = err;
		alog(a, "renew: %s", err);
	} else if (a->reload_now) { /* a pod's own renewal: no new epoch comes */
		for (int i = 0; i < a->n; i++)
			if (!a->r[i]->joined && !a->r[i]->stopping)
				rdm_node_reload(a->r[i]->node);
		alog(a, "renew: new key and certificate installed in %s; replicas use them now",
		     a->o->certs);
	} else {
		alog(a,
		     "renew: new key and certificate installed in %s; replicas use them from the "
		     "next epoch",
		     a->o->certs);
	}
	if (rdm_msg_send(a->c, "renewed", m->epoch, kv, NULL, 0, RDM_ORCH_SEND_MS) < 0)
		hang_up(a, "renewed not sent");
}

static void heartbeat(struct agent *a)
{
	char *body = NULL, run[1024], drain[1024];
	size_t len = 0;
	const char *kv[] = {"running", run, "draining", drain, NULL};
	FILE *f = open_memstream(&body, &len);

	if (!f)
		return;
	pthread_mutex_lock(&a->lock);
	for (int i = 0; i < a->n; i++) {
		struct replica *r = a->r[i];

		if (r->stopping)
			continue;
		fprintf(f, "replica %s %s\n", r->id, r->state);
		rdm_node_report(r->node, f);
	}
	pthread_mutex_unlock(&a->lock);
	fclose(f);
	replica_ids(a, 0, run, sizeof(run));
	replica_ids(a, 1, drain, sizeof(drain));
	if (rdm_msg_send(a->c, "heartbeat", a->epoch, kv, body, len, RDM_ORCH_SEND_MS) < 0)
		hang_up(a, "heartbeat not sent");
	free(body);
	a->last_hb_ns = rdm_now_ns();
}

/* A follower's answer to our hello: it does not lead; dial the one it names next (an
 * orchestrator of our list or not: the leader told it where it is reached). */
static void take_leader(struct agent *a, const struct rdm_msg *m)
{
	const char *l = rdm_msg_get(m, "leader"), *why = rdm_msg_get(m, "why");
	char was[64];

	snprintf(was, sizeof(was), "%s", a->cur);
	hang_up(a, why ? why : "not the leader");
	if (l && *l && strcmp(l, "none") && strcmp(l, was) && strlen(l) < sizeof(a->hint)) {
		snprintf(a->hint, sizeof(a->hint), "%s", l);
		alog(a, "%s does not lead: the leader is %s", was, l);
	}
}

static void channel(struct agent *a)
{
	uint64_t now = rdm_now_ns();
	struct rdm_msg m;
	char err[512] = "";
	int rc;

	if (!a->c) {
		if (a->leaving)
			return; /* a pod leaving: a new hello would bring its replica back */
		if (now >= a->next_dial_ns)
			dial(a);
		if (!a->c)
			return;
	}
	rc = rdm_msg_recv(a->c, &m, POLL_MS, err, sizeof(err));
	if (rc == 0) {
		a->last_rx_ns = rdm_now_ns();
		if (!strcmp(m.type, "assign"))
			take_assign(a, &m);
		else if (!strcmp(m.type, "renew"))
			take_renew(a, &m);
		else if (!strcmp(m.type, "cert"))
			take_cert(a, &m);
		else if (!strcmp(m.type, "leader"))
			take_leader(a, &m);
		else if (!strcmp(m.type, "refused"))
			hang_up(a, rdm_msg_get(&m, "why") ? rdm_msg_get(&m, "why") : "refused");
		else if (strcmp(m.type, "ack"))
			alog(a, "unexpected message '%s' from the orchestrator: ignored", m.type);
		rdm_msg_free(&m);
	} else if (rc == -EBADMSG) {
		alog(a, "bad message from the orchestrator: %s", err);
	} else if (rc != -ETIMEDOUT) {
		hang_up(a, err[0] ? err : strerror(-rc));
		return;
	}
	if (a->c && rdm_now_ns() - a->last_rx_ns > (uint64_t)a->dead_ms * 2000000ull)
		hang_up(a, "the orchestrator is silent");
	else if (a->c && rdm_now_ns() - a->last_hb_ns >= (uint64_t)a->hb_ms * 1000000ull)
		heartbeat(a);
}

/* --metrics (rdm_metrics_start_fn's report, on the server's thread): the agent's
 * gauges, then the report of every replica it has. A leaving replica is reported until
 * it is freed, unless another replica has its id (one moving within this node: the
 * assigned one, or the first leaving one, is reported; the same series twice would fail
 * the scrape). */
static int metrics_report(void *arg, FILE *out)
{
	struct agent *a = arg;
	int assigned = 0;

	pthread_mutex_lock(&a->lock);
	for (int i = 0; i < a->n; i++)
		assigned += !a->r[i]->stopping;
	fprintf(out, "agent %s\nepoch %" PRIu64 "\nreplicas %d\n", a->o->name, a->epoch, assigned);
	for (int i = 0; i < a->n; i++) {
		int shadowed = 0;

		for (int j = 0; j < a->n && a->r[i]->stopping && !shadowed; j++)
			shadowed = j != i && !strcmp(a->r[j]->id, a->r[i]->id) &&
				   (!a->r[j]->stopping || j < i);
		if (!shadowed)
			rdm_node_report(a->r[i]->node, out);
	}
	pthread_mutex_unlock(&a->lock);
	return ferror(out) ? -EIO : 0;
}

int rdm_agent_run(const struct rdm_agent_opts *o)
{
	struct agent a = {.o = o,
			  .hb_ms = RDM_ORCH_HEARTBEAT_MS,
			  .dead_ms = RDM_ORCH_DEAD_MS,
			  .backoff_ms = BACKOFF_MIN_MS};
	struct rdm_metrics *metrics = NULL;
	char err[512];
	sigset_t set;
	int stop = 0;
	uint64_t leave_by = 0; /* a pod leaving: stop by then at the latest */

	if (mkdir(o->dir, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "rdmesh: %s: %s\n", o->dir, strerror(errno));
		return 1;
	}
	{
		char list[1024], *save = NULL;

		snprintf(list, sizeof(list), "%s", o->orch);
		for (char *s = strtok_r(list, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
			if (a.n_addr == MAX_ORCHS || strlen(s) >= sizeof(a.addr[0])) {
				fprintf(stderr, "rdmesh: --orch: at most %d addresses IP:PORT\n",
					MAX_ORCHS);
				return 2;
			}
			snprintf(a.addr[a.n_addr++], sizeof(a.addr[0]), "%s", s);
		}
		if (!a.n_addr) {
			fprintf(stderr, "rdmesh: --orch: no address\n");
			return 2;
		}
	}
	snprintf(a.chain_path, sizeof(a.chain_path), "%s/chain.yaml", o->dir);
	if (o->join && rdm_agent_join(o, err, sizeof(err)) < 0) {
		fprintf(stderr, "rdmesh: %s: %s\n", o->name, err);
		return 1;
	}
	a.tls = rdm_tls_ctx_load(o->certs, o->name, 0, err, sizeof(err));
	if (!a.tls) {
		fprintf(stderr, "rdmesh: %s: %s\n", o->name, err);
		return 1;
	}
	pthread_mutex_init(&a.lock, NULL); /* never fails for default attributes */
	/* The server's thread inherits the caller's mask, which blocks our signals. */
	if (o->metrics) {
		char ca[4096], cert[4096], key[4096];
		struct rdm_metrics_tls t = {ca, cert, key};

		rdm_certs_path(ca, sizeof(ca), o->certs, "ca", ".pem", NULL, 0);
		rdm_certs_path(cert, sizeof(cert), o->certs, o->name, ".pem", NULL, 0);
		rdm_certs_path(key, sizeof(key), o->certs, o->name, ".key", NULL, 0);
		metrics = rdm_metrics_start_tls(o->metrics, metrics_report, &a,
						o->metrics_tls ? &t : NULL, err, sizeof(err));
		if (!metrics) {
			fprintf(stderr, "rdmesh: %s: %s\n", o->name, err);
			pthread_mutex_destroy(&a.lock);
			rdm_tls_ctx_free(a.tls);
			return 1;
		}
		alog(&a, "metrics on http://%s/metrics (port %d)", o->metrics,
		     rdm_metrics_port(metrics));
	}
	alog(&a, "agent for %s (state in %s)", o->orch, o->dir);
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	while (!stop || a.n) {
		struct timespec zero = {0, 0};
		int sig = sigtimedwait(&set, NULL, &zero);

		if ((sig == SIGTERM || sig == SIGINT) && !stop && !leave_by && o->stage && a.c &&
		    rdm_msg_send(a.c, "leaving", a.epoch, NULL, NULL, 0, RDM_ORCH_SEND_MS) == 0) {
			/* A pod that stops (scaled down, evicted): the orchestrator takes its
			 * replica out of the plan, its upstreams move its flows, and it ends
			 * as any replica no longer assigned: drained, then stopped. */
			alog(&a,
			     "%s: leaving the mesh: %d replicas stop once drained (at most %d ms)",
			     strsignal(sig), a.n, LEAVE_MS);
			leave_by = rdm_now_ns() + (uint64_t)LEAVE_MS * 1000000ull;
			a.leaving = 1;
			sig = 0;
		}
		if (leave_by && !stop && (!a.n || rdm_now_ns() > leave_by))
			sig = SIGTERM; /* drained, or the orchestrator did not answer in time */
		if ((sig == SIGTERM || sig == SIGINT) && !stop) {
			alog(&a, "%s: stopping %d replicas", strsignal(sig), a.n);
			stop = 1;
			if (a.c)
				hang_up(&a, "stopping");
			pthread_mutex_lock(&a.lock);
			for (int i = 0; i < a.n; i++) {
				a.r[i]->stopping = 1;
				a.r[i]->stop_at_ns = 0;
				if (!a.r[i]->joined)
					rdm_node_stop(a.r[i]->node);
			}
			pthread_mutex_unlock(&a.lock);
		}
		if (sig == SIGHUP)
			for (int i = 0; i < a.n; i++)
				if (!a.r[i]->joined && !a.r[i]->stopping)
					rdm_node_reload(a.r[i]->node);
		if (!stop)
			channel(&a);
		else
			usleep(POLL_MS * 1000);
		housekeeping(&a);
	}
	rdm_metrics_stop(metrics);
	pthread_mutex_destroy(&a.lock);
	rdm_tls_close(a.c);
	rdm_tls_ctx_free(a.tls);
	forget_new_key(&a);
	alog(&a, "stopped");
	return 0;
}
