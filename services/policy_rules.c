/* Policy parsing and matching; see policy_rules.h for the format. */
#include "services/policy_rules.h"
#include "lib/file.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/yaml.h"

/* Host names are at most 253 bytes (RFC 1035); longer patterns could never match. */
#define HOST_MAX 253

static atomic_uint_fast32_t pol_generation;

static const char *const action_names[] = {
    [RDM_POL_ALLOW] = "allow",
    [RDM_POL_DENY] = "deny",
    [RDM_POL_REJECT] = "reject",
    [RDM_POL_LOG] = "log",
};

const char *rdm_pol_action_name(enum rdm_pol_action a)
{
	return (unsigned)a < sizeof(action_names) / sizeof(action_names[0]) ? action_names[a] : "?";
}

/* ---- host sets ---------------------------------------------------------------------- */

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;

	while (*s)
		h = (h ^ (uint8_t)*s++) * 0x100000001b3ull;
	return h;
}

static int hset_has(const struct rdm_pol_hset *s, const char *name)
{
	size_t i;

	if (!s->cap)
		return 0;
	for (i = fnv1a(name) & (s->cap - 1); s->slot[i]; i = (i + 1) & (s->cap - 1))
		if (!strcmp(s->slot[i], name))
			return 1;
	return 0;
}

/* Doubles the table (or makes the first one); -ENOMEM leaves s as it was. */
static int hset_grow(struct rdm_pol_hset *s)
{
	size_t cap = s->cap ? s->cap * 2 : 16;
	char **slot = calloc(cap, sizeof(*slot));

	if (!slot)
		return -ENOMEM;
	for (size_t k = 0; k < s->cap; k++) {
		size_t i;

		if (!s->slot[k])
			continue;
		for (i = fnv1a(s->slot[k]) & (cap - 1); slot[i]; i = (i + 1) & (cap - 1))
			;
		slot[i] = s->slot[k];
	}
	free(s->slot);
	s->slot = slot;
	s->cap = cap;
	return 0;
}

/* Adds a copy of name (duplicates are kept once). 0 or -ENOMEM. */
static int hset_add(struct rdm_pol_hset *s, const char *name)
{
	size_t i;

	if (hset_has(s, name))
		return 0;
	/* Keep the load under one half so that probes stay short. */
	if ((s->n + 1) * 2 > s->cap && hset_grow(s) < 0)
		return -ENOMEM;
	for (i = fnv1a(name) & (s->cap - 1); s->slot[i]; i = (i + 1) & (s->cap - 1))
		;
	if (!(s->slot[i] = strdup(name)))
		return -ENOMEM;
	s->n++;
	return 0;
}

static void hset_free(struct rdm_pol_hset *s)
{
	for (size_t i = 0; i < s->cap; i++)
		free(s->slot[i]);
	free(s->slot);
	s->slot = NULL;
	s->cap = s->n = 0;
}

/* ---- freeing ------------------------------------------------------------------------ */

static void strs_free(struct rdm_pol_strs *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
}

static void rule_free(struct rdm_pol_rule *r)
{
	free(r->name);
	strs_free(&r->tenant);
	strs_free(&r->user);
	strs_free(&r->group);
	strs_free(&r->app);
	strs_free(&r->category);
	free(r->dst);
	free(r->port);
	hset_free(&r->host_exact);
	hset_free(&r->host_suffix);
}

void rdm_policy_free(struct rdm_policy *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_rules; i++)
		rule_free(&p->rules[i]);
	free(p->rules);
	free(p->path);
	free(p);
}

/* ---- parsing ------------------------------------------------------------------------ */

struct pctx {
	const struct rdm_ydoc *d;
	const char *base_dir; /* NULL: paths as written */
	char *err;
	size_t len;
};

static int oom(struct pctx *c)
{
	snprintf(c->err, c->len, "%s: out of memory", rdm_ydoc_name(c->d));
	return -ENOMEM;
}

/* Calls fn on n when it is a scalar (or, for host, a mapping), or on each item of a
 * non-empty sequence. what names the key in messages. */
