/* The node's lifecycle and public API: building a node from its chain (stage confs,
 * workers), running its workers until it is done or told to stop, and freeing it. */
#include "node/node.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/yaml.h"
#include "node/node_int.h"

/* Adds a's counters to t, field by field (the stats struct is all uint64_t). */
void rdm_node__stats_add(struct rdm_conn_stats *t, const struct rdm_conn_stats *a)
{
	uint64_t *d = (uint64_t *)t;
	const uint64_t *v = (const uint64_t *)a;

	for (size_t k = 0; k < sizeof(*t) / sizeof(uint64_t); k++)
		d[k] += v[k];
}

/* Logs one line to stderr with a timestamp and the node's name. */
void rdm_node__log(const struct rdm_node *n, const char *fmt, ...)
{
	char buf[512], ts[32];
	va_list ap;

	rdm_log_clock(ts, sizeof(ts));
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s %s: %s\n", ts, n->conf->name, buf);
}

/* The stage a chain entry names, or NULL with "FILE:LINE:COL: unknown stage" in err. */
static const struct rdm_stage_ops *stage_lookup(const struct rdm_chain_conf *chain,
						const struct rdm_stage_conf *sc, char *err,
						size_t errlen)
{
	const struct rdm_stage_ops *ops = rdm_stage_find(sc->name);
	const char *const *names = rdm_stage_names();
	const char *hint;
	size_t k = 0;

	if (ops)
		return ops;
	while (names[k])
		k++;
	hint = rdm_yclosest(sc->name, names, k, 2);
	snprintf(err, errlen, "%s:%d:%d: unknown stage '%s'%s%s%s", chain->file, sc->line, sc->col,
		 sc->name, hint ? " (did you mean '" : "", hint ? hint : "", hint ? "'?)" : "");
	return NULL;
}

int rdm_chain_check_stages(const struct rdm_chain_conf *chain, char *err, size_t errlen)
{
	for (int i = 0; i < chain->n_nodes; i++)
		for (int s = 0; s < chain->nodes[i].n_stages; s++) {
			const struct rdm_stage_conf *sc = &chain->nodes[i].stages[s];
			const struct rdm_stage_ops *ops = stage_lookup(chain, sc, err, errlen);
			void *conf;

			if (!ops)
				return -EINVAL;
			conf = ops->conf_new(chain->doc, sc->conf, err, errlen);
			if (!conf)
				return -EINVAL;
			ops->conf_free(conf);
		}
	return 0;
}

struct rdm_node *rdm_node_new(const struct rdm_chain_conf *chain, const char *name, char *err,
			      size_t errlen)
{
	const struct rdm_node_conf *c = rdm_chain_node(chain, name);
	struct rdm_node *n;

	if (!c) {
		snprintf(err, errlen, "%s: no node named '%s'", chain->file, name);
		errno = ENOENT;
		return NULL;
	}
	n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->chain = chain;
	n->conf = c;
	n->n_next = c->n_next;
	if (c->n_next && !(n->steer = rdm_node__steer_new(chain, c, NULL))) {
		snprintf(err, errlen, "%s: node '%s': steering table: %s", chain->file, name,
			 strerror(errno));
		goto err;
	}
	n->ops = c->transport == RDM_TRANSPORT_TCP ? &rdm_tcp_ops : &rdm_rdma_ops;
	if (c->transport == RDM_TRANSPORT_AUTO && n->n_next) {
		/* Auto: RDMA only from an address on an active RDMA device; the peer's side
		 * shows when connecting (see rdm_node__auto_check). */
		char why[512];

		if (!rdm_rdma_probe(c->has_listen ? &c->listen : NULL, why, sizeof(why))) {
			n->ops = &rdm_tcp_ops;
			n->auto_no_rdma = 1; /* every hop falls back: counted in the report */
			rdm_node__log(n, "transport auto: %s: using TCP", why);
		} else {
			n->auto_tcp_fallback = 1;
			rdm_node__log(n, "transport auto: %s: trying RDMA", why);
		}
	}
	for (int i = 0; i < chain->n_nodes; i++)
		for (int r = 0; r < chain->nodes[i].n_next; r++)
			if (&chain->nodes[chain->nodes[i].nexts[r]] == c &&
			    chain->nodes[i].transport != RDM_TRANSPORT_TCP)
				n->listen_rdma = 1;
	n->n_workers = c->workers > 0 ? c->workers : 1;
	n->drain_ms = 2000;
	n->tun = c->ingress.mode == RDM_INGRESS_TUN ? &c->ingress.tun
		 : c->egress.tun.name		    ? &c->egress.tun
						    : NULL;
	if (n->tun && n->n_workers > 1) {
		/* Each worker would open the device, and it has a single queue. */
		snprintf(err, errlen,
			 "%s: node '%s': inline mode (tun %s) runs one worker: the device has "
			 "a single queue",
			 chain->file, name, n->tun->name);
		goto err;
	}
	/* Frames travel back in inline mode and when a stage may reply (policy's reject):
	 * then each node remembers which upstream connection brought each flow. */
	for (int i = 0; i < chain->n_nodes; i++) {
		const struct rdm_node_conf *o = &chain->nodes[i];

		if (o->ingress.mode == RDM_INGRESS_TUN || o->egress.tun.name)
			n->returns = 1;
		for (int s = 0; s < o->n_stages; s++)
			if (!strcmp(o->stages[s].name, "policy"))
				n->returns = 1;
	}
	pthread_mutex_init(&n->eg_mu, NULL);
	pthread_rwlock_init(&n->report_mu, NULL);
	rdm_conn_opts_from_conf(&n->copts, &chain->transport);
	/* Hops leave from this node's own data address: with RDMA that picks the device. */
	n->copts.local = c->has_listen ? &c->listen : NULL;
	if (c->poll == RDM_POLL_BUSY)
		n->copts.spin_us = UINT32_MAX; /* rdma and shm poll for ever too */
	/* Auto prefers shared memory for a next replica on this host (its shm listener
	 * answers), then RDMA, then TCP. Encrypted hops stay off it: the rings are in the
	 * clear, in memory both processes share. */
	n->try_shm = c->transport == RDM_TRANSPORT_AUTO && chain->transport.shm &&
		     chain->transport.protect != RDM_PROTECT_ENCRYPT;
	n->copts.node_id = c->id;
	if (rdm_node__auth_init(n, err, errlen) < 0)
		goto err;
	if (c->n_stages > MAX_STAGES) {
		snprintf(err, errlen, "%s: node '%s': at most %d stages", chain->file, name,
			 MAX_STAGES);
		goto err;
	}
	for (int s = 0; s < c->n_stages; s++) {
		const struct rdm_stage_conf *sc = &c->stages[s];
		const struct rdm_stage_ops *ops = stage_lookup(chain, sc, err, errlen);

		if (!ops)
			goto err;
		n->stage_ops[s] = ops;
		n->stage_conf[s] = ops->conf_new(chain->doc, sc->conf, err, errlen);
		if (!n->stage_conf[s])
			goto err;
		n->n_stages++;
	}
	n->w = calloc((size_t)n->n_workers, sizeof(*n->w));
	if (!n->w) {
		snprintf(err, errlen, "out of memory");
		goto err;
	}
	for (int i = 0; i < n->n_workers; i++)
		if (rdm_node__worker_init(n, &n->w[i], i, err, errlen) < 0)
			goto err;
	return n;
err:
	rdm_node_free(n);
	errno = EINVAL;
	return NULL;
}

