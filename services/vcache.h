/* The verdict cache: flows a stage refused (policy's deny and reject) or could not finish
 * (left the table before it was decided), remembered past the flow table, so that such
 * a flow stays refused when its table entry is evicted or times out and the flow comes
 * back mid-stream, where DPI would see less. Sized well above the flow table
 * (RDM_VCACHE_PER_FLOW entries per flow), in sets of RDM_VCACHE_WAYS entries of 8 bytes
 * (a set is one cache line); a full set forgets its oldest entry (counted). Sets are
 * picked by a keyed mix of the flow hash (a random key per cache), so traffic cannot aim
 * at one set to push an entry out. Not thread-safe: one per worker, like the flow
 * tables. */
#ifndef RDM_VCACHE_H
#define RDM_VCACHE_H

#include <stdint.h>

#define RDM_VCACHE_PER_FLOW 16
#define RDM_VCACHE_WAYS	    8
#define RDM_VCACHE_MAX	    (1u << 24) /* entries, at most (8 bytes each) */

struct rdm_vcache_stats {
	uint64_t entries, capacity;
	uint64_t hits;	    /* flows found again */
	uint64_t stored;    /* entries written */
	uint64_t forgotten; /* entries pushed out by newer ones */
};

struct rdm_vcache;

/* A cache for a flow table of max_flows flows. NULL with errno set. */
struct rdm_vcache *rdm_vcache_new(uint32_t max_flows);
void rdm_vcache_free(struct rdm_vcache *c);

/* Remembers (or updates) what the stage decided of the flow with hash: action, 0..255. */
void rdm_vcache_put(struct rdm_vcache *c, uint64_t hash, uint8_t action);

/* The action remembered for hash, or -1; counts a hit. */
int rdm_vcache_get(struct rdm_vcache *c, uint64_t hash);

/* Forgets hash (the flow was decided again, or a new connection took its 5-tuple). */
void rdm_vcache_del(struct rdm_vcache *c, uint64_t hash);

void rdm_vcache_get_stats(const struct rdm_vcache *c, struct rdm_vcache_stats *s);

#endif
