/* Prometheus metrics for a node: the HTTP server that serves the node's report,
 * converted by rdm_metrics_render (node/metrics_text.c). The rules are in node/metrics.h. */
#include "node/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "node/config.h"
#include "node/node.h"

static int parse_listen(struct rdm_addr *a, const char *text);

/* An open connection, for the deadline (RDM_METRICS_DEADLINE_S). */
struct hold {
	int fd;
	uint64_t since_ns; /* opened, or last answered */
	int shut;
	struct hold *next;
};

struct rdm_metrics {
	struct MHD_Daemon *d;
	int (*report)(void *arg, FILE *out);
	void *arg;
	int port;
	pthread_mutex_t mu; /* holds, and stop */
	pthread_cond_t cv;
	struct hold *holds;
	int stop;
	pthread_t watchdog;
	int watching;
	/* HTTPS (rdm_metrics_start_tls): the PEM texts MHD reads, and the scrapes refused */
	int tls;
	char *pem[3]; /* key, certificate, CA */
	atomic_ulong refused;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* MHD tells of every connection opened and closed (closed before its socket is). */
static void notify(void *cls, struct MHD_Connection *conn, void **ctx,
		   enum MHD_ConnectionNotificationCode toe)
{
	struct rdm_metrics *m = cls;
	struct hold *h = *ctx, **pp;

	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci =
		    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

		h = calloc(1, sizeof(*h));
		if (!h || !ci) {
			free(h);
			return; /* not watched: the idle timeout still closes it */
		}
		h->fd = ci->connect_fd;
		h->since_ns = now_ns();
		pthread_mutex_lock(&m->mu);
		h->next = m->holds;
		m->holds = h;
		pthread_mutex_unlock(&m->mu);
		*ctx = h;
		return;
	}
	if (!h)
		return;
	pthread_mutex_lock(&m->mu);
	for (pp = &m->holds; *pp; pp = &(*pp)->next)
		if (*pp == h) {
			*pp = h->next;
			break;
		}
	pthread_mutex_unlock(&m->mu);
	free(h);
	*ctx = NULL;
}

/* A connection was answered: its deadline starts again. */
static void answered(struct rdm_metrics *m, struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct hold *h = ci ? ci->socket_context : NULL;

	if (!h)
		return;
	pthread_mutex_lock(&m->mu);
	h->since_ns = now_ns();
	pthread_mutex_unlock(&m->mu);
}

/* Every 100 ms: a connection past its deadline gets its socket shut down, which MHD
 * sees as the peer gone and closes. */
static void *watchdog(void *arg)
{
	struct rdm_metrics *m = arg;
	uint64_t limit = (uint64_t)RDM_METRICS_DEADLINE_S * 1000000000ull;

	pthread_mutex_lock(&m->mu);
	while (!m->stop) {
		struct timespec ts;
		uint64_t now = now_ns();

		for (struct hold *h = m->holds; h; h = h->next)
			if (!h->shut && now - h->since_ns > limit) {
				shutdown(h->fd, SHUT_RDWR);
				h->shut = 1;
			}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&m->cv, &m->mu, &ts);
	}
	pthread_mutex_unlock(&m->mu);
	return NULL;
}

int rdm_metrics_addr_ok(const char *addr, int remote, char *err, size_t errlen)
{
	struct rdm_addr a;
	int loop;

	if (!addr || parse_listen(&a, addr) < 0) {
		snprintf(err, errlen, "metrics: '%s' is not IP:PORT", addr ? addr : "(null)");
		return -EINVAL;
	}
	if (a.ss.ss_family == AF_INET6)
		loop = IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&a.ss)->sin6_addr);
	else
		loop = (ntohl(((struct sockaddr_in *)&a.ss)->sin_addr.s_addr) >> 24) == 127;
	if (loop || remote)
		return 0;
	snprintf(err, errlen,
		 "metrics %s: not a loopback address, and the endpoint has no TLS: anyone who "
		 "reaches it could read every counter. Add --metrics-tls (HTTPS, scrapers "
		 "need a certificate from the rack's CA) or --metrics-remote (plain HTTP on a "
		 "management network)",
		 addr);
	return -EACCES;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		msg[--n] = '\0';
	fprintf(stderr, "rdmesh metrics: %s\n", msg);
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned int status, char *body,
			     size_t len, enum MHD_ResponseMemoryMode mode, const char *allow)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
	enum MHD_Result ret;

	if (!r) {
		if (mode == MHD_RESPMEM_MUST_FREE)
			free(body);
		return MHD_NO; /* MHD closes the connection */
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
				status == MHD_HTTP_OK ? "text/plain; version=0.0.4; charset=utf-8"
						      : "text/plain; charset=utf-8");
	if (allow)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

int rdm_metrics_node_report(void *arg, FILE *out)
{
	rdm_node_report(arg, out);
	return 0;
}