void rdm_node_free(struct rdm_node *n)
{
	if (!n)
		return;
	if (n->w)
		for (int i = 0; i < n->n_workers; i++)
			rdm_node__worker_fini(n, &n->w[i]);
	for (int s = 0; s < n->n_stages; s++)
		n->stage_ops[s]->conf_free(n->stage_conf[s]);
	rdm_node__steer_free_all(n->steer);
	rdm_node__auth_fini(n);
	pthread_mutex_destroy(&n->eg_mu);
	pthread_rwlock_destroy(&n->report_mu);
	free(n->w);
	free(n);
}

int rdm_node_upstreams(const struct rdm_node *n)
{
	int k = 0;

	for (int i = 0; i < n->n_workers; i++)
		k += *(volatile const int *)&n->w[i].n_ups;
	return k;
}

void rdm_node_embed(struct rdm_node *n)
{
	n->embedded = 1;
}

void rdm_node_stop(struct rdm_node *n)
{
	if (!atomic_exchange(&n->stop, 1))
		rdm_node__log(n, "asked to stop: draining and stopping");
}

void rdm_node__fatal(struct rdm_node *n, int rc)
{
	int none = 0;

	atomic_compare_exchange_strong(&n->fatal, &none, rc);
	atomic_store(&n->stop, 1);
}

int rdm_node_run(struct rdm_node *n, int drain_ms)
{
	sigset_t set;
	uint64_t t0 = rdm_now_ns();
	int stop_sent = 0, rc;
	char err[256];

	n->drain_ms = drain_ms;
	rc = rdm_node__listen_probe(n, err, sizeof(err));
	if (rc < 0) {
		rdm_node__log(n, "%s", err);
		return rc;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	for (int i = 0; i < n->n_workers; i++)
		rdm_node__snap_stats(&n->w[i]);
	atomic_store(&n->running, 1);
	for (int i = 0; i < n->n_workers; i++) {
		rc = pthread_create(&n->w[i].thr, NULL, rdm_node__worker_main, &n->w[i]);
		if (rc) {
			rdm_node__log(n, "pthread_create: %s", strerror(rc));
			atomic_store(&n->stop, 1);
			for (int j = 0; j < i; j++)
				pthread_join(n->w[j].thr, NULL);
			atomic_store(&n->running, 0);
			return -rc;
		}
	}
	while (atomic_load(&n->n_finished) < n->n_workers) {
		struct timespec to = {0, (n->embedded ? 20 : 100) * 1000000};
		int sig = 0;

		if (n->embedded)
			nanosleep(&to, NULL); /* the process's owner takes the signals */
		else
			sig = sigtimedwait(&set, NULL, &to);

		if (sig == SIGHUP && !atomic_load(&n->stop))
			rdm_node_reload(n);
		if (sig == SIGINT || sig == SIGTERM) {
			if (!atomic_load(&n->stop))
				rdm_node__log(n, "%s: draining and stopping", strsignal(sig));
			atomic_store(&n->stop, 1);
		}
		if (atomic_load(&n->stop) && !stop_sent) {
			uint64_t one = 1;

			for (int i = 0; i < n->n_workers; i++)
				if (write(n->w[i].wake.fd, &one, sizeof(one)) < 0)
					rdm_node__log(n, "wake worker %d: %s", i, strerror(errno));
			stop_sent = 1;
		}
	}
	for (int i = 0; i < n->n_workers; i++)
		pthread_join(n->w[i].thr, NULL);
	atomic_store(&n->running, 0);
	n->run_ns = rdm_now_ns() - t0;
	return atomic_load(&n->fatal);
}
