/* chain.yaml (the chain the orchestrator deploys), placement of its replicas onto the
 * nodes of a rack, and rendering of a placement as the static chain config the data
 * plane runs (node/config.h).
 *
 * chain.yaml is checked as strictly as the static chain config, before anything is
 * deployed: unknown keys, bad values, unknown data-plane stages and their settings, and
 * ingress/egress/transport/flows sections, each reported as "FILE:LINE:COL: message".
 * The sections shared with the static config are checked by node/config.c itself (they
 * are rendered into a scratch chain with every written node's position remembered, and
 * an error there is reported at the same node in chain.yaml), so both accept exactly the
 * same keys. Example and every key explained: configs/chain.yaml.
 *
 * A plan is immutable: scaling a stage or losing a node yields a new plan that keeps
 * every replica it can where it was, so the orchestrator moves as little as possible. */
#ifndef RDM_PLAN_H
#define RDM_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "node/config.h"
#include "orchestrator/rack.h"

struct rdm_ydoc;
struct rdm_ynode;

#define RDM_PLAN_MAX_REPLICAS	RDM_MAX_NEXT /* per stage: a `next:` list holds them all */
#define RDM_PLAN_MAX_WORKERS	64	     /* per replica, as a static chain node */
#define RDM_PLAN_MAX_STAGES	256
#define RDM_PLAN_STAGE_NAME_MAX 59 /* leaves room for "-16" in a 63-byte replica name */
/* A replica's data-plane node id: (stage position in the chain, from 1) * STRIDE + its
 * number, so "dpi-2" of a chain edge -> dpi -> log is 202 wherever it runs, and stays
 * so across re-plans. */
#define RDM_PLAN_ID_STRIDE 100
/* A pod's replica: STAGE-N with N from here ("dpi-51"), so it never takes a number a
 * host replica may get. */
#define RDM_PLAN_POD_FIRST 51
#define RDM_PLAN_POD_LAST  99

struct rdm_spec_stage {
	char *name;
	int replicas; /* on hosts: 1..RDM_PLAN_MAX_REPLICAS, default 1 (0 with pods) */
	int workers;  /* per replica, 1..RDM_PLAN_MAX_WORKERS, default 1 */
	int spread;   /* replicas on distinct nodes (default 1) */
	int pods;     /* pods may join as replicas of it (`pods:`) */
	const char *pod_deployment; /* who owns their count (the doc's strings) */
	const char *pod_namespace;
	enum rdm_transport_kind transport; /* towards the next stage, default auto */
	enum rdm_poll_mode poll;	   /* how its replicas' workers wait (default sleep) */
	struct rdm_label *labels;	   /* placement: a node must carry all of them */
	int n_labels;
	/* Nodes of chain.yaml, owned by the spec's doc. run is the stage's data-plane
	 * stage list; ingress/egress are NULL when absent (egress may be a null node:
	 * "egress:" alone enables it with defaults). */
	const struct rdm_ynode *map, *run, *ingress, *egress;
	const struct rdm_ynode *replicas_at, *labels_at; /* NULL when not written */
};

struct rdm_chain_spec {
	char *file;
	char *dir; /* chain.yaml's directory, absolute: relative paths in it resolve here */
	char *name;
	uint32_t spi;
	const struct rdm_ynode *chain, *transport, *flows; /* sections; NULL when absent */
	struct rdm_spec_stage *stages;			   /* in chain order */
	int n_stages;
	struct rdm_ydoc *doc; /* owns every rdm_ynode above */
};

/* Loads and checks chain.yaml at path into *out, including each run entry's settings
 * (through the stage's own conf_new, which reads its files, such as a policy). Returns
 * 0, or a negative errno with one line in err ("chain.yaml:9:7: unknown key 'replcas'
 * (did you mean 'replicas'?)"); *out is zeroed on error. */
int rdm_chain_spec_load(const char *path, struct rdm_chain_spec *out, char *err, size_t errlen);

/* The same for text, the content of the chain file at path (kept in the store: the files
 * it names are still read from path's directory). */
