/* identity: tells who a flow belongs to from its addresses. A directory file maps IPv4
 * and IPv6 prefixes to a tenant, a user and groups; for every frame with a flow key the
 * stage looks up the packet's source address, then (by default) its destination, so
 * that return traffic towards a known client is attributed too. The longest matching
 * prefix wins. On a match the entry's fields replace whatever upstream wrote (the
 * directory is authoritative); fields the entry lacks are left alone. On no match the
 * frame gets RDM_FF_ID_UNKNOWN and loses any identity fields upstream put there, so
 * that policy never trusts an identity this stage could not confirm. Frames always pass.
 *
 * Chain config:
 *   - name: identity
 *     directory: configs/directory.yaml # relative to the node's working directory
 *     lookup: src_then_dst              # or src: only the packet's source address
 *
 * Directory file:
 *   entries:
 *     - match: 10.1.0.0/16              # an address or prefix, or a list of them
 *       tenant: acme                    # at least one of tenant, user, groups
 *       user: alice
 *       groups: [eng, emea]
 *
 * The stage keeps no per-flow state: every packet is looked up on its own, so a reload
 * (SIGHUP: conf_reload re-reads the same file, conf_swap switches each worker between
 * batches) never drops or disturbs a flow; packets after the swap simply get the new
 * directory's answer. A worker remembers the directory's recent answers by address
 * (ID_CACHE of them, direct-mapped: a flow's later packets ask what its first asked);
 * the swap forgets them all. */
#include "services/stage.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/mem.h"
#include "lib/yaml.h"
#include "services/lpm.h"

/* One directory entry. A string's p is NULL when the entry does not set it; the strings
 * are owned by the entry and outlive every batch that points at them. */
struct id_entry {
	struct rdm_str tenant, user;
	struct rdm_str groups[RDM_MAX_GROUPS];
	uint8_t n_groups;
};

struct id_conf {
	char *path;	     /* absolute, so a reload reads the same file wherever the node runs */
	int src_only;	     /* lookup: src */
	struct rdm_lpm *lpm; /* prefix -> its number, an index into pfx_entry */
	uint32_t *pfx_entry; /* prefix number -> index into entries */
	size_t n_pfx, cap_pfx;
	struct id_entry *entries;
	size_t n_entries;
};

/* One remembered answer of the directory: the entry for an address, NULL for none. */
struct id_cached {
	uint64_t a, b;	/* the address (IPv4: its 4 bytes in a, b 0) */
	uint8_t family; /* 0: nothing remembered here */
	const struct id_entry *e;
};
#define ID_CACHE 1024 /* a power of two */

struct id_rt {
	const struct id_conf *c;
	int worker;
	uint64_t frames, matched_src, matched_dst, unknown, no_key, reloads, cache_hits;
	struct id_cached cache[ID_CACHE];
};

static void id_conf_free(void *p)
{
	struct id_conf *c = p;

	if (!c)
		return;
	for (size_t i = 0; i < c->n_entries; i++) {
		struct id_entry *e = &c->entries[i];

		free((char *)e->tenant.p);
		free((char *)e->user.p);
		for (int g = 0; g < e->n_groups; g++)
			free((char *)e->groups[g].p);
	}
	free(c->entries);
	free(c->pfx_entry);
	rdm_lpm_free(c->lpm);
	free(c->path);
	free(c);
}

/* A string that fits a TLV (1..255 bytes), copied into *out. 0 or -EINVAL/-ENOMEM with
 * the message in err. */
static int id_str(const struct rdm_ydoc *d, const struct rdm_ynode *n, const char *what,
		  struct rdm_str *out, char *err, size_t errlen)
{
	const char *s;
	char *copy;

	if (rdm_yget_str(d, n, &s, err, errlen) < 0)
		return -EINVAL;
	if (!*s || strlen(s) > RDM_STR_MAX)
		return rdm_yerr(d, n, err, errlen, "%s: must be 1 to %d bytes", what, RDM_STR_MAX);
	copy = strdup(s);
	if (!copy)
		return rdm_yerr(d, n, err, errlen, "out of memory"), -ENOMEM;
	*out = (struct rdm_str){copy, (uint8_t)strlen(copy)};
	return 0;
}

