/* The data plane's step-by-step handshake (see tls_hs.h). */
#include "lib/tls_hs.h"
#include "lib/byteorder.h"
#include "lib/err.h"
#include "lib/tls_int.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#define VERDICT_HDR 4

enum hs_phase { HS_HANDSHAKE, HS_VERDICT, HS_DONE };

struct rdm_tls_hs {
	SSL *ssl;
	int fd;
	int server;
	enum hs_phase phase;
	struct rdm_tls_verify verify; /* the SSL's app data */
	char expect[RDM_TLS__NAME_LEN];
	char peer[RDM_TLS__NAME_LEN];
	char who[96];
	rdm_tls_admit_fn admit;
	void *arg;
	rdm_tls_bind_fn bind_fn; /* server: takes RDMA bindings */
	void *bind_arg;
	int refused;   /* server: the verdict being sent is a refusal */
	char why[256]; /* its reason */
	/* The verdict: the server's to send, or the client's as it arrives. */
	uint8_t v[VERDICT_HDR + RDM_TLS_VERDICT_MAX];
	uint32_t vlen, vgot;
};

struct rdm_tls_hs *rdm_tls_hs_new(struct rdm_tls_ctx *ctx, int fd, const char *expect_name,
				  rdm_tls_admit_fn admit, void *arg, const char *who, char *err,
				  size_t errlen)
{
	struct rdm_tls_hs *h;
	char why[256];
	BIO *b;

	if (!ctx->server && !rdm_certs_name_ok(expect_name)) {
		rdm_errf(err, errlen, -EINVAL, "%s: bad expected peer name '%s'", who,
			 expect_name ? expect_name : "(null)");
		return NULL;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		rdm_errf(err, errlen, -ENOMEM, "%s: out of memory", who);
		return NULL;
	}
	h->server = ctx->server;
	h->fd = fd;
	h->admit = admit;
	h->arg = arg;
	snprintf(h->who, sizeof(h->who), "%s", who);
	ERR_clear_error();
	h->ssl = rdm_tls__ssl_new(ctx);
	b = rdm_tls__sock_bio(fd);
	if (!h->ssl || !b) {
		BIO_free(b);
		rdm_errf(err, errlen, -ENOMEM, "%s: tls: %s", who,
			 rdm_ossl_reason(why, sizeof(why)));
		rdm_tls_hs_free(h);
		return NULL;
	}
	SSL_set_bio(h->ssl, b, b);
	SSL_set_app_data(h->ssl, &h->verify);
	/* Records are read one at a time, header then body: nothing past the verdict is
	 * taken off the socket. */
	SSL_set_read_ahead(h->ssl, 0);
	if (h->server) {
		SSL_set_accept_state(h->ssl);
		return h;
	}
	snprintf(h->expect, sizeof(h->expect), "%s", expect_name);
	SSL_set_tlsext_host_name(h->ssl, h->expect);
	SSL_set_hostflags(h->ssl, X509_CHECK_FLAG_NO_WILDCARDS);
	if (!SSL_set1_host(h->ssl, h->expect)) {
		rdm_errf(err, errlen, -ENOMEM, "%s: tls: %s", who,
			 rdm_ossl_reason(why, sizeof(why)));
		rdm_tls_hs_free(h);
		return NULL;
	}
	SSL_set_connect_state(h->ssl);
	return h;
}

#define BIND_LABEL "EXPORTER-rdmesh-rdma-bind"

/* The negotiated protocol is the binding's. */
static int asked_bind(const struct rdm_tls_hs *h)
{
	const unsigned char *p;
	unsigned int len;

	SSL_get0_alpn_selected(h->ssl, &p, &len);
	return len == sizeof(RDM_TLS_ALPN_BIND) - 2 && !memcmp(p, RDM_TLS_ALPN_BIND + 1, len);
}

