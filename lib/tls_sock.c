/* The plain TCP sockets under the TLS transport (see tls.h): addresses, listening,
 * waits bounded by a deadline, a BIO that never raises SIGPIPE, and the close after a
 * refusal. No TLS state lives here. */
#include "lib/tls_int.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/err.h"

/* ---- time ---- */

uint64_t rdm_tls__now_ms(void)
{
	return rdm_now_ns() / 1000000;
}

uint64_t rdm_tls__deadline_in(int timeout_ms)
{
	return timeout_ms < 0 ? UINT64_MAX : rdm_tls__now_ms() + (uint64_t)timeout_ms;
}

/* A passed deadline still gets one look (poll with 0), so a timeout of 0 means "if
 * ready now". */
int rdm_tls__wait_fd(int fd, short events, uint64_t deadline)
{
	struct pollfd p = {.fd = fd, .events = events};

	for (;;) {
		int ms = -1, r;

		if (deadline != UINT64_MAX) {
			uint64_t now = rdm_tls__now_ms();

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
BIO *rdm_tls__sock_bio(int fd)
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
int rdm_tls__resolve(const char *host_port, int passive, struct addrinfo **res, char *err,
		     size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC};
	char host[256], port[8];
	int rc;

	if (split_host_port(host_port, host, sizeof(host), port, sizeof(port)) < 0)
		return rdm_errf(err, errlen, -EINVAL, "'%s': not host:port or [v6]:port",
				host_port ? host_port : "(null)");
	if (passive)
		hints.ai_flags = AI_PASSIVE;
	else if (!strcmp(port, "0"))
		return rdm_errf(err, errlen, -EINVAL, "'%s': port 0", host_port);
	rc = getaddrinfo(host[0] && strcmp(host, "*") ? host : NULL, port, &hints, res);
	if (rc)
		return rdm_errf(err, errlen, rc == EAI_SYSTEM ? -errno : -EHOSTUNREACH, "'%s': %s",
				host_port, rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
	return 0;
}

int rdm_tls_listen(const char *host_port, char *err, size_t errlen)
{
	struct addrinfo *res, *ai;
	int rc, fd = -1, one = 1;

	rc = rdm_tls__resolve(host_port, 1, &res, err, errlen);
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
		return rdm_errf(err, errlen, rc, "listen on %s: %s", host_port, strerror(-rc));
	return fd;
}

/* ---- closing after a refusal ---- */

/* A close(2) with unread input makes Linux send a reset, which can overtake the alert or
 * verdict just sent. So stop writing, and read until the peer closes or
 * RDM_TLS__LINGER_MS passes. */
void rdm_tls__linger_close(int fd)
{
	uint64_t deadline = rdm_tls__now_ms() + RDM_TLS__LINGER_MS;
	char sink[4096];

	shutdown(fd, SHUT_WR);
	while (rdm_tls__wait_fd(fd, POLLIN, deadline) == 0) {
		ssize_t n = recv(fd, sink, sizeof(sink), 0);

		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			break;
	}
	close(fd);
}