/* Parses one prefix of entry ei and adds it to c->lpm. line_of[k] is the line of prefix
 * k, for the duplicate message; it grows with c->pfx_entry. */
static int id_prefix(struct id_conf *c, int **line_of, const struct rdm_ydoc *d,
		     const struct rdm_ynode *n, uint32_t ei, char *err, size_t errlen)
{
	uint8_t addr[16], net[16];
	char text[INET6_ADDRSTRLEN];
	const char *s;
	unsigned len;
	int family, rc;
	uint32_t first;

	if (rdm_yget_str(d, n, &s, err, errlen) < 0)
		return -EINVAL;
	rc = rdm_lpm_parse(s, &family, addr, &len);
	if (rc == -ERANGE)
		return rdm_yerr(d, n, err, errlen,
				"match: '%s': prefix length is out of range for IPv%d (0..%d)", s,
				family, family == 4 ? 32 : 128);
	if (rc < 0)
		return rdm_yerr(
		    d, n, err, errlen,
		    "match: '%s' is not an IPv4 or IPv6 address or ADDRESS/LENGTH prefix", s);
	/* 10.1.2.3/16 is most likely a typo for a host or for 10.1.0.0/16: refuse to guess. */
	if (rdm_lpm_mask(family, addr, len, net)) {
		inet_ntop(family == 4 ? AF_INET : AF_INET6, net, text, sizeof(text));
		return rdm_yerr(d, n, err, errlen,
				"match: '%s' has host bits set (the network is %s/%u)", s, text,
				len);
	}
	if (c->n_pfx == c->cap_pfx) {
		size_t cap = c->cap_pfx ? c->cap_pfx * 2 : 16;
		uint32_t *pe = realloc(c->pfx_entry, cap * sizeof(*pe));
		int *lo;

		if (!pe)
			return rdm_yerr(d, n, err, errlen, "out of memory"), -ENOMEM;
		c->pfx_entry = pe;
		lo = realloc(*line_of, cap * sizeof(*lo));
		if (!lo)
			return rdm_yerr(d, n, err, errlen, "out of memory"), -ENOMEM;
		*line_of = lo;
		c->cap_pfx = cap;
	}
	rc = rdm_lpm_insert(c->lpm, family, addr, len, (uint32_t)c->n_pfx, &first);
	if (rc == -EEXIST)
		return rdm_yerr(d, n, err, errlen, "duplicate prefix '%s' (first at line %d)", s,
				(*line_of)[first]);
	if (rc < 0)
		return rdm_yerr(d, n, err, errlen, "out of memory"), -ENOMEM;
	c->pfx_entry[c->n_pfx] = ei;
	(*line_of)[c->n_pfx] = rdm_ynode_line(n);
	c->n_pfx++;
	return 0;
}

