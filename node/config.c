/* The chain config loader (see config.h): one YAML file, read through lib/yaml.c's DOM,
 * into a struct rdm_chain_conf, with addresses parsed by lib/addr.c and every error
 * reported at its FILE:LINE:COL. */
#include "node/config_int.h"
#include "lib/yaml.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WORKERS 64
#define MAX_SPI	    0xFFFFFFu

/* Where each node's name, id and next were written, for checks across nodes. */
struct node_src {
	const struct rdm_ynode *map, *name, *id, *next, *ingress;
	const char *next_name[RDM_MAX_NEXT];
	const struct rdm_ynode *next_at[RDM_MAX_NEXT];
	int n_next;
};

int rdm_config__oom(struct ld *l)
{
	rdm_yerr(l->doc, NULL, l->err, l->len, "out of memory");
	return -ENOMEM;
}

/* A section that may be written as a mapping or left empty ("egress:"). *out is NULL
 * for an empty section. */
static int section(struct ld *l, const struct rdm_ynode *n, const char *what,
		   const struct rdm_ynode **out)
{
	*out = NULL;
	if (rdm_ynode_is_null(n))
		return 0;
	int rc = rdm_yexpect(l->doc, n, what, RDM_YMAP, l->err, l->len);
	if (rc == 0)
		*out = n;
	return rc;
}

/* An optional path-like string: kept as written, must not be empty. */
static int opt_path(struct ld *l, const struct rdm_ynode *map, const char *key, char **out)
{
	const struct rdm_ynode *v = rdm_ymap_get(map, key);
	const char *s;
	int rc;

	if (!v)
		return 0;
	rc = rdm_ymap_str(l->doc, map, key, NULL, &s, l->err, l->len);
	if (rc)
		return rc;
	if (!*s)
		return rdm_yerr(l->doc, v, l->err, l->len, "%s: must not be empty", key);
	return rdm_ystrdup(l->doc, s, out, l->err, l->len);
}

static int u32_opt(struct ld *l, const struct rdm_ynode *map, const char *key, uint64_t min,
		   uint64_t max, uint64_t def, uint32_t *out)
{
	uint64_t v;
	int rc = rdm_ymap_u64(l->doc, map, key, min, max, def, &v, l->err, l->len);
	if (rc == 0)
		*out = (uint32_t)v;
	return rc;
}

static int chain_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > RDM_CHAIN_NAME_MAX)
		return 0;
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

static int load_chain_section(struct ld *l, const struct rdm_ynode *root, struct rdm_chain_conf *c)
{
	static const char *const keys[] = {"name", "spi", NULL};
	const struct rdm_ynode *m = rdm_ymap_get(root, "chain");
	const char *name;
	int rc;

	rc = rdm_yexpect(l->doc, m, "chain", RDM_YMAP, l->err, l->len);
	if (!rc)
		rc = rdm_ymap_check_keys(l->doc, m, keys, l->err, l->len);
	if (rc)
		return rc;
	const struct rdm_ynode *nv = rdm_ymap_get(m, "name");
	if (!nv)
		return rdm_yerr(l->doc, m, l->err, l->len, "chain: missing key 'name'");
	rc = rdm_ymap_str(l->doc, m, "name", NULL, &name, l->err, l->len);
	if (rc)
		return rc;
	if (!*name)
		return rdm_yerr(l->doc, nv, l->err, l->len, "name: must not be empty");
	/* The name travels in every assign and status, and reaches terminals: a line of
	 * text, not a payload (a 2 MB one made every assign too large for the control
	 * channel, and an escape sequence in it reached terminals raw). */
	if (!chain_name_ok(name))
		return rdm_yerr(l->doc, nv, l->err, l->len,
				"name: a chain name is 1 to %d bytes of text without control "
				"characters (this one has %zu bytes)",
				RDM_CHAIN_NAME_MAX, strlen(name));
	rc = rdm_ystrdup(l->doc, name, &c->name, l->err, l->len);
	if (!rc)
		rc = u32_opt(l, m, "spi", 1, MAX_SPI, 1, &c->spi);
	return rc;
}

