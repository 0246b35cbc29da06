/* Per-flow packet and byte counters keyed by flow id: open addressing, a fixed upper
 * bound on flows (memory stays bounded under a flood of new flows), and a count of the
 * packets of flows that found no room. One per worker; no locking. */
#ifndef RDM_FLOWCOUNT_H
#define RDM_FLOWCOUNT_H

#include <stdint.h>

struct rdm_flowcount_entry {
	uint64_t flow_id; /* 0 = empty; a real id of 0 is stored as 1 */
	uint64_t packets, bytes;
};

struct rdm_flowcount {
	struct rdm_flowcount_entry *e;
	uint32_t cap, mask, max_flows;
	uint32_t flows;
	uint64_t untracked; /* packets of flows beyond max_flows */
};

/* 0 or -ENOMEM. max_flows is rounded up to a power of two for the table (load <= 1/2). */
int rdm_flowcount_init(struct rdm_flowcount *t, uint32_t max_flows);
/* rdm_flowcount_add past its first look: the flow's place is taken by another flow,
 * or empty. */
struct rdm_flowcount_entry *rdm_flowcount__add_more(struct rdm_flowcount *t, uint64_t id,
						    uint32_t i, uint32_t bytes);

/* Counts one packet; returns the flow's entry, or NULL when the table is full. A flow
 * found at its own place, the common case, is counted inline. */
static inline struct rdm_flowcount_entry *rdm_flowcount_add(struct rdm_flowcount *t,
							    uint64_t flow_id, uint32_t bytes)
{
	uint64_t id = flow_id ? flow_id : 1;
	/* Flow ids are already well-mixed hashes; their low bits index directly. */
	uint32_t i = (uint32_t)(id ^ (id >> 32)) & t->mask;
	struct rdm_flowcount_entry *e = &t->e[i];

	if (e->flow_id != id)
		return rdm_flowcount__add_more(t, id, i, bytes);
	e->packets++;
	e->bytes += bytes;
	return e;
}
void rdm_flowcount_fini(struct rdm_flowcount *t);

#endif
