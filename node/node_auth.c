/* Proving the node's hops (transport.protect: auth): TLS contexts from the rack's
 * certificates, the upstream names this node admits (the identities of the nodes whose
 * next list holds it), and refusals counted and logged with who and why. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/tls.h"
#include "node/node_int.h"

#define REFUSAL_LOGS_PER_TICK 4		    /* more refusals in one tick are counted, not logged */
#define UPSTREAM_REREAD_NS    1000000000ull /* the chain file is read again at most this often */

/* How many hops each node of chain is from an ingress (0 at an ingress), into
 * depth[n_nodes]: breadth first from the ingresses, so each gets its shortest distance.
 * A node no ingress reaches yet (a replica waiting to be added to its upstreams' next
 * lists) stands one hop before its own next hops, as the replicas it joins do; -1 where
 * neither tells. 0, or -ENOMEM. */
static int depths(const struct rdm_chain_conf *chain, int *depth)
{
	int *queue = malloc(sizeof(*queue) * (size_t)chain->n_nodes), head = 0, tail = 0;

	if (!queue)
		return -ENOMEM;
	for (int i = 0; i < chain->n_nodes; i++) {
		depth[i] = chain->nodes[i].ingress.mode != RDM_INGRESS_NONE ? 0 : -1;
		if (!depth[i])
			queue[tail++] = i;
	}
	while (head < tail) {
		const struct rdm_node_conf *o = &chain->nodes[queue[head++]];

		for (int r = 0; r < o->n_next; r++)
			if (depth[o->nexts[r]] < 0) {
				depth[o->nexts[r]] = depth[o - chain->nodes] + 1;
				queue[tail++] = o->nexts[r];
			}
	}
	free(queue);
	for (int changed = 1; changed;) {
		changed = 0;
		for (int i = 0; i < chain->n_nodes; i++) {
			const struct rdm_node_conf *o = &chain->nodes[i];

			for (int r = 0; r < o->n_next && depth[i] < 0; r++)
				if (depth[o->nexts[r]] > 0) {
					depth[i] = depth[o->nexts[r]] - 1;
					changed = 1;
				}
		}
	}
	return 0;
}

/* The nodes that send to node c in chain (its upstreams), with the service index their
 * frames arrive with, into *out. An upstream no ingress reaches sends nothing that
 * passes (no index), but is still named, so its refusals say what it is. */
static int upstreams_of(const struct rdm_chain_conf *chain, const struct rdm_node_conf *c,
			struct upstream **out, int *n_out)
{
	int *depth = malloc(sizeof(*depth) * (size_t)chain->n_nodes), n = 0;
	struct upstream *ups = NULL;

	if (!depth || depths(chain, depth) < 0) {
		free(depth);
		return -ENOMEM;
	}
	for (int i = 0; i < chain->n_nodes; i++) {
		const struct rdm_node_conf *o = &chain->nodes[i];
		int sends = 0;

		for (int r = 0; r < o->n_next; r++)
			sends |= !strcmp(chain->nodes[o->nexts[r]].name, c->name);
		if (!sends)
			continue;
		if (n % 16 == 0) {
			void *p = realloc(ups, sizeof(*ups) * (size_t)(n + 16));

			if (!p) {
				free(ups);
				free(depth);
				return -ENOMEM;
			}
			ups = p;
		}
		snprintf(ups[n].name, sizeof(ups[n].name), "%s", o->identity);
		/* Depths past the index's range cannot be reached: the frame's TTL or index
		 * runs out first. */
		ups[n].si = depth[i] >= 0 && depth[i] < INGRESS_SI
				? (uint8_t)(INGRESS_SI - depth[i] - 1)
				: 0;
		n++;
	}
	free(depth);
	*out = ups;
	*n_out = n;
	return 0;
}

int rdm_node__auth_upstreams(struct rdm_node *n, const struct rdm_chain_conf *chain)
{
	const struct rdm_node_conf *c = rdm_chain_node(chain, n->conf->name);
	struct upstream *ups = NULL, *old;
	int k = 0, rc;

	if (!c)
		return -ENOENT;
	rc = upstreams_of(chain, c, &ups, &k);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&n->auth_mu);
	old = n->up_names;
	n->up_names = ups;
	n->n_up_names = k;
	pthread_mutex_unlock(&n->auth_mu);
	free(old);
	return 0;
}

