/* Prometheus metrics for a node: the HTTP server that serves the node's report,
 * converted by rdm_metrics_render (node/metrics_text.c). The rules are in node/metrics.h. */
#include "node/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "node/config.h"
#include "node/node.h"

struct rdm_metrics {
	struct MHD_Daemon *d;
	int (*report)(void *arg, FILE *out);
	void *arg;
	int port;
};

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

/* rdm_metrics_start's report: one node's. */
static int node_report(void *arg, FILE *out)
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

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
			      const char *method, const char *version, const char *upload_data,
			      size_t *upload_data_size, void **con_cls)
{
	static char not_found[] = "not found: try /metrics\n";
	static char not_allowed[] = "method not allowed: GET or HEAD\n";
	struct rdm_metrics *m = cls;
	char *body, msg[128];
	size_t len;
	int rc;

	if (strcmp(url, "/metrics"))
		return reply(conn, MHD_HTTP_NOT_FOUND, not_found, strlen(not_found),
			     MHD_RESPMEM_PERSISTENT, NULL);
	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, not_allowed, strlen(not_allowed),
			     MHD_RESPMEM_PERSISTENT, "GET, HEAD");
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
	return rdm_metrics_start_fn(addr, node_report, (void *)n, err, errlen);
}

struct rdm_metrics *rdm_metrics_start_fn(const char *addr, int (*report)(void *arg, FILE *out),
					 void *arg, char *err, size_t errlen)
{
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
	m->d =
	    MHD_start_daemon(flags, 0, NULL, NULL, handle, m, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
			     NULL, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT,
			     (unsigned int)RDM_METRICS_MAX_CONNS, MHD_OPTION_CONNECTION_TIMEOUT,
			     (unsigned int)RDM_METRICS_IDLE_S, MHD_OPTION_END);
	if (!m->d) {
		snprintf(err, errlen, "metrics %s: the HTTP server did not start", addr);
		/* Whether MHD closed the socket on its way out depends on where it failed;
		 * close it if it is still ours (nothing else opens files during start-up). */
		if (fcntl(fd, F_GETFD) != -1)
			close(fd);
		free(m);
		errno = EIO;
		return NULL;
	}
	return m;

fail_errno:
	e = errno;
	snprintf(err, errlen, "metrics %s: %s", addr, strerror(e));
	if (fd >= 0)
		close(fd);
	free(m);
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
	MHD_stop_daemon(m->d); /* joins the thread, closes connections and the socket */
	free(m);
}
