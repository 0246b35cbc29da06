/* Private to the orchestrator daemon (orch.c, orch_plan.c, orch_nodes.c, orch_ctl.c):
 * its state, and the functions its files share. */
#ifndef RDM_ORCH_INT_H
#define RDM_ORCH_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "lib/msg.h"
#include "lib/tls.h"
#include "orchestrator/plan.h"
#include "orchestrator/rack.h"
#include "orchestrator/state.h"

#define LOG_RING      1000 /* lines `ctl logs` can show */
#define FIRST_SEEN_MS 5000 /* a node never seen since we started gets at least this */
#define PPS_WINDOW_NS 1000000000ull
#define MAX_HOPS      16

/* One control connection: a node's (node >= 0) or the operator's. */
struct conn {
	struct rdm_tls_conn *c;
	int node; /* index in the rack, or -1 for ctl */
	int hello;
	struct conn *next;
};

/* What the orchestrator knows of a rack node. */
struct nstate {
	struct conn *conn;     /* the live channel, or NULL */
	uint64_t last_seen_ns; /* last message from it (or our start) */
	int ever_seen;	       /* since this orchestrator started */
	int dead, drained;     /* marked down in the plan: by health, by the operator */
	uint64_t epoch;	       /* the epoch it applied */
	char running[1024];    /* replica ids it runs, as it last said */
	char refused[256];     /* why it refused our last assign, or "" */
	int renewing;	       /* asked for a new certificate (ctl renew), not done yet */
};

/* The latest counters of a replica, from its node's heartbeats. */
struct rstat {
	char id[RDM_RACK_NAME_MAX + 1];
	char state[16];
	char via[8]; /* how it reaches the next stage: tcp, rdma ("" at the chain's end) */
	int node;
	uint64_t frames, drops, lost, egress_packets;
	uint64_t t_ns, base_frames, base_ns; /* base: a sample >= PPS_WINDOW_NS older */
	double pps;
	int n_hops;
	uint64_t hop_count[MAX_HOPS], hop_p50[MAX_HOPS], hop_p99[MAX_HOPS];
};

struct orch {
	struct rdm_rack rack;
	struct rdm_chain_spec spec;
	struct rdm_plan *plan;
	struct rdm_orch_state st; /* what is persisted */
	char *state_path;
	char *rendered; /* the plan as a chain config, for assigns */
	int dead_ms, heartbeat_ms;
	char listen[64];
	struct nstate *nodes;
	struct conn *conns;
	struct rstat *rs;
	int n_rs;
	struct rdm_tls_ctx *tls;
	const char *certs;	    /* the rack's CA (ca.pem, ca.key) and our own certificate */
	int renew_days;		    /* ctl renew: lifetime of the certificates being issued */
	int renew_ok, renew_failed; /* of the round in progress */
	int lfd;
	uint64_t start_ns;
	uint64_t last_check_ns; /* the last turn of the loop that judged the nodes' health */
	uint64_t grace_until;	/* after a stall of our own, no node is judged before then */

	/* accept thread -> main loop */
	pthread_t acc;
	pthread_mutex_t mu;
	struct conn *accepted;
	int wake[2];
	atomic_int stop;

	/* the log ring (any thread) */
	pthread_mutex_t log_mu;
	char *log[LOG_RING];
	int log_next, log_n;
};

/* Logs one line: to stderr and to the ring `ctl logs` reads (any thread). */
void rdm_orch__log(struct orch *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The accept thread (orch_accept.c): proves every connection (TLS 1.3, the verdict)
 * without blocking on any one of them, and hands the proven ones to the main loop
 * (o->accepted, then o->wake). */
void *rdm_orch__accept_main(void *arg);

/* Closes c and forgets it (a node's channel: the node has none until it reconnects). */
void rdm_orch__drop_conn(struct orch *o, struct conn *c, const char *why);

/* Space-separated ids of the replicas the plan gives rack node k ("" when none). */
void rdm_orch__assigned(const struct rdm_plan *p, int k, char *out, size_t len);

/* Writes what changes from plan a to plan b, one line per replica ("+ dpi-2 on host4
 * (10.77.0.4:7100)", "- dpi-3 from host1", "~ dpi-2: host4 -> host3 (...)"). Returns
 * how many lines. */
int rdm_orch__plan_diff(FILE *f, const struct rdm_plan *a, const struct rdm_plan *b);

/* Saves the state for plan np at epoch+1 (chain: the chain file in force from now on,
 * NULL: the same), then makes np current and pushes it. On a failure nothing changes:
 * np is freed and -errno returned with err set. */
int rdm_orch__commit(struct orch *o, struct rdm_plan *np, const char *chain, char *err,
		     size_t errlen);

/* Sends the current assignment to every node that said hello. */
void rdm_orch__push_all(struct orch *o);

/* Handles a message from node connection c (hello, heartbeat, applied). */
void rdm_orch__take_node_msg(struct orch *o, struct conn *c, const struct rdm_msg *m);

/* Declares nodes with replicas that were silent too long dead, and moves their
 * replicas. */
void rdm_orch__check_health(struct orch *o);

/* ctl renew: asks every connected node for a certificate request (orch_certs.c). */
int rdm_orch__renew(struct orch *o, const char *days, FILE *f);

/* A node's csr or renewed message; and a node's channel closing mid-renewal. */
void rdm_orch__take_renewal(struct orch *o, int k, const struct rdm_msg *m);
void rdm_orch__renew_gone(struct orch *o, int k);

/* Serves one `rdmesh ctl` request from c and sends the reply. */
void rdm_orch__take_request(struct orch *o, struct conn *c, const struct rdm_msg *m);

#endif
