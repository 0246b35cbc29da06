/* The control channel's TLS 1.3 transport (see tls.h), with OpenSSL 3. */
#include "lib/tls.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "lib/certs.h"
#include "lib/addr.h"
#include "lib/byteorder.h"

#define TLS_NAME_LEN  (RDM_CERTS_NAME_MAX + 1)
#define TLS_ERR_LEN   320
#define TLS_LINGER_MS 250 /* how long a refusing side waits for the peer to read its alert */
#define TLS_SMALL_MSG 16384

struct rdm_tls_ctx {
	SSL_CTX *ssl;
	int server;
	char name[TLS_NAME_LEN];
};

struct rdm_tls_conn {
	SSL *ssl;
	int fd;
	pthread_mutex_t lock;	 /* every SSL call and the fields below it */
	pthread_mutex_t tx_lock; /* one sender at a time, whole messages */
	pthread_mutex_t rx_lock; /* one receiver at a time, and the rx state */
	int tx_dead;		 /* the first failure that broke sending, or 0 */
	int rx_dead;		 /* the same for receiving */
	int fatal;		 /* OpenSSL failed: no close_notify */
	int verr;		 /* first certificate verification error seen, or 0 */
	int verr_depth;
	char verr_name[TLS_NAME_LEN]; /* the certificate it was about */
	char err[TLS_ERR_LEN];
	int alert;	  /* the latest I/O failure was an alert from the peer */
	char reason[256]; /* OpenSSL's reason for the latest I/O failure */
	char peer_name[TLS_NAME_LEN];
	char peer_addr[64];
	const char *expect; /* client: the name asked for, during the handshake only */
	/* A message being received (kept across timeouts). */
	uint8_t hdr[4];
	uint32_t hdr_got;
	uint8_t *rx_buf;
	uint32_t rx_len, rx_got;
};

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Writes the message to err; returns rc. */
static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* OpenSSL's reason for its latest failure on this thread, without the "error:...:" code
 * prefix ("sslv3 alert certificate expired"); the queue is emptied. */
static const char *ossl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	if (r)
		snprintf(buf, len, "%s", r);
	else if (e)
		ERR_error_string_n(e, buf, len);
	else
		snprintf(buf, len, "unknown TLS error");
	ERR_clear_error();
	return buf;
}

/* ---- time ---- */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A deadline timeout_ms from now; UINT64_MAX for ever (timeout_ms < 0). */
static uint64_t deadline_in(int timeout_ms)
{
	return timeout_ms < 0 ? UINT64_MAX : now_ms() + (uint64_t)timeout_ms;
}

/* Waits until fd shows events or the deadline passes: 0, -ETIMEDOUT or -errno. A passed
 * deadline still gets one look (poll with 0), so a timeout of 0 means "if ready now". */
