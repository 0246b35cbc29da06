/* The chain config loader's private declarations, for node/config*.c: the loader's
 * state, and the checks that live in config_protect.c. */
#ifndef RDM_CONFIG_INT_H
#define RDM_CONFIG_INT_H

#include <stddef.h>

#include "node/config.h"

struct rdm_ydoc;
struct rdm_ynode;

/* Loader state: the document and where errors go. */
struct ld {
	struct rdm_ydoc *doc;
	char *err;
	size_t len;
};

/* Reports "FILE: out of memory"; returns -ENOMEM. */
int rdm_config__oom(struct ld *l);

/* transport.protect and transport.certs, from the transport section m (may be NULL). */
int rdm_config__load_protect(struct ld *l, const struct rdm_ynode *m, struct rdm_transport_conf *t);

/* Every node's identity (identity:, else its name), a valid certificate name while
 * protect asks for proof, and no RDMA hop then (it cannot prove its peer yet). */
int rdm_config__check_identities(struct ld *l, struct rdm_chain_conf *c,
				 const struct rdm_ynode *nodes);

/* No two nodes on one listen address. */
int rdm_config__check_listen_unique(struct ld *l, const struct rdm_chain_conf *c,
				    const struct rdm_ynode *nodes);

#endif
