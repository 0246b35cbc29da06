/* The per-host daemon: worker threads each run a run-to-completion loop (receive a
 * batch, run the stages hosted here, send the batch on). A node may also be the chain's
 * ingress (pcap replay or the flow generator) and/or its egress (pcap writer, sequence
 * and latency accounting). */
#ifndef RDM_NODE_H
#define RDM_NODE_H

#include <stddef.h>
#include <stdio.h>

#include "node/config.h"

struct rdm_node;

/* Builds the node called name from a loaded chain: stage confs are parsed, per-worker
 * state allocated; no thread or socket yet. NULL with a message in err. The chain must
 * outlive the node. */
struct rdm_node *rdm_node_new(const struct rdm_chain_conf *chain, const char *name, char *err,
			      size_t errlen);

/* Parses every stage's settings in the chain (files they name included), as starting
 * each node would; 0, or -EINVAL with "FILE:LINE:COL: message" in err. */
int rdm_chain_check_stages(const struct rdm_chain_conf *chain, char *err, size_t errlen);

/* Runs the workers until the node is done (its ingress sent everything, its egress
 * counted enough packets) or SIGINT/SIGTERM arrives; then drains the send queues (at
 * most drain_ms) and returns 0. A node that cannot take its place in the chain (its
 * listen address is taken or refused) starts nothing, or stops, and returns -errno.
 * The caller blocks SIGINT and SIGTERM in every thread before calling. */
int rdm_node_run(struct rdm_node *n, int drain_ms);

/* For a process that runs several nodes on threads of its own (`rdmesh node --orch`):
 * rdm_node_run then takes no signals, and stops on rdm_node_stop. Call before run. */
void rdm_node_embed(struct rdm_node *n);

/* What SIGTERM does: the node drains its send queues and rdm_node_run returns. Safe
 * from any thread, any number of times. */
void rdm_node_stop(struct rdm_node *n);

/* How many upstream connections the node has now (read while it runs: a moment's
 * view). A replica that left its upstreams' tables has none once they drained it. */
int rdm_node_upstreams(const struct rdm_node *n);

/* What SIGHUP does, callable from another thread while the node runs (not from a
 * worker): the rack's certificates are read again (rotation: new connections use them,
 * connections up keep going), stages re-read their files (identity's directory, the
 * policy), and the chain file is read again for this node's next list (new replicas get
 * new flows, leaving ones drain). Broken files are logged and change nothing. Calls must
 * not overlap. */
void rdm_node_reload(struct rdm_node *n);

/* Writes every counter as "key value" lines (stable names, for scripts). Safe while the
 * node runs, from another thread (metrics): connection counters then come from the
 * workers' last tick (at most 100 ms old), and stage counters are read under a lock
 * that reloads take to swap and free confs. */
void rdm_node_report(const struct rdm_node *n, FILE *out);

/* A short human summary: packets, flows, drops, per-hop latency. */
void rdm_node_summary(const struct rdm_node *n, FILE *out);

void rdm_node_free(struct rdm_node *n);

#endif