/* Renders the reports and converts them; the text in *body (malloc'd), or a negative
 * errno. Runs on the server's one thread, so reports never overlap here. */
static int scrape(const struct rdm_metrics *m, char **body, size_t *len)
{
	char *rep = NULL;
	size_t rlen = 0;
	FILE *f = open_memstream(&rep, &rlen);
	int rc;

	*body = NULL;
	*len = 0;
	if (!f)
		return -ENOMEM;
	rc = m->report(m->arg, f);
	if (fclose(f) && !rc)
		rc = -ENOMEM;
	if (rc) {
		free(rep);
		return rc < 0 ? rc : -EIO;
	}
	f = open_memstream(body, len);
	if (!f) {
		free(rep);
		return -ENOMEM;
	}
	rc = rdm_metrics_render(rep, f);
	free(rep);
	if (fclose(f) && !rc)
		rc = -ENOMEM;
	if (rc) {
		free(*body);
		*body = NULL;
	}
	return rc;
}

/* HTTPS: the client sent a certificate that the rack's CA signed (MHD only asks). */
static int client_ok(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	unsigned int n = 0, status = 0;

	if (!ci || !ci->tls_session)
		return 0;
	if (!gnutls_certificate_get_peers(ci->tls_session, &n) || n == 0)
		return 0;
	return gnutls_certificate_verify_peers2(ci->tls_session, &status) == 0 && status == 0;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
			      const char *method, const char *version, const char *upload_data,
			      size_t *upload_data_size, void **con_cls)
{
	static char not_found[] = "not found: try /metrics\n";
	static char not_allowed[] = "method not allowed: GET or HEAD\n";
	static char forbidden[] =
	    "forbidden: scrapes need a client certificate from the rack's CA\n";
	struct rdm_metrics *m = cls;
	char *body, msg[128];
	size_t len;
	int rc;

	if (m->tls && !client_ok(conn)) {
		atomic_fetch_add(&m->refused, 1);
		return reply(conn, MHD_HTTP_FORBIDDEN, forbidden, strlen(forbidden),
			     MHD_RESPMEM_PERSISTENT, NULL);
	}
	if (strcmp(url, "/metrics"))
		return reply(conn, MHD_HTTP_NOT_FOUND, not_found, strlen(not_found),
			     MHD_RESPMEM_PERSISTENT, NULL);
	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, not_allowed, strlen(not_allowed),
			     MHD_RESPMEM_PERSISTENT, "GET, HEAD");
	answered(m, conn);
	rc = scrape(m, &body, &len);
	if (rc) {
		snprintf(msg, sizeof(msg), "metrics: %s\n", strerror(-rc));
		fprintf(stderr, "rdmesh %s", msg);
		return reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, msg, strlen(msg),
			     MHD_RESPMEM_MUST_COPY, NULL);
	}
	return reply(conn, MHD_HTTP_OK, body, len, MHD_RESPMEM_MUST_FREE, NULL);
}

/* rdm_addr_parse, plus port 0 (any free port), which a data address never is. */
static int parse_listen(struct rdm_addr *a, const char *text)
{
	char tmp[sizeof(a->text)];
	size_t len = strlen(text);
	int any = len >= 2 && len < sizeof(tmp) && !strcmp(text + len - 2, ":0");

	if (!any)
		return rdm_addr_parse(a, text);
	memcpy(tmp, text, len + 1);
	tmp[len - 1] = '1';
	if (rdm_addr_parse(a, tmp) < 0)
		return -EINVAL;
	if (a->ss.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&a->ss)->sin6_port = 0;
	else
		((struct sockaddr_in *)&a->ss)->sin_port = 0;
	return 0;
}

struct rdm_metrics *rdm_metrics_start(const char *addr, const struct rdm_node *n, char *err,
				      size_t errlen)
{
	if (!n) {
		snprintf(err, errlen, "metrics: no node");
		errno = EINVAL;
		return NULL;
	}
	/* The callback only reads the node: the cast drops const for the void * slot. */
	return rdm_metrics_start_fn(addr, rdm_metrics_node_report, (void *)n, err, errlen);
}

struct rdm_metrics *rdm_metrics_start_fn(const char *addr, int (*report)(void *arg, FILE *out),
					 void *arg, char *err, size_t errlen)
{
	return rdm_metrics_start_tls(addr, report, arg, NULL, err, errlen);
}

