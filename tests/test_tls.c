/* The control channel's TLS transport (lib/tls_*.c). Each test runs both ends over
 * loopback: the server in a thread (tests/lib/tlsrack.h), or a bare OpenSSL peer where
 * the test needs one our API refuses to be (no certificate, TLS 1.2, a bogus length). */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "lib/tls.h"
#include "tests/lib/tlsrack.h"

/* ---- a bare OpenSSL client, for what our API will not do ---- */

/* Connects to port with at most max_version, presenting cert/key when given; returns
 * the SSL after the handshake, or NULL with OpenSSL's reason in why. */
static SSL *raw_client(int port, int max_version, const char *cert, const char *key, char *why,
		       size_t whylen)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl;
	int fd;

	cr_assert_not_null(ctx);
	SSL_CTX_set_max_proto_version(ctx, max_version);
	cr_assert_eq(SSL_CTX_load_verify_locations(ctx, in(dir_a, "ca.pem"), NULL), 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (cert) {
		cr_assert_eq(SSL_CTX_use_certificate_chain_file(ctx, cert), 1);
		cr_assert_eq(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM), 1);
	}
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ssl = SSL_new(ctx);
	SSL_CTX_free(ctx); /* the SSL keeps its own reference */
	SSL_set_fd(ssl, fd);
	ERR_clear_error();
	if (SSL_connect(ssl) != 1) {
		ERR_error_string_n(ERR_peek_last_error(), why, whylen);
		ERR_clear_error();
		SSL_free(ssl);
		close(fd);
		return NULL;
	}
	return ssl;
}

static void raw_free(SSL *ssl)
{
	int fd = SSL_get_fd(ssl);

	SSL_free(ssl);
	close(fd);
}

/* Reads the server's verdict on the raw client: 1 for "ok"; 0 with the reason in why. */
static int raw_verdict(SSL *ssl, char *why, size_t whylen)
{
	uint8_t v[4 + sizeof(RDM_TLS_VERDICT_OK) - 1];
	size_t got = 0, n;

	while (got < sizeof(v)) {
		ERR_clear_error();
		if (SSL_read_ex(ssl, v + got, sizeof(v) - got, &n) != 1) {
			ERR_error_string_n(ERR_peek_last_error(), why, whylen);
			ERR_clear_error();
			return 0;
		}
		got += n;
	}
	return v[3] == 2 && !memcmp(v + 4, RDM_TLS_VERDICT_OK, 2);
}

static int raw_write(SSL *ssl, const void *p, size_t n)
{
	size_t w;

	return SSL_write_ex(ssl, p, n, &w) == 1 && w == n ? 0 : -1;
}

TestSuite(tls, .init = setup, .fini = teardown, .timeout = 30);

/* ---- the happy path ---- */

