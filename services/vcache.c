/* The verdict cache (see vcache.h). An entry is the flow hash's upper 56 bits with the
 * action in the low 8; 0 is a free entry. Within a set the newest entry comes first. */
#include "services/vcache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define FP_MASK (~(uint64_t)0xFF)

struct rdm_vcache {
	uint64_t *e;
	uint64_t mask; /* sets - 1 */
	uint64_t key;
	struct rdm_vcache_stats st;
};

/* splitmix64's finaliser over the keyed hash: the set's first entry. */
static uint64_t *set_of(const struct rdm_vcache *c, uint64_t hash)
{
	uint64_t z = hash ^ c->key;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return &c->e[((z ^ (z >> 31)) & c->mask) * RDM_VCACHE_WAYS];
}

/* The fingerprint of hash: never 0, so that 0 marks a free entry. */
static uint64_t fp_of(uint64_t hash)
{
	return (hash & FP_MASK) ? hash & FP_MASK : 0x100;
}

struct rdm_vcache *rdm_vcache_new(uint32_t max_flows)
{
	struct rdm_vcache *c = calloc(1, sizeof(*c));
	uint64_t want = (uint64_t)max_flows * RDM_VCACHE_PER_FLOW, n = RDM_VCACHE_WAYS;

	if (!c)
		return NULL;
	while (n < want && n < RDM_VCACHE_MAX)
		n <<= 1;
	c->e = aligned_alloc(64, n * sizeof(*c->e));
	if (!c->e || getrandom(&c->key, sizeof(c->key), 0) != (ssize_t)sizeof(c->key)) {
		int e = c->e ? EIO : ENOMEM;

		rdm_vcache_free(c);
		errno = e;
		return NULL;
	}
	memset(c->e, 0, n * sizeof(*c->e));
	c->mask = n / RDM_VCACHE_WAYS - 1;
	c->st.capacity = n;
	return c;
}

void rdm_vcache_free(struct rdm_vcache *c)
{
	if (!c)
		return;
	free(c->e);
	free(c);
}

/* The way of hash in its set s, or -1. */
static int find(const uint64_t *s, uint64_t fp)
{
	for (int w = 0; w < RDM_VCACHE_WAYS; w++)
		if ((s[w] & FP_MASK) == fp && s[w])
			return w;
	return -1;
}

void rdm_vcache_put(struct rdm_vcache *c, uint64_t hash, uint8_t action)
{
	uint64_t *s = set_of(c, hash), fp = fp_of(hash);
	int w = find(s, fp);

	if (w < 0) {
		/* A new entry goes first; the last one, if the set was full, is forgotten. */
		w = RDM_VCACHE_WAYS - 1;
		if (s[w])
			c->st.forgotten++;
		else
			c->st.entries++;
	}
	memmove(s + 1, s, (size_t)w * sizeof(*s));
	s[0] = fp | action;
	c->st.stored++;
}

int rdm_vcache_get(struct rdm_vcache *c, uint64_t hash)
{
	const uint64_t *s = set_of(c, hash);
	int w = find(s, fp_of(hash));

	if (w < 0)
		return -1;
	c->st.hits++;
	return (int)(s[w] & 0xFF);
}

void rdm_vcache_del(struct rdm_vcache *c, uint64_t hash)
{
	uint64_t *s = set_of(c, hash);
	int w = find(s, fp_of(hash));

	if (w < 0)
		return;
	memmove(s + w, s + w + 1, (size_t)(RDM_VCACHE_WAYS - 1 - w) * sizeof(*s));
	s[RDM_VCACHE_WAYS - 1] = 0;
	c->st.entries--;
}

void rdm_vcache_get_stats(const struct rdm_vcache *c, struct rdm_vcache_stats *s)
{
	*s = c->st;
}