typedef int (*item_fn)(struct pctx *c, struct rdm_pol_rule *r, const struct rdm_ynode *n);

static int each_item(struct pctx *c, struct rdm_pol_rule *r, const struct rdm_ynode *n,
		     const char *what, item_fn fn)
{
	int rc;

	if (rdm_ynode_kind(n) != RDM_YSEQ)
		return fn(c, r, n);
	if (!rdm_yseq_size(n))
		return rdm_yerr(c->d, n, c->err, c->len,
				"%s: an empty list matches nothing; leave the key out instead",
				what);
	for (size_t i = 0; i < rdm_yseq_size(n); i++) {
		const struct rdm_ynode *it = rdm_yseq_item(n, i);

		if (rdm_ynode_kind(it) == RDM_YSEQ)
			return rdm_yerr(c->d, it, c->err, c->len, "%s: lists do not nest", what);
		if ((rc = fn(c, r, it)) < 0)
			return rc;
	}
	return 0;
}

/* A scalar string of 1..255 bytes. */
static int tlv_str(struct pctx *c, const struct rdm_ynode *n, const char *what, const char **out)
{
	const char *s;

	if (rdm_ynode_kind(n) != RDM_YSCALAR)
		return rdm_yexpect(c->d, n, what, RDM_YSCALAR, c->err, c->len);
	if (rdm_yget_str(c->d, n, &s, c->err, c->len) < 0)
		return -EINVAL;
	if (!*s || strlen(s) > RDM_STR_MAX)
		return rdm_yerr(c->d, n, c->err, c->len, "%s: must be 1 to %d bytes", what,
				RDM_STR_MAX);
	*out = s;
	return 0;
}

static int strs_add(struct pctx *c, struct rdm_pol_strs *s, const char *v)
{
	char **nv = realloc(s->v, (s->n + 1) * sizeof(*nv));

	if (!nv)
		return oom(c);
	s->v = nv;
	if (!(s->v[s->n] = strdup(v)))
		return oom(c);
	s->n++;
	return 0;
}

#define STR_ITEM(field, what)                                                                      \
	static int item_##field(struct pctx *c, struct rdm_pol_rule *r, const struct rdm_ynode *n) \
	{                                                                                          \
		const char *s;                                                                     \
		if (tlv_str(c, n, what, &s) < 0)                                                   \
			return -EINVAL;                                                            \
		return strs_add(c, &r->field, s);                                                  \
	}
STR_ITEM(tenant, "tenant")
STR_ITEM(user, "user")
STR_ITEM(group, "group")
STR_ITEM(app, "app")
STR_ITEM(category, "category")

static int item_dst(struct pctx *c, struct rdm_pol_rule *r, const struct rdm_ynode *n)
{
	struct rdm_pol_cidr x = {0}, *nv;
	char buf[64], *slash;
	const char *s;
	unsigned long bits;
	int maxbits;

	if (tlv_str(c, n, "dst", &s) < 0)
		return -EINVAL;
	if (strlen(s) >= sizeof(buf))
		return rdm_yerr(c->d, n, c->err, c->len, "dst: '%s' is not an address or CIDR", s);
	strcpy(buf, s);
	slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	if (inet_pton(AF_INET, buf, x.addr) == 1) {
		x.family = 4;
		maxbits = 32;
	} else if (inet_pton(AF_INET6, buf, x.addr) == 1) {
		x.family = 6;
		maxbits = 128;
	} else {
		return rdm_yerr(c->d, n, c->err, c->len,
				"dst: '%s' is not an IPv4 or IPv6 address or CIDR", s);
	}
	bits = (unsigned long)maxbits;
	if (slash) {
		char *end;

		if (!isdigit((unsigned char)slash[1]))
			return rdm_yerr(c->d, n, c->err, c->len, "dst: '%s': bad prefix length", s);
		errno = 0;
		bits = strtoul(slash + 1, &end, 10);
		if (*end || errno || bits > (unsigned long)maxbits)
			return rdm_yerr(c->d, n, c->err, c->len,
					"dst: '%s': prefix length must be 0..%d", s, maxbits);
	}
	x.bits = (uint8_t)bits;
	/* Host bits set usually means a typo in the prefix; say so rather than guess. */
	for (int b = (int)bits; b < maxbits; b++)
		if (x.addr[b / 8] & (0x80 >> (b % 8)))
			return rdm_yerr(c->d, n, c->err, c->len,
					"dst: '%s' has bits set past the /%lu prefix", s, bits);
	nv = realloc(r->dst, (r->n_dst + 1) * sizeof(*nv));
	if (!nv)
		return oom(c);
	r->dst = nv;
	r->dst[r->n_dst++] = x;
	return 0;
}

