/* Setting up the control channel's TLS connections (see tls.h): connect and accept, the
 * handshake, and the server's verdict on the client. */
#include "lib/tls_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "lib/addr.h"
#include "lib/err.h"

/* A connection over fd (connected or accepted, peer address ss), before its handshake;
 * NULL when out of memory. */
static struct rdm_tls_conn *conn_new(struct rdm_tls_ctx *ctx, int fd,
				     const struct sockaddr_storage *ss, socklen_t sl)
{
	struct rdm_tls_conn *c = calloc(1, sizeof(*c));
	BIO *b;
	int one = 1;

	if (!c)
		return NULL;
	c->fd = fd;
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->tx_lock, NULL);
	pthread_mutex_init(&c->rx_lock, NULL);
	rdm_addr_format(ss, sl, c->peer_addr, sizeof(c->peer_addr));
	/* Control messages are small and answered: do not hold them back. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->ssl = rdm_tls__ssl_new(ctx);
	b = rdm_tls__sock_bio(fd);
	if (!c->ssl || !b) {
		BIO_free(b);
		SSL_free(c->ssl);
		pthread_mutex_destroy(&c->lock);
		pthread_mutex_destroy(&c->tx_lock);
		pthread_mutex_destroy(&c->rx_lock);
		free(c);
		return NULL;
	}
	SSL_set_bio(c->ssl, b, b);
	SSL_set_app_data(c->ssl, &c->verify);
	return c;
}

/* Frees c after a failed handshake, lingering so the peer reads our alert. */
static void conn_abort(struct rdm_tls_conn *c)
{
	int fd = c->fd;

	c->fd = -1;
	c->fatal = 1;
	rdm_tls_close(c);
	if (fd >= 0)
		rdm_tls__linger_close(fd);
}

int rdm_tls__hs_error(const struct rdm_tls_verify *v, const char *expect, int e, int sys_errno,
		      char *err, size_t errlen, const char *who)
{
	unsigned long oe = ERR_peek_last_error();
	int reason = ERR_GET_REASON(oe);
	char why[256];

	if (v->err) {
		ERR_clear_error();
		if (v->err == X509_V_ERR_HOSTNAME_MISMATCH)
			return rdm_errf(err, errlen, -EACCES,
					"%s: refused its certificate: hostname mismatch: expected "
					"'%s', the certificate names '%s'",
					who, expect ? expect : "?", v->name);
		return rdm_errf(err, errlen, -EACCES,
				"%s: refused its certificate: certificate verify failed: %s "
				"(depth %d, '%s')",
				who, X509_verify_cert_error_string(v->err), v->depth, v->name);
	}
	if (e == SSL_ERROR_SSL && ERR_GET_LIB(oe) == ERR_LIB_SSL) {
		if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
			ERR_clear_error();
			return rdm_errf(err, errlen, -EACCES,
					"%s: refused: peer sent no certificate", who);
		}
		if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
			ERR_clear_error();
			return rdm_errf(err, errlen, -ECONNRESET,
					"%s: connection closed during the TLS handshake", who);
		}
		if (reason >= SSL_AD_REASON_OFFSET)
			return rdm_errf(err, errlen, -ECONNREFUSED,
					"%s: TLS handshake refused by the peer: %s", who,
					rdm_ossl_reason(why, sizeof(why)));
		return rdm_errf(err, errlen, -EPROTO, "%s: TLS handshake failed: %s", who,
				rdm_ossl_reason(why, sizeof(why)));
	}
	ERR_clear_error();
	if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN)
		return rdm_errf(err, errlen, -ECONNRESET,
				"%s: connection closed during the TLS handshake%s%s", who,
				sys_errno ? ": " : "", sys_errno ? strerror(sys_errno) : "");
	return rdm_errf(err, errlen, -EPROTO, "%s: TLS handshake failed (SSL error %d)", who, e);
}

