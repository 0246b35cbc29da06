/* rack.yaml (orchestrator/rack.h): loading and checking the hosts of a rack. */
#include "orchestrator/rack.h"
#include "lib/err.h"
#include "lib/yaml.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RACK_MAX_NODES 4096
#define RDMA_DEV_MAX   63 /* an ibverbs device name fits IBV_SYSFS_NAME_MAX (64) */

/* Loader state: the document and where errors go. */
struct rl {
	struct rdm_ydoc *doc;
	char *err;
	size_t len;
};

static int oom(struct rl *l)
{
	rdm_yerr(l->doc, NULL, l->err, l->len, "out of memory");
	return -ENOMEM;
}

/* A bare IP address into buf (inet_ntop's form); returns its family, or 0 if s is not
 * one. */
static int parse_ip(const char *s, char *buf, size_t len)
{
	struct in6_addr a6;
	struct in_addr a4;

	if (inet_pton(AF_INET, s, &a4) == 1)
		return inet_ntop(AF_INET, &a4, buf, (socklen_t)len) ? AF_INET : 0;
	if (inet_pton(AF_INET6, s, &a6) == 1)
		return inet_ntop(AF_INET6, &a6, buf, (socklen_t)len) ? AF_INET6 : 0;
	return 0;
}

/* control: "IP" or "IP:PORT" / "[IPV6]:PORT". */
static int load_control(struct rl *l, const struct rdm_ynode *m, struct rdm_rack_node *rn)
{
	const struct rdm_ynode *v = rdm_ymap_get(m, "control");
	struct rdm_addr a;
	const char *s;
	int rc;

	if (!v)
		return rdm_yerr(l->doc, m, l->err, l->len, "node '%s': missing key 'control'",
				rn->name);
	rc = rdm_ymap_str(l->doc, m, "control", NULL, &s, l->err, l->len);
	if (rc)
		return rc;
	if (strlen(s) >= sizeof(rn->control))
		return rdm_yerr(l->doc, v, l->err, l->len, "control: '%s' is too long", s);
	if (parse_ip(s, rn->control_ip, sizeof(rn->control_ip))) {
		strcpy(rn->control, s);
		return 0;
	}
	if (rdm_addr_parse(&a, s) < 0)
		return rdm_yerr(l->doc, v, l->err, l->len,
				"control: bad address '%s' (expected IP, IPV4:PORT or [IPV6]:PORT)",
				s);
	if (a.ss.ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a.ss;
		inet_ntop(AF_INET, &s4->sin_addr, rn->control_ip, sizeof(rn->control_ip));
		rn->control_port = ntohs(s4->sin_port);
	} else {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a.ss;
		inet_ntop(AF_INET6, &s6->sin6_addr, rn->control_ip, sizeof(rn->control_ip));
		rn->control_port = ntohs(s6->sin6_port);
	}
	strcpy(rn->control, s);
	return 0;
}

static int load_labels(struct rl *l, const struct rdm_ynode *v, struct rdm_rack_node *rn)
{
	size_t n;
	int rc;

	if (rdm_ynode_is_null(v))
		return 0;
	rc = rdm_yexpect(l->doc, v, "labels", RDM_YMAP, l->err, l->len);
	if (rc)
		return rc;
	n = rdm_ymap_size(v);
	if (!n)
		return 0;
	rn->labels = calloc(n, sizeof(*rn->labels));
	if (!rn->labels)
		return oom(l);
	for (size_t i = 0; i < n; i++) {
		const struct rdm_ynode *k = rdm_ymap_key(v, i), *val = rdm_ymap_value(v, i);
		struct rdm_label *lb = &rn->labels[i];
		const char *ks, *vs;

		rc = rdm_yget_str(l->doc, k, &ks, l->err, l->len);
		if (!rc && !*ks)
			rc = rdm_yerr(l->doc, k, l->err, l->len, "labels: a key must not be empty");
		if (!rc)
			rc = rdm_yget_str(l->doc, val, &vs, l->err, l->len);
		if (rc)
			return rc;
		rn->n_labels = (int)(i + 1);
		lb->at = k;
		rc = rdm_ystrdup(l->doc, ks, &lb->key, l->err, l->len);
		if (!rc)
			rc = rdm_ystrdup(l->doc, vs, &lb->value, l->err, l->len);
		if (rc)
			return rc;
	}
	return 0;
}