/* A decimal port 0..65535 at s (digits only, up to end); -1 if not. */
static long port_num(const char *s, const char *end)
{
	long v = 0;

	if (s == end || end - s > 5)
		return -1;
	for (; s < end; s++) {
		if (!isdigit((unsigned char)*s))
			return -1;
		v = v * 10 + (*s - '0');
	}
	return v <= 65535 ? v : -1;
}

static int item_port(struct pctx *c, struct rdm_pol_rule *r, const struct rdm_ynode *n)
{
	struct rdm_pol_ports *nv;
	const char *s, *dash;
	long lo, hi;

	if (tlv_str(c, n, "port", &s) < 0)
		return -EINVAL;
	dash = strchr(s, '-');
	lo = port_num(s, dash ? dash : s + strlen(s));
	hi = dash ? port_num(dash + 1, s + strlen(s)) : lo;
	if (lo < 0 || hi < 0)
		return rdm_yerr(c->d, n, c->err, c->len,
				"port: '%s' is not a port (0..65535) or a range like 8000-8100", s);
	if (lo > hi)
		return rdm_yerr(c->d, n, c->err, c->len,
				"port: '%s': the range starts above its end", s);
	nv = realloc(r->port, (r->n_port + 1) * sizeof(*nv));
	if (!nv)
		return oom(c);
	r->port = nv;
	r->port[r->n_port++] = (struct rdm_pol_ports){(uint16_t)lo, (uint16_t)hi};
	return 0;
}

static int item_proto(struct pctx *c, struct rdm_pol_rule *r, const struct rdm_ynode *n)
{
	static const char *const names[] = {"tcp", "udp", "icmp", "icmpv6", "sctp", "udplite"};
	static const uint8_t nums[] = {IPPROTO_TCP,    IPPROTO_UDP,  IPPROTO_ICMP,
				       IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_UDPLITE};
	const char *s, *hint;
	long v = -1;

	if (tlv_str(c, n, "proto", &s) < 0)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcasecmp(s, names[i]))
			v = nums[i];
	if (v < 0 && isdigit((unsigned char)*s)) {
		v = port_num(s, s + strlen(s));
		if (v > 255)
			v = -1;
	}
	if (v < 0) {
		hint = rdm_yclosest(s, names, sizeof(names) / sizeof(names[0]), 2);
		return rdm_yerr(c->d, n, c->err, c->len,
				"proto: unknown protocol '%s'%s%s%s (tcp, udp, icmp, icmpv6, sctp, "
				"udplite or a number 0..255)",
				s, hint ? " (did you mean '" : "", hint ? hint : "",
				hint ? "'?)" : "");
	}
	r->proto[v / 8] |= (uint8_t)(1u << (v % 8));
	return 0;
}

/* Lowercases a host pattern into out (HOST_MAX + 1 bytes) and checks it: letters,
 * digits, '-', '_' and '.', labels non-empty, a leading "*." for a suffix (taken off,
 * *suffix = 1), one trailing dot dropped. NULL, or why not. */
static const char *host_norm(const char *s, char *out, int *suffix)
{
	size_t n;

	*suffix = 0;
	if (s[0] == '*') {
		if (s[1] != '.')
			return "'*' may only start a pattern, as in *.example.com";
		*suffix = 1;
		s += 2;
	}
	n = strlen(s);
	if (n && s[n - 1] == '.')
		n--;
	if (!n)
		return "empty host name";
	if (n > HOST_MAX)
		return "longer than 253 bytes";
	for (size_t i = 0; i < n; i++) {
		char ch = (char)tolower((unsigned char)s[i]);

		if (ch == '.' && (i == 0 || out[i - 1] == '.'))
			return "empty label";
		if (ch == '*')
			return "'*' may only start a pattern, as in *.example.com";
		if (!isalnum((unsigned char)ch) && ch != '-' && ch != '_' && ch != '.')
			return "characters other than letters, digits, '-', '_' and '.'";
		out[i] = ch;
	}
	out[n] = '\0';
	return NULL;
}

