/* SIGHUP for the data plane: stages' confs re-read on the caller's thread, the chain
 * file's next list for this node, and workers switching to both between batches. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/clock.h"
#include "node/node_int.h"

/* Between batches: switch the stages to confs the main thread reloaded, and steering to
 * a new next list. on_worker is 0 when the main thread does it for a worker that has
 * finished: its stages still switch (their confs are freed next), its connections not. */
void rdm_node__take_reload(struct worker *w, int on_worker)
{
	struct rdm_node *n = w->node;
	unsigned gen = atomic_load(&n->reload_gen);

	if (gen == atomic_load(&w->reload_seen))
		return;
	pthread_rwlock_wrlock(&n->report_mu); /* a swap may free what a report reads */
	for (int s = 0; s < n->n_stages; s++)
		if (n->reload_conf[s])
			n->stage_ops[s]->conf_swap(w->stage_rt[s], n->reload_conf[s]);
	pthread_rwlock_unlock(&n->report_mu);
	if (on_worker && n->reload_steer && w->steer != n->reload_steer)
		rdm_node__apply_steer(w, n->reload_steer);
	atomic_store(&w->reload_seen, gen);
}

/* 1 when steer sp names exactly the next hops of node conf c of chain (in any order), at
 * the same addresses: a replica that moved (its node died, or was drained) is a new
 * next hop under its old name, and the old address drains. */
static int same_next(const struct steer *sp, const struct rdm_chain_conf *chain,
		     const struct rdm_node_conf *c)
{
	if (sp->n != c->n_next)
		return 0;
	for (int r = 0; r < c->n_next; r++) {
		const struct rdm_node_conf *nx = &chain->nodes[c->nexts[r]];
		const struct rdm_addr *peer = c->has_connect ? &c->connect : &nx->listen;
		int i = 0;

		while (i < sp->n &&
		       (strcmp(sp->name[i], nx->name) || strcmp(sp->peer[i]->text, peer->text)))
			i++;
		if (i == sp->n)
			return 0;
	}
	return 1;
}

/* SIGHUP, for the data plane: reads the chain file again and, when this node's next
 * replicas changed, makes the new steer current (workers switch in
 * rdm_node__take_reload). Only the next list is taken from the file; other changes need
 * a restart, and are not looked at. NULL when nothing changes or the file is broken
 * (logged). */
static const struct steer *reload_next(struct rdm_node *n)
{
	struct rdm_chain_conf *c = calloc(1, sizeof(*c));
	const struct rdm_node_conf *me;
	struct steer *sp = NULL;
	char err[512];

	if (!c || rdm_chain_load(n->chain->file, c, err, sizeof(err)) < 0) {
		if (c)
			rdm_node__log(n, "reload %s: %s: keeping the running next hops",
				      n->chain->file, err);
		free(c);
		return NULL;
	}
	me = rdm_chain_node(c, n->conf->name);
	/* Who may send to this node follows the file even when its own next list stays. */
	if (me && n->tls_srv && rdm_node__auth_upstreams(n, c) < 0)
		rdm_node__log(n, "reload: upstream names: out of memory: keeping the old ones");
	if (!me)
		rdm_node__log(n,
			      "reload %s: no node named %s any more: keeping the running next hops",
			      n->chain->file, n->conf->name);
	else if (!n->steer || !me->n_next) {
		if (!n->steer != !me->n_next)
			rdm_node__log(
			    n,
			    "reload %s: a node cannot start or stop being the chain's end while "
			    "running: keeping the running next hops",
			    n->chain->file);
	} else if (!same_next(n->steer, c, me)) {
		sp = rdm_node__steer_new(c, me, c);
		if (!sp)
			rdm_node__log(n, "reload: steering table: %s", strerror(errno));
	}
	if (!sp) {
		rdm_chain_free(c);
		free(c);
		return NULL;
	}
	sp->older = n->steer;
	n->steer = sp;
	rdm_node__log(n, "reload: next hops now %d replicas (was %d)", sp->n, sp->older->n);
	return sp;
}

/* SIGHUP: stages that can reload build new confs here, on the caller's thread; workers
 * switch between batches (rdm_node__take_reload); the old confs go once every worker
 * has. A stage whose files are broken keeps running on what it had. The next list is
 * re-read too (reload_next). */
void rdm_node_reload(struct rdm_node *n)
{
	char err[512];
	void *old[MAX_STAGES] = {0};
	int any = 0;
	unsigned gen;
	uint64_t one = 1, until = rdm_now_ns() + 5000000000ull;

	rdm_node__auth_reload(n);
	for (int s = 0; s < n->n_stages; s++) {
		const struct rdm_stage_ops *ops = n->stage_ops[s];

		n->reload_conf[s] = NULL;
		if (!ops->conf_reload)
			continue;
		err[0] = 0;
		errno = 0;
		n->reload_conf[s] = ops->conf_reload(n->stage_conf[s], err, sizeof(err));
		if (!n->reload_conf[s]) {
			if (errno == EOPNOTSUPP) /* nothing to reload: settings in the chain file */
				rdm_node__log(n, "reload %s: %s", ops->name, err);
			else
				rdm_node__log(n, "reload %s: %s: keeping the running configuration",
					      ops->name, err);
			continue;
		}
		any = 1;
	}
	n->reload_steer = reload_next(n);
	if (!any && !n->reload_steer)
		return;
	gen = atomic_fetch_add(&n->reload_gen, 1) + 1;
	for (int i = 0; i < n->n_workers; i++)
		if (write(n->w[i].wake.fd, &one, sizeof(one)) < 0)
			rdm_node__log(n, "wake worker %d: %s", i, strerror(errno));
	for (;;) {
		int behind = 0;

		for (int i = 0; i < n->n_workers; i++)
			if (atomic_load(&n->w[i].reload_seen) != gen && !n->w[i].finished)
				behind++;
		if (!behind)
			break;
		if (rdm_now_ns() > until) {
			/* A worker stuck this long is a bug; leaking the old conf is safer than
			 * freeing memory a worker may still read. */
			rdm_node__log(
			    n,
			    "reload: %d workers did not switch in 5 s; old configuration kept in "
			    "memory",
			    behind);
			return;
		}
		usleep(1000);
	}
	for (int i = 0; i < n->n_workers; i++)
		if (atomic_load(&n->w[i].reload_seen) != gen)
			rdm_node__take_reload(&n->w[i],
					      0); /* a finished worker: its thread is gone */
	n->reload_steer = NULL;
	pthread_rwlock_wrlock(&n->report_mu);
	for (int s = 0; s < n->n_stages; s++) {
		if (!n->reload_conf[s])
			continue;
		old[s] = n->stage_conf[s];
		n->stage_conf[s] = n->reload_conf[s];
		n->stage_ops[s]->conf_free(old[s]);
		rdm_node__log(n, "reload %s: done", n->stage_ops[s]->name);
	}
	pthread_rwlock_unlock(&n->report_mu);
}
