/* The orchestrator's accept thread. Every connection proves itself (TLS 1.3 with the
 * rack's certificates, then the server's verdict) before the main loop sees it, and no
 * connection can hold up another: all handshakes run at once, non-blocking, each with
 * its own deadline. Idle or slow connections are bounded: at most ORCH_HALF_OPEN at once
 * and ORCH_HALF_OPEN_PER_SOURCE from one address; past those, new connections are closed
 * at once (counted, and logged once a second), so a flood from one place cannot keep
 * real nodes out, and one that used to close the door for 200 idle connections (one
 * handshake at a time, each waiting out its timeout) no longer does. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/addr.h"
#include "lib/clock.h"
#include "orchestrator/orch_int.h"

#define ORCH_HALF_OPEN		  256  /* connections proving themselves at once */
#define ORCH_HALF_OPEN_PER_SOURCE 16   /* of them, from one address */
#define ORCH_HANDSHAKE_MS	  3000 /* a connection not proven by then is closed */
#define ORCH_ACCEPT_BURST	  64   /* accepts per turn */

struct pending {
	struct rdm_tls_conn *c;
	int fd, want_write;
	uint64_t deadline_ns;
	struct sockaddr_storage src;
};

/* What admit is asked about: the orchestrator and the connection proving itself. */
struct admit_arg {
	struct orch *o;
	struct rdm_tls_conn *c;
};

/* The host of rack.yaml named name, or -1 (hosts never change: no lock needed). */
static int host_find(const struct rdm_rack *r, const char *name)
{
	for (int k = 0; k < r->n_hosts; k++)
		if (!strcmp(r->nodes[k].name, name))
			return k;
	return -1;
}

static int is_pod(struct rdm_tls_conn *c)
{
	return !strncmp(rdm_tls_peer_unit(c), RDM_POD_UNIT, strlen(RDM_POD_UNIT));
}

static int admit(const char *name, void *arg, char *why, size_t len)
{
	const struct admit_arg *a = arg;

	/* No certificate: it may only ask to join (orch_pods.c). A pod's certificate: the
	 * CA bound it to its stage, checked at its hello. */
	if (!name[0] || is_pod(a->c) || !strcmp(name, RDM_CTL_NAME) ||
	    host_find(&a->o->rack, name) >= 0)
		return 0;
	snprintf(why, len, "unknown node '%s': not in %s", name, a->o->rack.file);
	return -1;
}

/* A proven connection goes to the main loop. */
static void hand_over(struct orch *o, struct rdm_tls_conn *tc)
{
	struct conn *c = calloc(1, sizeof(*c));
	const char *name = rdm_tls_peer_name(tc);

	if (!c) {
		rdm_tls_close(tc);
		return;
	}
	c->c = tc;
	c->node = !name[0]			? CONN_JOIN
		  : is_pod(tc)			? CONN_POD
		  : !strcmp(name, RDM_CTL_NAME) ? CONN_CTL
						: host_find(&o->rack, name);
	pthread_mutex_lock(&o->mu);
	c->next = o->accepted;
	o->accepted = c;
	pthread_mutex_unlock(&o->mu);
	if (write(o->wake[1], "x", 1) < 0) {
		/* the main loop polls every tick anyway */
	}
}

/* Accepts what waits on the listening socket, within the caps. */
static void take_new(struct orch *o, struct pending *p, int *n, uint64_t *shed)
{
	for (int k = 0; k < ORCH_ACCEPT_BURST; k++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(o->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC),
		    from = 0;
		char err[256];

		if (fd < 0)
			return; /* EAGAIN: nothing more; anything else: try next turn */
		for (int i = 0; i < *n; i++)
			from += rdm_addr_same_host(&p[i].src, &ss);
		if (*n >= ORCH_HALF_OPEN || from >= ORCH_HALF_OPEN_PER_SOURCE) {
			close(fd);
			(*shed)++;
			continue;
		}
		p[*n].c = rdm_tls_accept_start(o->tls, fd, &ss, sl, err, sizeof(err));
		if (!p[*n].c) {
			close(fd);
			rdm_orch__log(o, "refused: %s", err);
			continue;
		}
		p[*n].fd = fd;
		p[*n].want_write = 0;
		p[*n].src = ss;
		p[*n].deadline_ns = rdm_now_ns() + (uint64_t)ORCH_HANDSHAKE_MS * 1000000ull;
		(*n)++;
	}
}

void *rdm_orch__accept_main(void *arg)
{
	struct orch *o = arg;
	struct pending *p = calloc(ORCH_HALF_OPEN, sizeof(*p));
	struct pollfd *pf = calloc(ORCH_HALF_OPEN + 1, sizeof(*pf));
	uint64_t shed = 0, last_shed_log = 0;
	int n = 0;

	if (!p || !pf) {
		rdm_orch__log(o, "accept thread: out of memory: no connection can be accepted");
		free(p);
		free(pf);
		return NULL;
	}
	while (!atomic_load(&o->stop)) {
		uint64_t now;

		pf[0] = (struct pollfd){.fd = o->lfd, .events = n < ORCH_HALF_OPEN ? POLLIN : 0};
		for (int i = 0; i < n; i++)
			pf[i + 1] = (struct pollfd){.fd = p[i].fd,
						    .events = p[i].want_write ? POLLOUT : POLLIN};
		if (poll(pf, (nfds_t)n + 1, 100) < 0 && errno != EINTR)
			break;
		now = rdm_now_ns();
		/* Step the ready ones and drop the late ones; a slot freed is refilled from
		 * the end, so walk backwards. */
		for (int i = n - 1; i >= 0; i--) {
			char err[512];
			int rc = 0;

			if (pf[i + 1].revents) {
				struct admit_arg a = {o, p[i].c};

				rc = rdm_tls_accept_step(p[i].c, admit, &a, &p[i].want_write, err,
							 sizeof(err));
			}
			if (rc == 0 && now > p[i].deadline_ns) {
				snprintf(err, sizeof(err),
					 "client %s: not proven within %d ms (TLS handshake and "
					 "verdict)",
					 rdm_tls_peer_addr(p[i].c), ORCH_HANDSHAKE_MS);
				rc = -ETIMEDOUT;
			}
			if (rc == 0)
				continue;
			if (rc == 1) {
				hand_over(o, p[i].c);
			} else {
				rdm_orch__log(o, "refused: %s", err);
				rdm_tls_accept_abort(p[i].c);
			}
			p[i] = p[--n];
			pf[i + 1] = pf[n + 1];
		}
		if (pf[0].revents & POLLIN)
			take_new(o, p, &n, &shed);
		if (shed && now - last_shed_log > 1000000000ull) {
			rdm_orch__log(o,
				      "refused %llu connections at once: %d are still proving "
				      "themselves (at most %d, %d from one address)",
				      (unsigned long long)shed, n, ORCH_HALF_OPEN,
				      ORCH_HALF_OPEN_PER_SOURCE);
			shed = 0;
			last_shed_log = now;
		}
	}
	for (int i = 0; i < n; i++)
		rdm_tls_accept_abort(p[i].c);
	free(p);
	free(pf);
	return NULL;
}