/* Parses entries[ei] (node n) into c->entries[ei]. */
static int id_entry(struct id_conf *c, int **line_of, const struct rdm_ydoc *d,
		    const struct rdm_ynode *n, uint32_t ei, char *err, size_t errlen)
{
	static const char *const keys[] = {"match", "tenant", "user", "groups", NULL};
	struct id_entry *e = &c->entries[ei];
	const struct rdm_ynode *m, *v;
	int rc;

	if (rdm_yexpect(d, n, "entry", RDM_YMAP, err, errlen) < 0 ||
	    rdm_ymap_check_keys(d, n, keys, err, errlen) < 0)
		return -EINVAL;
	if ((v = rdm_ymap_get(n, "tenant")) &&
	    (rc = id_str(d, v, "tenant", &e->tenant, err, errlen)) < 0)
		return rc;
	if ((v = rdm_ymap_get(n, "user")) && (rc = id_str(d, v, "user", &e->user, err, errlen)) < 0)
		return rc;
	if ((v = rdm_ymap_get(n, "groups"))) {
		if (rdm_yexpect(d, v, "groups", RDM_YSEQ, err, errlen) < 0)
			return -EINVAL;
		if (rdm_yseq_size(v) == 0)
			return rdm_yerr(
			    d, v, err, errlen,
			    "groups: list at least one group (leave the key out for none)");
		if (rdm_yseq_size(v) > RDM_MAX_GROUPS)
			return rdm_yerr(d, v, err, errlen, "groups: at most %d groups",
					RDM_MAX_GROUPS);
		for (size_t i = 0; i < rdm_yseq_size(v); i++) {
			const struct rdm_ynode *g = rdm_yseq_item(v, i);

			const struct rdm_str *last;

			if ((rc = id_str(d, g, "groups", &e->groups[e->n_groups], err, errlen)) < 0)
				return rc;
			last = &e->groups[e->n_groups++];
			for (const struct rdm_str *k = e->groups; k < last; k++)
				if (k->len == last->len && !memcmp(k->p, last->p, last->len))
					return rdm_yerr(d, g, err, errlen,
							"groups: '%s' is listed twice", last->p);
		}
	}
	if (!e->tenant.p && !e->user.p && !e->n_groups)
		return rdm_yerr(d, n, err, errlen, "entry needs tenant, user or groups");
	m = rdm_ymap_get(n, "match");
	if (!m)
		return rdm_yerr(d, n, err, errlen, "entry needs 'match' (an address or prefix)");
	if (rdm_ynode_kind(m) == RDM_YSEQ) {
		if (rdm_yseq_size(m) == 0)
			return rdm_yerr(d, m, err, errlen, "match: list at least one prefix");
		for (size_t i = 0; i < rdm_yseq_size(m); i++)
			if ((rc = id_prefix(c, line_of, d, rdm_yseq_item(m, i), ei, err, errlen)) <
			    0)
				return rc;
		return 0;
	}
	return id_prefix(c, line_of, d, m, ei, err, errlen);
}

/* Reads the directory file at path. Returns a conf, or NULL with errno and the message
 * in err: "FILE:LINE:COL: message" (EINVAL) for a bad file, "FILE: strerror" when it
 * cannot be read. */
static struct id_conf *id_load(const char *path, int src_only, char *err, size_t errlen)
{
	static const char *const keys[] = {"entries", NULL};
	struct id_conf *c = calloc(1, sizeof(*c));
	const struct rdm_ynode *root, *ents;
	struct rdm_ydoc *d = NULL;
	int *line_of = NULL, rc = -EINVAL;

	if (!c || !(c->path = strdup(path)) || !(c->lpm = rdm_lpm_new())) {
		snprintf(err, errlen, "%s: out of memory", path);
		rc = -ENOMEM;
		goto fail;
	}
	c->src_only = src_only;
	d = rdm_ydoc_load(path, err, errlen);
	if (!d) {
		rc = -errno;
		goto fail;
	}
	root = rdm_ydoc_root(d);
	if (!root) {
		rdm_yerr(d, NULL, err, errlen,
			 "empty directory: expected a mapping with 'entries'");
		goto fail;
	}
	if (rdm_yexpect(d, root, "directory", RDM_YMAP, err, errlen) < 0 ||
	    rdm_ymap_check_keys(d, root, keys, err, errlen) < 0)
		goto fail;
	ents = rdm_ymap_get(root, "entries");
	if (!ents) {
		rdm_yerr(d, root, err, errlen,
			 "missing 'entries' (a list of match/tenant/user/groups)");
		goto fail;
	}
	if (rdm_yexpect(d, ents, "entries", RDM_YSEQ, err, errlen) < 0)
		goto fail;
	if (rdm_yseq_size(ents) > UINT32_MAX) {
		rdm_yerr(d, ents, err, errlen, "entries: too many");
		goto fail;
	}
	c->entries = calloc(rdm_yseq_size(ents) + 1, sizeof(*c->entries));
	if (!c->entries) {
		rdm_yerr(d, ents, err, errlen, "out of memory");
		rc = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < rdm_yseq_size(ents); i++) {
		/* Counted first, so that a half-parsed entry's strings are freed too. */
		c->n_entries++;
		rc = id_entry(c, &line_of, d, rdm_yseq_item(ents, i), (uint32_t)i, err, errlen);
		if (rc < 0)
			goto fail;
	}
	free(line_of);
	rdm_ydoc_free(d);
	return c;
fail:
	free(line_of);
	rdm_ydoc_free(d);
	id_conf_free(c);
	errno = rc < 0 ? -rc : EINVAL;
	return NULL;
}