static int wait_fd(int fd, short events, uint64_t deadline)
{
	struct pollfd p = {.fd = fd, .events = events};

	for (;;) {
		int ms = -1, r;

		if (deadline != UINT64_MAX) {
			uint64_t now = now_ms();

			ms = now >= deadline		  ? 0
			     : deadline - now > INT32_MAX ? INT32_MAX
							  : (int)(deadline - now);
		}
		r = poll(&p, 1, ms);
		if (r > 0)
			return 0; /* POLLERR/POLLHUP too: the next I/O call says what happened */
		if (r == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

/* ---- a socket BIO that never raises SIGPIPE ---- */

/* OpenSSL's socket BIO writes with write(2), which raises SIGPIPE on a closed peer. This
 * one sends with MSG_NOSIGNAL, so the library needs no process-wide signal setting. */
static int sock_write(BIO *b, const char *buf, int len)
{
	int fd = (int)(intptr_t)BIO_get_data(b);
	ssize_t n;

	BIO_clear_retry_flags(b);
	n = send(fd, buf, (size_t)len, MSG_NOSIGNAL);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		BIO_set_retry_write(b);
	return (int)n;
}

static int sock_read(BIO *b, char *buf, int len)
{
	int fd = (int)(intptr_t)BIO_get_data(b);
	ssize_t n;

	BIO_clear_retry_flags(b);
	n = recv(fd, buf, (size_t)len, 0);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		BIO_set_retry_read(b);
	return (int)n;
}

static int sock_puts(BIO *b, const char *s)
{
	return sock_write(b, s, (int)strlen(s));
}

static long sock_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1; /* nothing is buffered here */
	case BIO_C_GET_FD:
		if (ptr)
			*(int *)ptr = (int)(intptr_t)BIO_get_data(b);
		return (int)(intptr_t)BIO_get_data(b);
	case BIO_CTRL_GET_CLOSE:
		return BIO_NOCLOSE; /* the connection owns the fd */
	default:
		return 0;
	}
}

static int sock_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static BIO_METHOD *sock_method;
static pthread_once_t sock_once = PTHREAD_ONCE_INIT;

/* Made once, kept for the process's life (OpenSSL's own methods are static too). */
static void sock_method_init(void)
{
	BIO_METHOD *m = BIO_meth_new(
	    BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR, "rdmesh socket");

	if (!m)
		return;
	if (!BIO_meth_set_write(m, sock_write) || !BIO_meth_set_read(m, sock_read) ||
	    !BIO_meth_set_puts(m, sock_puts) || !BIO_meth_set_ctrl(m, sock_ctrl) ||
	    !BIO_meth_set_create(m, sock_create)) {
		BIO_meth_free(m);
		return;
	}
	sock_method = m;
}

/* A BIO over fd, or NULL. */
static BIO *sock_bio(int fd)
{
	BIO *b;

	pthread_once(&sock_once, sock_method_init);
	if (!sock_method)
		return NULL;
	b = BIO_new(sock_method);
	if (b)
		BIO_set_data(b, (void *)(intptr_t)fd);
	return b;
}

/* ---- names ---- */

/* The holder's name from x: its first DNS subjectAltName, else its CN; "" when neither
 * is a usable name (rdm_certs_name_ok), so a name never carries control characters into
 * a log line. */
static void cert_name(X509 *x, char *out, size_t cap)
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

/* ---- contexts ---- */

/* Records the first verification failure on the connection, for the refusal's reason.
 * The verdict itself stays OpenSSL's. */
static int verify_cb(int ok, X509_STORE_CTX *st)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(st, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct rdm_tls_conn *c = ssl ? SSL_get_app_data(ssl) : NULL;
	X509 *x = X509_STORE_CTX_get_current_cert(st);

	if (!ok && c && !c->verr) {
		c->verr = X509_STORE_CTX_get_error(st);
		c->verr_depth = X509_STORE_CTX_get_error_depth(st);
		c->verr_name[0] = '\0';
		if (x) {
			cert_name(x, c->verr_name, sizeof(c->verr_name));
			if (!c->verr_name[0] &&
			    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName,
						      c->verr_name, sizeof(c->verr_name)) <= 0)
				c->verr_name[0] = '\0';
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

	if (!ca || !cert || !key) {
		errno =
		    -fail(err, errlen, -EINVAL, "tls: the CA, certificate and key are all needed");
		return NULL;
	}
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx) {
		errno = -fail(err, errlen, -ENOMEM, "tls: out of memory");
		return NULL;
	}
	ctx->server = !!server;
	ERR_clear_error();
	ctx->ssl = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!ctx->ssl) {
		rc = fail(err, errlen, -ENOMEM, "tls: %s", ossl_reason(why, sizeof(why)));
		goto fail;
	}
	if (!SSL_CTX_set_min_proto_version(ctx->ssl, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx->ssl, TLS1_3_VERSION)) {
		rc = fail(err, errlen, -EPROTO, "tls: TLS 1.3 unavailable: %s",
			  ossl_reason(why, sizeof(why)));
		goto fail;
	}
	if (SSL_CTX_load_verify_locations(ctx->ssl, ca, NULL) != 1) {
		rc = fail(err, errlen, -EINVAL, "%s: cannot load CA certificates: %s", ca,
			  ossl_reason(why, sizeof(why)));
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx->ssl, cert) != 1) {
		rc = fail(err, errlen, -EINVAL, "%s: cannot load the certificate: %s", cert,
			  ossl_reason(why, sizeof(why)));
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx->ssl, key, SSL_FILETYPE_PEM) != 1) {
		if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
			ERR_clear_error();
			rc =
			    fail(err, errlen, -EINVAL, "%s does not hold the key of %s", key, cert);
			goto fail;
		}
		rc = fail(err, errlen, -EINVAL, "%s: cannot load the private key: %s", key,
			  ossl_reason(why, sizeof(why)));
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx->ssl) != 1) {
		ERR_clear_error();
		rc = fail(err, errlen, -EINVAL, "%s does not hold the key of %s", key, cert);
		goto fail;
	}
	cert_name(SSL_CTX_get0_certificate(ctx->ssl), ctx->name, sizeof(ctx->name));
	if (!ctx->name[0]) {
		rc = fail(err, errlen, -EINVAL,
			  "%s: the certificate names no usable holder (DNS subjectAltName or CN)",
			  cert);
		goto fail;
	}
	SSL_CTX_set_verify(
	    ctx->ssl, SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), verify_cb);
	SSL_CTX_set_verify_depth(ctx->ssl, 4);
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
	}
	return ctx;