static int load_transport_section(struct ld *l, const struct rdm_ynode *root,
				  struct rdm_transport_conf *t)
{
	static const char *const keys[] = {"queue_bytes",
					   "max_frame",
					   "backoff_min_ms",
					   "backoff_max_ms",
					   "batch",
					   "keepalive_ms",
					   "credits",
					   "inline",
					   "spin_us",
					   "drain_ms",
					   "protect",
					   "certs",
					   "shm",
					   NULL};
	const struct rdm_ynode *m = NULL, *v = rdm_ymap_get(root, "transport");
	int rc = 0;

	if (v)
		rc = section(l, v, "transport", &m);
	if (!rc && m)
		rc = rdm_ymap_check_keys(l->doc, m, keys, l->err, l->len);
	if (!rc)
		rc = rdm_config__load_protect(l, m, t);
	if (!rc)
		rc = u32_opt(l, m, "queue_bytes", 64u << 10, 1u << 30, 4u << 20, &t->queue_bytes);
	if (!rc)
		rc = u32_opt(l, m, "max_frame", 256, 1u << 20, 16384, &t->max_frame);
	if (!rc)
		rc = u32_opt(l, m, "backoff_min_ms", 1, 3600000, 20, &t->backoff_min_ms);
	if (!rc)
		rc = u32_opt(l, m, "backoff_max_ms", 1, 3600000, 1000, &t->backoff_max_ms);
	if (!rc)
		rc = u32_opt(l, m, "batch", 1, 1024, 32, &t->batch);
	if (!rc)
		rc = u32_opt(l, m, "keepalive_ms", 100, 3600000, 3000, &t->keepalive_ms);
	if (!rc)
		rc = u32_opt(l, m, "credits", 4, 4096, 64, &t->credits);
	if (!rc)
		rc = u32_opt(l, m, "inline", 0, 4096, 256, &t->inline_max);
	if (!rc)
		rc = u32_opt(l, m, "spin_us", 0, 1000000, 20, &t->spin_us);
	if (!rc)
		rc = u32_opt(l, m, "drain_ms", 0, 86400000, 30000, &t->drain_ms);
	if (!rc)
		rc = rdm_ymap_bool(l->doc, m, "shm", 1, &t->shm, l->err, l->len);
	if (rc)
		return rc;
	if (t->backoff_max_ms < t->backoff_min_ms) {
		const struct rdm_ynode *at = rdm_ymap_get(m, "backoff_max_ms");
		if (!at)
			at = rdm_ymap_get(m, "backoff_min_ms");
		return rdm_yerr(l->doc, at, l->err, l->len,
				"backoff_max_ms (%u) is less than backoff_min_ms (%u)",
				t->backoff_max_ms, t->backoff_min_ms);
	}
	if (t->queue_bytes < t->max_frame) {
		const struct rdm_ynode *at = rdm_ymap_get(m, "queue_bytes");
		if (!at)
			at = rdm_ymap_get(m, "max_frame");
		return rdm_yerr(l->doc, at, l->err, l->len,
				"queue_bytes (%u) is less than max_frame (%u)", t->queue_bytes,
				t->max_frame);
	}
	return 0;
}

static int load_flows_section(struct ld *l, const struct rdm_ynode *root, struct rdm_flow_conf *f)
{
	static const char *const keys[] = {"max",	  "tcp_idle_ms",   "tcp_closed_ms",
					   "udp_idle_ms", "other_idle_ms", "when_full",
					   NULL};
	static const char *const modes[] = {"evict", "refuse-new"};
	const struct rdm_ynode *m = NULL, *v = rdm_ymap_get(root, "flows");
	int rc = 0;

	if (v)
		rc = section(l, v, "flows", &m);
	if (!rc && m)
		rc = rdm_ymap_check_keys(l->doc, m, keys, l->err, l->len);
	if (!rc)
		rc = u32_opt(l, m, "max", 16, 1u << 26, 65536, &f->max_flows);
	if (!rc)
		rc = u32_opt(l, m, "tcp_idle_ms", 1, 86400000, 300000, &f->tcp_idle_ms);
	if (!rc)
		rc = u32_opt(l, m, "tcp_closed_ms", 1, 86400000, 5000, &f->tcp_closed_ms);
	if (!rc)
		rc = u32_opt(l, m, "udp_idle_ms", 1, 86400000, 60000, &f->udp_idle_ms);
	if (!rc)
		rc = u32_opt(l, m, "other_idle_ms", 1, 86400000, 30000, &f->other_idle_ms);
	if (!rc && m && (v = rdm_ymap_get(m, "when_full"))) {
		const char *s, *hint;

		rc = rdm_ymap_str(l->doc, m, "when_full", NULL, &s, l->err, l->len);
		if (!rc && !strcmp(s, "refuse-new"))
			f->refuse_new = 1;
		else if (!rc && strcmp(s, "evict")) {
			hint = rdm_yclosest(s, modes, 2, 3);
			rc = rdm_yerr(l->doc, v, l->err, l->len,
				      "when_full: '%s' is not evict or refuse-new%s%s%s", s,
				      hint ? " (did you mean '" : "", hint ? hint : "",
				      hint ? "'?)" : "");
		}
	}
	return rc;
}

