/* Private to the orchestrator daemon (orch.c, orch_plan.c, orch_nodes.c, orch_ctl.c):
 * its state, and the functions its files share. */
#ifndef RDM_ORCH_INT_H
#define RDM_ORCH_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "lib/etcd.h"
#include "lib/msg.h"
#include "lib/tls.h"
#include "orchestrator/plan.h"
#include "orchestrator/rack.h"
#include "orchestrator/state.h"

#define LOG_RING 1000 /* lines `ctl logs` can show */

/* A node never seen since we started (or took the lead) gets at least FIRST_SEEN_MS: after
 * a leader stops answering, a node may first wait out a TLS connect to it (2 s, twice
 * with its backoff) before it reaches us; 5000 once declared a live node dead, 77 ms
 * before its hello came. */
#define FIRST_SEEN_MS	       8000 /* a node never seen since we started gets at least this, */
#define FIRST_SEEN_PER_NODE_MS 5    /* plus this per rack node (each a TLS handshake) */
#define JUDGE_EVERY_NS	       100000000ull /* how often the nodes' silence is judged */
#define PPS_WINDOW_NS	       1000000000ull
#define MAX_HOPS	       16

/* What a connection is before it is a rack node's (node >= 0). */
#define CONN_CTL	 -1   /* the operator's (certificate "ctl") */
#define CONN_JOIN	 -2   /* no certificate: may only ask to join with a token (orch_pods.c) */
#define CONN_POD	 -3   /* a pod's certificate, until its hello makes it a rack node */
#define POD_FIRST_MSG_MS 5000 /* a joining or pod connection says what it wants by then */
#define JOINS_OPEN_MAX	 64   /* such connections at once; more are closed at once */

/* One control connection: a node's (node >= 0), the operator's, or a pod's. */
struct conn {
	struct rdm_tls_conn *c;
	int node; /* index in the rack, or CONN_* */
	int hello;
	int gone;	   /* dropped: closed, on o->gone until the loop's turn ends */
	uint64_t until_ns; /* CONN_JOIN, CONN_POD: its first message by then, or closed */
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
	int renewing;	       /* asked for a new certificate, not done yet: 1 by ctl renew
				* (a round), 2 a pod's own renewal before it expires */
	int64_t cert_until;    /* a pod: when its certificate expires (unix s), 0 unknown */
	char sent_to[64];      /* a follower: the leader it last sent this node to (logged once) */
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

/* Where the desired state is kept and, with etcd, who leads (orch_store.c). The fields
 * under mu are shared with the lease thread. */
struct store {
	int etcd;			 /* 0: the file store (--state), this process alone */
	char *prefix;			 /* of every key, ending in '/' */
	char url[1100];			 /* for messages: etcd://ENDPOINTS/PREFIX/ */
	int n_members;			 /* endpoints given */
	int lease_s;			 /* the leader lease's TTL */
	struct rdm_etcd *main, *bg, *hc; /* clients: the main loop's, the lease and the
					  * health threads' */
	char *chain_text;		 /* the chain in force, as kept in the store */
	int64_t state_rev;		 /* the state key's revision we hold (0: none) */
	int acting;			 /* the main loop acts as the leader (main loop only) */
	pthread_t thr, health_thr;
	int thr_up; /* threads started: 1 the lease thread, 2 both */

