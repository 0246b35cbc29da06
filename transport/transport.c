/* The backends by name, and connection options from the chain's transport settings. */
#include "transport/transport.h"

#include <stdio.h>
#include <string.h>

static const struct rdm_transport_ops *const backends[] = {&rdm_tcp_ops, &rdm_rdma_ops,
							   &rdm_shm_ops};

const struct rdm_transport_ops *rdm_transport_find(const char *name)
{
	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
		if (!strcmp(backends[i]->name, name))
			return backends[i];
	return NULL;
}

void rdm_conn_opts_from_conf(struct rdm_conn_opts *o, const struct rdm_transport_conf *t)
{
	memset(o, 0, sizeof(*o));
	o->queue_bytes = t->queue_bytes;
	o->max_frame = t->max_frame;
	o->backoff_min_ms = t->backoff_min_ms;
	o->backoff_max_ms = t->backoff_max_ms;
	o->batch = t->batch;
	o->keepalive_ms = t->keepalive_ms ? t->keepalive_ms : 3000;
	o->credits = t->credits;
	o->inline_max = t->inline_max;
	o->spin_us = t->spin_us;
}