/* Adds a pattern from host_norm to r. 0 or -ENOMEM. */
static int host_add(struct rdm_pol_rule *r, const char *norm, int suffix)
{
	return hset_add(suffix ? &r->host_suffix : &r->host_exact, norm);
}

/* path, or base_dir/path when path is relative and base_dir is set; caller frees. */
static char *resolve(const char *base_dir, const char *path)
{
	char *out;

	if (path[0] == '/' || !base_dir || !*base_dir)
		return strdup(path);
	if (asprintf(&out, "%s/%s", base_dir, path) < 0)
		return NULL;
	return out;
}

/* Reads a host list file: one pattern per line, '#' starts a comment. Errors are
 * "LIST:LINE:COL: message"; a file that cannot be read is reported at n. */
static int host_file(struct pctx *c, struct rdm_pol_rule *r, const struct rdm_ynode *n,
		     const char *name)
{
	char *path = resolve(c->base_dir, name), *line = NULL, norm[HOST_MAX + 1];
	size_t cap = 0;
	ssize_t got;
	int lineno = 0, rc = 0, suffix;
	FILE *fp;

	if (!path)
		return oom(c);
	if (!(fp = rdm_fopen_regular(path))) {
		rc = rdm_yerr(c->d, n, c->err, c->len, "host: cannot read '%s': %s", path,
			      rdm_file_why(errno));
		free(path);
		return rc;
	}
	while ((got = getline(&line, &cap, fp)) >= 0) {
		char *p = line, *e, *hash;
		const char *why;

		lineno++;
		if ((hash = strchr(line, '#')))
			*hash = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		e = p + strlen(p);
		while (e > p && isspace((unsigned char)e[-1]))
			*--e = '\0';
		if (!*p)
			continue;
		if ((size_t)(e - p) > HOST_MAX + 2 || strpbrk(p, " \t")) {
			why = strpbrk(p, " \t") ? "one pattern per line" : "longer than 253 bytes";
		} else if (strlen(p) != (size_t)(e - p)) {
			why = "a NUL byte";
		} else {
			why = host_norm(p, norm, &suffix);
		}
		if (why) {
			snprintf(c->err, c->len, "%s:%d:%d: bad host pattern: %s", path, lineno,
				 (int)(p - line) + 1, why);
			rc = -EINVAL;
			break;
		}
		if (host_add(r, norm, suffix) < 0) {
			rc = oom(c);
			break;
		}
	}
	if (!rc && ferror(fp))
		rc = rdm_yerr(c->d, n, c->err, c->len, "host: error reading '%s'", path);
	free(line);
	fclose(fp);
	free(path);
	return rc;
}

static int item_host(struct pctx *c, struct rdm_pol_rule *r, const struct rdm_ynode *n)
{
	static const char *const keys[] = {"file", NULL};
	char norm[HOST_MAX + 1];
	const char *s, *why;
	int suffix;

	if (rdm_ynode_kind(n) == RDM_YMAP) {
		const struct rdm_ynode *f = rdm_ymap_get(n, "file");

		if (rdm_ymap_check_keys(c->d, n, keys, c->err, c->len) < 0)
			return -EINVAL;
		if (!f)
			return rdm_yerr(c->d, n, c->err, c->len, "host: a list file needs 'file'");
		if (rdm_yget_str(c->d, f, &s, c->err, c->len) < 0)
			return -EINVAL;
		if (!*s)
			return rdm_yerr(c->d, f, c->err, c->len, "file: must not be empty");
		return host_file(c, r, f, s);
	}
	if (rdm_ynode_kind(n) != RDM_YSCALAR)
		return rdm_yexpect(c->d, n, "host", RDM_YSCALAR, c->err, c->len);
	if (rdm_yget_str(c->d, n, &s, c->err, c->len) < 0)
		return -EINVAL;
	if ((why = host_norm(s, norm, &suffix)))
		return rdm_yerr(c->d, n, c->err, c->len, "host: bad pattern '%s': %s", s, why);
	if (host_add(r, norm, suffix) < 0)
		return oom(c);
	return 0;
}

