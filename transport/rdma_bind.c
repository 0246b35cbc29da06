/* Proving both ends of an RDMA hop (opts.tls, protect: auth) before its first frame.
 *
 * An RDMA connect request has 56 bytes of private data: no room for a certificate. So
 * the dialler first proves both ends on the peer's TCP port, in the same TLS 1.3
 * handshake with the rack's certificates that a TCP hop runs (lib/tls_hs.h), asking for
 * a binding: the listener admits it as it would a TCP upstream (by certificate name)
 * and keeps a one-time token and a key, both exported from that session, so nobody else
 * can know them. Then the RDMA set-up:
 *
 *   request (dialler)  version, flags, credits, node, epoch | token | nonce | MAC
 *   accept (listener)  version, flags, credits, node, epoch | its QP number | MAC
 *   first message      MAC over the nonce and both QP numbers (RDM_RDMA_IMM_BIND)
 *
 * Every MAC is HMAC-SHA256 with the binding's key, cut to 16 bytes, each over its own
 * label. The listener spends the token on the first request that names it (a captured
 * request replayed finds none) and accepts only when the request's MAC holds; the
 * dialler takes the accept only when its MAC holds over the nonce it chose (no
 * impersonated next hop answers in the listener's place). The first message binds the
 * two queue pairs: the listener hands its owner no frame, and does not even come up,
 * before that message has proven the sender, and anything else first ends the
 * connection. A binding not spent within RDM_HANDSHAKE_MS is forgotten. */
#include "transport/rdma_int.h"
#include "lib/byteorder.h"
#include "lib/clock.h"
#include "lib/tls_hs.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

void (*rdm_rdma__test_req)(uint8_t *pdata, uint8_t len);

/* ---- the listener's bindings, waiting for their connect requests ---- */

struct binding {
	uint8_t token[16], key[32];
	char name[64];
	uint64_t expires_ns; /* 0: a free entry */
};

static struct binding binds[RDM_RDMA_BINDS];
static pthread_mutex_t binds_mu = PTHREAD_MUTEX_INITIALIZER;

static void forget(struct binding *b)
{
	OPENSSL_cleanse(b, sizeof(*b));
}

int rdm_rdma_bind_offer(const char *peer, const unsigned char *m, void *arg, char *why,
			size_t whylen)
{
	uint64_t now = rdm_now_ns();
	struct binding *b = NULL;

	(void)arg;
	pthread_mutex_lock(&binds_mu);
	for (int i = 0; i < RDM_RDMA_BINDS; i++) {
		if (binds[i].expires_ns && binds[i].expires_ns <= now)
			forget(&binds[i]);
		if (!b && !binds[i].expires_ns)
			b = &binds[i];
	}
	if (b) {
		memcpy(b->token, m, sizeof(b->token));
		memcpy(b->key, m + sizeof(b->token), sizeof(b->key));
		snprintf(b->name, sizeof(b->name), "%s", peer);
		b->expires_ns = now + (uint64_t)RDM_HANDSHAKE_MS * 1000000ull;
	}
	pthread_mutex_unlock(&binds_mu);
	if (!b)
		snprintf(why, whylen,
			 "%d RDMA bindings are already waiting for their connect requests",
			 RDM_RDMA_BINDS);
	return b ? 0 : -1;
}

/* Spends the binding of token: 0 with its name and key, or -1 (none, or expired). */
static int take(const uint8_t *token, char *name, size_t namelen, uint8_t *key)
{
	uint64_t now = rdm_now_ns();
	int rc = -1;

	pthread_mutex_lock(&binds_mu);
	for (int i = 0; i < RDM_RDMA_BINDS; i++) {
		struct binding *b = &binds[i];

		if (!b->expires_ns || CRYPTO_memcmp(b->token, token, sizeof(b->token)))
			continue;
		if (b->expires_ns > now) {
			snprintf(name, namelen, "%s", b->name);
			memcpy(key, b->key, sizeof(b->key));
			rc = 0;
		}
		forget(b);
		break;
	}
	pthread_mutex_unlock(&binds_mu);
	return rc;
}

/* ---- MACs ---- */