fail:
	rdm_tls_ctx_free(ctx);
	errno = -rc;
	return NULL;
}

void rdm_tls_ctx_free(struct rdm_tls_ctx *ctx)
{
	if (!ctx)
		return;
	SSL_CTX_free(ctx->ssl);
	free(ctx);
}

const char *rdm_tls_ctx_name(const struct rdm_tls_ctx *ctx)
{
	return ctx->name;
}

/* ---- addresses ---- */

/* Splits "host:port" / "[v6]:port" into host (maybe "") and port. 0 or -EINVAL. */
static int split_host_port(const char *hp, char *host, size_t hcap, char *port, size_t pcap)
{
	const char *colon, *h = hp;
	size_t hlen;

	if (!hp)
		return -EINVAL;
	if (hp[0] == '[') {
		const char *close = strchr(hp, ']');

		if (!close || close[1] != ':')
			return -EINVAL;
		h = hp + 1;
		hlen = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(hp, ':');
		if (!colon || memchr(hp, ':', (size_t)(colon - hp)))
			return -EINVAL; /* a bare v6 address needs brackets */
		hlen = (size_t)(colon - hp);
	}
	if (hlen >= hcap || strlen(colon + 1) == 0 || strlen(colon + 1) >= pcap)
		return -EINVAL;
	for (const char *p = colon + 1; *p; p++)
		if (*p < '0' || *p > '9')
			return -EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	strcpy(port, colon + 1);
	if (atoi(port) > 65535)
		return -EINVAL;
	return 0;
}

/* Resolves host_port; passive for a listening socket. 0 or -errno with err set. */
static int resolve(const char *host_port, int passive, struct addrinfo **res, char *err,
		   size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC};
	char host[256], port[8];
	int rc;

	if (split_host_port(host_port, host, sizeof(host), port, sizeof(port)) < 0)
		return fail(err, errlen, -EINVAL, "'%s': not host:port or [v6]:port",
			    host_port ? host_port : "(null)");
	if (passive)
		hints.ai_flags = AI_PASSIVE;
	else if (!strcmp(port, "0"))
		return fail(err, errlen, -EINVAL, "'%s': port 0", host_port);
	rc = getaddrinfo(host[0] && strcmp(host, "*") ? host : NULL, port, &hints, res);
	if (rc)
		return fail(err, errlen, rc == EAI_SYSTEM ? -errno : -EHOSTUNREACH, "'%s': %s",
			    host_port, rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
	return 0;
}