void rdm_node__path_of(struct rdm_node *n, const char *peer_id, struct si_set *set)
{
	memset(set, 0, sizeof(*set));
	pthread_mutex_lock(&n->auth_mu);
	for (int i = 0; i < n->n_up_names; i++) {
		uint8_t si = n->up_names[i].si;

		/* Unproven peers (protect: none) may send what any upstream may. */
		if (si && (!peer_id[0] || !strcmp(n->up_names[i].name, peer_id)))
			set->bits[si / 64] |= 1ull << (si % 64);
	}
	pthread_mutex_unlock(&n->auth_mu);
}

/* Frames w->frp[0..m) from upstream connection u: those of another chain, or with a
 * service index this upstream does not send (a skipped stage), are dropped, counted and
 * logged. Returns how many are left, compacted. */
int rdm_node__path_check(struct worker *w, int u, int m)
{
	const struct si_set *ok = &w->up_si[u];
	uint32_t spi = w->node->chain->spi;
	int k = 0, bad = 0;
	const struct rdm_frame *first = NULL;

	for (int i = 0; i < m; i++) {
		struct rdm_frame *f = w->frp[i];

		if (f->spi == spi && (ok->bits[f->si / 64] >> (f->si % 64) & 1)) {
			w->frp[k++] = f;
			continue;
		}
		if (!bad++)
			first = f;
	}
	if (!bad)
		return k;
	w->st.drops[DROP_WRONG_PATH] += (uint64_t)bad;
	if (w->refusal_logs < REFUSAL_LOGS_PER_TICK) {
		w->refusal_logs++;
		rdm_node__log(
		    w->node,
		    "dropped %d frames from upstream %s ('%s'): service path %u/%u is not "
		    "one it may send here (chain spi %u)",
		    bad, w->ups[u]->peer, w->ups[u]->peer_id[0] ? w->ups[u]->peer_id : "unproven",
		    first->spi, first->si, spi);
	}
	return k;
}

/* One context of a role from dir: the CA, and this node's identity's certificate. */
static struct rdm_tls_ctx *load_ctx(struct rdm_node *n, const char *dir, int server, char *err,
				    size_t errlen)
{
	struct rdm_tls_ctx *ctx;
	char why[512];

	ctx = rdm_tls_ctx_load(dir, n->conf->identity, server, why, sizeof(why));
	if (!ctx)
		snprintf(err, errlen, "node '%s': the rack's certificates: %s", n->conf->name, why);
	return ctx;
}

int rdm_node__auth_init(struct rdm_node *n, char *err, size_t errlen)
{
	const char *dir = n->chain->transport.certs;

	pthread_mutex_init(&n->auth_mu, NULL);
	/* Who may send here, and with which service index: checked on every frame (the
	 * path), and with protect: auth on every connection (the name). */
	if (rdm_node__auth_upstreams(n, n->chain) < 0) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (n->chain->transport.protect == RDM_PROTECT_NONE) {
		rdm_node__log(n,
			      "transport.protect: none: hops are not proven; anyone who "
			      "reaches %s may send frames",
			      n->conf->has_listen ? n->conf->listen.text : "this node");
		return 0;
	}
	if (!n->conf->has_listen && !n->n_next)
		return 0; /* no hop to prove: a chain of one node */
	if (!dir) {
		snprintf(err, errlen,
			 "%s: node '%s': transport.protect asks every hop for proof (auth is "
			 "the default), but no certificates were given: name their folder in "
			 "transport.certs or "
			 "with --certs DIR (`rdmesh ctl certs` makes them), or set "
			 "transport.protect: none",
			 n->chain->file, n->conf->name);
		return -EINVAL;
	}
	if (n->conf->has_listen && !(n->tls_srv = load_ctx(n, dir, 1, err, errlen)))
		return -EINVAL;
	if (n->n_next && !(n->tls_cli = load_ctx(n, dir, 0, err, errlen)))
		return -EINVAL;
	n->copts.tls = n->tls_cli;
	n->copts.encrypt = n->chain->transport.protect == RDM_PROTECT_ENCRYPT;
	return 0;
}