/* A TUN device: "tun: NAME" or "tun: {name: NAME, mtu: N}". */
static int load_tun(struct ld *l, const struct rdm_ynode *v, struct rdm_tun_conf *t)
{
	static const char *const keys[] = {"name", "mtu", NULL};
	const char *s;
	int rc;

	if (rdm_ynode_scalar(v)) {
		s = rdm_ynode_scalar(v);
		rc = 0;
		t->mtu = 1500;
	} else {
		rc = rdm_yexpect(l->doc, v, "tun", RDM_YMAP, l->err, l->len);
		if (!rc)
			rc = rdm_ymap_check_keys(l->doc, v, keys, l->err, l->len);
		if (!rc && !rdm_ymap_get(v, "name"))
			rc = rdm_yerr(l->doc, v, l->err, l->len, "tun: missing key 'name'");
		if (!rc)
			rc = rdm_ymap_str(l->doc, v, "name", NULL, &s, l->err, l->len);
		if (!rc)
			rc = u32_opt(l, v, "mtu", 576, 9000, 1500, &t->mtu);
		if (rc)
			return rc;
	}
	if (!*s || strlen(s) >= 16 || strchr(s, '/') || strchr(s, ' '))
		return rdm_yerr(
		    l->doc, v, l->err, l->len,
		    "tun: '%s' is not an interface name (1 to 15 characters, no '/' or space)", s);
	return rdm_ystrdup(l->doc, s, &t->name, l->err, l->len);
}

static int load_ingress(struct ld *l, const char *node, const struct rdm_ynode *v,
			struct rdm_ingress_conf *in)
{
	static const char *const keys[] = {"mode", "file",    "count", "rate", "flows",
					   "seed", "wait_ms", "tun",   NULL};
	const struct rdm_ynode *m, *mv, *k;
	const char *mode;
	uint64_t u;
	int rc;

	rc = rdm_yexpect(l->doc, v, "ingress", RDM_YMAP, l->err, l->len);
	if (!rc)
		rc = rdm_ymap_check_keys(l->doc, v, keys, l->err, l->len);
	if (rc)
		return rc;
	m = v;
	mv = rdm_ymap_get(m, "mode");
	if (!mv)
		return rdm_yerr(l->doc, m, l->err, l->len, "node '%s': ingress: missing key 'mode'",
				node);
	rc = rdm_ymap_str(l->doc, m, "mode", NULL, &mode, l->err, l->len);
	if (rc)
		return rc;
	if (!strcmp(mode, "gen"))
		in->mode = RDM_INGRESS_GEN;
	else if (!strcmp(mode, "pcap"))
		in->mode = RDM_INGRESS_PCAP;
	else if (!strcmp(mode, "tun"))
		in->mode = RDM_INGRESS_TUN;
	else
		return rdm_yerr(l->doc, mv, l->err, l->len,
				"unknown ingress mode '%s' (expected gen, pcap or tun)", mode);

	if (in->mode == RDM_INGRESS_TUN) {
		for (size_t i = 0; i < rdm_ymap_size(m); i++) {
			const char *key = rdm_ynode_scalar(rdm_ymap_key(m, i));

			if (strcmp(key, "mode") && strcmp(key, "tun") && strcmp(key, "wait_ms"))
				return rdm_yerr(l->doc, rdm_ymap_key(m, i), l->err, l->len,
						"'%s' is not allowed for ingress mode tun", key);
		}
		if (!rdm_ymap_get(m, "tun"))
			return rdm_yerr(l->doc, m, l->err, l->len,
					"node '%s': ingress: missing key 'tun' (mode tun needs a "
					"device name)",
					node);
		rc = load_tun(l, rdm_ymap_get(m, "tun"), &in->tun);
		if (!rc)
			rc = rdm_ymap_u64(l->doc, m, "wait_ms", 0, 3600000, 5000, &u, l->err,
					  l->len);
		if (!rc)
			in->wait_ms = (int)u;
		return rc;
	}
	if ((k = rdm_ymap_get(m, "tun")))
		return rdm_yerr(l->doc, k, l->err, l->len,
				"'tun' is only allowed for ingress mode tun");

