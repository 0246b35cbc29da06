/* Prometheus metrics for a node: `rdmesh node --metrics IP:PORT` serves
 *
 *   GET /metrics   200, Content-Type: text/plain; version=0.0.4 (the Prometheus text
 *                  format), the node's counters as of this request (an agent's: those of
 *                  every replica it runs, plus its own gauges; none yet: an empty 200)
 *   HEAD /metrics  the same headers, no body
 *   other methods  405 (Allow: GET, HEAD)
 *   other paths    404
 *   a report that does not convert (a bug, not a state): 500 with the reason
 *
 * over HTTP/1.1 from libmicrohttpd's internal polling thread. Plain HTTP has no
 * authentication, so the commands serve it on a loopback address unless told otherwise
 * (`--metrics-remote`, for a management network: rdm_metrics_addr_ok). With TLS
 * (rdm_metrics_start_tls, `--metrics-tls`) it is HTTPS with the node's certificate, and a
 * scrape must present a client certificate from the rack's CA (`rdmesh ctl certs
 * prometheus` makes one), else it gets 403; then any address is fine. Slow or idle
 * clients cannot starve scrapes: at most RDM_METRICS_MAX_CONNS connections at once and
 * RDM_METRICS_PER_IP from one address (more are closed at once), and every connection
 * is closed RDM_METRICS_DEADLINE_S seconds after it opened or after its last answer,
 * whatever it sends meanwhile: a byte every few seconds does not keep it (a slowloris).
 * Scrape config: `static_configs: [{targets: ["10.0.0.5:9464"]}]`.
 *
 * Where the numbers come from: on each scrape the node's report (rdm_node_report, the
 * "key value" lines that `--stats FILE` writes) is rendered into memory and converted
 * by rdm_metrics_render. The metrics therefore always name exactly what the report
 * holds, and a counter added to the report appears here with no change to this module.
 * A server that serves several nodes (an agent's replicas: rdm_metrics_start_fn) gets
 * its text from a callback that writes their reports one after another.
 *
 * Conversion rules (rdm_metrics_render):
 *  - The text is a sequence of sections, each starting with a header line: "node NAME"
 *    (a node's report follows) or "agent NAME" (an agent's own figures follow). The
 *    keys "node" and "agent" are therefore reserved. Text before the first header is
 *    an error; an empty text (no section: an agent with no replica yet) converts to an
 *    empty text, which is a valid exposition with no samples.
 *  - Every sample of a node section has a label node="NAME", NAME from its header line.
 *    Label values are escaped (\\, \", \n).
 *  - An agent section's lines are numbers: KEY VALUE -> rdmesh_agent_KEY{agent="NAME"}
 *    VALUE, a gauge (the agent writes epoch and replicas: rdmesh_agent_epoch,
 *    rdmesh_agent_replicas).
 *  - Metric names are rdmesh_<key>, every character outside [a-zA-Z0-9_:] replaced by
 *    '_'. Counters get a _total suffix (once); gauges do not.
 *  - Type: a counter unless the key is in the gauge table below, or ends in "_active"
 *    or "_queued_bytes" (occupancy figures, present and future). Gauges:
 *      node_id workers run_ms down_replicas egress_origins egress_span_us
 *      ingress_reconnect_seq (a sequence position, not a count), and the stage
 *      counters flows_active rules directory_entries directory_prefixes.
 *    run_ms is 0 until the run ends (the node sets it then). cpu_ms is process CPU
 *    time, which only grows: rdmesh_cpu_ms_total, a counter (rate() / 1000 = cores).
 *  - A value that is not a number (the node's name, down_transport) becomes a label of
 *    one info metric, the label named after the key:
 *      rdmesh_node_info{node="sase-1",down_transport="tcp"} 1   (a gauge)
 *  - drop_<reason> -> rdmesh_drops_total{node,reason="<reason>"}. The report's "drops"
 *    line is their sum and is left out: sum by (node) (rdmesh_drops_total) gives it,
 *    and keeping it in the family would count every drop twice.
 *  - stage_<stage>_<counter> -> rdmesh_stage_<counter>[_total]{node,stage="<stage>"}.
 *    The stage is the longest name from rdm_stage_names() that the key starts with
 *    (counters contain underscores, stage names might too); a key naming no known stage
 *    falls back to the general rule. Two stage counters are reshaped:
 *      policy's "flows" is its flow table's occupancy, so it joins the other stages'
 *      gauge: rdmesh_stage_flows_active{stage="policy"};
 *      rule_<N>_hits -> rdmesh_stage_rule_hits_total{node,stage,rule="<N>"}.
 *  - Latency (nanoseconds in the report, seconds here, exactly: 47359 -> 0.000047359):
 *      hop<N>_p50_ns / _p99_ns / _p999_ns, hops_*, e2e_* ->
 *        rdmesh_hop_latency_seconds{node,hop="<N>"|"all"|"e2e",quantile="0.5|0.99|0.999"}
 *      hop<N>_count, hops_count -> rdmesh_hop_latency_seconds_count{node,hop}
 *      hop<N>_max_ns, hops_max_ns -> rdmesh_hop_latency_max_seconds{node,hop} (a gauge)
 *    one summary family; hop="all" is every hop of every frame, hop="e2e" ingress to
 *    egress (quantiles only: the report has no e2e count). There is no _sum: the
 *    node's histograms do not keep one.
 *  - Each family is written once, contiguously, as # HELP, # TYPE, then its samples in
 *    report order, section after section (a summary's quantiles before its _count, per
 *    node and hop), whatever the number of sections. Two lines that would make the
 *    same series (in one report, or two sections for the same node) are an error
 *    (-EINVAL), not a silent overwrite.
 *
 * Staleness: the report reads the workers' counters while they run, without locks.
 * Each counter is a plain uint64_t written by one worker thread; a scrape may see a
 * value a few microseconds old, and different counters from slightly different
 * moments (rx_frames may lead tx_frames by a batch). Naturally aligned 64-bit loads do
 * not tear on x86-64 and aarch64, the architectures we build for, so no value is ever
 * half-written. The data path stays lock-free; only the scrape pays.
 *
 * Known limits of reading live (node.c and the stages, not this module): a scrape that
 * races an upstream disconnect, a policy reload or a next-list reload (SIGHUP,
 * rdm_node_reload) may read memory that is being released; rdm_node_report keeps a
 * static scratch buffer, so no other thread may call it while the server runs
 * (cmd_node stops the server before its own report; the agent holds a mutex around
 * every report and every change to its replica list, and so does its callback).
 */
