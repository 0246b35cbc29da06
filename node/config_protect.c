/* The chain config's security settings (see config.h and README, "Security model"):
 * transport.protect and transport.certs, each node's identity, and the checks across
 * nodes that keep a frame from skipping a stage (no two nodes on one address, no hop
 * that cannot prove its peer while proof is asked for). */
#include "node/config_int.h"
#include "lib/certs.h"
#include "lib/yaml.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* path as the chain file's neighbour when it is relative, in a new string; 0 or -ENOMEM. */
static int beside_chain(struct ld *l, const char *path, char **out)
{
	const char *chain = rdm_ydoc_name(l->doc), *slash = strrchr(chain, '/');

	if (path[0] == '/' || !slash)
		return rdm_ystrdup(l->doc, path, out, l->err, l->len);
	if (asprintf(out, "%.*s/%s", (int)(slash - chain), chain, path) < 0) {
		*out = NULL;
		return rdm_config__oom(l);
	}
	return 0;
}

/* transport.protect and transport.certs. */
int rdm_config__load_protect(struct ld *l, const struct rdm_ynode *m, struct rdm_transport_conf *t)
{
	static const char *const modes[] = {"auth", "none", "encrypt"};
	const struct rdm_ynode *v = m ? rdm_ymap_get(m, "protect") : NULL;
	const char *s = "auth", *hint;
	int rc = 0;

	if (v)
		rc = rdm_ymap_str(l->doc, m, "protect", NULL, &s, l->err, l->len);
	if (rc)
		return rc;
	if (!strcmp(s, "auth")) {
		t->protect = RDM_PROTECT_AUTH;
	} else if (!strcmp(s, "none")) {
		t->protect = RDM_PROTECT_NONE;
	} else if (!strcmp(s, "encrypt")) {
		t->protect = RDM_PROTECT_ENCRYPT;
	} else {
		hint = rdm_yclosest(s, modes, 3, 2);
		return rdm_yerr(
		    l->doc, v, l->err, l->len, "protect: '%s' is not auth, encrypt or none%s%s%s",
		    s, hint ? " (did you mean '" : "", hint ? hint : "", hint ? "'?)" : "");
	}
	v = m ? rdm_ymap_get(m, "certs") : NULL;
	if (!v)
		return 0;
	rc = rdm_ymap_str(l->doc, m, "certs", NULL, &s, l->err, l->len);
	if (!rc && !*s)
		rc = rdm_yerr(l->doc, v, l->err, l->len, "certs: must not be empty");
	return rc ? rc : beside_chain(l, s, &t->certs);
}

/* Every node proves itself with a certificate name (identity:, else its name), and
 * hops that cannot be proven are refused while protect asks for proof. */
int rdm_config__check_identities(struct ld *l, struct rdm_chain_conf *c,
				 const struct rdm_ynode *nodes)
{
	for (int i = 0; i < c->n_nodes; i++) {
		struct rdm_node_conf *nc = &c->nodes[i];
		const struct rdm_ynode *m = rdm_yseq_item(nodes, (size_t)i);
		const struct rdm_ynode *v = rdm_ymap_get(m, "identity");
		const char *s = nc->name;
		int rc = 0;

		if (v)
			rc = rdm_ymap_str(l->doc, m, "identity", NULL, &s, l->err, l->len);
		if (rc)
			return rc;
		if (c->transport.protect != RDM_PROTECT_NONE && !rdm_certs_name_ok(s))
			return rdm_yerr(l->doc, v ? v : rdm_ymap_get(m, "name"), l->err, l->len,
					"node '%s': '%s' cannot be a certificate name (1 to %d of "
					"A-Z a-z 0-9 . _ -, starting with a letter or digit, not "
					"'ca'): give the node an identity:",
					nc->name, s, RDM_CERTS_NAME_MAX);
		rc = rdm_ystrdup(l->doc, s, &nc->identity, l->err, l->len);
		if (rc)
			return rc;
	}
	return 0;
}

static int addr_cmp(const struct rdm_addr *a, const struct rdm_addr *b)
{
	const struct sockaddr_in *a4 = (const void *)&a->ss, *b4 = (const void *)&b->ss;
	const struct sockaddr_in6 *a6 = (const void *)&a->ss, *b6 = (const void *)&b->ss;
	int d = (int)a->ss.ss_family - (int)b->ss.ss_family;

	if (d)
		return d;
	if (a->ss.ss_family == AF_INET)
		return memcmp(&a4->sin_addr, &b4->sin_addr, sizeof(a4->sin_addr))
			   ?: (int)ntohs(a4->sin_port) - (int)ntohs(b4->sin_port);
	return memcmp(&a6->sin6_addr, &b6->sin6_addr, sizeof(a6->sin6_addr))
		   ?: (int)ntohs(a6->sin6_port) - (int)ntohs(b6->sin6_port);
}

struct listen_ix {
	const struct rdm_addr *a;
	int i; /* the node's index */
};

static int by_listen(const void *x, const void *y)
{
	const struct listen_ix *p = x, *q = y;

	return addr_cmp(p->a, q->a) ?: p->i - q->i;
}

/* Two nodes on one address would let an upstream reach the wrong one and frames skip a
 * stage: refused, at the later node's listen. n log n, for racks of many nodes. */
int rdm_config__check_listen_unique(struct ld *l, const struct rdm_chain_conf *c,
				    const struct rdm_ynode *nodes)
{
	struct listen_ix *ix = malloc(sizeof(*ix) * (size_t)c->n_nodes);
	int k = 0, rc = 0;

	if (!ix)
		return rdm_config__oom(l);
	for (int i = 0; i < c->n_nodes; i++)
		if (c->nodes[i].has_listen)
			ix[k++] = (struct listen_ix){&c->nodes[i].listen, i};
	qsort(ix, (size_t)k, sizeof(*ix), by_listen);
	for (int j = 1; j < k && !rc; j++) {
		const struct rdm_node_conf *a = &c->nodes[ix[j - 1].i], *b = &c->nodes[ix[j].i];

		if (addr_cmp(ix[j - 1].a, ix[j].a))
			continue;
		rc = rdm_yerr(l->doc, rdm_ymap_get(rdm_yseq_item(nodes, (size_t)ix[j].i), "listen"),
			      l->err, l->len,
			      "node '%s': listen %s is node '%s''s address too: an upstream could "
			      "reach the wrong node and frames skip a stage",
			      b->name, b->listen.text, a->name);
	}
	free(ix);
	return rc;
}

int rdm_chain_use_certs(struct rdm_chain_conf *c, const char *dir)
{
	char *d = strdup(dir);

	if (!d)
		return -ENOMEM;
	free(c->transport.certs);
	c->transport.certs = d;
	return 0;
}
