/* The rack the TLS tests run against, in a temporary directory made by setup(): CA A
 * with orch, n1 and an expired "old", and another CA B with its own n1. Both ends run
 * over loopback, the server in a thread (struct srv). Include after criterion.h. */
#ifndef RDM_TESTS_TLSRACK_H
#define RDM_TESTS_TLSRACK_H

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/certs.h"
#include "lib/tls.h"

/* A: the rack's CA, with orch, n1 and an expired "old"; B: another CA with its own n1. */
static char dir[64], dir_a[96], dir_b[96];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	return remove(p);
}

static void setup(void)
{
	static const char *const a[] = {"orch", "n1"};
	static const char *const old[] = {"old"};
	static const char *const b[] = {"n1"};
	char err[256];
	int rc;

	strcpy(dir, "/tmp/rdm-test-tls-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(dir_a, sizeof(dir_a), "%s/a", dir);
	snprintf(dir_b, sizeof(dir_b), "%s/b", dir);
	rc = rdm_certs_make(dir_a, a, 2, 30, err, sizeof(err));
	cr_assert_eq(rc, 2, "%d %s", rc, err);
	rc = rdm_certs_make(dir_a, old, 1, -1, err, sizeof(err));
	cr_assert_eq(rc, 1, "%d %s", rc, err);
	rc = rdm_certs_make(dir_b, b, 1, 30, err, sizeof(err));
	cr_assert_eq(rc, 1, "%d %s", rc, err);
}

static void teardown(void)
{
	if (dir[0])
		nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

/* A file in d (static buffers, a few at a time). */
static const char *in(const char *d, const char *file)
{
	static char bufs[8][160];
	static int k;
	char *p = bufs[k++ % 8];

	snprintf(p, 160, "%s/%s", d, file);
	return p;
}

/* A context for name's certificate from d, trusting the rack's CA (A). */
static struct rdm_tls_ctx *ctx_for(const char *d, const char *name, int server)
{
	char cert[64], key[64], err[256];
	struct rdm_tls_ctx *ctx;

	snprintf(cert, sizeof(cert), "%s.pem", name);
	snprintf(key, sizeof(key), "%s.key", name);
	ctx =
	    rdm_tls_ctx_new(in(dir_a, "ca.pem"), in(d, cert), in(d, key), server, err, sizeof(err));
	cr_assert_not_null(ctx, "%s", err);
	return ctx;
}

/* ---- the server end, in a thread ---- */

enum srv_mode { SRV_ECHO, SRV_CLOSE, SRV_HOLD, SRV_RECV_ONE };

struct srv {
	struct rdm_tls_ctx *ctx;
	int lfd, port;
	enum srv_mode mode;
	rdm_tls_admit_fn admit;
	pthread_t th;
	/* results */
	struct rdm_tls_conn *conn;
	int accept_errno;
	char err[512];
	char name[64];
	int recv_rc; /* SRV_RECV_ONE */
	char recv_err[320];
	volatile int release; /* SRV_HOLD: close when set */
};

static void *srv_main(void *arg)
{
	struct srv *s = arg;
	uint8_t *buf;
	uint32_t len;

	s->conn = rdm_tls_accept(s->ctx, s->lfd, 5000, s->admit, NULL, s->err, sizeof(s->err));
	if (!s->conn) {
		s->accept_errno = errno;
		return NULL;
	}
	snprintf(s->name, sizeof(s->name), "%s", rdm_tls_peer_name(s->conn));
	switch (s->mode) {
	case SRV_ECHO:
		while (rdm_tls_recv(s->conn, &buf, &len, 10000) == 0) {
			int rc = rdm_tls_send(s->conn, buf, len, 10000);

			free(buf);
			if (rc < 0)
				break;
		}
		break;
	case SRV_CLOSE:
		break;
	case SRV_HOLD:
		while (!s->release)
			usleep(1000);
		break;
	case SRV_RECV_ONE:
		s->recv_rc = rdm_tls_recv(s->conn, &buf, &len, 5000);
		if (s->recv_rc == 0)
			free(buf);
		rdm_tls_error(s->conn, s->recv_err, sizeof(s->recv_err));
		break;
	}
	rdm_tls_close(s->conn);
	s->conn = NULL;
	return NULL;
}

/* Starts a server presenting name's certificate from d, on an ephemeral port. */
static void srv_start(struct srv *s, const char *d, const char *name, enum srv_mode mode,
		      rdm_tls_admit_fn admit)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	char err[256];

	memset(s, 0, sizeof(*s));
	s->ctx = ctx_for(d, name, 1);
	s->mode = mode;
	s->admit = admit;
	s->lfd = rdm_tls_listen("127.0.0.1:0", err, sizeof(err));
	cr_assert_geq(s->lfd, 0, "%s", err);
	cr_assert_eq(getsockname(s->lfd, (struct sockaddr *)&sa, &sl), 0);
	s->port = ntohs(sa.sin_port);
	cr_assert_eq(pthread_create(&s->th, NULL, srv_main, s), 0);
}

static void srv_join(struct srv *s)
{
	s->release = 1;
	pthread_join(s->th, NULL);
	close(s->lfd);
	rdm_tls_ctx_free(s->ctx);
}

static const char *addr(int port)
{
	static char a[32];

	snprintf(a, sizeof(a), "127.0.0.1:%d", port);
	return a;
}

/* Connects as name (certificate from d) expecting the server to be expect. */
static struct rdm_tls_conn *client(struct rdm_tls_ctx *ctx, int port, const char *expect, char *err,
				   size_t errlen)
{
	return rdm_tls_connect(ctx, addr(port), expect, 5000, err, errlen);
}

#endif