static int parse_action(struct pctx *c, const struct rdm_ynode *n, const char *what, uint8_t *out)
{
	const char *s, *hint;
	size_t na = sizeof(action_names) / sizeof(action_names[0]);

	if (rdm_ynode_kind(n) != RDM_YSCALAR)
		return rdm_yexpect(c->d, n, what, RDM_YSCALAR, c->err, c->len);
	if (rdm_yget_str(c->d, n, &s, c->err, c->len) < 0)
		return -EINVAL;
	for (size_t i = 0; i < na; i++)
		if (!strcmp(s, action_names[i])) {
			*out = (uint8_t)i;
			return 0;
		}
	hint = rdm_yclosest(s, action_names, na, 2);
	return rdm_yerr(c->d, n, c->err, c->len,
			"%s: unknown action '%s'%s%s%s (allow, deny, reject or log)", what, s,
			hint ? " (did you mean '" : "", hint ? hint : "", hint ? "'?)" : "");
}

static int parse_match(struct pctx *c, struct rdm_pol_rule *r, const struct rdm_ynode *m)
{
	static const struct {
		const char *key;
		uint32_t bit;
		item_fn fn;
	} fields[] = {
	    {"tenant", RDM_PM_TENANT, item_tenant},
	    {"user", RDM_PM_USER, item_user},
	    {"group", RDM_PM_GROUP, item_group},
	    {"app", RDM_PM_APP, item_app},
	    {"category", RDM_PM_CATEGORY, item_category},
	    {"dst", RDM_PM_DST, item_dst},
	    {"port", RDM_PM_PORT, item_port},
	    {"proto", RDM_PM_PROTO, item_proto},
	    {"host", RDM_PM_HOST, item_host},
	};
	static const char *const keys[] = {"tenant", "user", "group", "app",  "category",
					   "dst",    "port", "proto", "host", NULL};

	if (rdm_ynode_is_null(m))
		return 0;
	if (rdm_yexpect(c->d, m, "match", RDM_YMAP, c->err, c->len) < 0 ||
	    rdm_ymap_check_keys(c->d, m, keys, c->err, c->len) < 0)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		const struct rdm_ynode *v = rdm_ymap_get(m, fields[i].key);
		int rc;

		if (!v)
			continue;
		if (rdm_ynode_is_null(v))
			return rdm_yerr(c->d, v, c->err, c->len, "%s: needs a value",
					fields[i].key);
		if ((rc = each_item(c, r, v, fields[i].key, fields[i].fn)) < 0)
			return rc;
		r->fields |= fields[i].bit;
	}
	return 0;
}

static int parse_rule(struct pctx *c, struct rdm_policy *p, const struct rdm_ynode *n)
{
	static const char *const keys[] = {"name", "match", "action", NULL};
	struct rdm_pol_rule *r = &p->rules[p->n_rules];
	const struct rdm_ynode *v;
	const char *name;
	int rc;

	memset(r, 0, sizeof(*r));
	p->n_rules++; /* counted now so that a failure frees what was parsed */
	if (rdm_yexpect(c->d, n, "rule", RDM_YMAP, c->err, c->len) < 0 ||
	    rdm_ymap_check_keys(c->d, n, keys, c->err, c->len) < 0)
		return -EINVAL;
	if (!(v = rdm_ymap_get(n, "name")))
		return rdm_yerr(c->d, n, c->err, c->len, "rule: needs a name");
	if (tlv_str(c, v, "name", &name) < 0)
		return -EINVAL;
	for (size_t i = 0; i + 1 < p->n_rules; i++)
		if (!strcmp(p->rules[i].name, name))
			return rdm_yerr(c->d, v, c->err, c->len,
					"name: duplicate rule name '%s' (rule %zu has it)", name,
					i + 1);
	if (!strcmp(name, "default"))
		return rdm_yerr(c->d, v, c->err, c->len,
				"name: 'default' names the default action; pick another");
	if (!(r->name = strdup(name)))
		return oom(c);
	r->name_len = (uint8_t)strlen(name);
	if (!(v = rdm_ymap_get(n, "action")))
		return rdm_yerr(c->d, n, c->err, c->len, "rule '%s': needs an action", name);
	if ((rc = parse_action(c, v, "action", &r->action)) < 0)
		return rc;
	if ((v = rdm_ymap_get(n, "match")) && (rc = parse_match(c, r, v)) < 0)
		return rc;
	return 0;
}

