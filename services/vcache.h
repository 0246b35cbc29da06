/* The verdict cache: flows a stage refused (policy's deny and reject), remembered past
 * the flow table, so that a refused flow stays refused when its table entry is evicted
 * or times out and the flow comes back mid-stream, where DPI would see less. Sized well
 * above the flow table (RDM_VCACHE_PER_FLOW entries per flow), two ways per set; a set
 * that is full forgets its older entry (counted). Sets are picked by a keyed mix of the
 * flow hash (a random key per cache), so traffic cannot aim at one entry to push it
 * out. Not thread-safe: one per worker, like the flow tables. */
#ifndef RDM_VCACHE_H
#define RDM_VCACHE_H

#include <stdint.h>

#define RDM_VCACHE_PER_FLOW 4
#define RDM_VCACHE_MAX	    (1u << 24) /* entries, at most (16 bytes each) */

struct rdm_vcache_entry {
	uint64_t hash; /* the flow's hash (rdm_flow_hash), 0 = free */
	uint32_t rule; /* the stage's own reference to why (a rule) */
	uint16_t gen;  /* the stage's own version of that reference */
	uint8_t action;
	uint8_t age; /* set: the newer of its two ways */
};

struct rdm_vcache_stats {
	uint64_t entries, capacity;
	uint64_t hits;	    /* flows refused again from the cache */
	uint64_t stored;    /* refusals remembered */
	uint64_t forgotten; /* entries pushed out by newer ones */
};

struct rdm_vcache;

/* A cache for a flow table of max_flows flows. NULL with errno set. */
struct rdm_vcache *rdm_vcache_new(uint32_t max_flows);
void rdm_vcache_free(struct rdm_vcache *c);

/* Remembers (or updates) the refusal of the flow with hash. */
void rdm_vcache_put(struct rdm_vcache *c, uint64_t hash, uint8_t action, uint32_t rule,
		    uint16_t gen);

/* The remembered refusal of hash, or NULL; counts a hit. */
const struct rdm_vcache_entry *rdm_vcache_get(struct rdm_vcache *c, uint64_t hash);

/* Forgets hash (the flow was decided again, or a new connection took its 5-tuple). */
void rdm_vcache_del(struct rdm_vcache *c, uint64_t hash);

void rdm_vcache_get_stats(const struct rdm_vcache *c, struct rdm_vcache_stats *s);

#endif