	pthread_mutex_t mu;
	int leading;		    /* we hold the leader key (file store: always) */
	int64_t lease, lead_rev;    /* our lease, the leader key's create revision */
	uint64_t valid_until_ns;    /* our leadership holds until then, whatever etcd says */
	uint64_t campaign_after_ns; /* no campaign before then (a takeover failed) */
	time_t since;		    /* when we took the lead */
	char leader[64];	    /* the leader's address as the store last said, or "" */
	char why[512];		    /* the store's trouble, "" when none */
	char health[1024];	    /* one line per member */
	int healthy;		    /* members that answered */
};

struct apply_job;

struct orch {
	struct rdm_rack rack;
	struct rdm_chain_spec spec;
	struct rdm_plan *plan;
	struct rdm_orch_state st; /* what is persisted */
	char *state_path;
	char *rendered; /* the plan as a chain config, for assigns */
	int dead_ms, heartbeat_ms;
	char listen[64];
	char advertise[64]; /* where nodes and ctl reach us (the leader key's value) */
	struct store store;
	struct nstate *nodes;
	struct conn *conns;
	struct conn *gone;	 /* dropped this turn of the loop, freed at its end */
	struct apply_job *apply; /* ctl apply: the file being checked, or NULL */
	struct rstat *rs;
	int n_rs;
	struct rdm_tls_ctx *tls;
	const char *certs;	    /* the rack's CA (ca.pem, ca.key) and our own certificate */
	int renew_days;		    /* ctl renew: lifetime of the certificates being issued */
	int renew_ok, renew_failed; /* of the round in progress */
	int pod_cert_s;		    /* lifetime of a pod's certificate (--pod-cert-s) */
	uint64_t joins_ok, joins_refused;
	uint64_t held_epoch; /* an epoch not sent: a stage has no replica (logged once) */
	uint64_t joins_shed, joins_shed_log_ns; /* joining connections over the cap */
	uint64_t next_reap_ns;			/* silent joining connections closed then */
	int lfd;
	int epfd; /* the main loop's epoll set: the wake pipe and every channel */
	uint64_t start_ns;
	uint64_t last_check_ns; /* the last turn of the loop that judged the nodes' health */
	uint64_t grace_until;	/* after a stall of our own, no node is judged before then */
	uint64_t next_judge_ns; /* the next judgement of the nodes' silence */

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

/* Closes c and forgets it (a node's channel: the node has none until it reconnects;
 * logged with why unless why is NULL). */
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

/* The store (orch_store.c). open: url NULL for the file store, else etcd://...; rack,
 * state, spec: read the rack, the saved state (-ENOENT: none yet) and the chain in
 * force from the store (the files at path are the first orchestrator's seed; state:
 * 1, *st zeroed, when the store holds the revision read last); save:
 * write a new state (chain: the chain file in force from now on, or NULL) — with etcd
 * only while we lead, in a transaction fenced by our leader key; start: the lease
 * thread (etcd). Each returns 0 or -errno with err. */
int rdm_orch__store_open(struct orch *o, const char *url, const struct rdm_etcd_tls *tls,
			 int lease_s, char *err, size_t errlen);
int rdm_orch__store_rack(struct orch *o, const char *path, char *err, size_t errlen);
int rdm_orch__store_state(struct orch *o, struct rdm_orch_state *st, char *err, size_t errlen);
int rdm_orch__store_spec(struct orch *o, const char *path, struct rdm_chain_spec *spec, char *err,
			 size_t errlen);
int rdm_orch__store_save(struct orch *o, const struct rdm_orch_state *st, const char *chain,
			 char *err, size_t errlen);
int rdm_orch__store_start(struct orch *o);
void rdm_orch__store_close(struct orch *o);

/* 1 while this orchestrator may change the plan and talk to nodes (the file store:
 * always; etcd: while its lease is proven and the main loop took the lead). */
int rdm_orch__leads(struct orch *o);

/* Who leads as far as we know ("" none) and the store's trouble ("" none). */
void rdm_orch__leader(struct orch *o, char *addr, size_t len, char *why, size_t wlen);

/* Leading (orch_lead.c). restore: the plan o->st describes (replicas that cannot stay
 * are placed afresh, counted in *moved), with the nodes' down flags set. reload: reads
 * the state and chain from the store when they changed and makes them current (0, or
 * -ENOENT when the store has no state yet). store_turn: takes or gives up the lead as
 * the lease thread found, once per turn of the loop before any message is served.
 * redirect: tells node connection c who leads and closes it. store_status: the
 * control plane's lines of `ctl status`. */
struct rdm_plan *rdm_orch__restore(struct orch *o, int *moved, char *err, size_t errlen);
int rdm_orch__reload(struct orch *o, int *moved, char *err, size_t errlen);
void rdm_orch__store_turn(struct orch *o);
void rdm_orch__redirect(struct orch *o, struct conn *c);
void rdm_orch__store_status(struct orch *o, FILE *f);

/* ctl apply (orch_apply.c). start: begins checking the file at path off the loop (*started
 * 1: the reply comes from apply_poll), or writes why not to f and returns -1. poll: once
 * per turn of the loop: answers when the check is done (the plan compared, switched to
 * unless dry) or past its time limit. gone: ctl channel c closed. close: waits for a
 * check still running (at exit). */
int rdm_orch__apply_start(struct orch *o, struct conn *c, const char *path, int dry, FILE *f,
			  int *started);
void rdm_orch__apply_poll(struct orch *o);
void rdm_orch__apply_gone(struct orch *o, struct conn *c);
void rdm_orch__apply_close(struct orch *o);

/* Sends ctl channel c the reply to cmd: status ok (rc 0) or error, the text out, and
 * where the leader is when leader is set; a reply too large becomes a short error. */
void rdm_orch__reply(struct orch *o, struct conn *c, const char *cmd, int rc, const char *out,
		     size_t len, const char *leader);

/* Pods (orch_pods.c). take_msg: a message on a CONN_JOIN or CONN_POD connection (a join
 * with a token; a pod's hello, which makes it a rack node with its replica). gone: pod k
 * was silent past the dead time: its replica leaves the plan, its slot is freed. leaving:
 * pod k is stopping: its replica leaves the plan now and drains (the pod stays a node
 * until it goes silent). tick:
 * once per turn: pods whose certificate has a third of its life left are asked to renew
 * it. */
void rdm_orch__take_pod_msg(struct orch *o, struct conn *c, const struct rdm_msg *m);
void rdm_orch__pod_gone(struct orch *o, int k, uint64_t silent_ms);
void rdm_orch__pod_leaving(struct orch *o, int k);
void rdm_orch__pods_tick(struct orch *o);

/* A new CONN_JOIN or CONN_POD connection (the main loop's, before it is served): 0 to
 * take it, with its deadline set; -1 when JOINS_OPEN_MAX are open (counted, logged once
 * a second): the caller drops it. reap: closes those past their deadline (every turn,
 * leading or not). */
int rdm_orch__pod_conn_new(struct orch *o, struct conn *c);
void rdm_orch__pods_reap(struct orch *o);

/* The CA bundle (certs/ca.pem, whole) appended to a certificate PEM: the body of a
 * `cert` or `joined` message. malloc'd (*len bytes), or NULL with err. */
char *rdm_orch__cert_body(struct orch *o, const char *cert, size_t *len, char *err, size_t errlen);

/* Serves one `rdmesh ctl` request from c and sends the reply. */
void rdm_orch__take_request(struct orch *o, struct conn *c, const struct rdm_msg *m);

#endif