static int load_node(struct rl *l, const struct rdm_ynode *m, size_t idx, struct rdm_rack_node *rn)
{
	static const char *const keys[] = {"name",     "control", "data", "rdma_device",
					   "capacity", "labels",  NULL};
	const struct rdm_ynode *v;
	const char *s;
	char what[32];
	uint64_t u;
	int rc;

	snprintf(what, sizeof(what), "node %zu", idx + 1);
	rc = rdm_yexpect(l->doc, m, what, RDM_YMAP, l->err, l->len);
	if (!rc)
		rc = rdm_ymap_check_keys(l->doc, m, keys, l->err, l->len);
	if (rc)
		return rc;
	rn->line = rdm_ynode_line(m);
	rn->col = rdm_ynode_col(m);

	v = rdm_ymap_get(m, "name");
	if (!v)
		return rdm_yerr(l->doc, m, l->err, l->len, "node %zu: missing key 'name'", idx + 1);
	rc = rdm_ymap_str(l->doc, m, "name", NULL, &s, l->err, l->len);
	if (rc)
		return rc;
	if (!rdm_node_name_ok(s))
		return rdm_yerr(l->doc, v, l->err, l->len,
				"bad node name '%s' (expected 1 to %d of A-Z a-z 0-9 _ . -)", s,
				RDM_RACK_NAME_MAX);
	rc = rdm_ystrdup(l->doc, s, &rn->name, l->err, l->len);
	if (!rc)
		rc = load_control(l, m, rn);
	if (rc)
		return rc;

	v = rdm_ymap_get(m, "data");
	if (!v)
		return rdm_yerr(l->doc, m, l->err, l->len, "node '%s': missing key 'data'",
				rn->name);
	rc = rdm_ymap_str(l->doc, m, "data", NULL, &s, l->err, l->len);
	if (rc)
		return rc;
	rn->data_family = parse_ip(s, rn->data, sizeof(rn->data));
	if (!rn->data_family)
		return rdm_yerr(l->doc, v, l->err, l->len,
				"data: '%s' is not an IP address (no port: replicas get theirs "
				"from 'ports')",
				s);

	if ((v = rdm_ymap_get(m, "rdma_device"))) {
		rc = rdm_ymap_str(l->doc, m, "rdma_device", NULL, &s, l->err, l->len);
		if (rc)
			return rc;
		if (!*s || strlen(s) > RDMA_DEV_MAX || !rdm_node_name_ok(s))
			return rdm_yerr(l->doc, v, l->err, l->len,
					"rdma_device: '%s' is not a device name (1 to %d of "
					"A-Z a-z 0-9 _ . -)",
					s, RDMA_DEV_MAX);
		rc = rdm_ystrdup(l->doc, s, &rn->rdma_device, l->err, l->len);
		if (rc)
			return rc;
	}

	if (!rdm_ymap_get(m, "capacity"))
		return rdm_yerr(l->doc, m, l->err, l->len,
				"node '%s': missing key 'capacity' (worker cores, 1..%d)", rn->name,
				RDM_RACK_CAPACITY_MAX);
	rc = rdm_ymap_u64(l->doc, m, "capacity", 1, RDM_RACK_CAPACITY_MAX, 1, &u, l->err, l->len);
	if (rc)
		return rc;
	rn->capacity = (int)u;

	if ((v = rdm_ymap_get(m, "labels")))
		return load_labels(l, v, rn);
	return 0;
}

/* ports: "FIRST-LAST", both 1..65535, FIRST <= LAST. */
static int load_ports(struct rl *l, const struct rdm_ynode *root, struct rdm_rack *r)
{
	const struct rdm_ynode *v = rdm_ymap_get(root, "ports");
	unsigned long a, b;
	const char *s;
	char *end;
	int rc;

	r->port_first = RDM_RACK_PORTS_FIRST;
	r->port_last = RDM_RACK_PORTS_LAST;
	if (!v)
		return 0;
	rc = rdm_ymap_str(l->doc, root, "ports", NULL, &s, l->err, l->len);
	if (rc)
		return rc;
	if (!isdigit((unsigned char)s[0]))
		goto bad;
	a = strtoul(s, &end, 10);
	if (*end != '-' || !isdigit((unsigned char)end[1]))
		goto bad;
	b = strtoul(end + 1, &end, 10);
	if (*end || a < 1 || a > 65535 || b < 1 || b > 65535)
		goto bad;
	if (b < a)
		return rdm_yerr(l->doc, v, l->err, l->len, "ports: %lu is less than %lu", b, a);
	r->port_first = (uint16_t)a;
	r->port_last = (uint16_t)b;
	return 0;
bad:
	return rdm_yerr(l->doc, v, l->err, l->len,
			"ports: '%s' is not a range FIRST-LAST of ports 1..65535", s);
}