static void *id_conf_new(const struct rdm_ydoc *d, const struct rdm_ynode *n, char *err,
			 size_t errlen)
{
	static const char *const keys[] = {"name", "directory", "lookup", NULL};
	static const char *const modes[] = {"src_then_dst", "src"};
	const struct rdm_ynode *dn;
	const char *dir, *mode, *hint;
	char path[PATH_MAX], msg[512];
	struct id_conf *c;

	if (!n) {
		rdm_yerr(d, NULL, err, errlen,
			 "stage identity needs 'directory' (a directory file)");
		errno = EINVAL;
		return NULL;
	}
	if (rdm_ymap_check_keys(d, n, keys, err, errlen) < 0)
		goto inval;
	dn = rdm_ymap_get(n, "directory");
	if (!dn) {
		rdm_yerr(d, n, err, errlen, "stage identity needs 'directory' (a directory file)");
		goto inval;
	}
	if (rdm_yget_str(d, dn, &dir, err, errlen) < 0)
		goto inval;
	if (!*dir) {
		rdm_yerr(d, dn, err, errlen, "directory: must name a file");
		goto inval;
	}
	if (rdm_ymap_str(d, n, "lookup", "src_then_dst", &mode, err, errlen) < 0)
		goto inval;
	if (strcmp(mode, modes[0]) && strcmp(mode, modes[1])) {
		hint = rdm_yclosest(mode, modes, 2, 2);
		rdm_yerr(d, rdm_ymap_get(n, "lookup"), err, errlen,
			 "lookup: '%s' is not src_then_dst or src%s%s%s", mode,
			 hint ? " (did you mean '" : "", hint ? hint : "", hint ? "'?)" : "");
		goto inval;
	}
	/* A relative path is the chain file's neighbour, as the policy's is; fixed now and
	 * kept, so a reload reads the same file whatever the working directory. Not
	 * canonicalised, so a symlink swapped to a new version is followed on reload. */
	if (dir[0] == '/') {
		if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path))
			goto toolong;
	} else {
		const char *chain = rdm_ydoc_name(d), *slash = strrchr(chain, '/');
		int base = slash ? (int)(slash - chain) : 0;
		char cwd[PATH_MAX];

		if (chain[0] == '/') {
			if (snprintf(path, sizeof(path), "%.*s/%s", base, chain, dir) >=
			    (int)sizeof(path))
				goto toolong;
		} else if (!getcwd(cwd, sizeof(cwd))) {
			rdm_yerr(d, dn, err, errlen, "directory: cannot resolve '%s': %s", dir,
				 strerror(errno));
			goto inval;
		} else if (snprintf(path, sizeof(path), "%s/%.*s%s%s", cwd, base, chain,
				    slash ? "/" : "", dir) >= (int)sizeof(path)) {
			goto toolong;
		}
	}
	c = id_load(path, !strcmp(mode, "src"), err, errlen);
	if (!c && errno != EINVAL && errno != ENOMEM) {
		/* Unreadable: point at the chain line that names it. */
		int e = errno;

		snprintf(msg, sizeof(msg), "%s", err);
		rdm_yerr(d, dn, err, errlen, "directory: %s", msg);
		errno = e;
	}
	return c;
toolong:
	rdm_yerr(d, dn, err, errlen, "directory: path too long");
inval:
	errno = EINVAL;
	return NULL;
}

static void *id_conf_reload(const void *old, char *err, size_t errlen)
{
	const struct id_conf *o = old;

	return id_load(o->path, o->src_only, err, errlen);
}

static void *id_init(const void *conf, const struct rdm_stage_env *env)
{
	struct id_rt *rt = rdm_calloc_touched(1, sizeof(*rt));

	if (rt) {
		rt->c = conf;
		rt->worker = env ? env->worker : 0;
	}
	return rt;
}

static void id_deinit(void *rt)
{
	free(rt);
}

static void id_conf_swap(void *p, const void *conf)
{
	struct id_rt *rt = p;

	rt->c = conf;
	rt->reloads++;
	memset(rt->cache, 0, sizeof(rt->cache)); /* the old directory's answers */
}

