/* Maglev consistent hashing (node/maglev.h): building the lookup table. */
#include "node/maglev.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* FNV-1a with a seed folded in, then a 64-bit finaliser (splitmix64's) so that similar
 * names ("dpi-1", "dpi-2") get unrelated offsets and skips. */
static uint64_t name_hash(const char *s, uint64_t seed)
{
	uint64_t h = 0xcbf29ce484222325ull ^ seed;

	for (; *s; s++) {
		h ^= (uint8_t)*s;
		h *= 0x100000001b3ull;
	}
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebull;
	return h ^ (h >> 31);
}

static int is_prime(uint32_t v)
{
	if (v < 2)
		return 0;
	for (uint32_t d = 2; (uint64_t)d * d <= v; d++)
		if (v % d == 0)
			return 0;
	return 1;
}

struct rdm_maglev *rdm_maglev_new(const char *const *names, int n, uint32_t size)
{
	struct rdm_maglev *m = NULL;
	uint32_t *offset = NULL, *skip = NULL, *next = NULL, filled = 0;
	int order[255];

	if (!size)
		size = RDM_MAGLEV_SIZE;
	if (n < 1 || n > 255 || size <= (uint32_t)n || !is_prime(size)) {
		errno = EINVAL;
		return NULL;
	}
	m = calloc(1, sizeof(*m));
	offset = calloc((size_t)n, sizeof(*offset));
	skip = calloc((size_t)n, sizeof(*skip));
	next = calloc((size_t)n, sizeof(*next));
	if (!m || !offset || !skip || !next || !(m->entry = malloc(size)))
		goto nomem;
	m->size = size;
	m->n = n;
	memset(m->entry, 0xff, size);
	/* Backends take turns in name order, so the table depends on the set of names
	 * only, not on the order the caller lists them in. */
	for (int i = 0; i < n; i++) {
		int j = i;

		for (; j > 0 && strcmp(names[order[j - 1]], names[i]) > 0; j--)
			order[j] = order[j - 1];
		order[j] = i;
	}
	for (int i = 0; i < n; i++) {
		offset[i] = (uint32_t)(name_hash(names[i], 0x6d61676c6576ull) % size);
		skip[i] = (uint32_t)(name_hash(names[i], 0x736b6970ull) % (size - 1)) + 1;
	}
	/* Each backend in turn takes the next free slot of its permutation
	 * (offset + j * skip) mod size, until the table is full. */
	while (filled < size) {
		for (int k = 0; k < n && filled < size; k++) {
			int i = order[k];
			uint32_t c;

			do {
				c = (uint32_t)(((uint64_t)offset[i] + (uint64_t)next[i] * skip[i]) %
					       size);
				next[i]++;
			} while (m->entry[c] != 0xff);
			m->entry[c] = (uint8_t)i;
			filled++;
		}
	}
	free(offset);
	free(skip);
	free(next);
	return m;
nomem:
	free(offset);
	free(skip);
	free(next);
	rdm_maglev_free(m);
	errno = ENOMEM;
	return NULL;
}

void rdm_maglev_free(struct rdm_maglev *m)
{
	if (!m)
		return;
	free(m->entry);
	free(m);
}

uint32_t rdm_maglev_share(const struct rdm_maglev *m, int i)
{
	uint32_t k = 0;

	for (uint32_t c = 0; c < m->size; c++)
		k += m->entry[c] == i;
	return k;
}
