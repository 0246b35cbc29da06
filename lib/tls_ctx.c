/* TLS contexts for the control channel's transport (see tls.h), with OpenSSL 3: the CA,
 * this end's certificate and key, TLS 1.3 only, and the verification of peers' names.
 * Nothing here knows about connections or message framing (see tls_int.h). */
#include "lib/tls_int.h"
#include "lib/err.h"
#include "lib/tls_hs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

/* A server takes the one application protocol the data plane names, the binding of an
 * RDMA connection (lib/tls_hs.h); a client that asks for none gets none. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char want[] = RDM_TLS_ALPN_BIND;
	unsigned char *sel;

	(void)ssl;
	(void)arg;
	if (SSL_select_next_proto(&sel, outlen, want, sizeof(want) - 1, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

/* ---- names ---- */

/* A name that fails rdm_certs_name_ok comes out "", so a name never carries control
 * characters into a log line. */
void rdm_tls__cert_name(X509 *x, char *out, size_t cap)
{
	GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	char cn[256];
	int found = 0;

	out[0] = '\0';
	for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans) && !found; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
		const unsigned char *s;
		int len;

		if (g->type != GEN_DNS)
			continue;
		s = ASN1_STRING_get0_data(g->d.dNSName);
		len = ASN1_STRING_length(g->d.dNSName);
		found = 1;
		if (len > 0 && (size_t)len < cap && memchr(s, 0, (size_t)len) == NULL) {
			memcpy(out, s, (size_t)len);
			out[len] = '\0';
		}
	}
	GENERAL_NAMES_free(sans);
	if (!found &&
	    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn)) >
		0 &&
	    strlen(cn) < cap)
		snprintf(out, cap, "%s", cn);
	if (!rdm_certs_name_ok(out))
		out[0] = '\0';
}

void rdm_tls__cert_unit(X509 *x, char *out, size_t cap)
{
	int n = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_organizationalUnitName, out,
					  (int)cap);

	if (n <= 0 || (size_t)n >= cap)
		n = 0;
	for (int i = 0; i < n; i++)
		if (out[i] < 0x20 || out[i] >= 0x7f)
			n = 0;
	out[n] = '\0';
}

/* ---- contexts ---- */

/* Records the first verification failure in the SSL's struct rdm_tls_verify (its app
 * data), for the refusal's reason. The verdict itself stays OpenSSL's. */
static int verify_cb(int ok, X509_STORE_CTX *st)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(st, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct rdm_tls_verify *v = ssl ? SSL_get_app_data(ssl) : NULL;
	X509 *x = X509_STORE_CTX_get_current_cert(st);

	if (!ok && v && !v->err) {
		v->err = X509_STORE_CTX_get_error(st);
		v->depth = X509_STORE_CTX_get_error_depth(st);
		v->name[0] = '\0';
		if (x) {
			rdm_tls__cert_name(x, v->name, sizeof(v->name));
			if (!v->name[0] &&
			    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName,
						      v->name, sizeof(v->name)) <= 0)
				v->name[0] = '\0';
		}
	}
	return ok;
}

struct rdm_tls_ctx *rdm_tls_ctx_new(const char *ca, const char *cert, const char *key, int server,
				    char *err, size_t errlen)
{
	struct rdm_tls_ctx *ctx;
	STACK_OF(X509_NAME) * cas;
	char why[256];
	int rc = -EINVAL;

	if (!ca || ((server || cert || key) && (!cert || !key))) {
		errno = -rdm_errf(err, errlen, -EINVAL,
				  "tls: the CA, certificate and key are all needed");
		return NULL;
	}
	ctx = calloc(1, sizeof(*ctx));
	if (ctx)
		pthread_mutex_init(&ctx->mu, NULL);
	if (!ctx) {
		errno = -rdm_errf(err, errlen, -ENOMEM, "tls: out of memory");
		return NULL;
	}
	ctx->server = !!server;
	ERR_clear_error();
	ctx->ssl = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!ctx->ssl) {
		rc = rdm_errf(err, errlen, -ENOMEM, "tls: %s", rdm_ossl_reason(why, sizeof(why)));
		goto fail;
	}
	if (!SSL_CTX_set_min_proto_version(ctx->ssl, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx->ssl, TLS1_3_VERSION)) {
		rc = rdm_errf(err, errlen, -EPROTO, "tls: TLS 1.3 unavailable: %s",
			      rdm_ossl_reason(why, sizeof(why)));
		goto fail;
	}
	if (SSL_CTX_load_verify_locations(ctx->ssl, ca, NULL) != 1) {
		rc = rdm_errf(err, errlen, -EINVAL, "%s: cannot load CA certificates: %s", ca,
			      rdm_ossl_reason(why, sizeof(why)));
		goto fail;
	}
	if (!cert) {
		ctx->anonymous = 1; /* a client proving nothing: a pod before it joins */
		goto settings;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx->ssl, cert) != 1) {
		rc = rdm_errf(err, errlen, -EINVAL, "%s: cannot load the certificate: %s", cert,
			      rdm_ossl_reason(why, sizeof(why)));
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx->ssl, key, SSL_FILETYPE_PEM) != 1) {
		if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
			ERR_clear_error();
			rc = rdm_errf(err, errlen, -EINVAL, "%s does not hold the key of %s", key,
				      cert);
			goto fail;
		}
		rc = rdm_errf(err, errlen, -EINVAL, "%s: cannot load the private key: %s", key,
			      rdm_ossl_reason(why, sizeof(why)));
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx->ssl) != 1) {
		ERR_clear_error();
		rc = rdm_errf(err, errlen, -EINVAL, "%s does not hold the key of %s", key, cert);
		goto fail;
	}
	rdm_tls__cert_name(SSL_CTX_get0_certificate(ctx->ssl), ctx->name, sizeof(ctx->name));
	if (!ctx->name[0]) {
		rc = rdm_errf(
		    err, errlen, -EINVAL,
		    "%s: the certificate names no usable holder (DNS subjectAltName or CN)", cert);
		goto fail;
	}
