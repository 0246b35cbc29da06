/* The longest-prefix-match table (services/lpm.h). */
#include "services/lpm.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* One stored prefix. used is 0 for an empty slot. */
struct slot {
	uint8_t addr[16]; /* masked */
	uint8_t family;	  /* 4 or 6 */
	uint8_t len;
	uint8_t used;
	uint32_t value;
};

struct rdm_lpm {
	struct slot *slot;
	size_t cap; /* a power of two */
	size_t count;
	/* Per family (0: IPv4, 1: IPv6), the lengths present, longest first. */
	uint8_t lens[2][129];
	int n_lens[2];
};

static int fam_index(int family)
{
	return family == 4 ? 0 : family == 6 ? 1 : -1;
}

static unsigned fam_bits(int family)
{
	return family == 4 ? 32 : 128;
}

int rdm_lpm_mask(int family, const uint8_t *addr, unsigned len, uint8_t out[16])
{
	unsigned bytes = fam_bits(family) / 8, full = len / 8;
	int changed = 0;

	memset(out, 0, 16);
	for (unsigned i = 0; i < bytes; i++) {
		uint8_t keep = i < full ? 0xff : i == full ? (uint8_t)(0xff00u >> (len % 8)) : 0;

		out[i] = addr[i] & keep;
		if (out[i] != addr[i])
			changed = 1;
	}
	return changed;
}

/* splitmix64's finaliser over the key's words: good spread for masked addresses, whose
 * low bytes are mostly zero. */
static uint64_t hash(const uint8_t addr[16], int family, unsigned len)
{
	uint64_t a, b, h;

	memcpy(&a, addr, 8);
	memcpy(&b, addr + 8, 8);
	h = a * 0x9e3779b97f4a7c15ull ^ (b + 0xbf58476d1ce4e5b9ull) * 0x94d049bb133111ebull ^
	    ((uint64_t)family << 8 | len);
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebull;
	h ^= h >> 31;
	return h;
}

/* The slot holding the key, or the empty slot where it would go. cap is never full
 * (load at most 1/2), so the probe ends. */
static struct slot *probe(const struct slot *s, size_t cap, const uint8_t addr[16], int family,
			  unsigned len)
{
	size_t mask = cap - 1, i = hash(addr, family, len) & mask;

	for (;; i = (i + 1) & mask) {
		const struct slot *x = &s[i];

		if (!x->used ||
		    (x->family == family && x->len == len && !memcmp(x->addr, addr, 16)))
			return (struct slot *)x;
	}
}

struct rdm_lpm *rdm_lpm_new(void)
{
	struct rdm_lpm *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->cap = 16;
	t->slot = calloc(t->cap, sizeof(*t->slot));
	if (!t->slot) {
		free(t);
		errno = ENOMEM;
		return NULL;
	}
	return t;
}

void rdm_lpm_free(struct rdm_lpm *t)
{
	if (!t)
		return;
	free(t->slot);
	free(t);
}

size_t rdm_lpm_count(const struct rdm_lpm *t)
{
	return t->count;
}

static int grow(struct rdm_lpm *t)
{
	size_t cap = t->cap * 2;
	struct slot *s = calloc(cap, sizeof(*s));

	if (!s)
		return -ENOMEM;
	for (size_t i = 0; i < t->cap; i++)
		if (t->slot[i].used)
			*probe(s, cap, t->slot[i].addr, t->slot[i].family, t->slot[i].len) =
			    t->slot[i];
	free(t->slot);
	t->slot = s;
	t->cap = cap;
	return 0;
}

/* Records that family fi has prefixes of length len, keeping the list longest first. */
static void add_len(struct rdm_lpm *t, int fi, unsigned len)
{
	uint8_t *l = t->lens[fi];
	int n = t->n_lens[fi], i = 0;

	while (i < n && l[i] > len)
		i++;
	if (i < n && l[i] == len)
		return;
	memmove(l + i + 1, l + i, (size_t)(n - i));
	l[i] = (uint8_t)len;
	t->n_lens[fi]++;
}

int rdm_lpm_insert(struct rdm_lpm *t, int family, const uint8_t *addr, unsigned len, uint32_t value,
		   uint32_t *old)
{
	int fi = fam_index(family);
	uint8_t key[16];
	struct slot *s;

	if (fi < 0 || len > fam_bits(family))
		return -EINVAL;
	rdm_lpm_mask(family, addr, len, key);
	s = probe(t->slot, t->cap, key, family, len);
	if (s->used) {
		if (old)
			*old = s->value;
		return -EEXIST;
	}
	if ((t->count + 1) * 2 > t->cap) {
		if (grow(t) < 0)
			return -ENOMEM;
		s = probe(t->slot, t->cap, key, family, len);
	}
	memcpy(s->addr, key, 16);
	s->family = (uint8_t)family;
	s->len = (uint8_t)len;
	s->used = 1;
	s->value = value;
	t->count++;
	add_len(t, fi, len);
	return 0;
}

int rdm_lpm_lookup(const struct rdm_lpm *t, int family, const uint8_t *addr, uint32_t *value)
{
	int fi = fam_index(family);

	if (fi < 0)
		return -EINVAL;
	for (int i = 0; i < t->n_lens[fi]; i++) {
		unsigned len = t->lens[fi][i];
		uint8_t key[16];
		const struct slot *s;

		rdm_lpm_mask(family, addr, len, key);
		s = probe(t->slot, t->cap, key, family, len);
		if (s->used) {
			*value = s->value;
			return (int)len;
		}
	}
	return -ENOENT;
}

int rdm_lpm_parse(const char *s, int *family, uint8_t addr[16], unsigned *len)
{
	char buf[INET6_ADDRSTRLEN + 8];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	unsigned max, l = 0;

	if (alen == 0 || alen >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	memset(addr, 0, 16);
	if (inet_pton(AF_INET, buf, addr) == 1) {
		*family = 4;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, addr) == 1) {
		*family = 6;
		max = 128;
	} else {
		return -EINVAL;
	}
	if (!slash) {
		*len = max;
		return 0;
	}
	/* Digits only: no sign, no spaces. l stops growing past max, so a long run of
	 * digits is a range error rather than an overflow. */
	if (!slash[1])
		return -EINVAL;
	for (const char *p = slash + 1; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		if (l <= max)
			l = l * 10 + (unsigned)(*p - '0');
	}
	if (l > max)
		return -ERANGE;
	*len = l;
	return 0;
}