	for (size_t i = 0; i < rdm_ymap_size(m); i++) {
		k = rdm_ymap_key(m, i);
		const char *key = rdm_ynode_scalar(k);
		if (in->mode == RDM_INGRESS_GEN && !strcmp(key, "file"))
			return rdm_yerr(l->doc, k, l->err, l->len,
					"'file' is not allowed for ingress mode gen");
		if (in->mode == RDM_INGRESS_PCAP && (!strcmp(key, "flows") || !strcmp(key, "seed")))
			return rdm_yerr(l->doc, k, l->err, l->len,
					"'%s' is only allowed for ingress mode gen", key);
	}

	if (in->mode == RDM_INGRESS_PCAP) {
		if (!rdm_ymap_get(m, "file"))
			return rdm_yerr(l->doc, m, l->err, l->len,
					"node '%s': ingress: missing key 'file' (mode pcap needs "
					"a capture to replay)",
					node);
		rc = opt_path(l, m, "file", &in->file);
		if (!rc)
			rc = rdm_ymap_u64(l->doc, m, "count", 0, UINT64_MAX, 0, &in->count, l->err,
					  l->len);
	} else {
		if (!rdm_ymap_get(m, "count"))
			return rdm_yerr(l->doc, m, l->err, l->len,
					"node '%s': ingress: missing key 'count' (mode gen needs "
					"a packet count)",
					node);
		rc = rdm_ymap_u64(l->doc, m, "count", 1, UINT64_MAX, 0, &in->count, l->err, l->len);
		if (!rc)
			rc = rdm_ymap_u64(l->doc, m, "flows", 1, UINT32_MAX, 100, &u, l->err,
					  l->len);
		if (!rc)
			in->flows = (uint32_t)u;
		if (!rc)
			rc = rdm_ymap_u64(l->doc, m, "seed", 0, UINT64_MAX, 1, &in->seed, l->err,
					  l->len);
	}
	if (!rc)
		rc = rdm_ymap_double(l->doc, m, "rate", 0, DBL_MAX, 0, &in->rate, l->err, l->len);
	if (!rc)
		rc = rdm_ymap_u64(l->doc, m, "wait_ms", 0, 3600000, 5000, &u, l->err, l->len);
	if (!rc)
		in->wait_ms = (int)u;
	return rc;
}

static int load_egress(struct ld *l, const struct rdm_ynode *v, struct rdm_egress_conf *eg)
{
	static const char *const keys[] = {"pcap", "frames", "count", "rate", "tun", NULL};
	const struct rdm_ynode *m;
	int rc;

	rc = section(l, v, "egress", &m);
	if (!rc && m)
		rc = rdm_ymap_check_keys(l->doc, m, keys, l->err, l->len);
	if (rc)
		return rc;
	eg->enabled = 1;
	rc = opt_path(l, m, "pcap", &eg->pcap);
	if (!rc)
		rc = opt_path(l, m, "frames", &eg->frames);
	if (!rc)
		rc = rdm_ymap_u64(l->doc, m, "count", 0, UINT64_MAX, 0, &eg->count, l->err, l->len);
	if (!rc)
		rc = rdm_ymap_double(l->doc, m, "rate", 0, DBL_MAX, 0, &eg->rate, l->err, l->len);
	if (!rc && m && rdm_ymap_get(m, "tun"))
		rc = load_tun(l, rdm_ymap_get(m, "tun"), &eg->tun);
	return rc;
}

