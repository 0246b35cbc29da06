/* Maglev consistent hashing (Eisenbud et al., NSDI 2016): a lookup table of a prime size
 * M in which each backend owns about M/N entries, filled from per-backend permutations of
 * the slots. Adding or removing one backend moves only about 1/N of the table, so most
 * new flows keep landing where they would have. Each upstream worker steers a new flow to
 * table[flow hash % M] among the replicas of the next stage; flows already seen keep a
 * per-flow pin (node.c), so a changed table only ever steers new flows.
 * A built table is immutable: workers read it without locks. */
#ifndef RDM_MAGLEV_H
#define RDM_MAGLEV_H

#include <stdint.h>

#define RDM_MAGLEV_SIZE 65537u /* prime; many entries per backend keep the shares even */

struct rdm_maglev;

/* A table over n backends (1..255) named names[0..n); the same names give the same
 * table, whatever their order. size must be a prime above n (0: RDM_MAGLEV_SIZE). NULL
 * with errno set (EINVAL, ENOMEM). */
struct rdm_maglev *rdm_maglev_new(const char *const *names, int n, uint32_t size);

/* The index into names of the backend that owns hash. */
static inline int rdm_maglev_lookup(const struct rdm_maglev *m, uint64_t hash);

void rdm_maglev_free(struct rdm_maglev *m);

/* How many entries backend i owns (for tests and counters). */
uint32_t rdm_maglev_share(const struct rdm_maglev *m, int i);

struct rdm_maglev {
	uint32_t size;
	int n;
	uint8_t *entry; /* size entries, each an index into names */
};

static inline int rdm_maglev_lookup(const struct rdm_maglev *m, uint64_t hash)
{
	return m->entry[hash % m->size];
}

#endif
