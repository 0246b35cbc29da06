/* The orchestrator's desired state, persisted so that a restarted orchestrator runs the
 * same deployment: the chain file in force, the epoch, the nodes marked down (and why),
 * and where every replica runs. The placement is saved as it is, not re-derived, so a
 * restart (even by a newer rdmesh whose placement rules changed) moves nothing.
 *
 * The file is YAML, written whole to FILE.tmp, synced, and renamed over FILE, so a crash
 * leaves the old state or the new one, never half of either:
 *
 *   version: 1
 *   epoch: 7
 *   chain: "/etc/rdmesh/chain.yaml"
 *   down:
 *     - {node: host4, why: dead}
 *   replicas:
 *     - {id: edge-1, node: host1, port: 7100}
 *     - {id: dpi-1, node: host2, port: 7100}
 *     - {id: dpi-51, node: dpi-7c9f-x2x9z, port: 7100}    # a pod's
 *   spent:                                               # one-time join tokens used
 *     - {token: 9f86d081884c7d65, pod: dpi-7c9f-x2x9z, until: 1796212800}
 */
#ifndef RDM_STATE_H
#define RDM_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "orchestrator/rack.h"

#define RDM_STATE_VERSION 1

struct rdm_plan;
struct rdm_chain_spec;

enum rdm_down_why { RDM_DOWN_DEAD = 1, RDM_DOWN_DRAINED };

struct rdm_state_down {
	char node[RDM_RACK_NAME_MAX + 1];
	enum rdm_down_why why;
};

struct rdm_state_replica {
	char id[RDM_RACK_NAME_MAX + 1];
	char node[RDM_RACK_NAME_MAX + 1];
	uint16_t port;
	int line, col; /* where it was read from, for errors; 0 when not read */
};

/* A one-time join token spent (lib/jointoken.h), kept until it expires. */
struct rdm_state_token {
	char id[17];
	char pod[RDM_RACK_NAME_MAX + 1]; /* who spent it */
	int64_t until;			 /* its expiry (unix seconds) */
};

struct rdm_orch_state {
	char *file; /* where it was loaded from, or NULL */
	uint64_t epoch;
	char *chain; /* absolute path of the chain file */
	struct rdm_state_down *down;
	int n_down;
	struct rdm_state_replica *replicas;
	int n_replicas;
	/* Places of replicas their nodes still drained (struct rdm_held): their ports
	 * stay taken across a restart or a change of leader. */
	struct rdm_state_replica *held;
	int n_held;
	struct rdm_state_token *spent;
	int n_spent;
};

/* Records one-time token id as spent by pod until its expiry, dropping entries that
 * expired before now. 0 or -ENOMEM (s unchanged). */
int rdm_state_spend(struct rdm_orch_state *s, const char *id, const char *pod, int64_t until,
		    int64_t now);

/* The spent-token entry for id, or NULL. */
const struct rdm_state_token *rdm_state_spent(const struct rdm_orch_state *s, const char *id);

/* Loads path into *s. 0; -ENOENT when there is no such file (*s zeroed); other -errno
 * with "FILE:LINE:COL: message" in err. */
int rdm_state_load(const char *path, struct rdm_orch_state *s, char *err, size_t errlen);

/* The same from text (a document read from the store; name: for errors, "KEY:LINE:COL"). */
int rdm_state_parse(const char *name, const char *text, struct rdm_orch_state *s, char *err,
		    size_t errlen);

/* s as the text rdm_state_save writes (malloc'd), or NULL with why in err. */
char *rdm_state_format(const struct rdm_orch_state *s, char *err, size_t errlen);

/* Writes s to path atomically (path.tmp, fsync, rename, fsync of the directory).
 * 0, or -errno with the reason in err; the file is then as it was. */
int rdm_state_save(const char *path, const struct rdm_orch_state *s, char *err, size_t errlen);

/* Makes s describe plan p: its replicas' nodes and ports, the ports it holds, and its
 * down nodes, each with why[k] (per rack node; NULL: all dead). epoch and chain are
 * left alone.
 * 0 or -ENOMEM (s unchanged). */
int rdm_state_set_plan(struct rdm_orch_state *s, const struct rdm_plan *p,
		       const enum rdm_down_why *why);

/* The plan s describes for rack and spec: every saved replica on its node and port
 * (rdm_plan_rebase), each stage with as many replicas as saved (a stage with none saved:
 * the spec's count), the saved nodes down, the saved holds on nodes of the rack that
 * are up (as rdm_plan_rebase takes them). Replicas that no longer fit (a node gone
 * from the rack, labels changed) are placed afresh; the caller compares. NULL with
 * errno and a message in err ("STATE:LINE:COL: no node 'host9' in rack.yaml"). */
struct rdm_plan *rdm_state_plan(const struct rdm_orch_state *s, const struct rdm_rack *rack,
				const struct rdm_chain_spec *spec, char *err, size_t errlen);

void rdm_state_free(struct rdm_orch_state *s);

#endif
