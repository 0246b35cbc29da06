/* A small etcd v3 client over etcd's JSON gateway (HTTP POST of JSON to /v3/kv/range,
 * /v3/kv/txn, /v3/lease/grant, /v3/lease/keepalive, /v3/lease/revoke; keys and values
 * base64, 64-bit numbers as decimal strings), with libcurl and json-c.
 *
 * One client talks to a cluster through a list of endpoints: a request goes to the
 * endpoint that answered last, and on a failure that another member may not have (no
 * connection, a time-out, "no leader", an HTTP 5xx) to the next, until each was tried
 * once. A client is used by one thread at a time (it owns one curl handle).
 *
 * What etcd guarantees and this client leaves to its callers: a lease's TTL is a
 * minimum (an etcd leader change renews every lease), so a holder must count its own
 * validity from when it sent the keepalive, never from the answer; and a write whose
 * answer was lost may or may not have happened, so writes that matter are transactions
 * whose compare makes a repeat harmless. */
#ifndef RDM_ETCD_H
#define RDM_ETCD_H

#include <stddef.h>
#include <stdint.h>

#define RDM_ETCD_MAX_ENDPOINTS 16

struct rdm_etcd;

struct rdm_etcd_tls {
	const char *ca;	  /* the CA that signed the members' certificates */
	const char *cert; /* our client certificate and key (etcd --client-cert-auth) */
	const char *key;
};

/* A key's value and revisions, as read. */
struct rdm_etcd_kv {
	char *value; /* NUL-terminated (values may hold NULs: len counts them) */
	size_t len;
	int64_t create_rev, mod_rev, lease;
};

/* A compare of a transaction: the key's create revision equals rev (0: the key does not
 * exist). */
struct rdm_etcd_cmp {
	const char *key;
	int64_t create_rev;
};

/* A put of a transaction; lease 0: none. */
struct rdm_etcd_put {
	const char *key;
	const char *value;
	size_t len;
	int64_t lease;
};

/* endpoints: "HOST:PORT[,HOST:PORT...]" (at most RDM_ETCD_MAX_ENDPOINTS); tls NULL for
 * plain HTTP, else HTTPS with a client certificate. timeout_ms bounds each try of a
 * request at one endpoint. NULL with the reason in err. */
struct rdm_etcd *rdm_etcd_new(const char *endpoints, const struct rdm_etcd_tls *tls, int timeout_ms,
			      char *err, size_t errlen);
void rdm_etcd_free(struct rdm_etcd *e);

/* The endpoint that answered last ("HOST:PORT"). */
const char *rdm_etcd_endpoint(const struct rdm_etcd *e);

/* Reads key into *kv (rdm_etcd_kv_free). 0; -ENOENT when there is no such key; other
 * -errno with the reason in err. *rev (may be NULL): the store's revision. */
int rdm_etcd_get(struct rdm_etcd *e, const char *key, struct rdm_etcd_kv *kv, int64_t *rev,
		 char *err, size_t errlen);
void rdm_etcd_kv_free(struct rdm_etcd_kv *kv);

/* If every compare holds, does every put, atomically: 0 and *rev (may be NULL) the
 * revision they made. -ECANCELED when a compare failed (nothing written); other -errno
 * with the reason in err (then it is unknown whether the puts happened). */
int rdm_etcd_txn(struct rdm_etcd *e, const struct rdm_etcd_cmp *cmp, int n_cmp,
		 const struct rdm_etcd_put *put, int n_put, int64_t *rev, char *err, size_t errlen);

/* Leases: grant one of ttl_s seconds (*id); keep one alive (*ttl_s: what etcd granted;
 * -ENOENT when it expired or was revoked); revoke one (its keys go with it). */
int rdm_etcd_grant(struct rdm_etcd *e, int ttl_s, int64_t *id, char *err, size_t errlen);
int rdm_etcd_keepalive(struct rdm_etcd *e, int64_t id, int64_t *ttl_s, char *err, size_t errlen);
int rdm_etcd_revoke(struct rdm_etcd *e, int64_t id, char *err, size_t errlen);

/* Asks each endpoint for its status and writes one line per endpoint to out
 * ("10.0.0.1:2379 ok, leader, revision 42" or "10.0.0.2:2379 unreachable: ..."). Returns
 * how many answered. */
int rdm_etcd_health(struct rdm_etcd *e, char *out, size_t len);

#endif