/* The entry for addr of the key's family, or NULL. */
static const struct id_entry *id_find(const struct id_conf *c, int family, const uint8_t *addr)
{
	uint32_t k;

	if (rdm_lpm_lookup(c->lpm, family, addr, &k) < 0)
		return NULL;
	return &c->entries[c->pfx_entry[k]];
}

/* id_find through the worker's remembered answers. */
static const struct id_entry *id_find_cached(struct id_rt *rt, int family, const uint8_t *addr)
{
	uint64_t a, b, h;
	struct id_cached *x;

	if (family == 4) { /* the look-up reads the first 4 bytes only: so does the key */
		uint32_t v;

		memcpy(&v, addr, 4);
		a = v;
		b = 0;
	} else {
		memcpy(&a, addr, 8);
		memcpy(&b, addr + 8, 8);
	}
	h = a * 0x9e3779b97f4a7c15ull ^ b * 0xc2b2ae3d27d4eb4full;
	x = &rt->cache[h >> 54 & (ID_CACHE - 1)];
	if (x->family == family && x->a == a && x->b == b) {
		rt->cache_hits++;
		return x->e;
	}
	x->e = id_find(rt->c, family, addr);
	x->a = a;
	x->b = b;
	x->family = (uint8_t)family;
	return x->e;
}

static void id_process(void *p, struct rdm_frame *const *fs, int n, int *verdict)
{
	struct id_rt *rt = p;
	const struct id_conf *c = rt->c;

	for (int i = 0; i < n; i++) {
		struct rdm_frame *f = fs[i];
		const struct id_entry *e;

		verdict[i] = RDM_STAGE_PASS;
		rt->frames++;
		if (!(f->present & RDM_F_FLOW_KEY)) {
			rt->no_key++;
			continue;
		}
		if ((e = id_find_cached(rt, f->key.family, f->key.src))) {
			rt->matched_src++;
		} else if (!c->src_only && (e = id_find_cached(rt, f->key.family, f->key.dst))) {
			rt->matched_dst++;
		} else {
			rt->unknown++;
			rdm_frame_add_flags(f, RDM_FF_ID_UNKNOWN);
			f->present &= ~(uint32_t)(RDM_F_TENANT | RDM_F_USER | RDM_F_GROUPS);
			f->tenant = f->user = (struct rdm_str){NULL, 0};
			f->n_groups = 0;
			continue;
		}
		/* The strings live in the conf, which outlives every batch. */
		if (e->tenant.p) {
			f->tenant = e->tenant;
			f->present |= RDM_F_TENANT;
		}
		if (e->user.p) {
			f->user = e->user;
			f->present |= RDM_F_USER;
		}
		if (e->n_groups) {
			memcpy(f->groups, e->groups, e->n_groups * sizeof(e->groups[0]));
			f->n_groups = e->n_groups;
			f->present |= RDM_F_GROUPS;
		}
		/* An earlier identity stage (another node's directory) may have said unknown. */
		if (f->present & RDM_F_FLAGS)
			f->flags &= ~(uint32_t)RDM_FF_ID_UNKNOWN;
	}
}

static void id_report(void *p, rdm_stage_emit emit, void *arg)
{
	struct id_rt *rt = p;

	emit(arg, "frames", rt->frames);
	emit(arg, "matched_src", rt->matched_src);
	emit(arg, "matched_dst", rt->matched_dst);
	emit(arg, "unknown", rt->unknown);
	emit(arg, "no_key", rt->no_key);
	emit(arg, "cache_hits", rt->cache_hits);
	if (rt->worker == 0) { /* facts of the conf, not per-worker counts */
		emit(arg, "directory_entries", rt->c->n_entries);
		emit(arg, "directory_prefixes", rt->c->n_pfx);
	}
	emit(arg, "reloads", rt->reloads);
}

const struct rdm_stage_ops rdm_stage_identity = {
    .name = "identity",
    .conf_new = id_conf_new,
    .conf_free = id_conf_free,
    .init = id_init,
    .deinit = id_deinit,
    .process = id_process,
    .report = id_report,
    .conf_reload = id_conf_reload,
    .conf_swap = id_conf_swap,
};