static int parse_policy(struct pctx *c, struct rdm_policy *p, const struct rdm_ynode *m,
			const char *const extra[])
{
	static const char *const own[] = {"default", "reevaluate", "pending_packets", "rules"};
	const char *keys[24];
	const struct rdm_ynode *v;
	size_t nk = 0;
	uint64_t pend;
	int rc;

	if (!m || rdm_ynode_is_null(m))
		return rdm_yerr(c->d, m, c->err, c->len, "policy: expected a mapping with rules");
	if (rdm_yexpect(c->d, m, "policy", RDM_YMAP, c->err, c->len) < 0)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
		keys[nk++] = own[i];
	for (size_t i = 0; extra && extra[i] && nk + 1 < sizeof(keys) / sizeof(keys[0]); i++)
		keys[nk++] = extra[i];
	keys[nk] = NULL;
	if (rdm_ymap_check_keys(c->d, m, keys, c->err, c->len) < 0)
		return -EINVAL;
	p->default_action = RDM_POL_ALLOW;
	if ((v = rdm_ymap_get(m, "default")) &&
	    (rc = parse_action(c, v, "default", &p->default_action)) < 0)
		return rc;
	if (rdm_ymap_bool(c->d, m, "reevaluate", 0, &p->reevaluate, c->err, c->len) < 0 ||
	    rdm_ymap_u64(c->d, m, "pending_packets", 0, 65535, 16, &pend, c->err, c->len) < 0)
		return -EINVAL;
	p->pending_packets = (uint32_t)pend;
	if (!(v = rdm_ymap_get(m, "rules")) || rdm_ynode_is_null(v))
		return 0; /* the default alone */
	if (rdm_yexpect(c->d, v, "rules", RDM_YSEQ, c->err, c->len) < 0)
		return -EINVAL;
	if (!(p->rules = calloc(rdm_yseq_size(v) + 1, sizeof(*p->rules))))
		return oom(c);
	for (size_t i = 0; i < rdm_yseq_size(v); i++)
		if ((rc = parse_rule(c, p, rdm_yseq_item(v, i))) < 0)
			return rc;
	return 0;
}

static struct rdm_policy *policy_new(const struct rdm_ydoc *d, const struct rdm_ynode *m,
				     const char *const extra[], const char *base_dir, char *err,
				     size_t errlen)
{
	struct pctx c = {d, base_dir, err, errlen};
	struct rdm_policy *p = calloc(1, sizeof(*p));
	int rc;

	if (!p) {
		oom(&c);
		errno = ENOMEM;
		return NULL;
	}
	if ((rc = parse_policy(&c, p, m, extra)) < 0) {
		rdm_policy_free(p);
		errno = -rc;
		return NULL;
	}
	p->generation = (uint32_t)atomic_fetch_add(&pol_generation, 1) + 1;
	return p;
}

struct rdm_policy *rdm_policy_from_yaml(const struct rdm_ydoc *d, const struct rdm_ynode *map,
					const char *const extra_keys[], const char *base_dir,
					char *err, size_t errlen)
{
	return policy_new(d, map, extra_keys, base_dir, err, errlen);
}

struct rdm_policy *rdm_policy_load(const char *path, char *err, size_t errlen)
{
	struct rdm_ydoc *d = rdm_ydoc_load(path, err, errlen);
	struct rdm_policy *p = NULL;
	char *dir = NULL, *slash;
	int e;

