/* The orchestrator's desired state, persisted so that a restarted orchestrator runs the
 * same deployment: the chain file in force, the epoch, and the operations applied to the
 * chain's first plan since, in order (scale, a node declared dead or drained, a node back).
 * Placement is deterministic, so replaying the operations on the chain's plan yields
 * the very plan that was running, replica for replica.
 *
 * The file is YAML, written whole to FILE.tmp, synced, and renamed over FILE, so a crash
 * leaves the old state or the new one, never half of either:
 *
 *   version: 1
 *   epoch: 7
 *   chain: /etc/rdmesh/chain.yaml
 *   ops:
 *     - scale dpi 3
 *     - dead host4
 *     - drain host2
 *     - up host4
 */
#ifndef RDM_STATE_H
#define RDM_STATE_H

#include <stddef.h>
#include <stdint.h>

#define RDM_STATE_VERSION 1
#define RDM_STATE_MAX_OPS 4096

struct rdm_plan;

struct rdm_orch_state {
	uint64_t epoch;
	char *chain; /* absolute path of the chain file */
	char **ops;
	int n_ops;
};

/* Loads path into *s. 0; -ENOENT when there is no such file (*s zeroed); other -errno
 * with "FILE:LINE:COL: message" in err. */
int rdm_state_load(const char *path, struct rdm_orch_state *s, char *err, size_t errlen);

/* Writes s to path atomically (path.tmp, fsync, rename, fsync of the directory).
 * 0, or -errno with the reason in err. */
int rdm_state_save(const char *path, const struct rdm_orch_state *s, char *err, size_t errlen);

/* Appends an operation ("scale dpi 3"); 0 or -ENOMEM / -E2BIG. */
int rdm_state_add_op(struct rdm_orch_state *s, const char *op);

/* Drops every operation. */
void rdm_state_clear_ops(struct rdm_orch_state *s);

void rdm_state_free(struct rdm_orch_state *s);

/* Applies one operation to p: "scale STAGE N", "dead NODE" and "drain NODE" (both mark
 * the node down), "up NODE". Returns the new plan, or NULL with errno and err. */
struct rdm_plan *rdm_state_apply_op(const struct rdm_plan *p, const char *op, char *err,
				    size_t errlen);

#endif
