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
 *  - With metrics set, Prometheus text on http://METRICS/metrics (node/metrics.h): in
 *    one scrape every replica the agent has (node="ID"; a leaving one until it is
 *    freed), plus rdmesh_agent_epoch and rdmesh_agent_replicas {agent="NAME"}. */
#ifndef RDM_AGENT_H
#define RDM_AGENT_H

#define RDM_AGENT_STOP_GRACE_MS 3000 /* after drain_ms, before a removed replica stops */

struct rdm_agent_opts {
	const char *orch;    /* "IP:PORT[,IP:PORT...]": orchestrators sharing a store */
	const char *name;    /* this node's name in rack.yaml and its certificate */
	const char *certs;   /* DIR with ca.pem, NAME.pem, NAME.key */
	const char *dir;     /* where the chain, stats and logs of replicas go */
	int drain_ms;	     /* how long a stopping replica drains its queues */
	const char *metrics; /* "IP:PORT" to serve metrics on, or NULL for none */
	int metrics_tls;     /* over HTTPS with this host's certificate; scrapers need one */
};

/* Runs until SIGTERM/SIGINT (blocked by the caller in every thread first). Returns the
 * exit status. */
int rdm_agent_run(const struct rdm_agent_opts *o);

#endif