static int load_stages(struct ld *l, const struct rdm_ynode *v, struct rdm_node_conf *nc)
{
	size_t n;
	int rc;

	if (rdm_ynode_is_null(v))
		return 0;
	rc = rdm_yexpect(l->doc, v, "stages", RDM_YSEQ, l->err, l->len);
	if (rc)
		return rc;
	n = rdm_yseq_size(v);
	if (n == 0)
		return 0;
	nc->stages = calloc(n, sizeof(*nc->stages));
	if (!nc->stages)
		return rdm_config__oom(l);
	for (size_t i = 0; i < n; i++) {
		const struct rdm_ynode *it = rdm_yseq_item(v, i), *nv = it;
		struct rdm_stage_conf *s = &nc->stages[i];
		const char *name;

		if (rdm_ynode_kind(it) == RDM_YMAP) {
			nv = rdm_ymap_get(it, "name");
			if (!nv)
				return rdm_yerr(l->doc, it, l->err, l->len,
						"node '%s': stage %zu: missing key 'name'",
						nc->name, i + 1);
			s->conf = it;
			rc = rdm_ymap_str(l->doc, it, "name", NULL, &name, l->err, l->len);
		} else if (rdm_ynode_kind(it) == RDM_YSCALAR) {
			rc = rdm_yget_str(l->doc, it, &name, l->err, l->len);
		} else {
			return rdm_yerr(l->doc, it, l->err, l->len,
					"expected a stage name or a mapping with 'name', got a "
					"sequence");
		}
		if (rc)
			return rc;
		if (!*name)
			return rdm_yerr(l->doc, nv, l->err, l->len, "stage name must not be empty");
		rc = rdm_ystrdup(l->doc, name, &s->name, l->err, l->len);
		if (rc)
			return rc;
		s->line = rdm_ynode_line(it);
		s->col = rdm_ynode_col(it);
		nc->n_stages = (int)(i + 1);
	}
	return 0;
}

int rdm_node_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > RDM_NODE_NAME_MAX)
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("_.-", *s))
			return 0;
	return 1;
}

/* The address under key: "IP:PORT" or "[IPV6]:PORT", errors at the value. */
static int addr_key(struct ld *l, const struct rdm_ynode *m, const char *key, struct rdm_addr *a)
{
	const struct rdm_ynode *v = rdm_ymap_get(m, key);
	const char *s;
	int rc = rdm_ymap_str(l->doc, m, key, NULL, &s, l->err, l->len);

	if (rc)
		return rc;
	switch (rdm_addr_parse_why(a, s)) {
	case RDM_ADDR_OK:
		return 0;
	case RDM_ADDR_PORT:
		return rdm_yerr(l->doc, v, l->err, l->len, "bad port in '%s' (expected 1..65535)",
				s);
	default:
		return rdm_yerr(l->doc, v, l->err, l->len,
				"bad address '%s' (expected IPV4:PORT or [IPV6]:PORT)", s);
	}
}

static int load_node(struct ld *l, const struct rdm_ynode *m, size_t idx, struct rdm_node_conf *nc,
		     struct node_src *src)
{
	static const char *const keys[] = {"name",     "id",	    "listen",  "workers", "stages",
					   "next",     "transport", "connect", "ingress", "egress",
					   "identity", "poll",	    NULL};
	const struct rdm_ynode *v;
	const char *s;
	char what[32];
	uint64_t u;
	int rc;

	nc->next = -1;
	src->map = m;
	snprintf(what, sizeof(what), "node %zu", idx + 1);
	rc = rdm_yexpect(l->doc, m, what, RDM_YMAP, l->err, l->len);
	if (!rc)
		rc = rdm_ymap_check_keys(l->doc, m, keys, l->err, l->len);
	if (rc)
		return rc;

	v = src->name = rdm_ymap_get(m, "name");
	if (!v)
		return rdm_yerr(l->doc, m, l->err, l->len, "node %zu: missing key 'name'", idx + 1);
	rc = rdm_ymap_str(l->doc, m, "name", NULL, &s, l->err, l->len);
	if (rc)
		return rc;
	if (!rdm_node_name_ok(s))
		return rdm_yerr(l->doc, v, l->err, l->len,
				"bad node name '%s' (expected 1 to %d of A-Z a-z 0-9 _ . -)", s,
				RDM_NODE_NAME_MAX);
	rc = rdm_ystrdup(l->doc, s, &nc->name, l->err, l->len);
	if (rc)
		return rc;

	src->id = rdm_ymap_get(m, "id");
	rc = rdm_ymap_u64(l->doc, m, "id", 1, UINT32_MAX, idx + 1, &u, l->err, l->len);
	if (rc)
		return rc;
	nc->id = (uint32_t)u;

	src->ingress = rdm_ymap_get(m, "ingress");
	if (src->ingress) {
		rc = load_ingress(l, nc->name, src->ingress, &nc->ingress);
		if (rc)
			return rc;
	}