#ifndef RDM_METRICS_H
#define RDM_METRICS_H

#include <stddef.h>
#include <stdio.h>

struct rdm_node;
struct rdm_metrics;

#define RDM_METRICS_MAX_CONNS  64 /* concurrent HTTP connections; more are closed at once */
#define RDM_METRICS_PER_IP     4  /* concurrent connections from one address */
#define RDM_METRICS_DEADLINE_S 5  /* from a connection's start or its last answer to its close */

/* 0 when addr ("IP:PORT") may serve the metrics: a loopback address, or any with
 * remote set (the operator said so); else -EACCES with the reason in err. */
int rdm_metrics_addr_ok(const char *addr, int remote, char *err, size_t errlen);

/* Starts serving n's metrics on addr, "IP:PORT" or "[IPv6]:PORT" (port 0 picks a
 * free one: see rdm_metrics_port). The server runs on its own thread, which inherits
 * the caller's signal mask: block the signals the main thread waits for first. n must
 * outlive the server. Returns the server, or NULL with a message in err ("metrics
 * 127.0.0.1:9464: Address already in use"). */
struct rdm_metrics *rdm_metrics_start(const char *addr, const struct rdm_node *n, char *err,
				      size_t errlen);

/* The same for a text made by report(arg, out), which the server calls on its one
 * thread for each scrape (calls never overlap) to write the reports of the nodes it
 * serves, one after another (see the rules above; nothing at all is fine). report
 * returns 0, or a negative errno that makes the scrape a 500; it must take whatever
 * lock guards its nodes against the thread that changes them. arg must outlive the
 * server. */
struct rdm_metrics *rdm_metrics_start_fn(const char *addr, int (*report)(void *arg, FILE *out),
					 void *arg, char *err, size_t errlen);

/* The node's certificate for HTTPS, and the CA its scrapers' certificates come from. */
struct rdm_metrics_tls {
	const char *ca, *cert, *key; /* PEM files */
};

/* rdm_metrics_start_fn over HTTPS when tls is not NULL. */
struct rdm_metrics *rdm_metrics_start_tls(const char *addr, int (*report)(void *arg, FILE *out),
					  void *arg, const struct rdm_metrics_tls *tls, char *err,
					  size_t errlen);

/* The report function of rdm_metrics_start: node (a struct rdm_node) reports. */
int rdm_metrics_node_report(void *node, FILE *out);

/* Scrapes refused for want of a client certificate from the CA (TLS only). */
unsigned long rdm_metrics_refused(const struct rdm_metrics *m);

/* The TCP port the server listens on (useful after asking for port 0). */
int rdm_metrics_port(const struct rdm_metrics *m);

/* Stops the server: waits for a scrape in progress, closes every connection and the
 * listening socket, frees m. Accepts NULL. */
void rdm_metrics_stop(struct rdm_metrics *m);

/* Converts report_text (rdm_node_report's output, or several reports and agent sections
 * one after another) into the Prometheus text format, by the rules above, and writes it
 * to out in one piece (nothing for an empty text). Returns 0; -EINVAL when the text is
 * not made of reports (a line before the first "node NAME" or "agent NAME", a line
 * without a value, a duplicate series, a negative counter, a latency that is not a
 * whole number of nanoseconds, an agent value that is not a number), with nothing
 * written; -ENOMEM; -EIO when out fails. */
int rdm_metrics_render(const char *report_text, FILE *out);

#endif
