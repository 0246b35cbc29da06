/* The static chain config (one YAML file for the whole chain; each node picks its own
 * entry by name). Loading is strict: unknown keys, bad values and bad references are
 * reported as "FILE:LINE:COL: message" and nothing is returned. */
#ifndef RDM_CONFIG_H
#define RDM_CONFIG_H

#include <stdint.h>
#include <stddef.h>
#include <sys/socket.h>

#include "lib/addr.h"
#include "services/flowtable.h"
#include "transport/transport.h"

struct rdm_ydoc;
struct rdm_ynode;

#define RDM_MAX_NEXT	   16
#define RDM_NODE_NAME_MAX  63  /* node names: 1 to 63 of A-Z a-z 0-9 _ . - */
#define RDM_CHAIN_NAME_MAX 255 /* chain names: 1 to 255 bytes, no control characters */

enum rdm_ingress_mode { RDM_INGRESS_NONE = 0, RDM_INGRESS_GEN, RDM_INGRESS_PCAP, RDM_INGRESS_TUN };

/* A TUN device at the chain's edge: inline mode, for real traffic. */
struct rdm_tun_conf {
	char *name;   /* interface name, created by the node if absent */
	uint32_t mtu; /* default 1500 */
};

struct rdm_ingress_conf {
	enum rdm_ingress_mode mode;
	char *file;		 /* pcap: the capture to replay */
	uint64_t count;		 /* packets to send; 0 = the whole file (pcap) */
	double rate;		 /* packets per second; 0 = as fast as the chain takes them */
	uint32_t flows;		 /* gen: number of flows */
	uint64_t seed;		 /* gen: PRNG seed, so a run is repeatable */
	int wait_ms;		 /* how long to wait for the next hop before starting (0 = 5000) */
	struct rdm_tun_conf tun; /* tun: packets routed into this device enter the chain;
				  * replies coming back are written to it */
};

struct rdm_egress_conf {
	int enabled;
	char *pcap;	/* IP packets out, LINKTYPE_RAW; NULL = none */
	char *frames;	/* whole frames out as Ethernet/NSH (ethertype 0x894F); NULL = none */
	uint64_t count; /* exit after this many packets are accounted for; 0 = run on */
	double rate;	/* packets per second this egress takes; 0 = no limit */
	struct rdm_tun_conf tun; /* name set: packets leave into this TUN device, and what
				  * comes back from it goes up the chain in reverse */
};

struct rdm_stage_conf {
	char *name;
	const struct rdm_ynode *conf; /* the stage's own mapping, or NULL */
	int line, col;
};

enum rdm_transport_kind {
	RDM_TRANSPORT_TCP = 0,
	RDM_TRANSPORT_RDMA,
	RDM_TRANSPORT_AUTO, /* RDMA when both ends have a device, else TCP */
};

struct rdm_node_conf {
	char *name;
	char *identity; /* the certificate name it proves itself with (default: name) */
	uint32_t id;	/* 1-based position in the nodes list unless given */
	int has_listen;
	struct rdm_addr listen; /* data address this node accepts frames on */
	int workers;		/* worker threads, default 1 */
	struct rdm_stage_conf *stages;
	int n_stages;
	int next;		 /* index of the next-hop node (the first replica), -1 at the end */
	int nexts[RDM_MAX_NEXT]; /* replicas of the next stage: a flow goes to
				  * nexts[symmetric flow hash % n_next], both directions alike */
	int n_next;
	int has_connect;
	struct rdm_addr connect;	   /* reach next through this address (a sidecar proxy, NAT)
					    * instead of its listen address */
	enum rdm_transport_kind transport; /* towards next */
	enum rdm_poll_mode poll;	   /* how its workers wait (transport/loop.h) */
	struct rdm_ingress_conf ingress;
	struct rdm_egress_conf egress;
};

struct rdm_chain_conf {
	char *file;
	char *name;
	uint32_t spi;
	struct rdm_transport_conf transport;
	struct rdm_flow_conf flows; /* per-worker flow tables of stateful stages */
	struct rdm_node_conf *nodes;
	int n_nodes;
	struct rdm_ydoc *doc; /* owns the YAML nodes that stage confs point at */
};

/* Loads path into *out. Returns 0, or a negative errno with a one-line message in
 * err ("chain.yaml:12:5: unknown key 'replcas' (did you mean 'replicas'?)"). */
int rdm_chain_load(const char *path, struct rdm_chain_conf *out, char *err, size_t errlen);

/* Frees what rdm_chain_load allocated; accepts a zeroed or already freed conf. */
void rdm_chain_free(struct rdm_chain_conf *c);

/* Makes dir the chain's transport.certs (a command line's --certs, or an agent's own
 * folder); 0 or -ENOMEM. */
int rdm_chain_use_certs(struct rdm_chain_conf *c, const char *dir);

/* The node named name, or NULL. */
const struct rdm_node_conf *rdm_chain_node(const struct rdm_chain_conf *c, const char *name);

/* 1 if s is a valid node name (RDM_NODE_NAME_MAX), else 0. Rack nodes and replicas
 * follow the same rule. */
int rdm_node_name_ok(const char *s);

#endif