settings:
	SSL_CTX_set_verify(
	    ctx->ssl, SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), verify_cb);
	SSL_CTX_set_verify_depth(ctx->ssl, 4);
	/* AES-128-GCM first: as strong as the rack needs, and cheaper per byte than
	 * AES-256 for the data plane's encrypted hops (kernel TLS takes both). */
	SSL_CTX_set_ciphersuites(ctx->ssl, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
					   "TLS_CHACHA20_POLY1305_SHA256");
	/* Partial writes let a send make progress record by record; the moving buffer
	 * lets a retried write come from a different address. */
	SSL_CTX_set_mode(ctx->ssl,
			 SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (server) {
		/* Connections are long-lived and never resumed: no tickets, no cache. */
		SSL_CTX_set_num_tickets(ctx->ssl, 0);
		SSL_CTX_set_session_cache_mode(ctx->ssl, SSL_SESS_CACHE_OFF);
		/* Name the CA in the certificate request, so a client holding several
		 * certificates picks the right one. */
		cas = SSL_load_client_CA_file(ca);
		if (cas)
			SSL_CTX_set_client_CA_list(ctx->ssl, cas);
		ERR_clear_error();
		SSL_CTX_set_alpn_select_cb(ctx->ssl, alpn_select, NULL);
	}
	return ctx;

fail:
	rdm_tls_ctx_free(ctx);
	errno = -rc;
	return NULL;
}

struct rdm_tls_ctx *rdm_tls_ctx_load(const char *dir, const char *name, int server, char *err,
				     size_t errlen)
{
	char ca[4096], cert[4096], key[4096];
	struct rdm_tls_ctx *ctx;

	int rc;

	if ((rc = rdm_certs_path(ca, sizeof(ca), dir, "ca", ".pem", err, errlen)) < 0 ||
	    (rc = rdm_certs_path(cert, sizeof(cert), dir, name, ".pem", err, errlen)) < 0 ||
	    (rc = rdm_certs_path(key, sizeof(key), dir, name, ".key", err, errlen)) < 0) {
		errno = -rc;
		return NULL;
	}
	ctx = rdm_tls_ctx_new(ca, cert, key, server, err, errlen);
	if (ctx && strcmp(ctx->name, name)) {
		rdm_errf(err, errlen, -EINVAL, "the certificate %s is for '%s', not '%s'", cert,
			 ctx->name, name);
		rdm_tls_ctx_free(ctx);
		errno = EINVAL;
		return NULL;
	}
	return ctx;
}

void rdm_tls_ctx_free(struct rdm_tls_ctx *ctx)
{
	if (!ctx)
		return;
	SSL_CTX_free(ctx->ssl);
	pthread_mutex_destroy(&ctx->mu);
	free(ctx);
}

SSL *rdm_tls__ssl_new(struct rdm_tls_ctx *ctx)
{
	SSL *ssl;

	pthread_mutex_lock(&ctx->mu);
	ssl = SSL_new(ctx->ssl); /* holds a reference: the SSL_CTX outlives a swap */
	pthread_mutex_unlock(&ctx->mu);
	return ssl;
}

void rdm_tls_ctx_take_anonymous(struct rdm_tls_ctx *ctx)
{
	pthread_mutex_lock(&ctx->mu);
	ctx->anonymous = 1;
	SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_PEER, verify_cb);
	pthread_mutex_unlock(&ctx->mu);
}

int rdm_tls_ctx_reload(struct rdm_tls_ctx *ctx, const char *dir, char *err, size_t errlen)
{
	struct rdm_tls_ctx *fresh = rdm_tls_ctx_load(dir, ctx->name, ctx->server, err, errlen);
	SSL_CTX *old;

	if (!fresh)
		return errno ? -errno : -EINVAL;
	if (ctx->server && ctx->anonymous)
		SSL_CTX_set_verify(fresh->ssl, SSL_VERIFY_PEER, verify_cb);
	pthread_mutex_lock(&ctx->mu);
	old = ctx->ssl;
	ctx->ssl = fresh->ssl;
	fresh->ssl = old;
	pthread_mutex_unlock(&ctx->mu);
	rdm_tls_ctx_free(fresh); /* drops our reference to the old one */
	return 0;
}

const char *rdm_tls_ctx_name(const struct rdm_tls_ctx *ctx)
{
	return ctx->name;
}