static int load_orchestrator(struct rl *l, const struct rdm_ynode *root, struct rdm_rack *r)
{
	static const char *const keys[] = {"listen", NULL};
	const struct rdm_ynode *m = rdm_ymap_get(root, "orchestrator"), *v;
	const char *s;
	int rc;

	if (!m)
		return 0;
	rc = rdm_yexpect(l->doc, m, "orchestrator", RDM_YMAP, l->err, l->len);
	if (!rc)
		rc = rdm_ymap_check_keys(l->doc, m, keys, l->err, l->len);
	if (rc)
		return rc;
	v = rdm_ymap_get(m, "listen");
	if (!v)
		return rdm_yerr(l->doc, m, l->err, l->len, "orchestrator: missing key 'listen'");
	rc = rdm_ymap_str(l->doc, m, "listen", NULL, &s, l->err, l->len);
	if (rc)
		return rc;
	if (rdm_addr_parse(&r->orch_listen, s) < 0)
		return rdm_yerr(l->doc, v, l->err, l->len,
				"listen: bad address '%s' (expected IPV4:PORT or [IPV6]:PORT)", s);
	r->has_orch_listen = 1;
	return 0;
}

static int load(struct rl *l, struct rdm_rack *r)
{
	static const char *const keys[] = {"nodes", "ports", "orchestrator", NULL};
	const struct rdm_ynode *root = rdm_ydoc_root(l->doc), *nodes;
	size_t n;
	int rc;

	if (!root)
		return rdm_yerr(l->doc, NULL, l->err, l->len,
				"empty document (expected a mapping with 'nodes')");
	rc = rdm_yexpect(l->doc, root, "top level", RDM_YMAP, l->err, l->len);
	if (!rc)
		rc = rdm_ymap_check_keys(l->doc, root, keys, l->err, l->len);
	if (rc)
		return rc;
	nodes = rdm_ymap_get(root, "nodes");
	if (!nodes)
		return rdm_yerr(l->doc, root, l->err, l->len, "missing key 'nodes'");
	rc = load_ports(l, root, r);
	if (!rc)
		rc = load_orchestrator(l, root, r);
	if (!rc)
		rc = rdm_yexpect(l->doc, nodes, "nodes", RDM_YSEQ, l->err, l->len);
	if (rc)
		return rc;
	n = rdm_yseq_size(nodes);
	if (n > RACK_MAX_NODES)
		return rdm_yerr(l->doc, nodes, l->err, l->len, "too many nodes (at most %d)",
				RACK_MAX_NODES);
	/* Empty is fine: every stage may be pod-backed. */
	r->nodes = calloc(n + RDM_RACK_PODS_MAX, sizeof(*r->nodes));
	if (!r->nodes)
		return oom(l);
	for (size_t i = 0; i < n; i++) {
		const struct rdm_ynode *m = rdm_yseq_item(nodes, i);

		r->n_nodes = r->n_hosts = (int)(i + 1);
		rc = load_node(l, m, i, &r->nodes[i]);
		if (rc)
			return rc;
		for (size_t j = 0; j < i; j++)
			if (!strcmp(r->nodes[i].name, r->nodes[j].name))
				return rdm_yerr(l->doc, rdm_ymap_get(m, "name"), l->err, l->len,
						"duplicate node name '%s' (first at line %d)",
						r->nodes[i].name, r->nodes[j].line);
	}
	return 0;
}