void rdm_node__auth_reload(struct rdm_node *n)
{
	struct rdm_tls_ctx *ctxs[2] = {n->tls_srv, n->tls_cli};
	char err[512];
	int done = 0;

	for (int i = 0; i < 2; i++) {
		if (!ctxs[i])
			continue;
		if (rdm_tls_ctx_reload(ctxs[i], n->chain->transport.certs, err, sizeof(err)) < 0) {
			rdm_node__log(n, "reload: certificates: %s: keeping the running ones", err);
			return;
		}
		done = 1;
	}
	if (done)
		rdm_node__log(n,
			      "reload: certificates read again from %s: connections made from now "
			      "on prove themselves with them; those up keep going",
			      n->chain->transport.certs);
}

void rdm_node__auth_fini(struct rdm_node *n)
{
	rdm_tls_ctx_free(n->tls_srv);
	rdm_tls_ctx_free(n->tls_cli);
	free(n->up_names);
	pthread_mutex_destroy(&n->auth_mu);
}

static int is_upstream(struct rdm_node *n, const char *name)
{
	int ok = 0;

	pthread_mutex_lock(&n->auth_mu);
	for (int i = 0; i < n->n_up_names && !ok; i++)
		ok = !strcmp(n->up_names[i].name, name);
	pthread_mutex_unlock(&n->auth_mu);
	return ok;
}

/* The chain file may have made name an upstream since it was read: a replica added to
 * an upstream's next list (and that upstream reloaded) dials before anyone reloads this
 * node. So an unknown name makes the node read the file again, at most once a second,
 * whoever asks. 1 when that changed the answer. */
static int reread_upstreams(struct rdm_node *n, const char *name)
{
	uint64_t now = rdm_now_ns();
	struct rdm_chain_conf c;
	char err[512];
	int due;

	pthread_mutex_lock(&n->auth_mu);
	due = now - n->up_names_ns >= UPSTREAM_REREAD_NS;
	if (due)
		n->up_names_ns = now;
	pthread_mutex_unlock(&n->auth_mu);
	if (!due)
		return 0;
	if (rdm_chain_load(n->chain->file, &c, err, sizeof(err)) < 0) {
		rdm_node__log(n, "upstream names: %s: keeping the ones read before", err);
		return 0;
	}
	rdm_node__auth_upstreams(n, &c);
	rdm_chain_free(&c);
	return is_upstream(n, name);
}

/* Admits a proven peer only when the chain makes it one of this node's upstreams. */
static int admit(const char *name, void *arg, char *why, size_t whylen)
{
	struct worker *w = arg;
	struct rdm_node *n = w->node;
	int ok = is_upstream(n, name) || reread_upstreams(n, name);

	if (!ok)
		snprintf(why, whylen, "'%s' is not an upstream of node '%s' in chain '%s'", name,
			 n->conf->name, n->chain->name);
	return ok ? 0 : -1;
}

/* A connection that did not prove itself: counted always, logged a few times a tick. */
static void refused(struct rdm_conn *c, const char *why, void *arg)
{
	struct worker *w = arg;

	w->st.auth_refused++;
	if (w->refusal_logs < REFUSAL_LOGS_PER_TICK) {
		w->refusal_logs++;
		rdm_node__log(w->node, "refused %s", why);
	} else {
		w->refusals_unlogged++;
	}
}

void rdm_node__auth_tick(struct worker *w)
{
	if (w->refusals_unlogged)
		rdm_node__log(w->node,
			      "refused %" PRIu64 " more connections (not logged one by one)",
			      w->refusals_unlogged);
	w->refusals_unlogged = 0;
	w->refusal_logs = 0;
}

void rdm_node__auth_listen(const struct worker *w, struct rdm_conn_opts *o,
			   struct rdm_conn_cbs *cbs)
{
	o->tls = w->node->tls_srv; /* o is the node's copts: encrypt is set there */
	cbs->admit = admit;
	cbs->on_refused = refused;
}

void rdm_node__auth_dial(const struct worker *w, const char *identity, struct rdm_conn_opts *o,
			 struct rdm_conn_cbs *cbs)
{
	o->tls = w->node->tls_cli;
	o->peer_name = identity;
	cbs->on_refused = refused;
}
