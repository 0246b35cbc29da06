/* `rdmesh node --orch ADDR --name NAME`: a rack node run by the orchestrator.
 *
 * The agent holds the control channel to the orchestrator (TLS, certificate NAME) and
 * runs one data-plane node (rdm_node, on threads of its own) per replica it is assigned:
 *
 *  - On connecting it says hello: the epoch it applied last (0 after a start) and the
 *    replicas it runs, so a restarted orchestrator can tell that nothing needs doing.
 *  - An assign is applied only when its epoch is newer than the applied one; an older
 *    or equal one (a replay, a stale orchestrator) is refused, logged on both sides,
 *    and changes nothing. The chain text is checked whole before anything changes;
 *    then it is written to DIR/chain.yaml (write + rename). Replicas new to the node
 *    start; running ones re-read their next list (rdm_node_reload: steering, drains);
 *    ones no longer assigned stop once their upstreams have had transport.drain_ms to
 *    drain them, plus a grace.
 *  - Heartbeats every heartbeat_ms carry each replica's state and counters
 *    (rdm_node_report). A channel with no word from the orchestrator for twice its
 *    dead_ms is dropped and dialled again.
 *  - With several orchestrators (--orch A,B,C, sharing an etcd store) the agent dials
 *    them in turn; one that does not lead answers the hello with where the leader is,
 *    which is dialled next. Whoever sent it, an assign is applied only when newer.
 *  - The data plane never waits on the channel: when the orchestrator is gone the
 *    replicas go on forwarding on the last assignment, and the agent keeps redialling.
 *  - SIGTERM/SIGINT stop every replica (draining) and exit; SIGHUP reloads them. A
 *    replica that ends writes its counters to DIR/ID.stats.
 *  - A pod (--join, --stage) first gets its certificate with a join token
 *    (rdm_agent_join), then runs as any node; its hello also says its data address and
 *    when its certificate expires, and a renew that says "reload: now" (the
 *    orchestrator's, before the pod's short-lived certificate runs out) makes its
 *    replicas take the new one at once.
 *  - With metrics set, Prometheus text on http://METRICS/metrics (node/metrics.h): in
 *    one scrape every replica the agent has (node="ID"; a leaving one until it is
 *    freed), plus rdmesh_agent_epoch and rdmesh_agent_replicas {agent="NAME"}. */
#ifndef RDM_AGENT_H
#define RDM_AGENT_H

#include <stddef.h>

#define RDM_AGENT_STOP_GRACE_MS 3000 /* after drain_ms, before a removed replica stops */

struct rdm_agent_opts {
	const char *orch;    /* "IP:PORT[,IP:PORT...]": orchestrators sharing a store */
	const char *name;    /* this node's name in rack.yaml and its certificate */
	const char *certs;   /* DIR with ca.pem, NAME.pem, NAME.key */
	const char *dir;     /* where the chain, stats and logs of replicas go */
	int drain_ms;	     /* how long a stopping replica drains its queues */
	const char *metrics; /* "IP:PORT" to serve metrics on, or NULL for none */
	int metrics_tls;     /* over HTTPS with this host's certificate; scrapers need one */
	/* A pod (not in rack.yaml): joins with the token in file join, as a replica of
	 * stage; NULL for a host. */
	const char *join, *stage;
	const char *ca;		 /* the CA to trust when joining (default: certs/ca.pem) */
	const char *data;	 /* the pod's data address: an IP or an interface (default:
				  * the address its control channel leaves from) */
	const char *rdma_device; /* the RDMA device it was given, or NULL */
};

/* A pod joins (agent_join.c): unless certs/NAME.pem is valid for a minute more, a new
 * key and a request for NAME, the token presented to the orchestrator (the first of
 * o->orch that answers, or the leader it names), the certificate and CA bundle checked
 * and installed. Dials until an orchestrator answers or SIGTERM/SIGINT is pending.
 * 0, or -errno with the orchestrator's refusal or the local failure in err. */
int rdm_agent_join(const struct rdm_agent_opts *o, char *err, size_t errlen);

/* The data address a pod reports, into out: spec as an IP, or the IPv4 address of the
 * interface named spec; with no spec, the local address of socket sock. 0 or -errno. */
int rdm_agent_data_ip(const char *spec, int sock, char *out, size_t len, char *err, size_t errlen);

/* Runs until SIGTERM/SIGINT (blocked by the caller in every thread first). Returns the
 * exit status. */
int rdm_agent_run(const struct rdm_agent_opts *o);

#endif