/* HMAC-SHA256(key, label | a | b), cut to 16 bytes. */
static void mac(const uint8_t *key, const char *label, const uint8_t *a, size_t alen,
		const uint8_t *b, size_t blen, uint8_t *out)
{
	uint8_t buf[128], md[EVP_MAX_MD_SIZE];
	size_t ll = strlen(label);
	unsigned int mdlen = 0;

	memcpy(buf, label, ll);
	memcpy(buf + ll, a, alen);
	if (blen)
		memcpy(buf + ll + alen, b, blen);
	HMAC(EVP_sha256(), key, 32, buf, ll + alen + blen, md, &mdlen);
	memcpy(out, md, 16);
}

static int mac_ok(const uint8_t *key, const char *label, const uint8_t *a, size_t alen,
		  const uint8_t *b, size_t blen, const uint8_t *got)
{
	uint8_t want[16];

	mac(key, label, a, alen, b, blen, want);
	return CRYPTO_memcmp(want, got, sizeof(want)) == 0;
}

/* What the first message proves: the nonce and both queue pairs, dialler's first. */
static void qp_mac(const struct rdmx_conn *c, uint8_t *out)
{
	uint8_t qps[8];
	uint32_t mine = c->qp ? c->qp->qp_num : 0;

	rdm_put_be32(qps, c->outbound ? mine : c->auth.peer_qpn);
	rdm_put_be32(qps + 4, c->outbound ? c->auth.peer_qpn : mine);
	mac(c->auth.key, "rdmesh rdma qp", c->auth.nonce, sizeof(c->auth.nonce), qps, sizeof(qps),
	    out);
}

/* ---- the dialler's binding handshake ---- */

void rdm_rdma__bind_stop(struct rdmx_conn *c)
{
	struct rdmx_auth *a = &c->auth;

	rdm_timer_cancel(c->rw->loop, &a->deadline);
	rdm_tls_hs_free(a->hs);
	a->hs = NULL;
	if (a->fd_open) {
		rdm_io_del(c->rw->loop, &a->io);
		close(a->fd);
		a->fd_open = 0;
	}
	a->await_bind = 0;
	OPENSSL_cleanse(a->key, sizeof(a->key));
}

void rdm_rdma__refuse(struct rdmx_conn *c, const char *why)
{
	c->base.stats.connect_fails += c->outbound;
	if (c->base.cbs.on_refused)
		c->base.cbs.on_refused(&c->base, why, c->base.cbs.arg);
	rdm_rdma__conn_fail(c, why);
}

static void bind_deadline(void *arg)
{
	struct rdmx_conn *c = arg;
	char why[160];

	snprintf(why, sizeof(why), "%s %s: RDMA not proven within %u ms",
		 c->outbound ? "server" : "client", c->base.peer, c->o.handshake_ms);
	rdm_rdma__refuse(c, why);
}

/* The handshake is done: keep the binding, close the TCP connection, set up the QP. */
static void bind_done(struct rdmx_conn *c)
{
	struct rdmx_auth *a = &c->auth;
	uint8_t m[RDM_TLS_BIND_LEN];
	char err[384];

	if (rdm_tls_hs_bound(a->hs, m, err, sizeof(err)) < 0 ||
	    RAND_bytes(a->nonce, sizeof(a->nonce)) != 1) {
		rdm_rdma__refuse(c, err);
		return;
	}
	memcpy(a->token, m, sizeof(a->token));
	memcpy(a->key, m + sizeof(a->token), sizeof(a->key));
	OPENSSL_cleanse(m, sizeof(m));
	rdm_tls_hs_free(a->hs);
	a->hs = NULL;
	rdm_io_del(c->rw->loop, &a->io);
	close(a->fd);
	a->fd_open = 0;
	rdm_rdma__cm_connect(c);
}

static void bind_step(struct rdmx_conn *c)
{
	struct rdmx_auth *a = &c->auth;
	char err[384];
	int want_write = 0, rc = rdm_tls_hs_step(a->hs, &want_write, err, sizeof(err));

	if (rc < 0)
		rdm_rdma__refuse(c, err);
	else if (rc == 0)
		rdm_io_mod(c->rw->loop, &a->io, want_write ? EPOLLOUT : EPOLLIN);
	else
		bind_done(c);
}