/* The whole of a small file, NUL-terminated, or NULL with errno. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0;
	FILE *out;
	int c;

	if (!f)
		return NULL;
	out = open_memstream(&buf, &len);
	if (!out) {
		fclose(f);
		return NULL;
	}
	while ((c = getc(f)) != EOF && len < (1u << 20))
		putc(c, out);
	fclose(f);
	fclose(out);
	return buf;
}

static void free_m(struct rdm_metrics *m)
{
	pthread_mutex_destroy(&m->mu);
	pthread_cond_destroy(&m->cv);
	for (int i = 0; i < 3; i++)
		free(m->pem[i]);
	free(m);
}

unsigned long rdm_metrics_refused(const struct rdm_metrics *m)
{
	return m ? atomic_load(&m->refused) : 0;
}

struct rdm_metrics *rdm_metrics_start_tls(const char *addr, int (*report)(void *arg, FILE *out),
					  void *arg, const struct rdm_metrics_tls *tls, char *err,
					  size_t errlen)
{
	struct MHD_OptionItem tls_opts[4] = {{MHD_OPTION_END, 0, NULL}};
	struct rdm_metrics *m = NULL;
	struct rdm_addr a;
	struct sockaddr_storage bound;
	socklen_t blen = sizeof(bound);
	int fd = -1, one = 1, e;
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;

	if (!report) {
		snprintf(err, errlen, "metrics: no report function");
		errno = EINVAL;
		return NULL;
	}
	if (!addr || parse_listen(&a, addr) < 0) {
		snprintf(err, errlen, "metrics: '%s' is not IP:PORT", addr ? addr : "(null)");
		errno = EINVAL;
		return NULL;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		snprintf(err, errlen, "metrics: %s", strerror(ENOMEM));
		errno = ENOMEM;
		return NULL;
	}
	m->report = report;
	m->arg = arg;
	pthread_mutex_init(&m->mu, NULL);
	pthread_cond_init(&m->cv, NULL);
	if (tls) {
		const char *paths[3] = {tls->key, tls->cert, tls->ca};

		for (int i = 0; i < 3; i++) {
			m->pem[i] = slurp(paths[i]);
			if (!m->pem[i]) {
				e = errno ? errno : EIO;
				snprintf(err, errlen, "metrics %s: %s: %s", addr, paths[i],
					 strerror(e));
				free_m(m);
				errno = e;
				return NULL;
			}
		}
		m->tls = 1;
		flags |= MHD_USE_TLS;
		/* The trust list makes MHD ask for a client certificate; handle() insists. */
		tls_opts[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, m->pem[0]};
		tls_opts[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, m->pem[1]};
		tls_opts[2] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, m->pem[2]};
		tls_opts[3] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
	}
	/* Our own socket, so that a busy port or a foreign address is reported as such;
	 * MHD_start_daemon only says it failed. */
	fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail_errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (const struct sockaddr *)&a.ss, a.len) < 0 || listen(fd, 64) < 0 ||
	    getsockname(fd, (struct sockaddr *)&bound, &blen) < 0)
		goto fail_errno;
	m->port = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
					      : ntohs(((struct sockaddr_in *)&bound)->sin_port);
	if (a.ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	/* The server thread inherits this thread's signal mask (see metrics.h). */
	m->d = MHD_start_daemon(flags, 0, NULL, NULL, handle, m, MHD_OPTION_EXTERNAL_LOGGER,
				mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET, fd,
				MHD_OPTION_CONNECTION_LIMIT, (unsigned int)RDM_METRICS_MAX_CONNS,
				MHD_OPTION_PER_IP_CONNECTION_LIMIT,
				(unsigned int)RDM_METRICS_PER_IP, MHD_OPTION_CONNECTION_TIMEOUT,
				(unsigned int)RDM_METRICS_DEADLINE_S, MHD_OPTION_NOTIFY_CONNECTION,
				notify, m, MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_END);
	if (!m->d) {
		snprintf(err, errlen, "metrics %s: the HTTP server did not start", addr);
		/* Whether MHD closed the socket on its way out depends on where it failed;
		 * close it if it is still ours (nothing else opens files during start-up). */
		if (fcntl(fd, F_GETFD) != -1)
			close(fd);
		free_m(m);
		errno = EIO;
		return NULL;
	}
	m->watching = pthread_create(&m->watchdog, NULL, watchdog, m) == 0;
	if (!m->watching)
		fprintf(stderr, "rdmesh metrics: no deadline thread: slow clients are closed "
				"only when idle\n");
	return m;

fail_errno:
	e = errno;
	snprintf(err, errlen, "metrics %s: %s", addr, strerror(e));
	if (fd >= 0)
		close(fd);
	free_m(m);
	errno = e;
	return NULL;
}

int rdm_metrics_port(const struct rdm_metrics *m)
{
	return m ? m->port : -EINVAL;
}

void rdm_metrics_stop(struct rdm_metrics *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->mu);
	m->stop = 1;
	pthread_cond_signal(&m->cv);
	pthread_mutex_unlock(&m->mu);
	if (m->watching)
		pthread_join(m->watchdog, NULL);
	MHD_stop_daemon(m->d); /* joins the thread, closes connections and the socket */
	free_m(m);
}