int rdm_tls__verdict_check(const uint8_t *v, uint32_t vlen, char *err, size_t errlen,
			   const char *who)
{
	size_t k = strlen(RDM_TLS_VERDICT_NO), m = 0;
	char reason[RDM_TLS_VERDICT_MAX + 1];

	if (vlen == strlen(RDM_TLS_VERDICT_OK) && !memcmp(v, RDM_TLS_VERDICT_OK, vlen))
		return 0;
	if (vlen < k || memcmp(v, RDM_TLS_VERDICT_NO, k))
		return rdm_errf(err, errlen, -EPROTO, "%s: not an rdmesh peer (bad verdict)", who);
	/* The reason is the peer's text: print it only as far as it is printable. */
	while (k < vlen && m < RDM_TLS_VERDICT_MAX && v[k] >= 0x20 && v[k] < 0x7f)
		reason[m++] = (char)v[k++];
	reason[m] = '\0';
	return rdm_errf(err, errlen, -ECONNREFUSED, "%s: refused us: %s", who, reason);
}

int rdm_tls__admit(const char *name, int anonymous, rdm_tls_admit_fn admit, void *arg, char *why,
		   size_t whylen)
{
	if (!name[0] && !anonymous) {
		snprintf(why, whylen, "the certificate names no usable holder");
		return -EACCES;
	}
	if (!admit)
		return 0;
	why[0] = '\0';
	if (admit(name, arg, why, whylen) == 0)
		return 0;
	why[whylen - 1] = '\0';
	if (!why[0])
		snprintf(why, whylen, "not admitted");
	return -EACCES;
}

/* Runs the handshake until done or the deadline. 0 or -errno with err set. */
static int handshake(struct rdm_tls_conn *c, uint64_t deadline, char *err, size_t errlen,
		     const char *who)
{
	for (;;) {
		int r, e, se, rc;

		ERR_clear_error();
		errno = 0;
		r = SSL_do_handshake(c->ssl);
		if (r == 1)
			return 0;
		se = errno;
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			rc = rdm_tls__wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
					      deadline);
			if (rc == -ETIMEDOUT) {
				ERR_clear_error();
				return rdm_errf(err, errlen, -ETIMEDOUT,
						"%s: TLS handshake timed out", who);
			}
			if (rc < 0)
				return rdm_errf(err, errlen, rc, "%s: poll: %s", who,
						strerror(-rc));
			continue;
		}
		return rdm_tls__hs_error(&c->verify, c->expect, e, se, err, errlen, who);
	}
}