int rdm_tls_listen(const char *host_port, char *err, size_t errlen)
{
	struct addrinfo *res, *ai;
	int rc, fd = -1, one = 1;

	rc = resolve(host_port, 1, &res, err, errlen);
	if (rc < 0)
		return rc;
	rc = -EADDRNOTAVAIL;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			rc = -errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 64) == 0)
			break;
		rc = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return fail(err, errlen, rc, "listen on %s: %s", host_port, strerror(-rc));
	return fd;
}

/* ---- connections ---- */

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
	c->ssl = SSL_new(ctx->ssl);
	b = sock_bio(fd);
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
	SSL_set_app_data(c->ssl, c);
	return c;
}

/* Closes the socket after a refusal without losing the alert or verdict just sent: a
 * close(2) with unread input makes Linux send a reset, which can overtake them. So stop
 * writing, and read until the peer closes or TLS_LINGER_MS passes. */
static void linger_close(int fd)
{
	uint64_t deadline = now_ms() + TLS_LINGER_MS;
	char sink[4096];

	shutdown(fd, SHUT_WR);
	while (wait_fd(fd, POLLIN, deadline) == 0) {
		ssize_t n = recv(fd, sink, sizeof(sink), 0);

		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			break;
	}
	close(fd);
}

/* Frees c after a failed handshake, lingering so the peer reads our alert. */
static void conn_abort(struct rdm_tls_conn *c)
{
	int fd = c->fd;

	c->fd = -1;
	c->fatal = 1;
	rdm_tls_close(c);
	if (fd >= 0)
		linger_close(fd);
}

/* What a failed handshake call (SSL_get_error gave e) means, as an errno and a reason
 * in err. who names the peer ("server 10.0.0.1:7000"). */
static int handshake_error(struct rdm_tls_conn *c, int e, int sys_errno, char *err, size_t errlen,
			   const char *who)
{
	unsigned long oe = ERR_peek_last_error();
	int reason = ERR_GET_REASON(oe);
	char why[256];

	if (c->verr) {
		ERR_clear_error();
		if (c->verr == X509_V_ERR_HOSTNAME_MISMATCH)
			return fail(err, errlen, -EACCES,
				    "%s: refused its certificate: hostname mismatch: expected "
				    "'%s', the certificate names '%s'",
				    who, c->expect ? c->expect : "?", c->verr_name);
		return fail(err, errlen, -EACCES,
			    "%s: refused its certificate: certificate verify failed: %s "
			    "(depth %d, '%s')",
			    who, X509_verify_cert_error_string(c->verr), c->verr_depth,
			    c->verr_name);
	}
	if (e == SSL_ERROR_SSL && ERR_GET_LIB(oe) == ERR_LIB_SSL) {
		if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
			ERR_clear_error();
			return fail(err, errlen, -EACCES, "%s: refused: peer sent no certificate",
				    who);
		}
		if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
			ERR_clear_error();
			return fail(err, errlen, -ECONNRESET,
				    "%s: connection closed during the TLS handshake", who);
		}
		if (reason >= SSL_AD_REASON_OFFSET)
			return fail(err, errlen, -ECONNREFUSED,
				    "%s: TLS handshake refused by the peer: %s", who,
				    ossl_reason(why, sizeof(why)));
		return fail(err, errlen, -EPROTO, "%s: TLS handshake failed: %s", who,
			    ossl_reason(why, sizeof(why)));
	}
	ERR_clear_error();
	if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN)
		return fail(err, errlen, -ECONNRESET,
			    "%s: connection closed during the TLS handshake%s%s", who,
			    sys_errno ? ": " : "", sys_errno ? strerror(sys_errno) : "");
	return fail(err, errlen, -EPROTO, "%s: TLS handshake failed (SSL error %d)", who, e);
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
			rc = wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
			if (rc == -ETIMEDOUT) {
				ERR_clear_error();
				return fail(err, errlen, -ETIMEDOUT, "%s: TLS handshake timed out",
					    who);
			}
			if (rc < 0)
				return fail(err, errlen, rc, "%s: poll: %s", who, strerror(-rc));
			continue;
		}
		return handshake_error(c, e, se, err, errlen, who);
	}
}