int rdm_chain_spec_parse(const char *path, const char *text, struct rdm_chain_spec *out, char *err,
			 size_t errlen);

/* Frees what rdm_chain_spec_load allocated; accepts a zeroed or already freed spec. */
void rdm_chain_spec_free(struct rdm_chain_spec *s);

/* The index of the stage named name, or -1. */
int rdm_chain_spec_find(const struct rdm_chain_spec *s, const char *name);

struct rdm_replica {
	char id[RDM_RACK_NAME_MAX + 1]; /* "dpi-2": STAGE-N, its data-plane node name */
	int stage;			/* index in spec->stages */
	int n;				/* 1-based replica number within the stage */
	uint32_t node_id;		/* see RDM_PLAN_ID_STRIDE */
	int node;			/* index in rack->nodes */
	uint16_t port;			/* from the rack's port range */
	char listen[64];		/* "10.77.0.2:7100" or "[fd00::2]:7100" */
};

/* A replica that left its place (scaled away, or dropped or moved by `ctl apply`) while
 * its node still runs it: a node drains a replica it is no longer assigned before
 * stopping it (transport.drain_ms), and until then the replica keeps its port there.
 * Placement leaves the port alone; the same replica brought back meanwhile takes its
 * place again (the node keeps it running). */
struct rdm_held {
	char id[RDM_RACK_NAME_MAX + 1];
	int node;
	uint16_t port;
};

struct rdm_plan {
	const struct rdm_rack *rack; /* borrowed: rack and spec must outlive the plan */
	const struct rdm_chain_spec *spec;
	/* The hosts' replicas by stage in chain order, then by number (1..); then the
	 * pods' (numbered from RDM_PLAN_POD_FIRST), n_pods of them, in the order they
	 * joined. */
	struct rdm_replica *replicas;
	int n_replicas;
	int n_pods;
	int *stage_replicas; /* host replicas of each stage now (a scale changes it) */
	unsigned char *down; /* per rack node: 1 when dead or drained (no replicas) */
	/* Places of replicas their nodes still drain (rdm_plan_release lets them go);
	 * kept by the plans made from this one, and saved with the state. */
	struct rdm_held *held;
	int n_held;
};

/* Places spec's replicas on rack's nodes. Deterministic: stages in chain order, replicas
 * in order; each goes to a node that carries the stage's labels and has at least
 * `workers` cores left and a free port; with spread, only to a node not yet hosting the
 * stage; among candidates the most cores left wins, then the fewest replicas, then the
 * first in rack.yaml. A replica listens on its node's data IP at the lowest port of the
 * rack's range not taken on that IP. Returns the plan (free with rdm_plan_free), or NULL
 * with errno (EINVAL: impossible placement, reported at the stage in chain.yaml as
 * "FILE:LINE:COL: message"; ENOMEM) and a message in err. */
struct rdm_plan *rdm_plan_new(const struct rdm_rack *rack, const struct rdm_chain_spec *spec,
			      char *err, size_t errlen);

/* A new plan in which stage has `replicas` replicas: every replica of p stays where it
 * is, new ones (numbered on from the highest) are placed as rdm_plan_new would, and
 * scaling down removes the highest-numbered. NULL with errno (ENOENT: no such stage;
 * EINVAL: count out of range or impossible placement) and a message in err; p is
 * unchanged either way. */
struct rdm_plan *rdm_plan_scale(const struct rdm_plan *p, const char *stage, int replicas,
				char *err, size_t errlen);

/* A new plan with the rack node named node marked down (dead, or drained by the
 * operator): its replicas keep their ids and node ids and move to other nodes, placed in
 * order as rdm_plan_new would but with spread as a preference only (a replica placed
 * beside its sibling beats no replica); every other replica stays. Later scales avoid the
 * node too. Marking a node that is already down returns a copy. NULL with errno
 * (ENOENT: no such node; EINVAL: no room for a moved replica) and a message in err. */
struct rdm_plan *rdm_plan_node_down(const struct rdm_plan *p, const char *node, char *err,
				    size_t errlen);