static int export_bind(struct rdm_tls_hs *h, unsigned char *out)
{
	return SSL_export_keying_material(h->ssl, out, RDM_TLS_BIND_LEN, BIND_LABEL,
					  sizeof(BIND_LABEL) - 1, NULL, 0, 0) == 1
		   ? 0
		   : -EPROTO;
}

/* Server: an admitted client that asked for a binding gets one, or is refused. */
static int grant_bind(struct rdm_tls_hs *h)
{
	unsigned char m[RDM_TLS_BIND_LEN];
	int rc;

	if (!asked_bind(h))
		return 0;
	if (!h->bind_fn) {
		snprintf(h->why, sizeof(h->why), "this listener binds no RDMA connections");
		return -1;
	}
	if (export_bind(h, m) < 0) {
		snprintf(h->why, sizeof(h->why), "no keying material from the session");
		return -1;
	}
	rc = h->bind_fn(h->peer, m, h->bind_arg, h->why, sizeof(h->why));
	OPENSSL_cleanse(m, sizeof(m));
	return rc;
}

/* The handshake itself is done: the server judges the client and prepares its verdict;
 * the client starts waiting for it. */
static void handshake_done(struct rdm_tls_hs *h)
{
	const char *text = RDM_TLS_VERDICT_OK;
	char refusal[RDM_TLS_VERDICT_MAX];
	size_t len;

	rdm_tls__cert_name(SSL_get0_peer_certificate(h->ssl), h->peer, sizeof(h->peer));
	h->phase = HS_VERDICT;
	if (!h->server)
		return;
	if (rdm_tls__admit(h->peer, 0, h->admit, h->arg, h->why, sizeof(h->why)) < 0 ||
	    grant_bind(h) < 0) {
		h->refused = 1;
		snprintf(refusal, sizeof(refusal), "%s%s", RDM_TLS_VERDICT_NO, h->why);
		text = refusal;
	}
	len = strlen(text);
	rdm_put_be32(h->v, (uint32_t)len);
	memcpy(h->v + VERDICT_HDR, text, len);
	h->vlen = VERDICT_HDR + (uint32_t)len;
}

/* What a failed SSL call means; 0 with *want_write set when it only has to wait. */
static int ssl_wait_or_fail(struct rdm_tls_hs *h, int r, int *want_write, char *err, size_t errlen)
{
	int se = errno, e = SSL_get_error(h->ssl, r);

	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		*want_write = e == SSL_ERROR_WANT_WRITE;
		return 0;
	}
	if (h->phase == HS_VERDICT && !h->server &&
	    (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && !ERR_peek_error()))) {
		ERR_clear_error();
		return rdm_errf(err, errlen, -ECONNRESET,
				"%s: closed the connection before its verdict", h->who);
	}
	return rdm_tls__hs_error(&h->verify, h->server ? NULL : h->expect, e, se, err, errlen,
				 h->who);
}

/* Server: writes the verdict. 1 when it is all out, else as ssl_wait_or_fail. */
static int send_verdict(struct rdm_tls_hs *h, int *want_write, char *err, size_t errlen)
{
	while (h->vgot < h->vlen) {
		int r;

		ERR_clear_error();
		errno = 0;
		r = SSL_write(h->ssl, h->v + h->vgot, (int)(h->vlen - h->vgot));
		if (r <= 0)
			return ssl_wait_or_fail(h, r, want_write, err, errlen);
		h->vgot += (uint32_t)r;
	}
	if (h->refused)
		return rdm_errf(err, errlen, -EACCES, "%s: refused '%s': %s", h->who,
				h->peer[0] ? h->peer : "(no usable name)", h->why);
	return 1;
}

/* Client: reads the verdict, never a byte past it. 1 once it says ok, else as
 * ssl_wait_or_fail or the refusal. */