struct rdm_tls_conn *rdm_tls_connect(struct rdm_tls_ctx *ctx, const char *host_port,
				     const char *expect_name, int timeout_ms, char *err,
				     size_t errlen)
{
	struct rdm_tls_conn *c = NULL;
	struct addrinfo *res = NULL, *ai;
	uint64_t deadline;
	uint8_t *verdict = NULL;
	uint32_t vlen;
	char who[128], why[256];
	int rc, fd = -1;

	if (!ctx || ctx->server) {
		rc = rdm_errf(err, errlen, -EINVAL, "tls: connect needs a client context");
		goto fail;
	}
	if (!rdm_certs_name_ok(expect_name)) {
		rc = rdm_errf(err, errlen, -EINVAL, "tls: bad expected server name '%s'",
			      expect_name ? expect_name : "(null)");
		goto fail;
	}
	deadline =
	    rdm_tls__now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : RDM_TLS_HANDSHAKE_MS);
	rc = rdm_tls__resolve(host_port, 0, &res, err, errlen);
	if (rc < 0)
		goto fail;

	/* Each address in turn, like a browser without happy eyeballs. */
	rc = -EHOSTUNREACH;
	for (ai = res; ai; ai = ai->ai_next) {
		int soerr = 0;
		socklen_t sl = sizeof(soerr);

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			rc = -errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno != EINPROGRESS) {
			rc = -errno;
		} else if ((rc = rdm_tls__wait_fd(fd, POLLOUT, deadline)) == 0) {
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
			if (soerr == 0)
				break;
			rc = -soerr;
		}
		close(fd);
		fd = -1;
		if (rc == -ETIMEDOUT)
			break;
	}
	if (fd < 0) {
		rc = rdm_errf(err, errlen, rc, "server %s: connect: %s", host_port, strerror(-rc));
		goto fail;
	}
	{
		struct sockaddr_storage ss;

		memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
		c = conn_new(ctx, fd, &ss, ai->ai_addrlen);
	}
	if (!c) {
		close(fd);
		rc = rdm_errf(err, errlen, -ENOMEM, "tls: %s", rdm_ossl_reason(why, sizeof(why)));
		goto fail;
	}
	snprintf(who, sizeof(who), "server %s", c->peer_addr);
	c->expect = expect_name;
	SSL_set_tlsext_host_name(c->ssl, expect_name);
	SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_WILDCARDS);
	if (!SSL_set1_host(c->ssl, expect_name)) {
		rc = rdm_errf(err, errlen, -ENOMEM, "tls: %s", rdm_ossl_reason(why, sizeof(why)));
		goto fail_conn;
	}
	SSL_set_connect_state(c->ssl);
	rc = handshake(c, deadline, err, errlen, who);
	c->expect = NULL;
	if (rc < 0)
		goto fail_conn;
	rdm_tls__cert_name(SSL_get0_peer_certificate(c->ssl), c->peer_name, sizeof(c->peer_name));

	/* The server's verdict on us: in TLS 1.3 a refusal of our certificate arrives
	 * here, as an alert, after our side of the handshake has finished. */
	rc = rdm_tls__recv_msg(c, &verdict, &vlen, deadline, RDM_TLS_VERDICT_MAX);
	if (rc < 0) {
		if (rc == -ETIMEDOUT)
			rc = rdm_errf(err, errlen, -ETIMEDOUT,
				      "%s: no verdict from the server in time", who);
		else if (c->alert)
			rc = rdm_errf(err, errlen, -ECONNREFUSED,
				      "%s: TLS handshake refused by the peer: %s", who, c->reason);
		else if (rc == -EPROTO)
			rc = rdm_errf(err, errlen, -EPROTO, "%s: not an rdmesh control server: %s",
				      who, c->err);
		else
			rc = rdm_errf(err, errlen, -ECONNRESET,
				      "%s: closed the connection before its verdict: %s", who,
				      c->err);
		goto fail_conn;
	}
	rc = rdm_tls__verdict_check(verdict, vlen, err, errlen, who);
	if (rc == 0) {
		free(verdict);
		freeaddrinfo(res);
		c->err[0] = '\0';
		return c;
	}
	free(verdict);
fail_conn:
	conn_abort(c);
fail:
	if (res)
		freeaddrinfo(res);
	errno = -rc;
	return NULL;
}

struct rdm_tls_conn *rdm_tls_accept_start(struct rdm_tls_ctx *ctx, int fd,
					  const struct sockaddr_storage *ss, socklen_t sl,
					  char *err, size_t errlen)
{
	struct rdm_tls_conn *c;
	char why[256];

	if (!ctx || !ctx->server) {
		errno = -rdm_errf(err, errlen, -EINVAL, "tls: accept needs a server context");
		return NULL;
	}
	c = conn_new(ctx, fd, ss, sl);
	if (!c) {
		errno =
		    -rdm_errf(err, errlen, -ENOMEM, "tls: %s", rdm_ossl_reason(why, sizeof(why)));
		return NULL;
	}
	SSL_set_accept_state(c->ssl);
	return c;
}