	if (!d)
		return NULL;
	if (!(dir = strdup(path))) {
		snprintf(err, errlen, "%s: out of memory", path);
		rdm_ydoc_free(d);
		errno = ENOMEM;
		return NULL;
	}
	if ((slash = strrchr(dir, '/')))
		slash[slash == dir ? 1 : 0] = '\0';
	else
		strcpy(dir, ".");
	p = policy_new(d, rdm_ydoc_root(d), NULL, dir, err, errlen);
	e = errno;
	if (p && !(p->path = strdup(path))) {
		rdm_policy_free(p);
		p = NULL;
		snprintf(err, errlen, "%s: out of memory", path);
		e = ENOMEM;
	}
	free(dir);
	rdm_ydoc_free(d);
	errno = e;
	return p;
}

/* ---- matching ----------------------------------------------------------------------- */

static int str_eq(struct rdm_str a, const char *b)
{
	return strlen(b) == a.len && !memcmp(a.p, b, a.len);
}

static int str_eq_ci(const char *a, size_t alen, const char *b)
{
	return strlen(b) == alen && !strncasecmp(a, b, alen);
}

static int strs_has(const struct rdm_pol_strs *s, struct rdm_str v)
{
	for (size_t i = 0; i < s->n; i++)
		if (str_eq(v, s->v[i]))
			return 1;
	return 0;
}

/* An app pattern matches the whole "Master.App" name or either part of it. */
static int app_has(const struct rdm_pol_strs *s, struct rdm_str v)
{
	const char *dot = memchr(v.p, '.', v.len);

	for (size_t i = 0; i < s->n; i++) {
		if (str_eq_ci(v.p, v.len, s->v[i]))
			return 1;
		if (dot && (str_eq_ci(v.p, (size_t)(dot - v.p), s->v[i]) ||
			    str_eq_ci(dot + 1, v.len - (size_t)(dot - v.p) - 1, s->v[i])))
			return 1;
	}
	return 0;
}

static int cat_has(const struct rdm_pol_strs *s, struct rdm_str v)
{
	for (size_t i = 0; i < s->n; i++)
		if (str_eq_ci(v.p, v.len, s->v[i]))
			return 1;
	return 0;
}

static int cidr_has(const struct rdm_pol_rule *r, const struct rdm_flow_key *k)
{
	for (size_t i = 0; i < r->n_dst; i++) {
		const struct rdm_pol_cidr *c = &r->dst[i];
		int full = c->bits / 8, rest = c->bits % 8;

		if (c->family != k->family || memcmp(c->addr, k->dst, (size_t)full))
			continue;
		if (rest && ((k->dst[full] ^ c->addr[full]) & (0xff00 >> rest) & 0xff))
			continue;
		return 1;
	}
	return 0;
}

static int port_has(const struct rdm_pol_rule *r, const struct rdm_flow_key *k)
{
	/* Only protocols with ports have a destination port to compare. */
	if (k->proto != IPPROTO_TCP && k->proto != IPPROTO_UDP && k->proto != IPPROTO_SCTP &&
	    k->proto != IPPROTO_UDPLITE)
		return 0;
	for (size_t i = 0; i < r->n_port; i++)
		if (k->dport >= r->port[i].lo && k->dport <= r->port[i].hi)
			return 1;
	return 0;
}

/* The frame's host as patterns are written: lowercase, without a ":port" (HTTP Host
 * may carry one) or a trailing dot. 0, or -1 when it cannot match any pattern. */
static int host_of(struct rdm_str h, char *out)
{
	size_t n = h.len;
	const char *colon = memchr(h.p, ':', h.len);

	if (colon && !memchr(colon + 1, ':', h.len - (size_t)(colon - h.p) - 1))
		n = (size_t)(colon - h.p);
	if (n && h.p[n - 1] == '.')
		n--;
	if (!n || n > HOST_MAX)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!h.p[i])
			return -1;
		out[i] = (char)tolower((unsigned char)h.p[i]);
	}
	out[n] = '\0';
	return 0;
}

