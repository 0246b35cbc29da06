/* Messages of the control channel (orchestrator <-> nodes, orchestrator <-> ctl), carried
 * one per rdm_tls message (lib/tls.h).
 *
 * A message is text with a versioned first line, header lines, and an optional body:
 *
 *   RDMESH/1 assign 7\n            protocol version, type, epoch (decimal, 0..2^63-1)
 *   replicas: dpi-1 dpi-3\n        "key: value" lines; key [a-z0-9_]+, value to the end
 *   heartbeat_ms: 500\n            of the line (no control characters)
 *   \n                             an empty line ends the header
 *   chain: ...                     the body: any bytes, up to the message's end
 *
 * Types (epochs are the orchestrator's; see orchestrator/README.md for the exchange):
 *   hello      node -> orch   first message of a node: running replicas, last epoch
 *   assign     orch -> node   the rendered chain (body) and the replicas the node runs
 *   applied    node -> orch   the outcome of an assign: result ok, or refused/error
 *   heartbeat  node -> orch   replica states and their counters (body)
 *   request    ctl  -> orch   an operator command: cmd, args
 *   reply      orch -> ctl    status ok|error, the text to show (body)
 *   renew      orch -> node   make a new key and a certificate request (days)
 *   csr        node -> orch   the request for the node's own name (body, PEM)
 *   cert       orch -> node   the certificate and the CA bundle (body; cert_len), or error
 *   renewed    node -> orch   result ok, or why the certificate was not installed
 *   join       pod  -> orch   token, name, stage; the request for its name (body, PEM);
 *                             sent without a certificate
 *   joined     orch -> pod    the certificate (OU "pod STAGE") and the CA bundle (body;
 *                             cert_len), or error: why
 *   refused    orch -> pod    a pod's hello not taken: why (the pod tries again later)
 *   leaving    pod  -> orch   the pod is stopping: take its replica out of the plan
 *
 * A message of another protocol version is refused with a reason that names both
 * versions, so mixed versions fail loudly instead of misreading each other. */
#ifndef RDM_MSG_H
#define RDM_MSG_H

#include <stddef.h>
#include <stdint.h>

/* The control channel's fixed names, port and timings, shared by the orchestrator, its
 * node agents and rdmesh ctl. */
#define RDM_ORCH_NAME	      "orch" /* the orchestrator's certificate name */
#define RDM_CTL_NAME	      "ctl"  /* the operator's */
#define RDM_ORCH_PORT	      7000
#define RDM_ORCH_DEAD_MS      1500   /* default: silent this long = dead */
#define RDM_ORCH_HEARTBEAT_MS 250    /* default heartbeat period asked of nodes */
#define RDM_ORCH_SEND_MS      2000   /* bound on one send to a peer */
#define RDM_POD_UNIT	      "pod " /* a pod's certificate: OU = "pod STAGE" */
#define RDM_POD_CERT_S	      3600   /* default lifetime of a pod's certificate */

#define RDM_MSG_PROTO	 "RDMESH/1"
#define RDM_MSG_MAX_HDR	 32 /* header lines per message */
#define RDM_MSG_TYPE_MAX 15

struct rdm_tls_conn;

struct rdm_msg {
	char type[RDM_MSG_TYPE_MAX + 1];
	uint64_t epoch;
	int n_hdr;
	const char *key[RDM_MSG_MAX_HDR], *value[RDM_MSG_MAX_HDR]; /* into buf */
	const char *body; /* into buf, NUL-terminated after body_len bytes */
	size_t body_len;
	char *buf; /* owns everything above */
};

/* Parses len bytes at data into *m (which then owns a copy). 0, or -EPROTO with a one-line
 * reason in err ("unsupported protocol 'RDMESH/2' (this end speaks RDMESH/1)", "header
 * line 3: no ': '"), *m zeroed. */
int rdm_msg_parse(const void *data, size_t len, struct rdm_msg *m, char *err, size_t errlen);

/* The value of header key, or NULL. */
const char *rdm_msg_get(const struct rdm_msg *m, const char *key);

void rdm_msg_free(struct rdm_msg *m);

/* Builds a message: kv is NULL or a NULL-terminated list of key, value pairs; body may be
 * NULL. Returns the malloc'ed bytes with their length in *len, or NULL with errno
 * (EINVAL: a bad type, key or value; ENOMEM). */
char *rdm_msg_build(const char *type, uint64_t epoch, const char *const *kv, const char *body,
		    size_t body_len, size_t *len);

/* Builds and sends one message on c within timeout_ms: 0 or -errno (rdm_tls_send's). */
int rdm_msg_send(struct rdm_tls_conn *c, const char *type, uint64_t epoch, const char *const *kv,
		 const char *body, size_t body_len, int timeout_ms);

/* Receives and parses one message within timeout_ms. 0; -ETIMEDOUT when none came;
 * -EBADMSG for a message that does not parse (reason in err; the connection is still
 * usable and the next message may be fine); -EPIPE when the peer is gone; -EPROTO for a
 * broken stream (TLS failure, an oversized length); -ENOMEM. */
int rdm_msg_recv(struct rdm_tls_conn *c, struct rdm_msg *m, int timeout_ms, char *err,
		 size_t errlen);

#endif