int rdm_tls_accept_step(struct rdm_tls_conn *c, rdm_tls_admit_fn admit, void *arg, int *want_write,
			char *err, size_t errlen)
{
	char who[128], why[256], verdict[RDM_TLS_VERDICT_MAX];
	int r, e, se, rc;
	X509 *peer;

	snprintf(who, sizeof(who), "client %s", c->peer_addr);
	*want_write = 0;
	ERR_clear_error();
	errno = 0;
	r = SSL_do_handshake(c->ssl);
	if (r != 1) {
		se = errno;
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			*want_write = e == SSL_ERROR_WANT_WRITE;
			return 0;
		}
		return rdm_tls__hs_error(&c->verify, NULL, e, se, err, errlen, who);
	}
	/* The handshake is done: the verdict, a few bytes the socket takes at once. */
	peer = SSL_get0_peer_certificate(c->ssl);
	if (peer) {
		rdm_tls__cert_name(peer, c->peer_name, sizeof(c->peer_name));
		rdm_tls__cert_unit(peer, c->peer_unit, sizeof(c->peer_unit));
	}
	rc = rdm_tls__admit(c->peer_name, !peer, admit, arg, why, sizeof(why));
	if (rc < 0) {
		rdm_errf(err, errlen, rc, "%s: refused '%s': %s", who, c->peer_name, why);
		snprintf(verdict, sizeof(verdict), "%s%s", RDM_TLS_VERDICT_NO, why);
		rdm_tls__send_msg(c, verdict, (uint32_t)strlen(verdict),
				  rdm_tls__deadline_in(RDM_TLS_VERDICT_SEND_MS));
		return rc;
	}
	rc = rdm_tls__send_msg(c, RDM_TLS_VERDICT_OK, strlen(RDM_TLS_VERDICT_OK),
			       rdm_tls__deadline_in(RDM_TLS_VERDICT_SEND_MS));
	if (rc < 0)
		return rdm_errf(err, errlen, rc, "%s: sending the verdict: %s", who, c->err);
	c->err[0] = '\0';
	return 1;
}

void rdm_tls_accept_abort(struct rdm_tls_conn *c)
{
	if (c)
		conn_abort(c);
}

struct rdm_tls_conn *rdm_tls_accept(struct rdm_tls_ctx *ctx, int lfd, int timeout_ms,
				    rdm_tls_admit_fn admit, void *arg, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	struct rdm_tls_conn *c;
	uint64_t deadline = rdm_tls__deadline_in(timeout_ms);
	int fd, rc, want_write;

	if (!ctx || !ctx->server) {
		errno = -rdm_errf(err, errlen, -EINVAL, "tls: accept needs a server context");
		return NULL;
	}
	for (;;) {
		rc = rdm_tls__wait_fd(lfd, POLLIN, deadline);
		if (rc < 0) {
			errno =
			    -rdm_errf(err, errlen, rc, "accept: %s",
				      rc == -ETIMEDOUT ? "no connection in time" : strerror(-rc));
			return NULL;
		}
		sl = sizeof(ss);
		fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0)
			break;
		/* Another thread took it, or the client gave up already: wait again. */
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
		    errno != ECONNABORTED) {
			errno = -rdm_errf(err, errlen, -errno, "accept: %s", strerror(errno));
			return NULL;
		}
	}
	c = rdm_tls_accept_start(ctx, fd, &ss, sl, err, errlen);
	if (!c) {
		close(fd);
		return NULL;
	}
	deadline = rdm_tls__now_ms() + RDM_TLS_HANDSHAKE_MS;
	while ((rc = rdm_tls_accept_step(c, admit, arg, &want_write, err, errlen)) == 0) {
		rc = rdm_tls__wait_fd(c->fd, want_write ? POLLOUT : POLLIN, deadline);
		if (rc < 0) {
			rdm_errf(err, errlen, rc, "client %s: TLS handshake %s", c->peer_addr,
				 rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
			break;
		}
	}
	if (rc == 1)
		return c;
	conn_abort(c);
	errno = -rc;
	return NULL;
}

const char *rdm_tls_peer_name(const struct rdm_tls_conn *c)
{
	return c->peer_name;
}

const char *rdm_tls_peer_unit(const struct rdm_tls_conn *c)
{
	return c->peer_unit;
}

const char *rdm_tls_peer_addr(const struct rdm_tls_conn *c)
{
	return c->peer_addr;
}