/* One SSL_read or SSL_write (write != 0) of up to n bytes, waiting as it asks until the
 * deadline. Returns the bytes moved (> 0), or -ETIMEDOUT, -EPIPE or -EPROTO with c->err
 * set. Holds c->lock only around the SSL call. */
static long io(struct rdm_tls_conn *c, int write, void *p, size_t n, uint64_t deadline)
{
	for (;;) {
		size_t done = 0;
		int r, e, se, rc;

		pthread_mutex_lock(&c->lock);
		ERR_clear_error();
		errno = 0;
		r = write ? SSL_write_ex(c->ssl, p, n, &done) : SSL_read_ex(c->ssl, p, n, &done);
		if (r == 1) {
			pthread_mutex_unlock(&c->lock);
			return (long)done;
		}
		se = errno;
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			pthread_mutex_unlock(&c->lock);
			rc = wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
			if (rc == 0)
				continue;
			pthread_mutex_lock(&c->lock);
			if (rc == -ETIMEDOUT)
				fail(c->err, sizeof(c->err), 0, "%s: %s timed out", c->peer_addr,
				     write ? "send" : "receive");
			else
				fail(c->err, sizeof(c->err), 0, "%s: poll: %s", c->peer_addr,
				     strerror(-rc));
			pthread_mutex_unlock(&c->lock);
			return rc == -ETIMEDOUT ? -ETIMEDOUT : -EPIPE;
		}
		if (e == SSL_ERROR_ZERO_RETURN) {
			rc = -EPIPE;
			fail(c->err, sizeof(c->err), 0, "%s: peer closed the connection",
			     c->peer_addr);
		} else if (e == SSL_ERROR_SYSCALL) {
			rc = -EPIPE;
			c->fatal = 1;
			fail(c->err, sizeof(c->err), 0, "%s: connection %s", c->peer_addr,
			     se ? strerror(se) : "closed by the peer");
		} else if (e == SSL_ERROR_SSL && ERR_GET_REASON(ERR_peek_last_error()) ==
						     SSL_R_UNEXPECTED_EOF_WHILE_READING) {
			rc = -EPIPE;
			c->fatal = 1;
			ERR_clear_error();
			fail(c->err, sizeof(c->err), 0,
			     "%s: peer closed the connection (without close_notify)", c->peer_addr);
		} else {
			rc = -EPROTO;
			c->fatal = 1;
			c->alert = ERR_GET_REASON(ERR_peek_last_error()) >= SSL_AD_REASON_OFFSET;
			ossl_reason(c->reason, sizeof(c->reason));
			fail(c->err, sizeof(c->err), 0, "%s: TLS failure%s: %s", c->peer_addr,
			     c->alert ? ", alert from the peer" : "", c->reason);
		}
		ERR_clear_error();
		pthread_mutex_unlock(&c->lock);
		return rc;
	}
}