	v = rdm_ymap_get(m, "listen");
	if (v) {
		rc = addr_key(l, m, "listen", &nc->listen);
		if (rc)
			return rc;
		nc->has_listen = 1;
	} else if (!src->ingress) {
		return rdm_yerr(l->doc, m, l->err, l->len, "node '%s': missing key 'listen'",
				nc->name);
	}

	if (rdm_ymap_get(m, "connect")) {
		rc = addr_key(l, m, "connect", &nc->connect);
		if (rc)
			return rc;
		nc->has_connect = 1;
	}

	rc = rdm_ymap_u64(l->doc, m, "workers", 1, MAX_WORKERS, 1, &u, l->err, l->len);
	if (rc)
		return rc;
	nc->workers = (int)u;

	v = rdm_ymap_get(m, "stages");
	if (v) {
		rc = load_stages(l, v, nc);
		if (rc)
			return rc;
	}

	/* next: a node, or a list of replicas of the next stage. */
	src->next = v = rdm_ymap_get(m, "next");
	if (v && rdm_ynode_kind(v) == RDM_YSEQ) {
		if (rdm_yseq_size(v) == 0 || rdm_yseq_size(v) > RDM_MAX_NEXT)
			return rdm_yerr(l->doc, v, l->err, l->len, "next: a list of 1 to %d nodes",
					RDM_MAX_NEXT);
		for (size_t i = 0; i < rdm_yseq_size(v); i++) {
			const struct rdm_ynode *it = rdm_yseq_item(v, i);

			rc = rdm_yget_str(l->doc, it, &src->next_name[i], l->err, l->len);
			if (rc)
				return rc;
			src->next_at[i] = it;
			src->n_next++;
		}
		if (nc->has_connect)
			return rdm_yerr(l->doc, rdm_ymap_get(m, "connect"), l->err, l->len,
					"connect: only with a single next hop");
	} else if (v) {
		rc = rdm_ymap_str(l->doc, m, "next", NULL, &src->next_name[0], l->err, l->len);
		if (rc)
			return rc;
		src->next_at[0] = v;
		src->n_next = 1;
	}

	v = rdm_ymap_get(m, "transport");
	if (v) {
		rc = rdm_ymap_str(l->doc, m, "transport", NULL, &s, l->err, l->len);
		if (rc)
			return rc;
		if (!strcmp(s, "tcp"))
			nc->transport = RDM_TRANSPORT_TCP;
		else if (!strcmp(s, "rdma"))
			nc->transport = RDM_TRANSPORT_RDMA;
		else if (!strcmp(s, "auto"))
			nc->transport = RDM_TRANSPORT_AUTO;
		else
			return rdm_yerr(l->doc, v, l->err, l->len,
					"unknown transport '%s' (expected tcp, rdma or auto)", s);
	}

	v = rdm_ymap_get(m, "poll");
	if (v) {
		rc = rdm_ymap_str(l->doc, m, "poll", NULL, &s, l->err, l->len);
		if (rc)
			return rc;
		if (rdm_poll_mode_parse(s, &nc->poll) < 0)
			return rdm_yerr(l->doc, v, l->err, l->len,
					"unknown poll '%s' (expected sleep, adaptive or busy)", s);
	}

	v = rdm_ymap_get(m, "egress");
	if (v) {
		rc = load_egress(l, v, &nc->egress);
		if (rc)
			return rc;
	}
	return 0;
}

struct node_ix {
	const struct rdm_node_conf *nc;
	int i; /* its index in the chain */
};

static int by_name(const void *x, const void *y)
{
	const struct node_ix *a = x, *b = y;

	return strcmp(a->nc->name, b->nc->name) ?: a->i - b->i;
}

static int by_id(const void *x, const void *y)
{
	const struct node_ix *a = x, *b = y;

	return a->nc->id != b->nc->id ? (a->nc->id < b->nc->id ? -1 : 1) : a->i - b->i;
}

/* In ix, sorted by cmp (ties in chain order), the repeat that comes first in the chain:
 * its position in ix (the one it repeats is just before), or -1 when none. */
static int first_repeat(const struct node_ix *ix, int n, int (*cmp)(const void *, const void *))
{
	int best = -1;

	for (int k = 1; k < n; k++) {
		struct node_ix a = ix[k - 1], b = ix[k];

		a.i = b.i = 0; /* compare the keys only */
		if (!cmp(&a, &b) && (best < 0 || ix[k].i < ix[best].i))
			best = k;
	}
	return best;
}