static int host_has(const struct rdm_pol_rule *r, struct rdm_str h)
{
	char buf[HOST_MAX + 1];

	if (host_of(h, buf) < 0)
		return 0;
	if (hset_has(&r->host_exact, buf))
		return 1;
	/* *.suffix matches the suffix itself and every name under it. */
	for (const char *p = buf; p; p = strchr(p, '.') ? strchr(p, '.') + 1 : NULL)
		if (hset_has(&r->host_suffix, p))
			return 1;
	return 0;
}

enum { NO = 0, YES, MAYBE };

static int rule_match(const struct rdm_pol_rule *r, const struct rdm_pol_facts *x)
{
	const struct rdm_frame *f = x->f;
	const struct rdm_flow_key *k = x->key;
	uint32_t m = r->fields, l7;
	int maybe = 0, l7_open;

	if ((m & RDM_PM_TENANT) &&
	    (!(f->present & RDM_F_TENANT) || !strs_has(&r->tenant, f->tenant)))
		return NO;
	if ((m & RDM_PM_USER) && (!(f->present & RDM_F_USER) || !strs_has(&r->user, f->user)))
		return NO;
	if (m & RDM_PM_GROUP) {
		int hit = 0;

		if (f->present & RDM_F_GROUPS)
			for (int g = 0; g < f->n_groups && g < RDM_MAX_GROUPS && !hit; g++)
				hit = strs_has(&r->group, f->groups[g]);
		if (!hit)
			return NO;
	}
	if ((m & RDM_PM_DST) && (!k || !cidr_has(r, k)))
		return NO;
	if ((m & RDM_PM_PORT) && (!k || !port_has(r, k)))
		return NO;
	if ((m & RDM_PM_PROTO) && (!k || !(r->proto[k->proto / 8] & (1u << (k->proto % 8)))))
		return NO;
	/* An L7 field that has not arrived is unknown until DPI says it is done; what DPI
	 * made of a flow seen from its middle stays unknown. */
	l7_open = x->l7_untrusted ||
		  (!x->l7_final && !((f->present & RDM_F_FLAGS) && (f->flags & RDM_FF_DPI_DONE)));
	l7 = x->l7_untrusted ? 0 : f->present;
	if (m & RDM_PM_APP) {
		if (l7 & RDM_F_APP_NAME) {
			if (!app_has(&r->app, f->app_name))
				return NO;
		} else if (l7_open) {
			maybe = 1;
		} else {
			return NO;
		}
	}
	if (m & RDM_PM_CATEGORY) {
		if (l7 & RDM_F_CATEGORY) {
			if (!cat_has(&r->category, f->category))
				return NO;
		} else if (l7_open) {
			maybe = 1;
		} else {
			return NO;
		}
	}
	if (m & RDM_PM_HOST) {
		if (l7 & RDM_F_HOST) {
			if (!host_has(r, f->host))
				return NO;
		} else if (l7_open) {
			maybe = 1;
		} else {
			return NO;
		}
	}
	return maybe ? MAYBE : YES;
}

int rdm_policy_eval(const struct rdm_policy *p, const struct rdm_pol_facts *x, uint32_t *rule_id)
{
	for (size_t i = 0; i < p->n_rules; i++) {
		switch (rule_match(&p->rules[i], x)) {
		case YES:
			*rule_id = (uint32_t)i + 1;
			return RDM_POL_DECIDED;
		case MAYBE:
			return RDM_POL_PENDING;
		default:
			break;
		}
	}
	*rule_id = 0;
	return RDM_POL_DECIDED;
}

enum rdm_pol_action rdm_policy_action(const struct rdm_policy *p, uint32_t rule_id)
{
	if (rule_id == 0 || rule_id > p->n_rules)
		return (enum rdm_pol_action)p->default_action;
	return (enum rdm_pol_action)p->rules[rule_id - 1].action;
}

const char *rdm_policy_rule_name(const struct rdm_policy *p, uint32_t rule_id, uint8_t *len)
{
	if (rule_id == 0 || rule_id > p->n_rules) {
		*len = 7;
		return "default";
	}
	*len = p->rules[rule_id - 1].name_len;
	return p->rules[rule_id - 1].name;
}