/* Writes all of p (n bytes) by the deadline: 0 or what io() returned. */
static int write_all(struct rdm_tls_conn *c, const void *p, size_t n, uint64_t deadline)
{
	const uint8_t *b = p;

	while (n > 0) {
		long w = io(c, 1, (void *)b, n, deadline);

		if (w < 0)
			return (int)w;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Sends one message by the deadline; the body of rdm_tls_send. */
static int send_msg(struct rdm_tls_conn *c, const void *buf, uint32_t len, uint64_t deadline)
{
	uint8_t small[4 + TLS_SMALL_MSG];
	int rc;

	if (len > RDM_TLS_MAX_MSG)
		return -EMSGSIZE;
	if (len && !buf)
		return -EINVAL;
	pthread_mutex_lock(&c->tx_lock);
	if (c->tx_dead) {
		pthread_mutex_unlock(&c->tx_lock);
		return -EPIPE;
	}
	if (len <= TLS_SMALL_MSG) {
		/* One record for header and body. */
		rdm_put_be32(small, len);
		if (len)
			memcpy(small + 4, buf, len);
		rc = write_all(c, small, 4 + (size_t)len, deadline);
	} else {
		rdm_put_be32(small, len);
		rc = write_all(c, small, 4, deadline);
		if (rc == 0)
			rc = write_all(c, buf, len, deadline);
	}
	if (rc < 0)
		c->tx_dead = rc;
	pthread_mutex_unlock(&c->tx_lock);
	return rc;
}

int rdm_tls_send(struct rdm_tls_conn *c, const void *buf, uint32_t len, int timeout_ms)
{
	return send_msg(c, buf, len, deadline_in(timeout_ms));
}

/* Receives one message by the deadline; the body of rdm_tls_recv. max bounds what the
 * peer may announce. */
static int recv_msg(struct rdm_tls_conn *c, uint8_t **buf, uint32_t *len, uint64_t deadline,
		    uint32_t max)
{
	long n;
	int rc = 0;

	pthread_mutex_lock(&c->rx_lock);
	if (c->rx_dead) {
		rc = c->rx_dead;
		goto out;
	}
	while (c->hdr_got < 4) {
		n = io(c, 0, c->hdr + c->hdr_got, 4 - c->hdr_got, deadline);
		if (n < 0) {
			rc = (int)n;
			goto out;
		}
		c->hdr_got += (uint32_t)n;
	}
	if (!c->rx_buf) {
		c->rx_len = rdm_get_be32(c->hdr);
		if (c->rx_len > max) {
			pthread_mutex_lock(&c->lock);
			fail(c->err, sizeof(c->err), 0,
			     "%s: peer announced a %u-byte message, over the %u-byte limit",
			     c->peer_addr, c->rx_len, max);
			pthread_mutex_unlock(&c->lock);
			rc = -EPROTO;
			goto out;
		}
		c->rx_buf = malloc(c->rx_len ? c->rx_len : 1);
		if (!c->rx_buf) {
			rc = -ENOMEM; /* the header stays: a later call may have memory */
			goto out;
		}
		c->rx_got = 0;
	}
	while (c->rx_got < c->rx_len) {
		n = io(c, 0, c->rx_buf + c->rx_got, c->rx_len - c->rx_got, deadline);
		if (n < 0) {
			rc = (int)n;
			goto out;
		}
		c->rx_got += (uint32_t)n;
	}
	*buf = c->rx_buf;
	*len = c->rx_len;
	c->rx_buf = NULL;
	c->hdr_got = 0;
out:
	if (rc == -EPIPE || rc == -EPROTO)
		c->rx_dead = rc;
	pthread_mutex_unlock(&c->rx_lock);
	return rc;
}

int rdm_tls_recv(struct rdm_tls_conn *c, uint8_t **buf, uint32_t *len, int timeout_ms)
{
	return recv_msg(c, buf, len, deadline_in(timeout_ms), RDM_TLS_MAX_MSG);
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
		rc = fail(err, errlen, -EINVAL, "tls: connect needs a client context");
		goto fail;
	}
	if (!rdm_certs_name_ok(expect_name)) {
		rc = fail(err, errlen, -EINVAL, "tls: bad expected server name '%s'",
			  expect_name ? expect_name : "(null)");
		goto fail;
	}
	deadline = now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : RDM_TLS_HANDSHAKE_MS);
	rc = resolve(host_port, 0, &res, err, errlen);
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
		} else if ((rc = wait_fd(fd, POLLOUT, deadline)) == 0) {
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
		rc = fail(err, errlen, rc, "server %s: connect: %s", host_port, strerror(-rc));
		goto fail;
	}
	{
		struct sockaddr_storage ss;

		memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
		c = conn_new(ctx, fd, &ss, ai->ai_addrlen);
	}
	if (!c) {
		close(fd);
		rc = fail(err, errlen, -ENOMEM, "tls: %s", ossl_reason(why, sizeof(why)));
		goto fail;
	}
	snprintf(who, sizeof(who), "server %s", c->peer_addr);
	c->expect = expect_name;
	SSL_set_tlsext_host_name(c->ssl, expect_name);
	SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_WILDCARDS);
	if (!SSL_set1_host(c->ssl, expect_name)) {
		rc = fail(err, errlen, -ENOMEM, "tls: %s", ossl_reason(why, sizeof(why)));
		goto fail_conn;
	}
	SSL_set_connect_state(c->ssl);
	rc = handshake(c, deadline, err, errlen, who);
	c->expect = NULL;
	if (rc < 0)
		goto fail_conn;
	cert_name(SSL_get0_peer_certificate(c->ssl), c->peer_name, sizeof(c->peer_name));

	/* The server's verdict on us: in TLS 1.3 a refusal of our certificate arrives
	 * here, as an alert, after our side of the handshake has finished. */
	rc = recv_msg(c, &verdict, &vlen, deadline, RDM_TLS_VERDICT_MAX);
	if (rc < 0) {
		if (rc == -ETIMEDOUT)
			rc = fail(err, errlen, -ETIMEDOUT, "%s: no verdict from the server in time",
				  who);
		else if (c->alert)
			rc = fail(err, errlen, -ECONNREFUSED,
				  "%s: TLS handshake refused by the peer: %s", who, c->reason);
		else if (rc == -EPROTO)
			rc = fail(err, errlen, -EPROTO, "%s: not an rdmesh control server: %s", who,
				  c->err);
		else
			rc = fail(err, errlen, -ECONNRESET,
				  "%s: closed the connection before its verdict: %s", who, c->err);
		goto fail_conn;
	}
	if (vlen == strlen(RDM_TLS_VERDICT_OK) && !memcmp(verdict, RDM_TLS_VERDICT_OK, vlen)) {
		free(verdict);
		freeaddrinfo(res);
		c->err[0] = '\0';
		return c;
	}
	if (vlen >= strlen(RDM_TLS_VERDICT_NO) &&
	    !memcmp(verdict, RDM_TLS_VERDICT_NO, strlen(RDM_TLS_VERDICT_NO))) {
		/* The reason is the peer's text: print it only as far as it is printable. */
		size_t k = strlen(RDM_TLS_VERDICT_NO), m = 0;
		char reason[RDM_TLS_VERDICT_MAX + 1];

		while (k < vlen && verdict[k] >= 0x20 && verdict[k] < 0x7f)
			reason[m++] = (char)verdict[k++];
		reason[m] = '\0';
		rc = fail(err, errlen, -ECONNREFUSED, "%s: refused us: %s", who, reason);
	} else {
		rc = fail(err, errlen, -EPROTO, "%s: not an rdmesh control server (bad verdict)",
			  who);
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

struct rdm_tls_conn *rdm_tls_accept(struct rdm_tls_ctx *ctx, int lfd, int timeout_ms,
				    rdm_tls_admit_fn admit, void *arg, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	struct rdm_tls_conn *c;
	uint64_t deadline = deadline_in(timeout_ms);
	char who[128], why[256], verdict[RDM_TLS_VERDICT_MAX];
	int fd, rc;

	if (!ctx || !ctx->server) {
		errno = -fail(err, errlen, -EINVAL, "tls: accept needs a server context");
		return NULL;
	}
	for (;;) {
		rc = wait_fd(lfd, POLLIN, deadline);
		if (rc < 0) {
			errno = -fail(err, errlen, rc, "accept: %s",
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
			errno = -fail(err, errlen, -errno, "accept: %s", strerror(errno));
			return NULL;
		}
	}
	c = conn_new(ctx, fd, &ss, sl);
	if (!c) {
		close(fd);
		errno = -fail(err, errlen, -ENOMEM, "tls: %s", ossl_reason(why, sizeof(why)));
		return NULL;
	}
	snprintf(who, sizeof(who), "client %s", c->peer_addr);
	deadline = now_ms() + RDM_TLS_HANDSHAKE_MS;
	SSL_set_accept_state(c->ssl);
	rc = handshake(c, deadline, err, errlen, who);
	if (rc < 0)
		goto fail;
	cert_name(SSL_get0_peer_certificate(c->ssl), c->peer_name, sizeof(c->peer_name));
	if (!c->peer_name[0]) {
		snprintf(why, sizeof(why), "the certificate names no usable holder");
		rc = -EACCES;
	} else if (admit) {
		why[0] = '\0';
		if (admit(c->peer_name, arg, why, sizeof(why)) != 0) {
			rc = -EACCES;
			why[sizeof(why) - 1] = '\0';
			if (!why[0])
				snprintf(why, sizeof(why), "not admitted");
		}
	}
	if (rc < 0) {
		fail(err, errlen, rc, "%s: refused '%s': %s", who, c->peer_name, why);
		snprintf(verdict, sizeof(verdict), "%s%s", RDM_TLS_VERDICT_NO, why);
		send_msg(c, verdict, (uint32_t)strlen(verdict), deadline);
		goto fail;
	}
	rc = send_msg(c, RDM_TLS_VERDICT_OK, strlen(RDM_TLS_VERDICT_OK), deadline);
	if (rc < 0) {
		fail(err, errlen, rc, "%s: sending the verdict: %s", who, c->err);
		goto fail;
	}
	c->err[0] = '\0';
	return c;

fail:
	conn_abort(c);
	errno = -rc;
	return NULL;
}

const char *rdm_tls_peer_name(const struct rdm_tls_conn *c)
{
	return c->peer_name;
}

const char *rdm_tls_peer_addr(const struct rdm_tls_conn *c)
{
	return c->peer_addr;
}

int rdm_tls_fd(const struct rdm_tls_conn *c)
{
	return c->fd;
}

int rdm_tls_pending(struct rdm_tls_conn *c)
{
	int p;

	pthread_mutex_lock(&c->lock);
	p = SSL_has_pending(c->ssl);
	pthread_mutex_unlock(&c->lock);
	return p;
}

void rdm_tls_error(struct rdm_tls_conn *c, char *buf, size_t len)
{
	if (!len)
		return;
	pthread_mutex_lock(&c->lock);
	snprintf(buf, len, "%s", c->err);
	pthread_mutex_unlock(&c->lock);
}

void rdm_tls_shutdown(struct rdm_tls_conn *c)
{
	if (c && c->fd >= 0)
		shutdown(c->fd, SHUT_RDWR);
}

void rdm_tls_close(struct rdm_tls_conn *c)
{
	if (!c)
		return;
	if (c->ssl) {
		/* One try at close_notify, so the peer reads -EPIPE rather than an error;
		 * never after a fatal error (OpenSSL forbids it) or a broken send. */
		if (c->fd >= 0 && !c->fatal && !c->tx_dead && SSL_is_init_finished(c->ssl)) {
			SSL_shutdown(c->ssl);
			ERR_clear_error();
		}
		SSL_free(c->ssl);
	}
	if (c->fd >= 0)
		close(c->fd);
	free(c->rx_buf);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->tx_lock);
	pthread_mutex_destroy(&c->rx_lock);
	free(c);
}