/* A new plan with node eligible again; nothing moves onto it until a later placement
 * (a scale, another node going down) picks it. NULL with errno ENOENT or ENOMEM. */
struct rdm_plan *rdm_plan_node_up(const struct rdm_plan *p, const char *node, char *err,
				  size_t errlen);

/* A plan for spec that keeps replicas where they are: every replica of keep (by id,
 * "dpi-2") that spec still has stays on its node and port while that node is up (down,
 * one flag per rack node, NULL: none), carries the stage's labels and has the cores;
 * so does one of held[0..n_held) that spec has again; the others are placed as
 * rdm_plan_new would. A replica of keep that spec no longer has, or that could not stay,
 * holds its old port (its node drains it), as do the holds given, until the replica is
 * placed on that node again; placement leaves held ports alone. counts gives each
 * stage's replicas (NULL: spec's). For `ctl apply` (keep and held: the running plan's)
 * and for a restart (the placement and holds the orchestrator saved). NULL with errno
 * and "FILE:LINE:COL: message" in err, as rdm_plan_new. */
struct rdm_plan *rdm_plan_rebase(const struct rdm_rack *rack, const struct rdm_chain_spec *spec,
				 const int *counts, const unsigned char *down,
				 const struct rdm_replica *keep, int n_keep,
				 const struct rdm_held *held, int n_held, char *err, size_t errlen);

/* A new plan with one more replica of pod k's stage (rack->nodes[k].pod), on pod k at
 * the first free port of the rack's range on its address: numbered want when that is a
 * free pod number (a pod that ran it before this orchestrator started), else the lowest
 * free one. NULL with errno (EINVAL: not a pod-backed stage, no free number or port, or
 * the stage holds RDM_PLAN_MAX_REPLICAS; EEXIST: the pod has a replica) and err. */
struct rdm_plan *rdm_plan_add_pod(const struct rdm_plan *p, int k, int want, char *err,
				  size_t errlen);

/* A new plan without pod k's replica (the pod left), or NULL with errno ENOMEM. */
struct rdm_plan *rdm_plan_remove_pod(const struct rdm_plan *p, int k, char *err, size_t errlen);

/* The replica of pod k, or NULL. */
const struct rdm_replica *rdm_plan_pod_replica(const struct rdm_plan *p, int k);

/* A copy of p (same rack and spec), or NULL with errno ENOMEM. */
struct rdm_plan *rdm_plan_copy(const struct rdm_plan *p);

/* The rack node named node still runs or drains the replicas named in have (ids,
 * space-separated): the held ports of its other replicas are free again. Returns how
 * many were let go. */
int rdm_plan_release(struct rdm_plan *p, const char *node, const char *have);

/* Frees p (not its rack or spec); accepts NULL. */
void rdm_plan_free(struct rdm_plan *p);

/* The replica with this id, or NULL. */
const struct rdm_replica *rdm_plan_replica(const struct rdm_plan *p, const char *id);

/* What the rack node named node must run: stores up to max pointers to its replicas, in
 * plan order, in out (which may be NULL when max is 0), and returns how many it has (more
 * than max means out was too small), or -ENOENT when the rack has no such node. */
int rdm_plan_node_replicas(const struct rdm_plan *p, const char *node,
			   const struct rdm_replica **out, int max);

/* The static chain config (node/config.h) that runs plan p: one data-plane node per
 * replica, named by its id, with id = node_id, listen = the replica's address, workers,
 * stages = the stage's run list, next = every replica of the next stage, transport,
 * ingress on the first stage's replicas, egress on the last's, and chain.yaml's chain,
 * transport and flows sections. Relative paths in run settings (keys `file` and
 * `directory`, at any depth), ingress.file and egress.pcap/frames are made absolute
 * against chain.yaml's directory, so the text works from any directory. Returns a
 * NUL-terminated string the caller frees, or NULL with errno and a message in err. */
char *rdm_plan_render(const struct rdm_plan *p, char *err, size_t errlen);

#endif