/* The index of the node called name, by binary search in ix (sorted by name), or -1. */
static int find_name(const struct node_ix *ix, int n, const char *name)
{
	int lo = 0, hi = n - 1;

	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2, d = strcmp(ix[mid].nc->name, name);

		if (!d)
			return ix[mid].i;
		if (d < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

/* Checks names and ids for duplicates and resolves next hops: sorted, so a chain of
 * 100,000 nodes is linked in n log n, not by comparing every node with every other. */
static int link_nodes(struct ld *l, struct rdm_chain_conf *c, const struct node_src *src)
{
	int n = c->n_nodes, k, rc = 0;
	struct node_ix *ix = calloc((size_t)n + 1, sizeof(*ix));
	const char **names = calloc((size_t)n + 1, sizeof(*names));

	if (!ix || !names) {
		free(ix);
		free(names);
		return rdm_config__oom(l);
	}
	for (int i = 0; i < n; i++) {
		ix[i] = (struct node_ix){&c->nodes[i], i};
		names[i] = c->nodes[i].name;
	}
	qsort(ix, (size_t)n, sizeof(*ix), by_id);
	k = first_repeat(ix, n, by_id);
	if (k >= 0)
		rc = rdm_yerr(l->doc, src[ix[k].i].id ? src[ix[k].i].id : src[ix[k].i].map, l->err,
			      l->len, "node '%s': id %u is already used by node '%s'",
			      ix[k].nc->name, ix[k].nc->id, ix[k - 1].nc->name);
	qsort(ix, (size_t)n, sizeof(*ix), by_name);
	k = first_repeat(ix, n, by_name);
	if (k >= 0) /* a repeated name explains a repeated id: said first */
		rc = rdm_yerr(l->doc, src[ix[k].i].name, l->err, l->len,
			      "duplicate node name '%s' (first at line %d)", ix[k].nc->name,
			      rdm_ynode_line(src[ix[k - 1].i].name));
	if (rc) {
		free(ix);
		free(names);
		return rc;
	}
	for (int i = 0; i < n && !rc; i++) {
		for (int r = 0; r < src[i].n_next && !rc; r++) {
			const char *nx = src[i].next_name[r];
			const struct rdm_ynode *at = src[i].next_at[r];
			int t;

			t = find_name(ix, n, nx);
			if (t < 0) {
				const char *hint = rdm_yclosest(nx, names, (size_t)n, 2);
				if (hint)
					rc = rdm_yerr(
					    l->doc, at, l->err, l->len,
					    "next hop '%s' is not a node (did you mean '%s'?)", nx,
					    hint);
				else
					rc = rdm_yerr(l->doc, at, l->err, l->len,
						      "next hop '%s' is not a node", nx);
			} else if (t == i) {
				rc = rdm_yerr(l->doc, at, l->err, l->len,
					      "node '%s' cannot be its own next hop", nx);
			} else if (c->nodes[t].ingress.mode != RDM_INGRESS_NONE) {
				rc = rdm_yerr(
				    l->doc, at, l->err, l->len,
				    "next hop '%s' has ingress, so it cannot be a next hop", nx);
			} else if (!c->nodes[t].has_listen) {
				rc = rdm_yerr(l->doc, at, l->err, l->len,
					      "next hop '%s' has no listen address", nx);
			} else {
				for (int q = 0; q < r && !rc; q++)
					if (c->nodes[i].nexts[q] == t)
						rc = rdm_yerr(l->doc, at, l->err, l->len,
							      "next hop '%s' is listed twice", nx);
				if (!rc) {
					c->nodes[i].nexts[r] = t;
					c->nodes[i].n_next = r + 1;
					if (r == 0)
						c->nodes[i].next = t;
				}
			}
		}
	}
	free(ix);
	free(names);
	return rc;
}

static int load(struct ld *l, struct rdm_chain_conf *c)
{
	static const char *const keys[] = {"chain", "transport", "flows", "nodes", NULL};
	const struct rdm_ynode *root = rdm_ydoc_root(l->doc), *nodes;
	struct node_src *src;
	size_t n;
	int rc;

	if (!root)
		return rdm_yerr(l->doc, NULL, l->err, l->len,
				"empty document (expected a mapping with 'chain' and 'nodes')");
	rc = rdm_yexpect(l->doc, root, "top level", RDM_YMAP, l->err, l->len);
	if (!rc)
		rc = rdm_ymap_check_keys(l->doc, root, keys, l->err, l->len);
	if (rc)
		return rc;
	if (!rdm_ymap_get(root, "chain"))
		return rdm_yerr(l->doc, root, l->err, l->len, "missing key 'chain'");
	nodes = rdm_ymap_get(root, "nodes");
	if (!nodes)
		return rdm_yerr(l->doc, root, l->err, l->len, "missing key 'nodes'");

	rc = load_chain_section(l, root, c);
	if (!rc)
		rc = load_transport_section(l, root, &c->transport);
	if (!rc)
		rc = load_flows_section(l, root, &c->flows);
	if (!rc)
		rc = rdm_yexpect(l->doc, nodes, "nodes", RDM_YSEQ, l->err, l->len);
	if (rc)
		return rc;
	n = rdm_yseq_size(nodes);
	if (n == 0)
		return rdm_yerr(l->doc, nodes, l->err, l->len, "'nodes' must not be empty");
	if (n > INT32_MAX)
		return rdm_yerr(l->doc, nodes, l->err, l->len, "too many nodes");

	c->nodes = calloc(n, sizeof(*c->nodes));
	src = calloc(n, sizeof(*src));
	if (!c->nodes || !src) {
		free(src);
		return rdm_config__oom(l);
	}
	for (size_t i = 0; i < n && !rc; i++) {
		rc = load_node(l, rdm_yseq_item(nodes, i), i, &c->nodes[i], &src[i]);
		c->n_nodes = (int)(i + 1);
	}
	if (!rc)
		rc = link_nodes(l, c, src);
	free(src);
	/* An RDMA receive slot holds a whole frame: an MTU-sized packet and its state. */
	for (int i = 0; !rc && i < c->n_nodes; i++)
		if (c->nodes[i].transport != RDM_TRANSPORT_TCP && c->transport.max_frame < 2048)
			rc = rdm_yerr(l->doc,
				      rdm_ymap_get(rdm_yseq_item(nodes, (size_t)i), "transport"),
				      l->err, l->len,
				      "RDMA slots must hold an MTU of 1500 plus state: "
				      "transport.max_frame %u is below 2048",
				      c->transport.max_frame);
	if (!rc)
		rc = rdm_config__check_identities(l, c, nodes);
	if (!rc)
		rc = rdm_config__check_listen_unique(l, c, nodes);
	return rc;
}

int rdm_chain_load(const char *path, struct rdm_chain_conf *out, char *err, size_t errlen)
{
	struct rdm_chain_conf c;
	struct ld l = {.err = err, .len = errlen};
	int rc;

	memset(out, 0, sizeof(*out));
	memset(&c, 0, sizeof(c));
	l.doc = rdm_ydoc_load(path, err, errlen);
	if (!l.doc)
		return errno ? -errno : -EINVAL;
	c.doc = l.doc;
	rc = rdm_ystrdup(l.doc, path, &c.file, l.err, l.len);
	if (!rc)
		rc = load(&l, &c);
	if (rc) {
		rdm_chain_free(&c);
		return rc;
	}
	*out = c;
	return 0;
}

void rdm_chain_free(struct rdm_chain_conf *c)
{
	if (!c)
		return;
	for (int i = 0; i < c->n_nodes && c->nodes; i++) {
		struct rdm_node_conf *nc = &c->nodes[i];
		for (int j = 0; j < nc->n_stages; j++)
			free(nc->stages[j].name);
		free(nc->stages);
		free(nc->name);
		free(nc->identity);
		free(nc->ingress.file);
		free(nc->ingress.tun.name);
		free(nc->egress.tun.name);
		free(nc->egress.pcap);
		free(nc->egress.frames);
	}
	free(c->nodes);
	free(c->name);
	free(c->file);
	free(c->transport.certs);
	rdm_ydoc_free(c->doc);
	memset(c, 0, sizeof(*c));
}

const struct rdm_node_conf *rdm_chain_node(const struct rdm_chain_conf *c, const char *name)
{
	for (int i = 0; c && name && i < c->n_nodes; i++)
		if (!strcmp(c->nodes[i].name, name))
			return &c->nodes[i];
	return NULL;
}
