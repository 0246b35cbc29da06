/* stamp: appends this node's hop timestamp to every frame (one clock reading per batch)
 * and counts packets and bytes per flow. Config:
 *   - name: stamp
 *     max_flows: 65536   # flows counted per worker; packets beyond are counted apart */
#include "services/stage.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <time.h>

#include "lib/flowcount.h"
#include "lib/yaml.h"

struct stamp_conf {
	uint32_t max_flows;
};

struct stamp_rt {
	uint32_t node_id;
	struct rdm_flowcount flows;
	uint64_t packets, bytes, no_flow_id, hops_full;
};

static void *stamp_conf_new(const struct rdm_ydoc *d, const struct rdm_ynode *n, char *err,
			    size_t errlen)
{
	static const char *const keys[] = {"name", "max_flows", NULL};
	struct stamp_conf *c = calloc(1, sizeof(*c));
	uint64_t v = 65536;

	if (!c) {
		snprintf(err, errlen, "%s: out of memory", rdm_ydoc_name(d));
		return NULL;
	}
	if (n && (rdm_ymap_check_keys(d, n, keys, err, errlen) < 0 ||
		  rdm_ymap_u64(d, n, "max_flows", 1, 1u << 26, 65536, &v, err, errlen) < 0)) {
		free(c);
		return NULL;
	}
	c->max_flows = (uint32_t)v;
	return c;
}

static void stamp_conf_free(void *c)
{
	free(c);
}

static void *stamp_init(const void *conf, const struct rdm_stage_env *env)
{
	const struct stamp_conf *c = conf;
	struct stamp_rt *rt = calloc(1, sizeof(*rt));
	int rc;

	if (!rt)
		return NULL;
	rt->node_id = env->node_id;
	rc = rdm_flowcount_init(&rt->flows, c->max_flows);
	if (rc < 0) {
		free(rt);
		errno = -rc;
		return NULL;
	}
	return rt;
}

static void stamp_deinit(void *p)
{
	struct stamp_rt *rt = p;

	if (!rt)
		return;
	rdm_flowcount_fini(&rt->flows);
	free(rt);
}

static void stamp_process(void *p, struct rdm_frame *const *f, int n, int *verdict)
{
	struct stamp_rt *rt = p;
	struct timespec ts;
	uint64_t ns;

	/* One reading for the batch: its frames arrived together and are stamped together
	 * (they are apart by the nanoseconds this loop takes). */
	clock_gettime(CLOCK_REALTIME, &ts);
	ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	for (int i = 0; i < n; i++) {
		/* A full hop list is counted, not fatal: the packet still goes on. */
		if (rdm_frame_add_hop(f[i], rt->node_id, ns) < 0)
			rt->hops_full++;
		if (f[i]->present & RDM_F_FLOW_ID)
			rdm_flowcount_add(&rt->flows, f[i]->flow_id, f[i]->pkt_len);
		else
			rt->no_flow_id++;
		rt->packets++;
		rt->bytes += f[i]->pkt_len;
		verdict[i] = RDM_STAGE_PASS;
	}
}

static void stamp_report(void *p, rdm_stage_emit emit, void *arg)
{
	struct stamp_rt *rt = p;

	emit(arg, "packets", rt->packets);
	emit(arg, "bytes", rt->bytes);
	emit(arg, "flows", rt->flows.flows);
	emit(arg, "flows_untracked_packets", rt->flows.untracked);
	emit(arg, "no_flow_id", rt->no_flow_id);
	emit(arg, "hops_full", rt->hops_full);
}

const struct rdm_stage_ops rdm_stage_stamp = {
    .name = "stamp",
    .conf_new = stamp_conf_new,
    .conf_free = stamp_conf_free,
    .init = stamp_init,
    .deinit = stamp_deinit,
    .process = stamp_process,
    .report = stamp_report,
    .keeps_state = 1,
};
