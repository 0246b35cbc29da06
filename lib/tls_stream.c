/* A kept TLS session of the data plane (see tls_stream.h). */
#include "lib/tls_stream.h"
#include "lib/err.h"
#include "lib/tls_int.h"

#include <errno.h>
#include <stdlib.h>

#include <openssl/err.h>

struct rdm_tls_stream {
	SSL *ssl;
	int ktls_tx, ktls_rx;
};

struct rdm_tls_stream *rdm_tls_stream_from(struct rdm_tls_hs *h)
{
	struct rdm_tls_stream *s = calloc(1, sizeof(*s));
	SSL *ssl = rdm_tls__hs_take(h);

	if (!s) {
		SSL_free(ssl);
		return NULL;
	}
	s->ssl = ssl;
	s->ktls_tx = BIO_get_ktls_send(SSL_get_wbio(ssl)) ? 1 : 0;
	s->ktls_rx = BIO_get_ktls_recv(SSL_get_rbio(ssl)) ? 1 : 0;
	return s;
}

int rdm_tls_stream_ktls_tx(const struct rdm_tls_stream *s)
{
	return s->ktls_tx;
}

int rdm_tls_stream_ktls_rx(const struct rdm_tls_stream *s)
{
	return s->ktls_rx;
}

ssize_t rdm_tls_stream_write(struct rdm_tls_stream *s, const void *buf, size_t len)
{
	int n, e;

	ERR_clear_error();
	n = SSL_write(s->ssl, buf, len > 1u << 30 ? 1 << 30 : (int)len);
	if (n > 0)
		return n;
	e = SSL_get_error(s->ssl, n);
	ERR_clear_error();
	if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
		return -EAGAIN;
	return e == SSL_ERROR_SYSCALL ? -EPIPE : -EPROTO;
}

ssize_t rdm_tls_stream_read(struct rdm_tls_stream *s, void *buf, size_t len, char *why,
			    size_t whylen)
{
	int n, e;

	ERR_clear_error();
	n = SSL_read(s->ssl, buf, len > 1u << 30 ? 1 << 30 : (int)len);
	if (n > 0)
		return n;
	e = SSL_get_error(s->ssl, n);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		ERR_clear_error();
		return -EAGAIN;
	}
	if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && !ERR_peek_error()) ||
	    (e == SSL_ERROR_SSL &&
	     ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
		ERR_clear_error();
		return 0; /* closed, with close_notify or with a bare FIN */
	}
	rdm_ossl_reason(why, whylen);
	return -EPROTO;
}

int rdm_tls_stream_pending(struct rdm_tls_stream *s)
{
	return SSL_pending(s->ssl);
}

void rdm_tls_stream_close_notify(struct rdm_tls_stream *s)
{
	ERR_clear_error();
	SSL_shutdown(s->ssl);
	ERR_clear_error();
}

void rdm_tls_stream_free(struct rdm_tls_stream *s)
{
	if (!s)
		return;
	SSL_free(s->ssl);
	ERR_clear_error();
	free(s);
}