static void bind_io(struct rdm_io *io, uint32_t events)
{
	struct rdmx_conn *c = container_of(io, struct rdmx_conn, auth.io);
	struct rdmx_auth *a = &c->auth;
	char who[96], err[384];
	int e = 0;
	socklen_t el = sizeof(e);

	(void)events;
	if (a->hs) {
		bind_step(c);
		return;
	}
	/* The TCP connection is up, or failed. */
	if (getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
		e = errno;
	if (e) {
		snprintf(err, sizeof(err), "binding connection to %s (tcp): %s", c->base.peer,
			 strerror(e));
		c->base.stats.connect_fails++;
		rdm_rdma__conn_fail(c, err);
		return;
	}
	snprintf(who, sizeof(who), "server %s (rdma binding)", c->base.peer);
	a->hs = rdm_tls_hs_new(c->o.tls, a->fd, c->o.peer_name, NULL, NULL, who, err, sizeof(err));
	if (!a->hs || rdm_tls_hs_ask_bind(a->hs) < 0) {
		rdm_rdma__refuse(c, a->hs ? "out of memory for the TLS session" : err);
		return;
	}
	bind_step(c);
}

void rdm_rdma__bind_start(struct rdmx_conn *c)
{
	struct rdmx_auth *a = &c->auth;
	char err[160];
	int fd;

	rdm_rdma__bind_stop(c);
	a->start_ns = rdm_now_ns();
	fd = socket(c->peer.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd >= 0 && c->local.len) {
		struct sockaddr_storage src = c->local.ss;

		if (src.ss_family == AF_INET)
			((struct sockaddr_in *)&src)->sin_port = 0;
		else
			((struct sockaddr_in6 *)&src)->sin6_port = 0;
		if (bind(fd, (struct sockaddr *)&src, c->local.len) < 0) {
			close(fd);
			fd = -1;
		}
	}
	if (fd < 0 || (connect(fd, (const struct sockaddr *)&c->peer.ss, c->peer.len) < 0 &&
		       errno != EINPROGRESS)) {
		snprintf(err, sizeof(err), "binding connection to %s (tcp): %s", c->base.peer,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		c->base.stats.connect_fails++;
		rdm_rdma__conn_fail(c, err);
		return;
	}
	a->fd = fd;
	a->fd_open = 1;
	rdm_io_add(c->rw->loop, &a->io, fd, EPOLLOUT, bind_io);
	rdm_timer_arm(c->rw->loop, &a->deadline, c->o.handshake_ms, bind_deadline, c);
}

/* ---- the RDMA set-up's private data and first message ---- */

uint8_t rdm_rdma__bind_req(struct rdmx_conn *c, uint8_t *pd)
{
	struct rdmx_auth *a = &c->auth;

	pd[1] |= RDMX_PDATA_AUTH | (c->o.encrypt ? RDMX_PDATA_ENC : 0);
	memcpy(pd + RDMX_PDATA_LEN, a->token, 16);
	memcpy(pd + RDMX_PDATA_LEN + 16, a->nonce, 8);
	mac(a->key, "rdmesh rdma req", pd, RDMX_PDATA_LEN + 24, NULL, 0, pd + RDMX_PDATA_LEN + 24);
	if (rdm_rdma__test_req)
		rdm_rdma__test_req(pd, RDMX_REQ_AUTH_LEN);
	return RDMX_REQ_AUTH_LEN;
}

int rdm_rdma__bind_check_req(struct rdmx_conn *c, const uint8_t *pd, uint8_t len, uint32_t peer_qpn,
			     char *why, size_t whylen)
{
	struct rdmx_auth *a = &c->auth;
	char name[64];

	if (len < RDMX_REQ_AUTH_LEN || !(pd[1] & RDMX_PDATA_AUTH)) {
		snprintf(why, whylen,
			 "client %s: RDMA connect request without a binding "
			 "(no certificate, or protect: none at the dialler)",
			 c->base.peer);
		return -1;
	}
	if (take(pd + RDMX_PDATA_LEN, name, sizeof(name), a->key) < 0) {
		snprintf(why, whylen,
			 "client %s: RDMA connect request with an unknown, spent "
			 "or expired binding (a replayed request?)",
			 c->base.peer);
		return -1;
	}
	if (!mac_ok(a->key, "rdmesh rdma req", pd, RDMX_PDATA_LEN + 24, NULL, 0,
		    pd + RDMX_PDATA_LEN + 24)) {
		snprintf(why, whylen, "client %s ('%s'): RDMA connect request with a bad MAC",
			 c->base.peer, name);
		OPENSSL_cleanse(a->key, sizeof(a->key));
		return -1;
	}
	if (c->base.cbs.admit && c->base.cbs.admit(name, c->base.cbs.arg, why, whylen) < 0)
		return -1;
	if (!(pd[1] & RDMX_PDATA_ENC) != !c->o.encrypt) {
		snprintf(why, whylen,
			 "client %s ('%s'): transport.protect differs: it %s, this listener %s",
			 c->base.peer, name,
			 pd[1] & RDMX_PDATA_ENC ? "encrypts" : "does not encrypt",
			 c->o.encrypt ? "does" : "does not");
		return -1;
	}
	memcpy(a->nonce, pd + RDMX_PDATA_LEN + 16, sizeof(a->nonce));
	a->peer_qpn = peer_qpn;
	a->start_ns = rdm_now_ns();
	snprintf(c->base.peer_id, sizeof(c->base.peer_id), "%s", name);
	return 0;
}

uint8_t rdm_rdma__bind_rep(struct rdmx_conn *c, uint8_t *pd)
{
	pd[1] |= RDMX_PDATA_AUTH;
	rdm_put_be32(pd + RDMX_PDATA_LEN, c->qp->qp_num);
	mac(c->auth.key, "rdmesh rdma rep", pd, RDMX_PDATA_LEN + 4, c->auth.nonce,
	    sizeof(c->auth.nonce), pd + RDMX_PDATA_LEN + 4);
	return RDMX_REP_AUTH_LEN;
}

int rdm_rdma__bind_check_rep(struct rdmx_conn *c, const uint8_t *pd, uint8_t len, char *why,
			     size_t whylen)
{
	struct rdmx_auth *a = &c->auth;
	uint8_t m[RDMX_BIND_MSG_LEN];

	if (len < RDMX_REP_AUTH_LEN || !(pd[1] & RDMX_PDATA_AUTH) ||
	    !mac_ok(a->key, "rdmesh rdma rep", pd, RDMX_PDATA_LEN + 4, a->nonce, sizeof(a->nonce),
		    pd + RDMX_PDATA_LEN + 4)) {
		snprintf(why, whylen,
			 "server %s: its RDMA accept does not prove it holds our binding (not "
			 "the '%s' we proved on its TCP port)",
			 c->base.peer, c->o.peer_name ? c->o.peer_name : "?");
		return -1;
	}
	a->peer_qpn = rdm_get_be32(pd + RDMX_PDATA_LEN);
	if (c->o.encrypt && rdm_rdma__seal_start(c, a->key, 1) < 0) {
		snprintf(why, whylen, "out of memory for the RDMA hop's keys");
		return -1;
	}
	qp_mac(c, m);
	if (rdm_rdma__post_msg(c, RDM_RDMA_IMM_BIND, m, sizeof(m)) < 0) {
		snprintf(why, whylen, "server %s: cannot post the RDMA binding message",
			 c->base.peer);
		return -1;
	}
	return 0;
}

void rdm_rdma__bind_recv(struct rdmx_conn *c, uint32_t type, const uint8_t *msg, uint32_t len)
{
	uint8_t want[RDMX_BIND_MSG_LEN];
	char why[256];

	qp_mac(c, want);
	if (type != RDM_RDMA_IMM_BIND || len != sizeof(want) ||
	    CRYPTO_memcmp(want, msg, sizeof(want))) {
		snprintf(why, sizeof(why),
			 "client %s ('%s'): its first RDMA message is not its binding (type %u, "
			 "%u bytes)",
			 c->base.peer, c->base.peer_id, type, len);
		rdm_rdma__refuse(c, why);
		return;
	}
	if (c->o.encrypt && rdm_rdma__seal_start(c, c->auth.key, 0) < 0) {
		rdm_rdma__refuse(c, "out of memory for the RDMA hop's keys");
		return;
	}
	c->auth.await_bind = 0;
	rdm_timer_cancel(c->rw->loop, &c->auth.deadline);
	c->base.stats.handshakes++;
	c->base.stats.handshake_us += (rdm_now_ns() - c->auth.start_ns) / 1000;
	/* The message can complete before the CM's established event: up then. */
	if (c->established)
		rdm_rdma__became_up(c);
}

void rdm_rdma__bind_await(struct rdmx_conn *c)
{
	c->auth.await_bind = 1;
	rdm_timer_arm(c->rw->loop, &c->auth.deadline, c->o.handshake_ms, bind_deadline, c);
}