Test(tls, handshake_names_both_ends)
{
	struct rdm_tls_ctx *cctx = ctx_for(dir_a, "n1", 0);
	struct rdm_tls_conn *c;
	struct srv s;
	char err[512];

	cr_assert_str_eq(rdm_tls_ctx_name(cctx), "n1");
	srv_start(&s, dir_a, "orch", SRV_ECHO, NULL);
	cr_assert_str_eq(rdm_tls_ctx_name(s.ctx), "orch");
	c = client(cctx, s.port, "orch", err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	cr_assert_str_eq(rdm_tls_peer_name(c), "orch");
	cr_assert_str_eq(rdm_tls_peer_addr(c), addr(s.port));
	cr_assert_geq(rdm_tls_fd(c), 0);
	cr_assert_eq(rdm_tls_pending(c), 0);
	rdm_tls_close(c);
	srv_join(&s);
	cr_assert_str_eq(s.name, "n1", "server saw '%s' (%s)", s.name, s.err);
	rdm_tls_ctx_free(cctx);
}

/* A message of len bytes whose every byte depends on its length and position. */
static uint8_t *pattern(uint32_t len)
{
	uint8_t *p = malloc(len ? len : 1);

	for (uint32_t i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 31 + len);
	return p;
}

Test(tls, messages_round_trip)
{
	static const uint32_t sizes[] = {0, 1, 100000, RDM_TLS_MAX_MSG, 7};
	struct rdm_tls_ctx *cctx = ctx_for(dir_a, "n1", 0);
	struct rdm_tls_conn *c;
	struct srv s;
	char err[512];

	srv_start(&s, dir_a, "orch", SRV_ECHO, NULL);
	c = client(cctx, s.port, "orch", err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint8_t *out = pattern(sizes[i]), *back = NULL;
		uint32_t len = 12345;

		cr_assert_eq(rdm_tls_send(c, out, sizes[i], 5000), 0, "size %u", sizes[i]);
		cr_assert_eq(rdm_tls_recv(c, &back, &len, 5000), 0, "size %u", sizes[i]);
		cr_assert_not_null(back);
		cr_assert_eq(len, sizes[i]);
		cr_assert_eq(memcmp(out, back, len), 0, "size %u differs", sizes[i]);
		free(out);
		free(back);
	}
	/* Zero bytes may come from NULL. */
	{
		uint8_t *back = NULL;
		uint32_t len = 1;

		cr_assert_eq(rdm_tls_send(c, NULL, 0, 5000), 0);
		cr_assert_eq(rdm_tls_recv(c, &back, &len, 5000), 0);
		cr_assert_eq(len, 0);
		free(back);
	}
	rdm_tls_close(c);
	srv_join(&s);
	rdm_tls_ctx_free(cctx);
}

/* One thread sends while another receives on the same connection. */
struct pump {
	struct rdm_tls_conn *c;
	int n, rc;
};

static void *pump_send(void *arg)
{
	struct pump *p = arg;
	uint8_t msg[1000];

	for (int i = 0; i < p->n && p->rc == 0; i++) {
		memset(msg, i & 0xff, sizeof(msg));
		p->rc = rdm_tls_send(p->c, msg, sizeof(msg), 10000);
	}
	return NULL;
}

Test(tls, send_and_recv_from_two_threads)
{
	struct rdm_tls_ctx *cctx = ctx_for(dir_a, "n1", 0);
	struct pump p = {.n = 2000};
	pthread_t th;
	struct srv s;
	char err[512];

	srv_start(&s, dir_a, "orch", SRV_ECHO, NULL);
	p.c = client(cctx, s.port, "orch", err, sizeof(err));
	cr_assert_not_null(p.c, "%s", err);
	cr_assert_eq(pthread_create(&th, NULL, pump_send, &p), 0);
	for (int i = 0; i < p.n; i++) {
		uint8_t *b;
		uint32_t len;
		int rc = rdm_tls_recv(p.c, &b, &len, 10000);

		cr_assert_eq(rc, 0, "message %d: %d", i, rc);
		cr_assert_eq(len, 1000);
		cr_assert_eq(b[0], i & 0xff, "message %d out of order", i);
		cr_assert_eq(b[999], i & 0xff);
		free(b);
	}
	pthread_join(th, NULL);
	cr_assert_eq(p.rc, 0);
	rdm_tls_close(p.c);
	srv_join(&s);
	rdm_tls_ctx_free(cctx);
}

/* ---- limits and framing ---- */

Test(tls, oversize_send_refused)
{
	struct rdm_tls_ctx *cctx = ctx_for(dir_a, "n1", 0);
	struct rdm_tls_conn *c;
	uint8_t *big = calloc(1, RDM_TLS_MAX_MSG + 1), *back;
	uint32_t len;
	struct srv s;
	char err[512];

	srv_start(&s, dir_a, "orch", SRV_ECHO, NULL);
	c = client(cctx, s.port, "orch", err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(rdm_tls_send(c, big, RDM_TLS_MAX_MSG + 1, 5000), -EMSGSIZE);
	cr_assert_eq(rdm_tls_send(c, big, UINT32_MAX, 5000), -EMSGSIZE);
	/* Nothing went out, so the connection still works. */
	cr_assert_eq(rdm_tls_send(c, "hi", 2, 5000), 0);
	cr_assert_eq(rdm_tls_recv(c, &back, &len, 5000), 0);
	cr_assert_eq(len, 2);
	cr_assert_eq(memcmp(back, "hi", 2), 0);
	free(back);
	free(big);
	rdm_tls_close(c);
	srv_join(&s);
	rdm_tls_ctx_free(cctx);
}

Test(tls, oversize_announce_is_eproto)
{
	static const uint8_t hdr[4] = {0x00, 0x10, 0x00, 0x01}; /* 1 MiB + 1 */
	struct srv s;
	char why[256];
	SSL *ssl;

	signal(SIGPIPE, SIG_IGN); /* the bare client writes with write(2) */
	srv_start(&s, dir_a, "orch", SRV_RECV_ONE, NULL);
	ssl = raw_client(s.port, TLS1_3_VERSION, in(dir_a, "n1.pem"), in(dir_a, "n1.key"), why,
			 sizeof(why));
	cr_assert_not_null(ssl, "%s", why);
	cr_assert(raw_verdict(ssl, why, sizeof(why)), "%s", why);
	cr_assert_eq(raw_write(ssl, hdr, sizeof(hdr)), 0);
	srv_join(&s);
	cr_assert_eq(s.recv_rc, -EPROTO, "recv gave %d", s.recv_rc);
	cr_assert(strstr(s.recv_err, "1048577-byte message, over the 1048576-byte limit"), "%s",
		  s.recv_err);
	raw_free(ssl);
}

/* The bare client for partial_message_survives_a_timeout: the header and 3 bytes, a
 * pause, then the other 7. */
struct dribble {
	int port, rc;
};

static void *dribble_main(void *arg)
{
	static const uint8_t msg[4 + 10] = {0,	 0,   0,   10,	'a', 'b', 'c',
					    'd', 'e', 'f', 'g', 'h', 'i', 'j'};
	struct dribble *d = arg;
	char why[256];
	SSL *ssl = raw_client(d->port, TLS1_3_VERSION, in(dir_a, "n1.pem"), in(dir_a, "n1.key"),
			      why, sizeof(why));

	d->rc = 1;
	if (!ssl)
		return NULL;
	if (raw_verdict(ssl, why, sizeof(why)) && raw_write(ssl, msg, 7) == 0) {
		usleep(400 * 1000);
		if (raw_write(ssl, msg + 7, sizeof(msg) - 7) == 0)
			d->rc = 0;
		usleep(200 * 1000);
	}
	raw_free(ssl);
	return NULL;
}

Test(tls, partial_message_survives_a_timeout)
{
	struct rdm_tls_ctx *sctx = ctx_for(dir_a, "orch", 1);
	struct dribble d = {0};
	struct rdm_tls_conn *c;
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	char err[256];
	pthread_t th;
	uint8_t *b;
	uint32_t len;
	int lfd;

	signal(SIGPIPE, SIG_IGN);
	lfd = rdm_tls_listen("127.0.0.1:0", err, sizeof(err));
	cr_assert_geq(lfd, 0, "%s", err);
	getsockname(lfd, (struct sockaddr *)&sa, &sl);
	d.port = ntohs(sa.sin_port);
	cr_assert_eq(pthread_create(&th, NULL, dribble_main, &d), 0);
	c = rdm_tls_accept(sctx, lfd, 5000, NULL, NULL, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(rdm_tls_recv(c, &b, &len, 150), -ETIMEDOUT);
	cr_assert_eq(rdm_tls_recv(c, &b, &len, 5000), 0);
	cr_assert_eq(len, 10);
	cr_assert_eq(memcmp(b, "abcdefghij", 10), 0);
	free(b);
	pthread_join(th, NULL);
	cr_assert_eq(d.rc, 0);
	rdm_tls_close(c);
	close(lfd);
	rdm_tls_ctx_free(sctx);
}

/* ---- refusals ---- */

Test(tls, client_cert_from_another_ca_refused)
{
	struct rdm_tls_ctx *cctx = ctx_for(dir_b, "n1", 0); /* B's n1, trusting A */
	struct rdm_tls_conn *c;
	struct srv s;
	char err[512];

	srv_start(&s, dir_a, "orch", SRV_ECHO, NULL);
	c = client(cctx, s.port, "orch", err, sizeof(err));
	cr_assert_null(c);
	cr_assert_eq(errno, ECONNREFUSED, "%s", strerror(errno));
	cr_assert(strstr(err, "TLS handshake refused by the peer: tlsv1 alert unknown ca"), "%s",
		  err);
	cr_assert_null(strchr(err, '\n'));
	srv_join(&s);
	fprintf(stderr, "  client: %s\n", err);
	fprintf(stderr, "  server: %s\n", s.err);
	cr_assert_eq(s.accept_errno, EACCES, "%s", s.err);
	cr_assert(strstr(s.err, "certificate verify failed: unable to get local issuer "
				"certificate"),
		  "%s", s.err);
	cr_assert(strstr(s.err, "'n1'"), "%s", s.err);
	cr_assert(strncmp(s.err, "client 127.0.0.1:", 17) == 0, "%s", s.err);
	rdm_tls_ctx_free(cctx);
}

Test(tls, expired_client_cert_refused)
{
	struct rdm_tls_ctx *cctx = ctx_for(dir_a, "old", 0);
	struct rdm_tls_conn *c;
	struct srv s;
	char err[512];

	srv_start(&s, dir_a, "orch", SRV_ECHO, NULL);
	c = client(cctx, s.port, "orch", err, sizeof(err));
	cr_assert_null(c);
	cr_assert_eq(errno, ECONNREFUSED, "%s", strerror(errno));
	cr_assert(strstr(err, "alert certificate expired"), "%s", err);
	srv_join(&s);
	fprintf(stderr, "  client: %s\n", err);
	fprintf(stderr, "  server: %s\n", s.err);
	cr_assert_eq(s.accept_errno, EACCES, "%s", s.err);
	cr_assert(strstr(s.err, "certificate verify failed: certificate has expired"), "%s", s.err);
	cr_assert(strstr(s.err, "'old'"), "%s", s.err);
	rdm_tls_ctx_free(cctx);
}

Test(tls, wrong_server_name_refused)
{
	struct rdm_tls_ctx *cctx = ctx_for(dir_a, "orch", 0);
	struct rdm_tls_conn *c;
	struct srv s;
	char err[512];

	srv_start(&s, dir_a, "n1", SRV_ECHO, NULL); /* a node posing as the orchestrator */
	c = client(cctx, s.port, "orch", err, sizeof(err));
	cr_assert_null(c);
	cr_assert_eq(errno, EACCES, "%s", strerror(errno));
	cr_assert(strstr(err, "hostname mismatch: expected 'orch', the certificate names 'n1'"),
		  "%s", err);
	srv_join(&s);
	fprintf(stderr, "  client: %s\n", err);
	fprintf(stderr, "  server: %s\n", s.err);
	cr_assert_eq(s.accept_errno, ECONNREFUSED, "%s", s.err);
	cr_assert(strstr(s.err, "TLS handshake refused by the peer: ") && strstr(s.err, "alert"),
		  "%s", s.err);
	rdm_tls_ctx_free(cctx);
}

Test(tls, client_without_cert_refused)
{
	struct srv s;
	char why[256] = "";
	SSL *ssl;

	signal(SIGPIPE, SIG_IGN);
	srv_start(&s, dir_a, "orch", SRV_ECHO, NULL);
	ssl = raw_client(s.port, TLS1_3_VERSION, NULL, NULL, why, sizeof(why));
	/* TLS 1.3: the client's handshake ends before the server judges it; the refusal
	 * is the first thing it reads. */
	if (ssl) {
		cr_assert_eq(raw_verdict(ssl, why, sizeof(why)), 0);
		raw_free(ssl);
	}
	cr_assert(strstr(why, "alert certificate required"), "%s", why);
	srv_join(&s);
	fprintf(stderr, "  client: %s\n", why);
	fprintf(stderr, "  server: %s\n", s.err);
	cr_assert_eq(s.accept_errno, EACCES, "%s", s.err);
	cr_assert(strstr(s.err, "refused: peer sent no certificate"), "%s", s.err);
}

Test(tls, tls12_client_refused)
{
	struct srv s;
	char why[256] = "";
	SSL *ssl;

	signal(SIGPIPE, SIG_IGN);
	srv_start(&s, dir_a, "orch", SRV_ECHO, NULL);
	ssl = raw_client(s.port, TLS1_2_VERSION, in(dir_a, "n1.pem"), in(dir_a, "n1.key"), why,
			 sizeof(why));
	cr_assert_null(ssl);
	cr_assert(strstr(why, "alert protocol version"), "%s", why);
	srv_join(&s);
	fprintf(stderr, "  client: %s\n", why);
	fprintf(stderr, "  server: %s\n", s.err);
	cr_assert_eq(s.accept_errno, EPROTO, "%s", s.err);
	cr_assert(strstr(s.err, "unsupported protocol"), "%s", s.err);
}

static int admit_only_n2(const char *name, void *arg, char *why, size_t whylen)
{
	if (!strcmp(name, "n2"))
		return 0;
	snprintf(why, whylen, "unknown node '%s'", name);
	return 1;
}

Test(tls, unknown_name_refused_with_reason)
{
	struct rdm_tls_ctx *cctx = ctx_for(dir_a, "n1", 0);
	struct rdm_tls_conn *c;
	struct srv s;
	char err[512];

	srv_start(&s, dir_a, "orch", SRV_ECHO, admit_only_n2);
	c = client(cctx, s.port, "orch", err, sizeof(err));
	cr_assert_null(c);
	cr_assert_eq(errno, ECONNREFUSED);
	cr_assert(strstr(err, ": refused us: unknown node 'n1'"), "%s", err);
	srv_join(&s);
	fprintf(stderr, "  client: %s\n", err);
	fprintf(stderr, "  server: %s\n", s.err);
	cr_assert_eq(s.accept_errno, EACCES);
	cr_assert(strstr(s.err, ": refused 'n1': unknown node 'n1'"), "%s", s.err);
	rdm_tls_ctx_free(cctx);
}

Test(tls, connect_failures_say_why)
{
	struct rdm_tls_ctx *cctx = ctx_for(dir_a, "n1", 0);
	struct rdm_tls_ctx *sctx = ctx_for(dir_a, "orch", 1);
	char err[512];
	int lfd, port;
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);

	/* Nothing listening. */
	lfd = rdm_tls_listen("127.0.0.1:0", err, sizeof(err));
	cr_assert_geq(lfd, 0);
	getsockname(lfd, (struct sockaddr *)&sa, &sl);
	port = ntohs(sa.sin_port);
	close(lfd);
	cr_assert_null(client(cctx, port, "orch", err, sizeof(err)));
	cr_assert_eq(errno, ECONNREFUSED);
	cr_assert(strstr(err, "connect: Connection refused"), "%s", err);

	/* Listening, never accepting: the handshake times out. */
	lfd = rdm_tls_listen("127.0.0.1:0", err, sizeof(err));
	getsockname(lfd, (struct sockaddr *)&sa, &sl);
	cr_assert_null(
	    rdm_tls_connect(cctx, addr(ntohs(sa.sin_port)), "orch", 200, err, sizeof(err)));
	cr_assert_eq(errno, ETIMEDOUT);
	cr_assert(strstr(err, "timed out"), "%s", err);
	/* The client gave up: accepting its connection now fails, saying so. */
	cr_assert_null(rdm_tls_accept(sctx, lfd, 100, NULL, NULL, err, sizeof(err)));
	cr_assert_eq(errno, ECONNRESET, "%s", err);
	cr_assert(strstr(err, "connection closed during the TLS handshake"), "%s", err);
	/* And nobody else is coming. */
	cr_assert_null(rdm_tls_accept(sctx, lfd, 100, NULL, NULL, err, sizeof(err)));
	cr_assert_eq(errno, ETIMEDOUT);
	cr_assert_null(rdm_tls_accept(sctx, lfd, 0, NULL, NULL, err, sizeof(err)));
	cr_assert_eq(errno, ETIMEDOUT);
	cr_assert(strstr(err, "no connection in time"), "%s", err);
	close(lfd);

	cr_assert_null(rdm_tls_connect(cctx, "127.0.0.1", "orch", 200, err, sizeof(err)));
	cr_assert_eq(errno, EINVAL);
	cr_assert(strstr(err, "not host:port"), "%s", err);
	cr_assert_null(rdm_tls_connect(cctx, "127.0.0.1:1", "bad name", 200, err, sizeof(err)));
	cr_assert_eq(errno, EINVAL);
	cr_assert_null(rdm_tls_connect(sctx, "127.0.0.1:1", "orch", 200, err, sizeof(err)));
	cr_assert_eq(errno, EINVAL);
	cr_assert_lt(rdm_tls_listen("::1:80", err, sizeof(err)), 0);

	cr_assert_null(rdm_tls_ctx_new(in(dir_a, "ca.pem"), in(dir_a, "n1.pem"),
				       in(dir_a, "orch.key"), 0, err, sizeof(err)));
	cr_assert(strstr(err, "does not hold the key of"), "%s", err);
	cr_assert_null(rdm_tls_ctx_new(in(dir_a, "nope.pem"), in(dir_a, "n1.pem"),
				       in(dir_a, "n1.key"), 0, err, sizeof(err)));
	cr_assert(strstr(err, "nope.pem: cannot load CA certificates"), "%s", err);
	rdm_tls_ctx_free(cctx);
	rdm_tls_ctx_free(sctx);
}

/* ---- the end of a connection ---- */

Test(tls, peer_close_is_epipe_without_sigpipe)
{
	struct rdm_tls_ctx *cctx = ctx_for(dir_a, "n1", 0);
	struct rdm_tls_conn *c;
	uint8_t *b, msg[4096] = {0};
	uint32_t len;
	struct srv s;
	char err[512];
	int rc = 0;

	signal(SIGPIPE, SIG_DFL); /* a SIGPIPE would kill this test */
	srv_start(&s, dir_a, "orch", SRV_CLOSE, NULL);
	c = client(cctx, s.port, "orch", err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	srv_join(&s);
	cr_assert_eq(rdm_tls_recv(c, &b, &len, 5000), -EPIPE);
	rdm_tls_error(c, err, sizeof(err));
	cr_assert(strstr(err, "peer closed the connection"), "%s", err);
	cr_assert_eq(rdm_tls_recv(c, &b, &len, 5000), -EPIPE); /* and stays so */
	/* The kernel takes the first write; the peer's reset fails a later one. */
	for (int i = 0; i < 100 && rc == 0; i++) {
		rc = rdm_tls_send(c, msg, sizeof(msg), 5000);
		usleep(1000);
	}
	cr_assert_eq(rc, -EPIPE, "send gave %d", rc);
	cr_assert_eq(rdm_tls_send(c, msg, 1, 5000), -EPIPE);
	rdm_tls_close(c);
	rdm_tls_ctx_free(cctx);
}

Test(tls, recv_timeout)
{
	struct rdm_tls_ctx *cctx = ctx_for(dir_a, "n1", 0);
	struct rdm_tls_conn *c;
	struct timespec t0, t1;
	uint8_t *b;
	uint32_t len;
	struct srv s;
	char err[512];
	long ms;

	srv_start(&s, dir_a, "orch", SRV_HOLD, NULL);
	c = client(cctx, s.port, "orch", err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(rdm_tls_recv(c, &b, &len, 0), -ETIMEDOUT);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(rdm_tls_recv(c, &b, &len, 200), -ETIMEDOUT);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	cr_assert(ms >= 190 && ms < 2000, "waited %ld ms", ms);
	/* A timeout breaks nothing: the close that follows is still read as one. */
	srv_join(&s);
	cr_assert_eq(rdm_tls_recv(c, &b, &len, 5000), -EPIPE);
	rdm_tls_close(c);
	rdm_tls_ctx_free(cctx);
}

struct waiter {
	struct rdm_tls_conn *c;
	int rc;
};

static void *wait_recv(void *arg)
{
	struct waiter *w = arg;
	uint8_t *b;
	uint32_t len;

	w->rc = rdm_tls_recv(w->c, &b, &len, -1);
	return NULL;
}

Test(tls, shutdown_wakes_a_blocked_receiver)
{
	struct rdm_tls_ctx *cctx = ctx_for(dir_a, "n1", 0);
	struct waiter w = {0};
	pthread_t th;
	struct srv s;
	char err[512];

	srv_start(&s, dir_a, "orch", SRV_HOLD, NULL);
	w.c = client(cctx, s.port, "orch", err, sizeof(err));
	cr_assert_not_null(w.c, "%s", err);
	cr_assert_eq(pthread_create(&th, NULL, wait_recv, &w), 0);
	usleep(100 * 1000);
	rdm_tls_shutdown(w.c);
	pthread_join(th, NULL);
	cr_assert_eq(w.rc, -EPIPE);
	rdm_tls_close(w.c);
	srv_join(&s);
	rdm_tls_ctx_free(cctx);
}

/* openssl s_client, a TLS stack that is not ours, completes the handshake and reads
 * the verdict. */
Test(tls, openssl_s_client_interoperates)
{
	struct srv s;
	char cmd[1024], out[4096] = "";
	size_t n;
	FILE *p;

	if (system("command -v openssl >/dev/null 2>&1") != 0)
		cr_skip_test("no openssl command");
	srv_start(&s, dir_a, "orch", SRV_CLOSE, NULL);
	snprintf(cmd, sizeof(cmd),
		 "openssl s_client -connect 127.0.0.1:%d -tls1_3 -cert %s -key %s -CAfile %s "
		 "-verify_return_error -verify_hostname orch -ign_eof </dev/null 2>&1",
		 s.port, in(dir_a, "n1.pem"), in(dir_a, "n1.key"), in(dir_a, "ca.pem"));
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	pclose(p);
	srv_join(&s);
	cr_assert_str_eq(s.name, "n1", "%s / %s", s.err, out);
	cr_assert(strstr(out, "Protocol  : TLSv1.3") || strstr(out, "TLSv1.3"), "%s", out);
	cr_assert(strstr(out, "Verify return code: 0 (ok)"), "%s", out);
}

static int admit_anonymous_only(const char *name, void *arg, char *why, size_t whylen)
{
	if (!name[0])
		return 0;
	snprintf(why, whylen, "only joins here");
	return 1;
}

/* A client with no certificate (a pod before it joins): refused by a server that wants
 * one; a server that takes anonymous clients asks its admit callback about "" and still
 * verifies a certificate that is sent. */
Test(tls, anonymous_clients_only_where_taken)
{
	struct rdm_tls_ctx *anon = rdm_tls_ctx_new(in(dir_a, "ca.pem"), NULL, NULL, 0, NULL, 0);
	struct rdm_tls_ctx *n1 = ctx_for(dir_a, "n1", 0), *foreign = ctx_for(dir_b, "n1", 0);
	struct rdm_tls_conn *c;
	struct srv s;
	char err[512];

	cr_assert_not_null(anon);
	cr_assert_null(rdm_tls_ctx_new(in(dir_a, "ca.pem"), NULL, NULL, 1, err, sizeof(err)),
		       "a server proves itself");
	srv_start(&s, dir_a, "orch", SRV_CLOSE, NULL);
	c = client(anon, s.port, "orch", err, sizeof(err));
	cr_assert_null(c);
	cr_assert(strstr(err, "certificate required"), "%s", err);
	srv_join(&s);

	srv_start(&s, dir_a, "orch", SRV_HOLD, admit_anonymous_only);
	rdm_tls_ctx_take_anonymous(s.ctx);
	c = client(anon, s.port, "orch", err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	rdm_tls_close(c);
	srv_join(&s);
	cr_assert_str_eq(s.name, "");

	srv_start(&s, dir_a, "orch", SRV_CLOSE, admit_anonymous_only);
	rdm_tls_ctx_take_anonymous(s.ctx);
	c = client(n1, s.port, "orch", err, sizeof(err));
	cr_assert_null(c);
	cr_assert(strstr(err, "refused us: only joins here"), "%s", err);
	srv_join(&s);

	srv_start(&s, dir_a, "orch", SRV_CLOSE, admit_anonymous_only);
	rdm_tls_ctx_take_anonymous(s.ctx);
	c = client(foreign, s.port, "orch", err, sizeof(err));
	cr_assert_null(c, "another CA's certificate is still refused");
	srv_join(&s);
	cr_assert_eq(s.accept_errno, EACCES, "%s", s.err);
	rdm_tls_ctx_free(anon);
	rdm_tls_ctx_free(n1);
	rdm_tls_ctx_free(foreign);
}
