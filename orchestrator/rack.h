/* rack.yaml: the hosts the orchestrator may place replicas on. Loading is strict, like
 * the chain config's: unknown keys (with a did-you-mean hint), wrong types, out-of-range
 * numbers and duplicate names are reported as "FILE:LINE:COL: message" and nothing is
 * returned. Example and every key explained: configs/rack.yaml. */
#ifndef RDM_RACK_H
#define RDM_RACK_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "node/config.h"

struct rdm_ynode;

#define RDM_RACK_NAME_MAX     RDM_NODE_NAME_MAX /* node names: the chain config's rule */
#define RDM_RACK_CAPACITY_MAX 1024		/* worker cores of one node */
#define RDM_RACK_PODS_MAX     1024		/* pods joined at once, beside the hosts */
#define RDM_RACK_PORTS_FIRST  7100		/* default data-plane port range */
#define RDM_RACK_PORTS_LAST   7199

/* One label, "zone: a". Both strings are owned by the rack. */
struct rdm_label {
	char *key;
	char *value;
	const struct rdm_ynode *at; /* the key as written, in the file it came from */
};

struct rdm_rack_node {
	char *name;
	/* The control address, as written: "IP" or "IP:PORT" ("[IPV6]:PORT"). The node's
	 * control channel comes from control_ip; control_port is 0 when none was given. */
	char control[64];
	char control_ip[INET6_ADDRSTRLEN];
	uint16_t control_port;
	/* The data-plane IP, as inet_ntop writes it; replicas placed here listen on it. */
	char data[INET6_ADDRSTRLEN];
	int data_family;   /* AF_INET or AF_INET6 */
	char *rdma_device; /* "rxe0", or NULL when the node has none */
	int capacity;	   /* worker cores: 1..RDM_RACK_CAPACITY_MAX */
	struct rdm_label *labels;
	int n_labels;
	int line, col; /* where the node's entry starts in rack.yaml */
	/* A pod that joined (rdm_rack_add_pod), not a host of rack.yaml: the stage its
	 * certificate binds it to; NULL for a host. gone: the pod left, its slot is free
	 * and its name no longer found. */
	char *pod;
	int gone;
};

struct rdm_rack {
	char *file;
	/* The hosts in file order (which breaks placement ties), then the pods' slots:
	 * room for RDM_RACK_PODS_MAX of them is made at load, so nodes never moves. */
	struct rdm_rack_node *nodes;
	int n_nodes; /* hosts and pod slots in use (gone ones included) */
	int n_hosts;
	uint16_t port_first, port_last; /* data ports the orchestrator hands out, inclusive */
	int has_orch_listen;
	struct rdm_addr orch_listen; /* orchestrator: {listen: IP:PORT} */
	struct rdm_ydoc *doc;	     /* owns the nodes labels[].at point at */
};

/* Loads path into *out. Returns 0, or a negative errno with a one-line message in err
 * ("rack.yaml:7:5: unknown key 'capcity' (did you mean 'capacity'?)"); *out is zeroed
 * on error. */
int rdm_rack_load(const char *path, struct rdm_rack *out, char *err, size_t errlen);

/* The same for text, the rack file's content (kept in the store); path names it in
 * messages. text NULL: read path. */
int rdm_rack_parse(const char *path, const char *text, struct rdm_rack *out, char *err,
		   size_t errlen);

/* Frees what rdm_rack_load allocated; accepts a zeroed or already freed rack. */
void rdm_rack_free(struct rdm_rack *r);

/* The index of the node named name in r->nodes (a host, or a pod that has not gone),
 * or -1. */
int rdm_rack_find(const struct rdm_rack *r, const char *name);

/* Adds a pod bound to stage with data-plane address data (IPv4 or IPv6), in a free slot
 * (a gone pod's, else a new one): its index, or -EEXIST (a host or a pod present has the
 * name), -EINVAL (bad name or address), -ENOSPC (RDM_RACK_PODS_MAX pods), -ENOMEM, with
 * err set. Capacity 1 core: a pod is one replica. */
int rdm_rack_add_pod(struct rdm_rack *r, const char *name, const char *stage, const char *data,
		     const char *rdma_device, char *err, size_t errlen);

/* Marks pod k gone: its name is free again, its slot reusable. */
void rdm_rack_remove_pod(struct rdm_rack *r, int k);

/* The value of label key on node n, or NULL when n does not carry it. */
const char *rdm_rack_label(const struct rdm_rack_node *n, const char *key);

#endif