int rdm_rack_parse(const char *path, const char *text, struct rdm_rack *out, char *err,
		   size_t errlen)
{
	struct rdm_rack r;
	struct rl l = {.err = err, .len = errlen};
	int rc;

	memset(out, 0, sizeof(*out));
	memset(&r, 0, sizeof(r));
	errno = 0;
	l.doc = text ? rdm_ydoc_parse_string(path, text, err, errlen)
		     : rdm_ydoc_load(path, err, errlen);
	if (!l.doc)
		return errno ? -errno : -EINVAL;
	r.doc = l.doc;
	rc = rdm_ystrdup(l.doc, path, &r.file, l.err, l.len);
	if (!rc)
		rc = load(&l, &r);
	if (rc) {
		rdm_rack_free(&r);
		return rc;
	}
	*out = r;
	return 0;
}

int rdm_rack_load(const char *path, struct rdm_rack *out, char *err, size_t errlen)
{
	return rdm_rack_parse(path, NULL, out, err, errlen);
}

void rdm_rack_free(struct rdm_rack *r)
{
	if (!r)
		return;
	for (int i = 0; r->nodes && i < r->n_nodes; i++) {
		struct rdm_rack_node *rn = &r->nodes[i];

		for (int j = 0; rn->labels && j < rn->n_labels; j++) {
			free(rn->labels[j].key);
			free(rn->labels[j].value);
		}
		free(rn->labels);
		free(rn->name);
		free(rn->rdma_device);
		free(rn->pod);
	}
	free(r->nodes);
	free(r->file);
	rdm_ydoc_free(r->doc);
	memset(r, 0, sizeof(*r));
}

int rdm_rack_find(const struct rdm_rack *r, const char *name)
{
	for (int i = 0; r && name && i < r->n_nodes; i++)
		if (!r->nodes[i].gone && !strcmp(r->nodes[i].name, name))
			return i;
	return -1;
}

int rdm_rack_add_pod(struct rdm_rack *r, const char *name, const char *stage, const char *data,
		     const char *rdma_device, char *err, size_t errlen)
{
	struct rdm_rack_node *rn = NULL;
	unsigned char buf[sizeof(struct in6_addr)];
	int family, k;
	char *nm, *st, *dev = NULL;

	if (!rdm_node_name_ok(name))
		return rdm_errf(err, errlen, -EINVAL, "bad pod name '%s'", name);
	family = inet_pton(AF_INET, data, buf) == 1    ? AF_INET
		 : inet_pton(AF_INET6, data, buf) == 1 ? AF_INET6
						       : 0;
	if (!family)
		return rdm_errf(err, errlen, -EINVAL, "pod %s: data address '%s' is not an IP",
				name, data);
	if (rdm_rack_find(r, name) >= 0)
		return rdm_errf(err, errlen, -EEXIST, "'%s' is already a %s of the mesh", name,
				r->nodes[rdm_rack_find(r, name)].pod ? "pod" : "host");
	for (k = r->n_hosts; k < r->n_nodes && !rn; k++)
		if (r->nodes[k].gone)
			rn = &r->nodes[k];
	if (!rn && r->n_nodes >= r->n_hosts + RDM_RACK_PODS_MAX)
		return rdm_errf(err, errlen, -ENOSPC, "the mesh holds %d pods, the most it takes",
				RDM_RACK_PODS_MAX);
	nm = strdup(name);
	st = strdup(stage);
	if (rdma_device && rdma_device[0])
		dev = strdup(rdma_device);
	if (!nm || !st || (rdma_device && rdma_device[0] && !dev)) {
		free(nm);
		free(st);
		free(dev);
		return rdm_errf(err, errlen, -ENOMEM, "out of memory");
	}
	if (!rn)
		rn = &r->nodes[r->n_nodes++];
	free(rn->name);
	free(rn->pod);
	free(rn->rdma_device);
	memset(rn, 0, sizeof(*rn));
	rn->name = nm;
	rn->pod = st;
	rn->rdma_device = dev;
	rn->capacity = 1;
	rn->data_family = family;
	inet_ntop(family, buf, rn->data, sizeof(rn->data));
	return (int)(rn - r->nodes);
}

void rdm_rack_remove_pod(struct rdm_rack *r, int k)
{
	if (k >= r->n_hosts && k < r->n_nodes)
		r->nodes[k].gone = 1;
}

const char *rdm_rack_label(const struct rdm_rack_node *n, const char *key)
{
	for (int i = 0; n && i < n->n_labels; i++)
		if (!strcmp(n->labels[i].key, key))
			return n->labels[i].value;
	return NULL;
}
