/* The verdict cache (see vcache.h). */
#include "services/vcache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

struct rdm_vcache {
	struct rdm_vcache_entry *e;
	uint64_t mask; /* sets - 1; a set is two entries */
	uint64_t key;
	struct rdm_vcache_stats st;
};

/* splitmix64's finaliser over the keyed hash: the set. */
static uint64_t set_of(const struct rdm_vcache *c, uint64_t hash)
{
	uint64_t z = hash ^ c->key;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return (z ^ (z >> 31)) & c->mask;
}

struct rdm_vcache *rdm_vcache_new(uint32_t max_flows)
{
	struct rdm_vcache *c = calloc(1, sizeof(*c));
	uint64_t want = (uint64_t)max_flows * RDM_VCACHE_PER_FLOW, n = 2;

	if (!c)
		return NULL;
	while (n < want && n < RDM_VCACHE_MAX)
		n <<= 1;
	c->e = calloc(n, sizeof(*c->e));
	if (!c->e || getrandom(&c->key, sizeof(c->key), 0) != (ssize_t)sizeof(c->key)) {
		int e = c->e ? EIO : ENOMEM;

		rdm_vcache_free(c);
		errno = e;
		return NULL;
	}
	c->mask = n / 2 - 1;
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

/* The entry of hash in its set, or NULL. 0 never names a flow here. */
static struct rdm_vcache_entry *find(struct rdm_vcache *c, uint64_t hash)
{
	struct rdm_vcache_entry *s = &c->e[set_of(c, hash) * 2];

	if (!hash)
		hash = 1;
	for (int w = 0; w < 2; w++)
		if (s[w].hash == hash)
			return &s[w];
	return NULL;
}

void rdm_vcache_put(struct rdm_vcache *c, uint64_t hash, uint8_t action, uint32_t rule,
		    uint16_t gen)
{
	struct rdm_vcache_entry *s = &c->e[set_of(c, hash) * 2], *e = find(c, hash);

	if (!hash)
		hash = 1;
	if (!e) {
		/* A free way, else the older of the two. */
		int w = !s[0].hash ? 0 : !s[1].hash ? 1 : s[0].age ? 1 : 0;

		e = &s[w];
		if (e->hash)
			c->st.forgotten++;
		else
			c->st.entries++;
	}
	*e = (struct rdm_vcache_entry){
	    .hash = hash, .rule = rule, .gen = gen, .action = action, .age = 1};
	s[e == s ? 1 : 0].age = 0;
	c->st.stored++;
}

const struct rdm_vcache_entry *rdm_vcache_get(struct rdm_vcache *c, uint64_t hash)
{
	struct rdm_vcache_entry *e = find(c, hash);

	if (e)
		c->st.hits++;
	return e;
}

void rdm_vcache_del(struct rdm_vcache *c, uint64_t hash)
{
	struct rdm_vcache_entry *e = find(c, hash);

	if (e) {
		memset(e, 0, sizeof(*e));
		c->st.entries--;
	}
}

void rdm_vcache_get_stats(const struct rdm_vcache *c, struct rdm_vcache_stats *s)
{
	*s = c->st;
}