static int read_verdict(struct rdm_tls_hs *h, int *want_write, char *err, size_t errlen)
{
	for (;;) {
		uint32_t need;
		int r;

		if (h->vgot >= VERDICT_HDR) {
			uint32_t len = rdm_get_be32(h->v);

			if (len > RDM_TLS_VERDICT_MAX)
				return rdm_errf(err, errlen, -EPROTO,
						"%s: not an rdmesh peer (verdict of %u bytes)",
						h->who, len);
			if (h->vgot == VERDICT_HDR + len) {
				int rc = rdm_tls__verdict_check(h->v + VERDICT_HDR, len, err,
								errlen, h->who);

				return rc < 0 ? rc : 1;
			}
			need = VERDICT_HDR + len - h->vgot;
		} else {
			need = VERDICT_HDR - h->vgot;
		}
		ERR_clear_error();
		errno = 0;
		r = SSL_read(h->ssl, h->v + h->vgot, (int)need);
		if (r <= 0)
			return ssl_wait_or_fail(h, r, want_write, err, errlen);
		h->vgot += (uint32_t)r;
	}
}

int rdm_tls_hs_keep(struct rdm_tls_hs *h)
{
	/* OpenSSL hands keys to the kernel only through its own socket BIO. It sends
	 * without MSG_NOSIGNAL: the node ignores SIGPIPE, and a closed peer is EPIPE. */
	BIO *b = BIO_new_socket(h->fd, BIO_NOCLOSE);

	if (!b)
		return -ENOMEM;
	SSL_set_bio(h->ssl, b, b);
	SSL_set_options(h->ssl, SSL_OP_ENABLE_KTLS);
	return 0;
}

void rdm_tls_hs_on_bind(struct rdm_tls_hs *h, rdm_tls_bind_fn fn, void *arg)
{
	h->bind_fn = fn;
	h->bind_arg = arg;
}

int rdm_tls_hs_ask_bind(struct rdm_tls_hs *h)
{
	static const unsigned char want[] = RDM_TLS_ALPN_BIND;

	/* SSL_set_alpn_protos returns 0 on success. */
	return SSL_set_alpn_protos(h->ssl, want, sizeof(want) - 1) ? -ENOMEM : 0;
}

int rdm_tls_hs_bound(struct rdm_tls_hs *h, unsigned char *out, char *err, size_t errlen)
{
	if (h->phase != HS_DONE || !asked_bind(h))
		return rdm_errf(err, errlen, -EPROTO,
				"%s: the peer takes no RDMA binding (an older rdmesh?)", h->who);
	if (export_bind(h, out) < 0)
		return rdm_errf(err, errlen, -EPROTO, "%s: no keying material from the session",
				h->who);
	return 0;
}

int rdm_tls_hs_binding(const struct rdm_tls_hs *h)
{
	return h->phase == HS_DONE && asked_bind(h);
}

SSL *rdm_tls__hs_take(struct rdm_tls_hs *h)
{
	SSL *ssl = h->ssl;

	h->ssl = NULL;
	rdm_tls_hs_free(h);
	return ssl;
}

int rdm_tls_hs_step(struct rdm_tls_hs *h, int *want_write, char *err, size_t errlen)
{
	*want_write = 0;
	if (h->phase == HS_HANDSHAKE) {
		int r;

		ERR_clear_error();
		errno = 0;
		r = SSL_do_handshake(h->ssl);
		if (r != 1)
			return ssl_wait_or_fail(h, r, want_write, err, errlen);
		handshake_done(h);
	}
	if (h->phase == HS_VERDICT) {
		int rc = h->server ? send_verdict(h, want_write, err, errlen)
				   : read_verdict(h, want_write, err, errlen);

		if (rc != 1)
			return rc;
		h->phase = HS_DONE;
	}
	return 1;
}

const char *rdm_tls_hs_peer(const struct rdm_tls_hs *h)
{
	return h->phase == HS_DONE || h->refused ? h->peer : "";
}

void rdm_tls_hs_free(struct rdm_tls_hs *h)
{
	if (!h)
		return;
	SSL_free(h->ssl); /* frees the BIO, which leaves the socket open */
	ERR_clear_error();
	free(h);
}
